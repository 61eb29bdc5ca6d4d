"""Configuration: bad hyperparameters stop the run before any work, naming the variable."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from trainer_support import Prepared, read_record, run_trainer, tiny_env

from stagescreen_contract.variables import VARIABLES
from stagescreen_trainer.config import ConfigError, TrainConfig, build_parser, load_config
from stagescreen_trainer.train import divergence, divergence_limit

REQUIRED = {"DATA_URI": "/d", "TOKENIZER_URI": "/t", "RESULT_URI": "/r"}


@pytest.mark.parametrize(
    ("overrides", "variable", "hint"),
    [
        (
            {"TOTAL_BATCH_SIZE": "1000", "DEVICE_BATCH_SIZE": "8", "SEQ_LEN": "64"},
            "TOTAL_BATCH_SIZE",
            "512",
        ),
        ({"WINDOW_PATTERN": "SXL"}, "WINDOW_PATTERN", "S (half context)"),
        ({"DEPTH": "eight"}, "DEPTH", "integer"),
        ({"DEPTH": "2.5"}, "DEPTH", "integer"),
        ({"DEPTH": "0"}, "DEPTH", "positive"),
        ({"HEAD_DIM": "33"}, "HEAD_DIM", "even"),
        ({"DEPTH": "1", "ASPECT_RATIO": "16", "HEAD_DIM": "16"}, "ASPECT_RATIO", "at least 32"),
        ({"MATRIX_LR": "-0.1"}, "MATRIX_LR", ">= 0"),
        ({"WARMUP_RATIO": "0.6", "WARMDOWN_RATIO": "0.6"}, "WARMDOWN_RATIO", "<= 1"),
        ({"ADAM_BETA1": "1.5"}, "ADAM_BETA1", "[0, 1]"),
        ({"TIME_BUDGET": "0"}, "TIME_BUDGET", "> 0"),
        ({"EVAL_TOKENS": "0"}, "EVAL_TOKENS", "positive integer"),
        ({"DATA_URI": ""}, "DATA_URI", "required"),
        ({"CODED_LEVELS": "A=1"}, "CODED_LEVELS", "JSON object"),
        ({"DEVICE": "tpu"}, "DEVICE", "cuda:N"),
    ],
)
def test_bad_values_name_the_variable_and_what_is_accepted(
    overrides: dict[str, str], variable: str, hint: str
) -> None:
    env = {**REQUIRED, "SEQ_LEN": "64", "DEVICE_BATCH_SIZE": "8", "TOTAL_BATCH_SIZE": "512"}
    env["EVAL_TOKENS"] = "4096"
    with pytest.raises(ConfigError) as caught:
        load_config({**env, **overrides})
    assert str(caught.value).startswith(f"{variable}=")
    assert hint in str(caught.value)


def test_flags_override_the_environment_and_integral_floats_are_accepted() -> None:
    config = load_config({**REQUIRED, "DEPTH": "4"}, ["--DEPTH", "6.0", "--matrix-lr", "0.02"])
    assert (config.DEPTH, config.MATRIX_LR) == (6, 0.02)


@pytest.mark.parametrize(
    ("depth", "aspect", "head_dim", "width", "heads"),
    [(8, 64, 128, 512, 4), (3, 50, 64, 192, 3), (6, 64, 128, 384, 3), (2, 32, 32, 64, 2)],
)
def test_width_is_depth_times_aspect_rounded_up_to_whole_heads(
    depth: int, aspect: int, head_dim: int, width: int, heads: int
) -> None:
    config = TrainConfig(DEPTH=depth, ASPECT_RATIO=aspect, HEAD_DIM=head_dim)
    assert (config.width, config.n_heads) == (width, heads)


def test_help_lists_every_variable_with_default_and_meaning() -> None:
    text = build_parser().format_help()
    for name, f in VARIABLES.items():
        assert f"--{name}" in text
        assert f"default {f.default!r}" in " ".join(text.split())


def test_bad_config_exits_2_before_any_work(quickstart: Prepared, tmp_path: Path) -> None:
    result = tmp_path / "run"
    env = tiny_env(
        quickstart,
        str(result),
        TOTAL_BATCH_SIZE="1000",
        RUN_ID="r7",
        RUN_SEED="3",
        CODED_LEVELS='{"D": 1}',
    )
    started = time.monotonic()
    done = run_trainer(env, timeout=60)
    assert done.returncode == 2
    assert "TOTAL_BATCH_SIZE='1000'" not in done.stderr  # values are parsed, then shown as numbers
    assert "TOTAL_BATCH_SIZE=1000" in done.stderr and "DEVICE_BATCH_SIZE*SEQ_LEN" in done.stderr
    assert time.monotonic() - started < 30
    # the run contract: the one-line reason is in the record too; nothing else was written
    assert sorted(p.name for p in result.iterdir()) == ["result.json"]
    record = read_record(result)
    assert record["status"] == "failed" and record["steps"] == 0 and record["val_bpb"] is None
    assert record["reason"] in done.stderr and "TOTAL_BATCH_SIZE=1000" in record["reason"]
    assert record["run_id"] == "r7" and record["seed"] == 3 and record["coded_levels"] == {"D": 1}


@pytest.mark.parametrize(
    ("configured", "vocab", "limit"),
    [(0.0, 8192, 2 * math.log(8192)), (0.0, 512, 2 * math.log(512)), (12.5, 8192, 12.5)],
)
def test_divergence_limit_is_reachable_under_the_softcap(
    configured: float, vocab: int, limit: float
) -> None:
    assert divergence_limit(configured, vocab) == pytest.approx(limit)
    assert divergence_limit(configured, vocab) < 30 + math.log(vocab)


@pytest.mark.parametrize(
    ("loss", "smoothed", "diverged"),
    [
        (float("nan"), 3.0, True),  # NaN ends the run whatever came before
        (float("inf"), 3.0, True),
        (40.0, 6.0, False),  # one spike: the smoothed loss stays under the limit
        (20.0, 19.0, True),  # a sustained explosion lifts the smoothed loss over it
        (3.0, 3.0, False),
    ],
)
def test_divergence_needs_nan_or_a_sustained_explosion(
    loss: float, smoothed: float, diverged: bool
) -> None:
    assert (divergence(loss, smoothed, limit=18.0, step=7) is not None) == diverged
