"""Trainer throughput: its full step against a naive GPT step, and tokens/s per model size.

    .venv/bin/python bench/trainer_throughput.py [--device cpu|cuda] [--rounds 5] [--compile]

Two tables, both on random tokens (the data loader is not what is measured), each figure the
best round of a few after warm-up (the machine is shared; the best round is the least
disturbed), trainer and reference rounds interleaved so both see the same machine:

1. **Full step vs a naive reference** (bench/naive_gpt.py): width 512, 4 layers, context 256,
   batch 16, vocabulary 8192; forward, backward, optimiser step and zeroing, in each dtype the
   device runs fast (fp32, and bf16 autocast where bf16 matmuls are fast). The trainer's step
   includes everything the recipe adds (rotary, QK-norm, value embeddings, sliding windows,
   soft-capped logits, Muon's orthogonalisation). Goal: ratio >= 1.0 in the same dtype.
2. **Sizes**: forward+backward tokens/s and model FLOP/s (training FLOPs per token, 6 x matmul
   parameters + attention, times tokens/s) over the measured matmul peak in the run's dtype;
   the last column charges one optimiser step per STEP_TOKENS tokens of micro-batches.

Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from naive_gpt import NaiveGPT, naive_optimizer

from stagescreen_trainer.config import TrainConfig
from stagescreen_trainer.device import (
    compute_dtype,
    device_name,
    measure_matmul_flops,
    synchronize,
)
from stagescreen_trainer.model import GPT
from stagescreen_trainer.train import Log, Run, gpt_config


@dataclass(frozen=True)
class Size:
    name: str
    depth: int
    aspect: int
    head_dim: int
    seq_len: int
    batch: int
    vocab: int = 8192


# Tokens per optimiser step for the "with optimiser" column: micro-batches accumulate to this.
STEP_TOKENS = 2**16
# The comparison shape issue 6 names: width 512 (4 layers x aspect 128), context 256, batch 16.
VERSUS = Size("d4-w512", 4, 128, 64, 256, 16)

CPU_SIZES = (
    Size("d2-w128", 2, 64, 64, 128, 8),
    Size("d4-w256", 4, 64, 64, 256, 8),
    Size("d8-w512", 8, 64, 128, 256, 4),
)
# The paper's model (depth 8, aspect 64, head 128, 2048 context); DEVICE_BATCH_SIZE 32 per pass.
CUDA_SIZES = (Size("paper d8-w512", 8, 64, 128, 2048, 32),)

Work = Callable[[], None]


def build(size: Size, device: torch.device, dtype: str, compile_model: bool) -> tuple[Run, GPT]:
    """The trainer's own model and optimiser for a size, built the way a run builds them."""
    config = TrainConfig(
        DEPTH=size.depth,
        ASPECT_RATIO=size.aspect,
        HEAD_DIM=size.head_dim,
        SEQ_LEN=size.seq_len,
        DEVICE_BATCH_SIZE=size.batch,
        TOTAL_BATCH_SIZE=size.batch * size.seq_len,
        DEVICE=str(device),
        COMPILE="1" if compile_model else "0",
        DTYPE=dtype,
    )
    run = Run(config, Log())
    run.setup_device()
    model = GPT(gpt_config(config, size.vocab), attention=run.attention)
    model.init_weights()
    run.model = model.to(device)
    run.model.prepare_masks(device)
    run.optimizer = run.build_optimizer()
    run.forward = torch.compile(model, dynamic=False) if compile_model else model
    return run, model


