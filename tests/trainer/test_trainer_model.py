"""The model the paper screened: window pattern, value embeddings, attention, init, optimiser."""

from __future__ import annotations

import math

import pytest
import torch

from stagescreen_trainer.loss import head_loss, plain_head_loss
from stagescreen_trainer.model import (
    GPT,
    GPTConfig,
    band_mask,
    has_value_embedding,
    window_sizes,
)
from stagescreen_trainer.muon import MuonAdamW, orthogonalise
from stagescreen_trainer.train import attention_kind


def tiny(**overrides: object) -> GPTConfig:
    values: dict[str, object] = dict(
        vocab_size=300, n_layer=4, n_head=2, n_embd=64, sequence_len=32, window_pattern="SSSL"
    )
    values.update(overrides)
    return GPTConfig(**values)  # type: ignore[arg-type]


def test_window_pattern_repeats_over_layers_and_the_last_layer_is_full() -> None:
    assert window_sizes(tiny(n_layer=6, sequence_len=2048)) == [1024, 1024, 1024, 2048, 1024, 2048]
    assert window_sizes(tiny(n_layer=3, window_pattern="L")) == [32, 32, 32]
    assert window_sizes(tiny(n_layer=2, window_pattern="S")) == [16, 32]


@pytest.mark.parametrize(("n_layer", "layers"), [(4, [1, 3]), (5, [0, 2, 4]), (1, [0])])
def test_value_embeddings_on_alternating_layers_including_the_last(
    n_layer: int, layers: list[int]
) -> None:
    assert [i for i in range(n_layer) if has_value_embedding(i, n_layer)] == layers
    model = GPT(tiny(n_layer=n_layer))
    assert sorted(int(k) for k in model.value_embeds) == layers
    assert [i for i, b in enumerate(model.blocks) if b.attn.ve_gate is not None] == layers


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> torch.Tensor:
    """Query i attends to keys i-window..i: one softmax per query, written out."""
    out = torch.zeros_like(q)
    T = q.size(2)
    for i in range(T):
        lo = max(0, i - window)
        scores = (q[:, :, i : i + 1] @ k[:, :, lo : i + 1].transpose(-1, -2)) / math.sqrt(
            q.size(-1)
        )
        out[:, :, i] = (scores.softmax(-1) @ v[:, :, lo : i + 1]).squeeze(2)
    return out


@pytest.mark.parametrize("window", [3, 8, 31])
def test_sdpa_path_matches_naive_sliding_window_attention(window: int) -> None:
    torch.manual_seed(0)
    model = GPT(tiny())
    q, k, v = (torch.randn(2, 2, 32, 32) for _ in range(3))
    got = model._attend(q, k, v, window)
    assert torch.allclose(got, naive_attention(q, k, v, window), atol=1e-5)


def test_band_mask_is_causal_and_bounded_by_the_window() -> None:
    mask = band_mask(6, 2, torch.device("cpu"))
    assert mask[4].tolist() == [False, False, True, True, True, False]
    assert mask[0].tolist() == [True, False, False, False, False, False]


def test_init_starts_every_block_as_identity_and_predicts_uniformly() -> None:
    torch.manual_seed(0)
    model = GPT(tiny())
    model.init_weights()
    for block in model.blocks:
        assert torch.count_nonzero(block.attn.c_proj.weight) == 0
        assert torch.count_nonzero(block.mlp.c_proj.weight) == 0
    idx = torch.randint(0, 300, (2, 32))
    loss = model(idx, idx)
    assert loss.item() == pytest.approx(math.log(300), rel=1e-3)  # tiny head: near-uniform logits


def test_future_tokens_do_not_change_past_logits_and_logits_are_soft_capped() -> None:
    torch.manual_seed(0)
    model = GPT(tiny())
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        model.lm_head.weight.mul_(1000)  # push logits into the cap
    idx = torch.randint(0, 300, (1, 32))
    changed = idx.clone()
    changed[0, 20:] = (changed[0, 20:] + 1) % 300
    a, b = model(idx), model(changed)
    assert torch.equal(a[:, :20], b[:, :20])
    assert not torch.equal(a[:, 20:], b[:, 20:])
    assert a.abs().max().item() <= 15.0 and a.abs().max().item() > 14.0
    assert a.dtype == torch.float32


def test_parameter_groups_cover_everything_and_flops_follow_the_formula() -> None:
    model = GPT(tiny(n_layer=2, vocab_size=100, sequence_len=32, window_pattern="S"))
    groups = model.parameter_groups()
    assert sum(p.numel() for g in groups.values() for p in g) == model.parameter_count()
    width = 64
    matmul_params = (
        2 * (4 * width * width + 8 * width * width) + 100 * width + 2 * 32
    )  # + head + 1 gate
    # layer 1 has the value embedding (and gate 2x32); layer 0 window 16, layer 1 full 32
    assert model.flops_per_token() == 6 * matmul_params + 12 * 2 * 32 * (16 + 32)


