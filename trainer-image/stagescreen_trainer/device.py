"""The device a run lands on: what it is, its peak FLOP/s for MFU, its peak memory.

MFU is reported against the actual device, never a hard-coded H100 figure: a GPU pool may be
A100s or L40S. Known NVIDIA parts use their datasheet dense bf16 tensor-core peak; anything
else (a CPU, an unknown GPU) uses the matmul FLOP/s measured in this process, the achievable
peak, and the record says which one was used.
"""

from __future__ import annotations

import contextlib
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


def peak_flops(device: torch.device, override: float, compute_dtype: torch.dtype) -> Peak:
    if override:
        return Peak(override, "PEAK_FLOPS")
    if device.type == "cuda":
        name = device_name(device)
        known = datasheet_peak(name)
        if known is not None:
            return Peak(known, f"datasheet:{name}")
        return Peak(
            measure_matmul_flops(device, compute_dtype, 8192), f"measured:{compute_dtype} matmul"
        )
    return Peak(measure_matmul_flops(device, torch.float32, 1024, 0.5), "measured:float32 matmul")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_bytes(device: torch.device) -> tuple[int, str]:
    """(bytes, what was measured): CUDA allocator peak, or the process's max resident set."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process_max_rss"
