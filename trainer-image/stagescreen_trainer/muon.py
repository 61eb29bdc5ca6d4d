"""Muon for the matrices inside the blocks, AdamW for everything else, in one optimiser.

Muon (Keller Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks",
https://kellerjordan.github.io/posts/muon/) replaces each matrix update by the nearest
semi-orthogonal matrix to its Nesterov momentum. As in the autoresearch reference the paper
froze (and nanochat, which it came from):
- orthogonalisation by the "Polar Express" odd-polynomial iteration (Amsel, Persson, Musco and
  Gower 2025, arXiv:2505.16932), five steps, its published per-step coefficients, in bf16 on
  bf16 wherever bf16 matmuls are fast (CUDA, CPUs with bf16 matrix units), else fp32, whatever
  the model's compute dtype;
- NorMuon-style variance reduction (Li et al. 2025, arXiv:2510.05491): the orthogonalised
  update is divided by a running RMS per row (or column, along the longer side) and rescaled
  to keep its Frobenius norm;
- cautious weight decay (Chen et al. 2025, arXiv:2510.12402): decay only coordinates where
  the update and the weight agree in sign;
- learning rate scaled by sqrt(max(1, rows/cols)) so tall matrices take proportionate steps;
- momentum ramped 0.85 -> 0.95 over the first 300 steps by the training loop (schedule.py).
Matrices of the same shape are stacked and updated together, which keeps the kernel count low,
and with COMPILE on (the default on CUDA) the update is compiled so its elementwise work fuses;
AdamW groups use torch's fused kernel.

AdamW (Loshchilov and Hutter 2019) with betas (0.8, 0.95), eps 1e-10 and bias correction
drives embeddings, value embeddings, head and scalars; decay is decoupled.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

# Amsel et al. 2025, Polar Express: degree-5 coefficients (a, b, c) of p(x) = a x + b x^3 + c x^5
# for each step, for a spectrum normalised into (0, 1] with a safety margin.
POLAR_EXPRESS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)


def orthogonalise(update: Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Approximate U V^T of update = U S V^T for a stack (N, rows, cols) of matrices."""
    x = update.to(dtype)
    x = x / (x.norm(dim=(-2, -1), keepdim=True) * 1.02 + 1e-6)
    tall = x.size(-2) > x.size(-1)
    if tall:  # iterate on the wide side: the Gram matrix is the smaller one
        x = x.mT.contiguous()  # elementwise work on a transposed view runs several times slower
    for a, b, c in POLAR_EXPRESS[:steps]:
        gram = x @ x.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b G + c G^2, one kernel
        x = torch.baddbmm(x, poly, x, beta=a)  # a x + (b G + c G^2) x
    out = torch.empty(update.shape, dtype=update.dtype, device=update.device)
    return out.copy_(x.mT if tall else x)  # contiguous: the update is then worked on in place


class MuonAdamW(torch.optim.Optimizer):
    """Param groups carry `kind` ("muon" or "adamw") and an `initial_lr` the schedule scales."""

    def __init__(
        self,
        groups: Iterable[dict[str, Any]],
        orthogonal_dtype: torch.dtype,
        compile_update: bool = False,
    ) -> None:
        super().__init__(list(groups), defaults={})
        self.orthogonal_dtype = orthogonal_dtype
        # Compiled (COMPILE on, the default on CUDA), the Muon update's elementwise work fuses
        # into a few kernels; if it cannot be compiled it runs eagerly and says why.
        self._update = torch.compile(muon_update, dynamic=False) if compile_update else muon_update
        self.compile_error: str | None = None
        for group in self.param_groups:
            group.setdefault("initial_lr", group["lr"])
            if group["kind"] == "muon":
                shapes = {p.shape for p in group["params"]}
                assert len(shapes) == 1, "a Muon group stacks matrices of one shape"

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            if group["kind"] == "muon":
                self._muon(group)
            else:
                self._adamw(group)

    def _adamw(self, group: dict[str, Any]) -> None:
        """One fused kernel per group (torch's fused AdamW, CPU and CUDA): decoupled decay,
        bias-corrected moments, the same arithmetic as the reference's loop over tensors."""
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            elif state["step"].device != p.device:  # a checkpoint loads step counts on the CPU
                state["step"] = state["step"].to(p.device)
        states = [self.state[p] for p in params]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)  # the fused kernel reads the step count, never bumps it
        beta1, beta2 = group["betas"]
        torch._fused_adamw_(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            steps,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            amsgrad=False,
            maximize=False,
        )

    def _muon(self, group: dict[str, Any]) -> None:
        params: list[Tensor] = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        rows, cols = params[0].shape
        state = self.state[params[0]]
        device = params[0].device
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros(len(params), rows, cols, device=device)
            rms_shape = (len(params), rows, 1) if rows >= cols else (len(params), 1, cols)
            state["second_moment"] = torch.zeros(rms_shape, device=device)
        # Scalars that change every step travel as tensors, so a compiled update is built once.
        lr = group["lr"] * max(1.0, rows / cols) ** 0.5
        settings = torch.tensor(
            [group["momentum"], group["beta2"], lr, lr * group["weight_decay"]], device=device
        )
        weights = torch.stack(params).float()
        arguments = (
            torch.stack([p.grad for p in params]).float(),
            weights,
            state["momentum_buffer"],
            state["second_moment"],
            settings,
            group["ns_steps"],
            self.orthogonal_dtype,
        )
        try:
            self._update(*arguments)
        except torch.OutOfMemoryError:
            raise
        except Exception as error:  # no compiler, an op it cannot lower: fails before running
            if self._update is muon_update:
                raise
            self.compile_error = f"Muon update: {type(error).__name__}: {str(error)[:300]}"
            self._update = muon_update
            muon_update(*arguments)
        torch._foreach_copy_(params, list(weights.to(params[0].dtype).unbind(0)))


def muon_update(
    grads: Tensor,
    weights: Tensor,
    buffer: Tensor,
    second: Tensor,
    settings: Tensor,
    ns_steps: int,
    dtype: torch.dtype,
) -> None:
    """One Muon step on a stack (N, rows, cols) of same-shape matrices, in place on weights,
    the momentum buffer and the NorMuon second moment; grads is used as scratch.
    settings = [momentum, beta2, lr, lr * weight_decay]."""
    momentum, beta2, lr, decay = settings.unbind(0)
    rows, cols = weights.shape[-2:]
    reduce_dim = -1 if rows >= cols else -2  # the running RMS is per row of a tall matrix
    buffer.lerp_(grads, 1 - momentum)
    update = grads.lerp_(buffer, momentum)  # Nesterov: look ahead along the momentum
    update = orthogonalise(update, ns_steps, dtype)
    # NorMuon: per-row RMS normalisation, then restore the update's Frobenius norm.
    mean_sq = update.square().mean(dim=reduce_dim, keepdim=True)
    norm_before = (mean_sq.sum(dim=(-2, -1), keepdim=True) * update.size(reduce_dim)).sqrt()
    second.lerp_(mean_sq, 1 - beta2)
    scale = second.clamp_min(1e-10).rsqrt()
    norm_after = (
        (mean_sq * update.size(reduce_dim) * scale.square()).sum(dim=(-2, -1), keepdim=True).sqrt()
    )
    update.mul_(scale * norm_before / norm_after.clamp_min(1e-10))
    agree = (update * weights) >= 0  # cautious weight decay: where update and weight agree
    keep = agree.to(weights.dtype).mul_(-decay).add_(1)
    weights.mul_(keep).sub_(update.mul_(lr))
