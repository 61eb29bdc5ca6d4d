"""val_bpb, exactly the paper's definition (and the reference's fixed metric).

Bits per byte: the sum of per-token cross-entropy in nats over the pinned validation stream,
divided by ln 2 times the sum of the UTF-8 bytes of the target tokens. Special tokens (BOS,
byte length 0 in the table) are left out of both sums. Because it is per byte of text, it
compares models whatever their tokenizer. The sums are accumulated in float64.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from torch import Tensor

from stagescreen_trainer.data import PackedBatches


@torch.no_grad()
def evaluate_bpb(
    model: Callable[..., Tensor],
    batches: PackedBatches,
    token_bytes: Tensor,
    steps: int,
    device: torch.device,
    autocast: contextlib.AbstractContextManager[object] | None = None,
) -> float:
    """val_bpb over `steps` batches of the validation stream; token_bytes lives on `device`."""
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    total_bytes = torch.zeros((), dtype=torch.int64, device=device)
    for _ in range(steps):
        inputs, targets = batches.next_batch()
        inputs, targets = inputs.to(device), targets.to(device)
        with autocast or contextlib.nullcontext():
            nats = model(inputs, targets, reduction="none").view(-1)
        nbytes = token_bytes[targets.view(-1)]
        counted = nbytes > 0
        total_nats += torch.where(counted, nats.double(), 0.0).sum()
        total_bytes += nbytes.sum()
    return float(total_nats.item()) / (math.log(2) * int(total_bytes.item()))
