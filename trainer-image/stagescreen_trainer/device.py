"""The device a run lands on: what it is, its compute dtype, its peak FLOP/s, its peak memory.

MFU is reported against the actual device, never a hard-coded H100 figure: a GPU pool may be
A100s or L40S. Known NVIDIA parts use their datasheet dense bf16 tensor-core peak. Anything
else (a CPU, an unknown GPU) uses the best square-matmul FLOP/s measured in the compute dtype,
measured once per machine for a few seconds and cached (`STAGESCREEN_CACHE`, default
`~/.cache/stagescreen`): a half-second measurement on a shared machine swung two identical
runs' MFU from 1.6% to 6.1%. The record says which peak was used.

Runs compute in bf16 (autocast) on CUDA and on CPUs with bf16 matrix units (Intel AMX or
AVX512-BF16, Arm's BF16 extension), where bf16 matmuls run several times faster than fp32;
other CPUs stay in fp32.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import torch

# Datasheet dense (no sparsity) bf16 tensor-core FLOP/s, matched on the CUDA device name.
# Order matters: the first substring found wins ("l40s" before "l4", "pcie" before plain h100).
DATASHEET_BF16 = (
    ("h200", 989.5e12),
    ("h100 pcie", 756.0e12),
    ("h100", 989.5e12),
    ("a100", 312.0e12),
    ("l40s", 362.05e12),
    ("l4", 121.0e12),
)


@dataclass(frozen=True)
class Peak:
    flops: float
    source: str  # "datasheet:<name>", "measured:<dtype> matmul", or "PEAK_FLOPS"


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def datasheet_peak(name: str) -> float | None:
    lowered = name.lower()
    for key, flops in DATASHEET_BF16:
        if key in lowered:
            return flops
    return None


def measure_matmul_flops(
    device: torch.device, dtype: torch.dtype, size: int, seconds: float = 1.0
) -> float:
    """Best FLOP/s of square size x size matmuls over about `seconds`, after a warm-up."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best


def cpu_has_bf16_matmul(cpuinfo: str | None = None) -> bool:
    """True where the CPU flags name bf16 matrix or dot-product units."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return bool(flags & {"amx_bf16", "avx512_bf16", "bf16"})


def compute_dtype(device: torch.device, requested: str) -> torch.dtype:
    """The autocast dtype: DTYPE=bfloat16/float32, or auto by the device's matmul units.

    Never by the model's size: in a study that varies depth or width, conditions computing in
    different precisions would confound the factors with the dtype. (A tiny CPU model, width
    64, steps 0.82x as fast in bf16; from width 128 bf16 wins: 1.15x, 256 1.58x, 384 1.69x.)
    """
    if requested == "bfloat16":
        return torch.bfloat16
    if requested == "float32":
        return torch.float32
    if device.type == "cuda" or cpu_has_bf16_matmul():
        return torch.bfloat16
    return torch.float32


def cache_folder() -> Path:
    return Path(os.environ.get("STAGESCREEN_CACHE") or Path.home() / ".cache" / "stagescreen")


def measured_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Best matmul FLOP/s of this machine in dtype, measured once and cached by device name,
    dtype, thread count and torch version (any of them changes the figure)."""
    threads = torch.get_num_threads()
    key = f"{device_name(device)}|{device.type}|{dtype}|{threads} threads|torch {torch.__version__}"
    path = cache_folder() / "peak-flops.json"
    known: dict[str, float] = {}
    with contextlib.suppress(OSError, ValueError):
        known = {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    if key in known:
        return known[key]
    sizes = (4096, 8192) if device.type == "cuda" else (1024, 2048)
    flops = max(measure_matmul_flops(device, dtype, size, 1.5) for size in sizes)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**known, key: flops}, indent=1))
        os.replace(tmp, path)
    return flops


def peak_flops(device: torch.device, override: float, dtype: torch.dtype) -> Peak:
    if override:
        return Peak(override, "PEAK_FLOPS")
    if device.type == "cuda":
        name = device_name(device)
        known = datasheet_peak(name)
        if known is not None:
            return Peak(known, f"datasheet:{name}")
    return Peak(measured_peak(device, dtype), f"measured:{dtype} matmul (cached per machine)")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_bytes(device: torch.device) -> tuple[int, str]:
    """(bytes, what was measured): CUDA allocator peak, or the process's max resident set."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process_max_rss"