def batch(size: Size, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(0, size.vocab, (size.batch, size.seq_len + 1), device=device)
    return tokens[:, :-1], tokens[:, 1:]


def best_times(works: dict[str, Work], device: torch.device, rounds: int, calls: int) -> dict:
    """Best mean seconds per call of each work, rounds interleaved across the works."""
    for work in works.values():
        work()
        work()
    best = dict.fromkeys(works, float("inf"))
    for _ in range(rounds):
        for name, work in works.items():
            synchronize(device)
            started = time.perf_counter()
            for _ in range(calls):
                work()
            synchronize(device)
            best[name] = min(best[name], (time.perf_counter() - started) / calls)
    return best


def autocast_for(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def versus_naive(device: torch.device, dtype_name: str, rounds: int, compile_model: bool) -> str:
    """One row of table 1: naive and trainer full steps in one dtype, interleaved."""
    size = VERSUS
    run, model = build(size, device, dtype_name, compile_model)
    dtype = run.compute_dtype
    naive = NaiveGPT(size.vocab, 512, size.depth, 8, size.seq_len).to(device)
    naive_opt = naive_optimizer(naive)
    naive_forward = torch.compile(naive, dynamic=False) if compile_model else naive
    inputs, targets = batch(size, device)

    def naive_step() -> None:
        with autocast_for(device, dtype):
            loss = naive_forward(inputs, targets)
        loss.backward()
        naive_opt.step()
        naive.zero_grad(set_to_none=True)

    def trainer_forward_backward() -> None:
        with run.autocast:
            loss = run.forward(inputs, targets)
        loss.backward()

    def trainer_step() -> None:
        trainer_forward_backward()
        run.optimizer.step()
        model.zero_grad(set_to_none=True)

    times = best_times({"naive": naive_step, "trainer": trainer_step}, device, rounds, calls=2)
    trainer_forward_backward()  # gradients for timing the optimiser step alone
    times.update(best_times({"optimiser": run.optimizer.step}, device, rounds, calls=1))
    model.zero_grad(set_to_none=True)
    times.update(best_times({"fwd_bwd": trainer_forward_backward}, device, rounds, calls=1))
    model.zero_grad(set_to_none=True)
    tokens = size.batch * size.seq_len
    optimiser = times["optimiser"]
    return (
        f"| {str(dtype).removeprefix('torch.')} | {tokens / times['naive']:,.0f} "
        f"| {tokens / times['trainer']:,.0f} | **{times['naive'] / times['trainer']:.2f}** "
        f"| {1000 * times['fwd_bwd']:.0f} ms | {1000 * optimiser:.0f} ms "
        f"| {optimiser / times['fwd_bwd']:.0%} |"
    )


def size_row(size: Size, device: torch.device, dtype: torch.dtype, peak: float, args: Any) -> str:
    run, model = build(size, device, str(dtype).removeprefix("torch."), args.compile)
    inputs, targets = batch(size, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def forward_backward() -> None:
        with run.autocast:
            loss = run.forward(inputs, targets)
        loss.backward()

    fwd_bwd = best_times({"x": forward_backward}, device, args.rounds, calls=2)["x"]
    forward_backward()
    optimizer_step = best_times({"x": run.optimizer.step}, device, args.rounds, calls=1)["x"]
    model.zero_grad(set_to_none=True)
    tokens = size.batch * size.seq_len
    flops = model.flops_per_token()
    accumulate = max(1, STEP_TOKENS // tokens)
    step_s = accumulate * fwd_bwd + optimizer_step
    memory = (
        f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
        if device.type == "cuda"
        else "-"
    )
    return (
        f"| {size.name} | {model.parameter_count() / 1e6:.1f}M | {size.seq_len} x {size.batch} "
        f"| {tokens / fwd_bwd:,.0f} | {flops * tokens / fwd_bwd / 1e9:,.1f} "
        f"| {flops * tokens / fwd_bwd / peak:.2f} | {optimizer_step:.2f} s "
        f"| {flops * tokens * accumulate / step_s / peak:.2f} | {memory} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per figure")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile both models (compare like with like)"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = compute_dtype(device, "auto")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"device: {device_name(device)} ({device.type}), {os.cpu_count()} logical CPUs, "
        f"{torch.get_num_threads()} torch threads, load average {load:.2f} at start; "
        f"torch {torch.__version__}, Python {platform.python_version()}, "
        f"compile={'on' if args.compile else 'off'}\n"
    )
    print(
        f"Full step vs the naive reference ({VERSUS.name}: width 512, {VERSUS.depth} layers, "
        f"context {VERSUS.seq_len}, batch {VERSUS.batch}, vocab {VERSUS.vocab}):\n"
    )
    print(
        "| dtype | naive tokens/s | trainer tokens/s | trainer / naive "
        "| trainer fwd+bwd | trainer optimiser | optimiser / fwd+bwd |"
    )
    print("|---|---|---|---|---|---|---|")
    dtypes = ["float32"] + (["bfloat16"] if dtype == torch.bfloat16 else [])
    for name in dtypes:
        print(versus_naive(device, name, args.rounds, args.compile), flush=True)

    size = 8192 if device.type == "cuda" else 2048
    peak = max(measure_matmul_flops(device, dtype, n, 1.5) for n in (size // 2, size))
    print(f"\nSizes, in {dtype} (measured matmul peak {peak / 1e9:,.1f} GFLOP/s):\n")
    print(
        "| size | params | micro-batch (context x batch) | fwd+bwd tokens/s | model GFLOP/s "
        f"| / matmul peak | optimiser step | / peak with optimiser, {STEP_TOKENS:,} tokens/step "
        "| peak memory |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for s in CUDA_SIZES if device.type == "cuda" else CPU_SIZES:
        print(size_row(s, device, dtype, peak, args), flush=True)


if __name__ == "__main__":
    main()
