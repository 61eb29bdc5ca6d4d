"""Trainer throughput: tokens/s and model FLOP/s per model size, against this device's matmul peak.

    .venv/bin/python bench/trainer_throughput.py [--device cpu|cuda] [--steps 3] [--repeats 3]

For each size it times the trainer's own model and optimiser on random tokens (the data loader
is not what is measured): forward+backward of one micro-batch, and one Muon+AdamW step, each the
best of a few rounds after warm-up (the machine is shared; the best round is the least
disturbed). The last column charges one optimiser step per STEP_TOKENS tokens of accumulated
micro-batches (the paper steps every 2^19 tokens; at a few thousand tokens per step Muon's
orthogonalisation, which is not model FLOPs, would dominate a CPU run).

Model FLOP/s = the model's training FLOPs per token (6 x matmul parameters + attention) x
tokens/s; the achievable peak is the best square-matmul FLOP/s measured in this process
(fp32 on CPU, bf16 on CUDA). Their ratio is the share of the device's matmul speed the model
turns into training; the optimiser's own matmuls (Polar Express) count as overhead, not model
FLOPs. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from stagescreen_trainer.config import TrainConfig
from stagescreen_trainer.device import device_name, measure_matmul_flops, synchronize
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

CPU_SIZES = (
    Size("d2-w128", 2, 64, 64, 128, 8),
    Size("d4-w256", 4, 64, 64, 256, 8),
    Size("d8-w512", 8, 64, 128, 256, 4),
)
# The paper's model (depth 8, aspect 64, head 128, 2048 context); DEVICE_BATCH_SIZE 32 per pass.
CUDA_SIZES = (Size("paper d8-w512", 8, 64, 128, 2048, 32),)


def build(size: Size, device: torch.device, compile_model: bool) -> tuple[Run, GPT]:
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
    )
    run = Run(config, Log())
    run.setup_device()
    model_config = gpt_config(config, size.vocab)
    model = GPT(model_config)
    model.init_weights()
    run.model = model.to(device)
    run.optimizer = run.build_optimizer()
    return run, model


def time_steps(
    size: Size, device: torch.device, steps: int, warmup: int, repeats: int, compile_model: bool
) -> dict[str, float]:
    run, model = build(size, device, compile_model)
    forward = torch.compile(model, dynamic=False) if compile_model else model
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    tokens = torch.randint(0, size.vocab, (size.batch, size.seq_len + 1), device=device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def forward_backward() -> None:
        with autocast:
            loss = forward(inputs, targets)
        loss.backward()

    def best_time(work: Callable[[], None]) -> float:
        """Best mean seconds per call over `repeats` rounds: the machine is shared, so the
        fastest round is the one least disturbed by other processes."""
        for _ in range(warmup):
            work()
        best = float("inf")
        for _ in range(repeats):
            synchronize(device)
            started = time.perf_counter()
            for _ in range(steps):
                work()
            synchronize(device)
            best = min(best, (time.perf_counter() - started) / steps)
        return best

    fwd_bwd = best_time(forward_backward)
    forward_backward()
    optimizer_step = best_time(run.optimizer.step)
    model.zero_grad(set_to_none=True)
    n_tokens = size.batch * size.seq_len
    accumulate = max(1, STEP_TOKENS // n_tokens)
    flops = model.flops_per_token()
    memory = (
        torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    )
    step_s = accumulate * fwd_bwd + optimizer_step
    return {
        "parameters": model.parameter_count(),
        "tokens_per_s": n_tokens / fwd_bwd,
        "model_flops": flops * n_tokens / fwd_bwd,
        "optimizer_s": optimizer_step,
        "model_flops_step": flops * n_tokens * accumulate / step_s,
        "peak_memory_gib": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=3, help="timed calls per round")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = CUDA_SIZES if device.type == "cuda" else CPU_SIZES
    if device.type == "cuda":
        peak = measure_matmul_flops(device, torch.bfloat16, 8192, 2.0)
        peak_label = "bf16 8192^3 matmul"
    else:
        peak = max(measure_matmul_flops(device, torch.float32, n, 1.0) for n in (1024, 2048))
        peak_label = "fp32 1024^3/2048^3 matmul"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"device: {device_name(device)} ({device.type}), {os.cpu_count()} logical CPUs, "
        f"{torch.get_num_threads()} torch threads, load average {load:.2f} at start; "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )
    print(f"measured matmul peak ({peak_label}): {peak / 1e9:,.1f} GFLOP/s\n")
    print(
        "| size | params | micro-batch (context x batch) | fwd+bwd tokens/s | model GFLOP/s "
        f"| / matmul peak | optimiser step | / peak with optimiser, {STEP_TOKENS:,} tokens/step |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in sizes:
        r = time_steps(size, device, args.steps, args.warmup, args.repeats, args.compile)
        print(
            f"| {size.name} | {r['parameters'] / 1e6:.1f}M | {size.seq_len} x {size.batch} "
            f"| {r['tokens_per_s']:,.0f} | {r['model_flops'] / 1e9:,.1f} "
            f"| {r['model_flops'] / peak:.2f} | {r['optimizer_s']:.2f} s "
            f"| {r['model_flops_step'] / peak:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
