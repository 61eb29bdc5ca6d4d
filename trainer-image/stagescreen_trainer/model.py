"""The GPT the paper screened (section 4.1), as in the public autoresearch reference it froze.

Departures from a textbook GPT-2, all following the reference (itself from nanochat):
- rotary position embeddings (Su et al. 2021) instead of learned positions; no biases anywhere;
- RMSNorm without weights after the embedding, before each sub-block and before the head;
  QK-norm on queries and keys after rotary (Henry et al. 2020; Dehghani et al. 2023);
- ReLU^2 MLP with 4x expansion (So et al. 2021, Primer);
- value embeddings on alternating layers, the last included, mixed into the values with an
  input-dependent per-head gate 2*sigmoid(W x[:32]) (ResFormer-style value residual,
  Zhou et al. 2024);
- per-layer scalars mixing the residual stream x and the normed embedding x0:
  x <- resid_lambda[i] * x + x0_lambda[i] * x0;
- sliding-window attention by a pattern string such as SSSL (S = half the context), the last
  layer always full;
- untied head, logits in fp32 soft-capped at 15 (Gemma 2), the loss computed a block of rows
  at a time with its gradient (loss.py), so the full logits never pass through memory;
- zero-initialised output projections, so every block starts as the identity.

Attention runs through `scaled_dot_product_attention` with `is_causal` for full-window layers
(flash kernels where the device has them). Short-window layers use `flex_attention` with a
sliding-window block mask when compiled on CUDA (the default there), else SDPA with a boolean
band mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stagescreen_contract.variables import VE_GATE_CHANNELS
from stagescreen_trainer.loss import head_loss

SOFTCAP = 15.0


@dataclass(frozen=True)
class GPTConfig:
    """Shape of the network; built from the run config and the tokenizer's vocabulary."""

    vocab_size: int
    n_layer: int  # DEPTH
    n_head: int  # width / HEAD_DIM
    n_embd: int  # width
    sequence_len: int  # SEQ_LEN; also sets the window sizes
    window_pattern: str = "SSSL"

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def norm(x: Tensor) -> Tensor:
    """RMSNorm with no learnable weight."""
    return F.rms_norm(x, (x.size(-1),))


def has_value_embedding(layer: int, n_layer: int) -> bool:
    """Alternating layers, counted back from the last one (which always has one)."""
    return layer % 2 == (n_layer - 1) % 2


def window_sizes(config: GPTConfig) -> list[int]:
    """Look-back of each layer in tokens: a query at i sees keys i-w..i (w >= T means full)."""
    long, short = config.sequence_len, config.sequence_len // 2
    pattern = config.window_pattern.upper()
    sizes = [long if pattern[i % len(pattern)] == "L" else short for i in range(config.n_layer)]
    sizes[-1] = long
    return sizes