def test_orthogonalise_maps_singular_values_near_one_for_tall_and_wide() -> None:
    torch.manual_seed(0)
    for shape in [(3, 64, 16), (3, 16, 64)]:
        out = orthogonalise(torch.randn(*shape), dtype=torch.float32)
        singular = torch.linalg.svdvals(out)
        assert out.shape == shape
        assert singular.min().item() > 0.5 and singular.max().item() < 1.3


def test_muon_and_adamw_reduce_a_tiny_models_loss() -> None:
    torch.manual_seed(0)
    model = GPT(tiny(n_layer=2))
    model.init_weights()
    groups = model.parameter_groups()
    adam = {"kind": "adamw", "eps": 1e-10, "weight_decay": 0.0, "betas": (0.8, 0.95)}
    muon = {"kind": "muon", "momentum": 0.9, "beta2": 0.95, "ns_steps": 5, "weight_decay": 0.0}
    shapes = sorted({tuple(p.shape) for p in groups["matrix"]})
    param_groups = [
        {**adam, "params": groups["embedding"] + groups["value_embedding"], "lr": 0.3},
        {**adam, "params": groups["head"], "lr": 0.01},
        {**adam, "params": groups["resid_scalar"] + groups["x0_scalar"], "lr": 0.01},
    ] + [
        {**muon, "params": [p for p in groups["matrix"] if tuple(p.shape) == s], "lr": 0.02}
        for s in shapes
    ]
    optimizer = MuonAdamW(param_groups, orthogonal_dtype=torch.float32)
    idx = torch.randint(0, 300, (4, 33))
    losses = []
    for _ in range(15):
        loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_bf16_autocast_trains_with_fp32_parameters_loss_and_gradients() -> None:
    """The CUDA path's mixed precision, exercised with CPU autocast: fp32 parameters, bf16
    matmuls, fp32 logits and loss, fp32 gradients for every parameter."""
    torch.manual_seed(0)
    model = GPT(tiny(n_layer=2))
    model.init_weights()
    idx = torch.randint(0, 300, (2, 33))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(idx[:, :-1], idx[:, 1:])
    loss.backward()
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


@pytest.mark.filterwarnings("ignore")  # eager flex_attention warns that it is unfused
def test_flex_attention_path_matches_naive_sliding_window_attention() -> None:
    """ATTENTION=flex is meant for CUDA; eager on CPU it checks the block mask's semantics."""
    torch.manual_seed(0)
    model = GPT(tiny(sequence_len=128), attention="flex")
    q, k, v = (torch.randn(1, 2, 128, 32) for _ in range(3))
    got = model._attend(q, k, v, 40)
    assert torch.allclose(got, naive_attention(q, k, v, 40), atol=1e-5)


@pytest.mark.parametrize("autocast", [False, True])
def test_blockwise_head_loss_equals_the_plain_expression_with_its_gradients(
    autocast: bool,
) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 70, 64, requires_grad=True)
    weight = (torch.randn(700, 64) * 0.3).requires_grad_()
    targets = torch.randint(0, 700, (3, 70))
    targets[0, :5] = -1  # ignored positions count nowhere
    results = []
    for loss_of in (plain_head_loss, head_loss):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = loss_of(x, weight, targets, 15.0, "mean")
        loss.backward()
        results.append((loss.detach(), x.grad, weight.grad))
        x.grad = weight.grad = None
        assert torch.allclose(
            loss_of(x, weight, targets, 15.0, "none"),
            plain_head_loss(x, weight, targets, 15.0, "none"),
            atol=1e-5,
        )
    (plain, plain_dx, plain_dw), (fused, fused_dx, fused_dw) = results
    # bf16 rounds x W^T / 15 where the plain path rounds x W^T: equal precision, other bits
    tolerance = 1e-2 if autocast else 1e-5
    assert torch.allclose(plain, fused, rtol=tolerance / 10)
    for ours, reference in ((fused_dx, plain_dx), (fused_dw, plain_dw)):
        assert (ours - reference).abs().max() <= tolerance * reference.abs().max()


def test_head_loss_spans_several_blocks_and_groups_of_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import stagescreen_trainer.loss as loss_module

    monkeypatch.setattr(loss_module, "BLOCK_VALUES", 700 * 16)  # 16 rows a block, 7 blocks
    monkeypatch.setattr(loss_module, "GROUP_VALUES", 700 * 32)  # 2 blocks a group, 4 groups
    torch.manual_seed(1)
    x, weight = torch.randn(100, 32, requires_grad=True), torch.randn(700, 32, requires_grad=True)
    targets = torch.randint(0, 700, (100,))
    head_loss(x, weight, targets, 15.0).backward()
    fused = x.grad, weight.grad
    x.grad = weight.grad = None
    plain_head_loss(x, weight, targets, 15.0, "mean").backward()
    assert torch.allclose(fused[0], x.grad, atol=1e-6)
    assert torch.allclose(fused[1], weight.grad, atol=1e-6)


