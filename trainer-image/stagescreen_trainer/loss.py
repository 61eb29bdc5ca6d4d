"""The head and its loss in one pass over the vocabulary, a block of rows at a time.

The model's last step, logits = 15 tanh((x W^T) / 15) in fp32 followed by cross-entropy, is
the most expensive part of a small model's step on a CPU: at width 512, vocabulary 8192 and
4,096 tokens a micro-batch, the (tokens x vocabulary) logits hold 134 MB, and the plain
expression streams them through memory about a dozen times (matmul out, cast, divide, tanh,
multiply, log-softmax, and as many again backward). Memory bandwidth, not arithmetic, sets
the time.

`head_loss` computes the same numbers on blocks of rows small enough to stay in cache: for
each block, the logits, their log-sum-exp, the loss, and, when a gradient is wanted, the
gradient of the loss with respect to the logits (softmax minus one-hot, times the soft-cap's
derivative 1 - tanh^2), which two matmuls turn into the gradients of x and W. The gradients
are made during the forward pass and scaled by the incoming gradient in backward, the
approach of fused linear cross-entropy kernels (e.g. Liger-Kernel, Hsu et al. 2024,
arXiv:2410.10989). Matmuls run in the autocast dtype when autocast is on, as the plain
expression's would; everything after them is fp32.

Under torch.compile the plain expression is used instead: the compiler fuses it itself, and
a graph with no custom autograd function is the safer one to hand it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

# Rows of logits per block: about 2M fp32 values (8 MB) at any vocabulary size.
BLOCK_VALUES = 2**21
# Logit gradients kept for one weight-gradient matmul: 32M values (64 MB in bf16).
GROUP_VALUES = 2**25


def plain_head_loss(
    x: Tensor, weight: Tensor, targets: Tensor, softcap: float, reduction: str
) -> Tensor:
    """The reference expression: full logits, soft-cap, cross-entropy (targets -1 ignored)."""
    logits = F.linear(x, weight).float()
    logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(
        logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1, reduction=reduction
    )


def head_loss(
    x: Tensor, weight: Tensor, targets: Tensor, softcap: float, reduction: str = "mean"
) -> Tensor:
    """Cross-entropy of soft-capped logits x W^T against targets; -1 targets are ignored.

    x: (..., C), weight: (V, C), targets: x's leading shape. Returns the mean over counted
    targets, or with reduction="none" one loss per target (0 where ignored).
    """
    if torch.compiler.is_compiling():
        return plain_head_loss(x, weight, targets, softcap, reduction)
    rows = x.reshape(-1, x.size(-1))
    flat_targets = targets.reshape(-1)
    if reduction == "none":
        with torch.no_grad():
            return _blocks(rows, weight, flat_targets, softcap, want_grad=False)[0]
    if reduction != "mean":
        raise ValueError(f"reduction={reduction!r}: expected 'mean' or 'none'")
    loss: Tensor = _FusedHeadLoss.apply(rows, weight, flat_targets, softcap)
    return loss


def _compute_dtype(x: Tensor) -> torch.dtype:
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def _blocks(
    x: Tensor, weight: Tensor, targets: Tensor, softcap: float, want_grad: bool
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Per-row losses (fp32), and with want_grad the gradients of their sum w.r.t. x and W.

    Soft-capped logits lie in [-softcap, softcap], so exp() needs no max subtracted: a sum of
    exp(15) over any vocabulary stays far inside fp32. Each block takes about nine passes over
    its logits, in place where it can. The logit gradients of a group of blocks are kept (in
    the compute dtype, GROUP_VALUES at most) so the weight gradient is one long matmul per
    group rather than a short one, and an fp32 accumulation, per block.
    """
    assert softcap <= 80, "exp(softcap) must fit in fp32"
    dtype = _compute_dtype(x)
    xc = x.detach().to(dtype)
    wc = weight.detach().to(dtype)
    wc_capped = (weight.detach() / softcap).to(dtype)  # x W^T / softcap straight from the matmul
    n, vocab = x.size(0), weight.size(0)
    step = max(1, BLOCK_VALUES // vocab)
    group_rows = step * max(1, GROUP_VALUES // (step * vocab))
    losses = torch.empty(n, dtype=torch.float32, device=x.device)
    grad_x = torch.empty(x.shape, dtype=torch.float32, device=x.device) if want_grad else None
    grad_w: Tensor | None = None
    kept = (
        torch.empty((min(n, group_rows), vocab), dtype=dtype, device=x.device)
        if want_grad
        else None
    )
    all_counted = bool((targets >= 0).all())  # one host sync per call, not one per block
    with torch.autocast(x.device.type, enabled=False):
        for group in range(0, n, group_rows):
            group_stop = min(n, group + group_rows)
            for start in range(group, group_stop, step):
                stop = min(group_stop, start + step)
                target = targets[start:stop]
                counted = target >= 0
                index = target.clamp_min(0).unsqueeze(1)
                capped = (xc[start:stop] @ wc_capped.T).float().tanh_()  # logits / softcap
                exp = torch.mul(capped, softcap).exp_()
                total = exp.sum(dim=1, keepdim=True)
                picked = capped.gather(1, index) * softcap
                losses[start:stop] = torch.where(counted, (total.log() - picked).squeeze(1), 0.0)
                if grad_x is None or kept is None:
                    continue
                # d loss / d z = (softmax - onehot) * (1 - tanh^2); rows with no target get 0
                slope = capped.square_().neg_().add_(1)
                grad = exp.div_(total).mul_(slope)
                grad.scatter_add_(1, index, -slope.gather(1, index))
                if not all_counted:
                    grad.mul_(counted.unsqueeze(1))
                grad_c = kept[start - group : stop - group]
                grad_c.copy_(grad)
                grad_x[start:stop] = grad_c @ wc
            if grad_x is None or kept is None:
                continue
            part = (kept[: group_stop - group].T @ xc[group:group_stop]).float()
            grad_w = part if grad_w is None else grad_w.add_(part)
    return losses, grad_x, grad_w


class _FusedHeadLoss(torch.autograd.Function):
    """Mean loss over counted targets; gradients made in forward, scaled in backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, targets: Tensor, softcap: float) -> Tensor:
        losses, grad_x, grad_w = _blocks(x, weight, targets, softcap, want_grad=True)
        count = (targets >= 0).sum().clamp_min(1)
        ctx.save_for_backward(grad_x, grad_w, count)
        ctx.dtypes = (x.dtype, weight.dtype)
        return losses.sum() / count

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, Tensor, None, None]:
        grad_x, grad_w, count = ctx.saved_tensors
        scale = grad_output / count
        x_dtype, w_dtype = ctx.dtypes
        return (grad_x * scale).to(x_dtype), (grad_w * scale).to(w_dtype), None, None