def rotary_tables(seq_len: int, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos/sin of shape (1, T, 1, head_dim/2) for the half-split rotary layout."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x[:d/2], x[d/2:]) of x: (B, T, H, D) by position-dependent angles."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


def band_mask(seq_len: int, window: int, device: torch.device) -> Tensor:
    """Boolean (T, T) mask, True where key j is visible from query i: 0 <= i - j <= window."""
    i = torch.arange(seq_len, device=device)[:, None]
    j = torch.arange(seq_len, device=device)[None, :]
    return (j <= i) & (i - j <= window)


class Attention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int, window: int) -> None:
        super().__init__()
        self.n_head, self.head_dim, self.window = config.n_head, config.head_dim, window
        width = config.n_embd
        self.c_q = nn.Linear(width, width, bias=False)
        self.c_k = nn.Linear(width, width, bias=False)
        self.c_v = nn.Linear(width, width, bias=False)
        self.c_proj = nn.Linear(width, width, bias=False)
        self.ve_gate = (
            nn.Linear(VE_GATE_CHANNELS, self.n_head, bias=False)
            if has_value_embedding(layer, config.n_layer)
            else None
        )

    def forward(
        self, x: Tensor, ve: Tensor | None, rope: tuple[Tensor, Tensor], attend: Any
    ) -> Tensor:
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_head, self.head_dim)
        if ve is not None and self.ve_gate is not None:
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., :VE_GATE_CHANNELS]))  # (B, T, H)
            # fp32 embedding weights must not promote bf16 values under autocast
            ve = ve.view(B, T, self.n_head, self.head_dim).to(v.dtype)
            v = v + gate.unsqueeze(-1).to(v.dtype) * ve
        cos, sin = rope
        q, k = norm(apply_rotary(q, cos, sin)), norm(apply_rotary(k, cos, sin))
        q, k = q.to(v.dtype), k.to(v.dtype)  # SDPA wants one dtype, whatever autocast did to norm
        y = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.window)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width, bias=False)
        self.c_proj = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int, window: int) -> None:
        super().__init__()
        self.attn = Attention(config, layer, window)
        self.mlp = MLP(config.n_embd)

    def forward(
        self, x: Tensor, ve: Tensor | None, rope: tuple[Tensor, Tensor], attend: Any
    ) -> Tensor:
        x = x + self.attn(norm(x), ve, rope, attend)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig, attention: str = "sdpa") -> None:
        super().__init__()
        self.config = config
        self.windows = window_sizes(config)
        self.attention = attention
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config, i, w) for i, w in enumerate(self.windows))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.resid_lambdas = nn.Parameter(torch.ones(config.n_layer))
        self.x0_lambdas = nn.Parameter(torch.zeros(config.n_layer))
        self.value_embeds = nn.ModuleDict(
            {
                str(i): nn.Embedding(config.vocab_size, config.n_embd)
                for i in range(config.n_layer)
                if has_value_embedding(i, config.n_layer)
            }
        )
        cos, sin = rotary_tables(config.sequence_len, config.head_dim)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self._masks: dict[tuple[int, int, str, str], Any] = {}

    @torch.no_grad()
    def init_weights(self) -> None:
        """The reference's init: N(0,1) embeddings, tiny head, uniform matrices, zero outputs."""
        bound = 3**0.5 * self.config.n_embd**-0.5  # uniform with std 1/sqrt(width)
        nn.init.normal_(self.wte.weight, std=1.0)
        nn.init.normal_(self.lm_head.weight, std=0.001)
        for block in self.blocks:
            for linear in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                nn.init.uniform_(linear.weight, -bound, bound)
            nn.init.zeros_(block.attn.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.weight)
            if block.attn.ve_gate is not None:
                nn.init.zeros_(block.attn.ve_gate.weight)  # gate 2*sigmoid(0) = 1: neutral
        self.resid_lambdas.fill_(1.0)
        self.x0_lambdas.fill_(0.1)
        for ve in self.value_embeds.values():
            nn.init.uniform_(ve.weight, -bound, bound)

    # --- attention kernels ---
    def _attend(self, q: Tensor, k: Tensor, v: Tensor, window: int) -> Tensor:
        """Causal attention looking back `window` tokens: full windows take SDPA's is_causal
        path (flash kernels where the device has them), short ones flex or a band mask."""
        T = q.size(2)
        if window >= T - 1:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        mask = self.attention_mask(T, window, q.device)
        if self.attention == "flex":
            from torch.nn.attention.flex_attention import flex_attention

            return flex_attention(q, k, v, block_mask=mask)  # type: ignore[return-value]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def attention_mask(self, T: int, window: int, device: torch.device) -> Any:
        """The short-window mask (a boolean band, or flex's block mask), made once per shape.

        Call it for the run's sequence length before torch.compile (`prepare_masks`): the
        compiled graph then only reads the mask instead of building it.
        """
        key = (T, window, str(device), self.attention)
        if key not in self._masks:
            if self.attention == "flex":
                from torch.nn.attention.flex_attention import create_block_mask

                def visible(b: Tensor, h: Tensor, i: Tensor, j: Tensor) -> Tensor:
                    return (j <= i) & (i - j <= window)

                self._masks[key] = create_block_mask(visible, None, None, T, T, device=device)
            else:
                self._masks[key] = band_mask(T, window, device)
        return self._masks[key]

    def prepare_masks(self, device: torch.device) -> None:
        """Every short window's mask at the configured sequence length."""
        T = self.config.sequence_len
        for window in self.windows:
            if window < T - 1:
                self.attention_mask(T, window, device)

    def forward(
        self, idx: Tensor, targets: Tensor | None = None, reduction: str = "mean"
    ) -> Tensor:
        """Logits (B, T, V) in fp32, or the cross-entropy against targets (-1 ignored)."""
        T = idx.size(1)
        rope = (self.cos[:, :T], self.sin[:, :T])
        x = norm(self.wte(idx))
        x0 = x
        for i, block in enumerate(self.blocks):
            x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            ve = self.value_embeds[str(i)](idx) if str(i) in self.value_embeds else None
            x = block(x, ve, rope, self._attend)
        x = norm(x)
        if targets is not None:
            return head_loss(x, self.lm_head.weight, targets, SOFTCAP, reduction)
        logits = self.lm_head(x).float()
        return SOFTCAP * torch.tanh(logits / SOFTCAP)

    # --- accounting ---
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 x matmul parameters + attention scores over each window.

        Embedding look-ups and scalars do no matmuls and are excluded; each layer's attention
        costs 12 * heads * head_dim * effective context (forward + backward, QK^T and AV).
        """
        c = self.config
        lookups = self.wte.weight.numel() + sum(
            ve.weight.numel() for ve in self.value_embeds.values()
        )
        scalars = self.resid_lambdas.numel() + self.x0_lambdas.numel()
        matmul_params = self.parameter_count() - lookups - scalars
        attention = sum(12 * c.n_head * c.head_dim * min(w, c.sequence_len) for w in self.windows)
        return 6.0 * matmul_params + attention

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimiser role; together they cover every parameter exactly once."""
        groups = {
            "matrix": list(self.blocks.parameters()),
            "embedding": list(self.wte.parameters()),
            "value_embedding": list(self.value_embeds.parameters()),
            "head": list(self.lm_head.parameters()),
            "resid_scalar": [self.resid_lambdas],
            "x0_scalar": [self.x0_lambdas],
        }
        assert sum(len(g) for g in groups.values()) == len(list(self.parameters()))
        return groups


def reference_lr_scale(width: int) -> float:
    """AdamW learning rates were tuned at width 768 and scale as 1/sqrt(width/768)."""
    return math.sqrt(768 / width)