def test_adamw_groups_step_exactly_like_torch_adamw() -> None:
    torch.manual_seed(0)
    ours, theirs = torch.randn(6, 5, requires_grad=True), torch.zeros(6, 5, requires_grad=True)
    with torch.no_grad():
        theirs.copy_(ours)
    settings = {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-10, "weight_decay": 0.1}
    optimiser = MuonAdamW([{"kind": "adamw", "params": [ours], **settings}], torch.float32)
    reference = torch.optim.AdamW([theirs], foreach=False, **settings)  # type: ignore[arg-type]
    for step in range(4):
        grad = torch.randn(6, 5) * (step + 1)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        optimiser.step()
        reference.step()
    assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def muon_steps(
    weights: torch.Tensor, grads: torch.Tensor, compile_update: bool, steps: int
) -> tuple[torch.Tensor, str | None]:
    """A Muon group over a stack of matrices after `steps` steps (momentum changing each
    step, as the schedule changes it), and the optimiser's compile error if any."""
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    group = {"kind": "muon", "params": params, "lr": 0.02, "momentum": 0.9, "beta2": 0.95}
    optimiser = MuonAdamW(
        [{**group, "ns_steps": 5, "weight_decay": 0.1}], torch.float32, compile_update
    )
    for step in range(steps):
        for p, g in zip(params, grads * (step + 1), strict=True):
            p.grad = g.clone()
        optimiser.param_groups[0]["momentum"] = 0.85 + 0.05 * step
        optimiser.step()
    return torch.stack([p.detach() for p in params]), optimiser.compile_error


def test_compiled_muon_update_equals_the_eager_one() -> None:
    """CUDA runs compile the Muon update; the compiled graph must do the same arithmetic."""
    torch.manual_seed(0)
    weights, grads = torch.randn(2, 48, 16), torch.randn(2, 48, 16)
    eager, _ = muon_steps(weights, grads, compile_update=False, steps=3)
    compiled, error = muon_steps(weights, grads, compile_update=True, steps=3)
    assert error is None and torch.allclose(eager, compiled, atol=1e-5)


@pytest.mark.filterwarnings("ignore")
def test_compiled_flex_model_reads_its_prepared_masks_and_matches_the_band_mask_path() -> None:
    """CUDA's default graph: the model compiled, short windows through flex_attention with a
    block mask made before compiling. CPU runs flex forward only, which is what this checks."""
    torch.manual_seed(0)
    config = tiny(n_layer=2, sequence_len=128, window_pattern="SL")
    band, flex = GPT(config), GPT(config, attention="flex")
    band.init_weights()
    with torch.no_grad():  # zero-initialised projections would hide attention entirely
        for p in band.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    flex.load_state_dict(band.state_dict())
    flex.prepare_masks(torch.device("cpu"))
    idx = torch.randint(0, 300, (2, 129))
    with torch.no_grad():
        compiled = torch.compile(flex, dynamic=False)(idx[:, :-1], idx[:, 1:])
        expected = band(idx[:, :-1], idx[:, 1:])
    assert torch.allclose(compiled, expected, rtol=1e-5)


def test_a_muon_update_that_cannot_compile_runs_eagerly_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No C compiler in an image must cost speed, not the run."""
    import stagescreen_trainer.muon as muon_module

    def broken(*args: object) -> None:
        raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

    monkeypatch.setattr(muon_module.torch, "compile", lambda function, **_: broken)
    torch.manual_seed(0)
    weights, grads = torch.randn(2, 16, 8), torch.randn(2, 16, 8)
    eager, no_error = muon_steps(weights, grads, compile_update=False, steps=2)
    fallen_back, error = muon_steps(weights, grads, compile_update=True, steps=2)
    assert no_error is None and torch.equal(eager, fallen_back)
    assert error is not None and "InvalidCxxCompiler" in error


def test_adamw_step_counts_survive_a_checkpoint_round_trip() -> None:
    """The fused kernel reads a step-count tensor; a resumed run continues its count (and
    `_adamw` moves it to the parameter's device, as a checkpoint loads it on the CPU)."""
    param = torch.nn.Parameter(torch.randn(4, 3))
    settings = {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-10, "weight_decay": 0.0}
    optimiser = MuonAdamW([{"kind": "adamw", "params": [param], **settings}], torch.float32)
    for _ in range(3):
        param.grad = torch.randn(4, 3)
        optimiser.step()
    saved = optimiser.state_dict()
    resumed = MuonAdamW([{"kind": "adamw", "params": [param], **settings}], torch.float32)
    resumed.load_state_dict(saved)
    param.grad = torch.randn(4, 3)
    resumed.step()
    assert float(resumed.state[param]["step"]) == 4.0
    assert resumed.state[param]["step"].device == param.device


@pytest.mark.parametrize(
    ("requested", "device", "compiled", "kind"),
    [
        ("auto", "cuda", True, "flex"),
        ("auto", "cuda", False, "sdpa"),  # flex unfused would be slower than a band mask
        ("flex", "cuda", False, "flex"),
        ("sdpa", "cuda", True, "sdpa"),
        ("auto", "cpu", True, "sdpa"),
        ("flex", "cpu", False, "sdpa"),  # no flex backward on CPU
    ],
)
def test_short_windows_use_flex_only_where_it_runs_fused(
    requested: str, device: str, compiled: bool, kind: str
) -> None:
    assert attention_kind(requested, torch.device(device), compiled) == kind
