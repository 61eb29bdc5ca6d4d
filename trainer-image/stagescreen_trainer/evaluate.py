"""val_bpb, exactly the paper's definition (and the reference's fixed metric), over one pass.

Bits per byte: the sum of per-token cross-entropy in nats over the pinned validation stream,
divided by ln 2 times the sum of the UTF-8 bytes of the target tokens. Special tokens (BOS,
byte length 0 in the table) and padding (target -1) are left out of both sums. Because it is
per byte of text, it compares models whatever their tokenizer. The sums are accumulated in
float64. The stream is scored once (data.validation_batches): each token at most once, the
same tokens for every run, so two runs' val_bpb differ only by their models.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Evaluation:
    """val_bpb and what it was measured on."""

    val_bpb: float
    targets: int  # target positions scored (BOS targets included, with 0 bytes)
    bytes: int  # UTF-8 bytes of those targets: the denominator


@torch.no_grad()
def evaluate_bpb(
    model: Callable[..., Tensor],
    batches: Iterable[tuple[Tensor, Tensor]],
    token_bytes: Tensor,
    device: torch.device,
    autocast: contextlib.AbstractContextManager[object] | None = None,
) -> Evaluation:
    """val_bpb over every batch of `batches`; token_bytes lives on `device`."""
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    total_bytes = torch.zeros((), dtype=torch.int64, device=device)
    total_targets = torch.zeros((), dtype=torch.int64, device=device)
    for inputs, targets in batches:
        inputs, targets = inputs.to(device), targets.to(device).view(-1)
        with autocast or contextlib.nullcontext():
            nats = model(inputs, targets.view(inputs.shape), reduction="none").view(-1)
        scored = targets >= 0
        nbytes = torch.where(scored, token_bytes[targets.clamp_min(0)], 0)
        total_nats += torch.where(nbytes > 0, nats.double(), 0.0).sum()
        total_bytes += nbytes.sum()
        total_targets += scored.sum()
    nbytes = int(total_bytes.item())
    bpb = float(total_nats.item()) / (math.log(2) * nbytes) if nbytes else float("nan")
    return Evaluation(bpb, int(total_targets.item()), nbytes)
