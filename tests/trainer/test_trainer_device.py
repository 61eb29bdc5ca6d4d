"""The device's compute dtype and its peak FLOP/s, measured once per machine and cached."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stagescreen_trainer import device
from stagescreen_trainer.device import compute_dtype, cpu_has_bf16_matmul, measured_peak

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("flags : fpu avx2 avx512f avx512_bf16 amx_tile", True),
        ("flags : fpu avx2 amx_bf16 amx_tile amx_int8", True),
        ("Features : fp asimd bf16 i8mm", True),  # Arm
        ("flags : fpu sse2 avx2 avx512f", False),
    ],
)
def test_bf16_matrix_units_are_read_from_the_cpu_flags(flags: str, expected: bool) -> None:
    assert cpu_has_bf16_matmul(flags) is expected


def test_auto_dtype_follows_the_device_never_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """One dtype for every condition of a study, whatever its width."""
    monkeypatch.setattr(device, "cpu_has_bf16_matmul", lambda: True)
    assert compute_dtype(CPU, "auto") == torch.bfloat16
    assert compute_dtype(CPU, "float32") == torch.float32
    assert compute_dtype(torch.device("cuda"), "auto") == torch.bfloat16
    monkeypatch.setattr(device, "cpu_has_bf16_matmul", lambda: False)
    assert compute_dtype(CPU, "auto") == torch.float32
    assert compute_dtype(CPU, "bfloat16") == torch.bfloat16


def test_the_peak_is_measured_once_per_machine_and_dtype(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STAGESCREEN_CACHE", str(tmp_path))
    measured: list[torch.dtype] = []

    def measure(dev: torch.device, dtype: torch.dtype, size: int, seconds: float) -> float:
        measured.append(dtype)
        return 1e9 * size

    monkeypatch.setattr(device, "measure_matmul_flops", measure)
    first = measured_peak(CPU, torch.float32)
    assert first == 2048e9 and len(measured) == 2  # two sizes, the best kept
    assert measured_peak(CPU, torch.float32) == first and len(measured) == 2  # from the cache
    assert measured_peak(CPU, torch.bfloat16) == first and len(measured) == 4  # its own entry
    assert (tmp_path / "peak-flops.json").is_file()
