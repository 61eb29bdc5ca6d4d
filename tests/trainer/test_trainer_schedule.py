"""Schedules are pure functions of (progress or step, config): table tests."""

from __future__ import annotations

import pytest

from stagescreen_trainer.config import TrainConfig
from stagescreen_trainer.schedule import (
    lr_multiplier,
    muon_momentum,
    muon_weight_decay,
    progress_of,
)

PAPER = TrainConfig()  # warmup 0, warmdown 0.5, final 0
WARM = TrainConfig(WARMUP_RATIO=0.1, WARMDOWN_RATIO=0.4, FINAL_LR_FRAC=0.1)


@pytest.mark.parametrize(
    ("config", "progress", "expected"),
    [
        (PAPER, 0.0, 1.0),
        (PAPER, 0.5, 1.0),
        (PAPER, 0.75, 0.5),
        (PAPER, 1.0, 0.0),
        (PAPER, 1.7, 0.0),
        (WARM, 0.0, 0.0),
        (WARM, 0.05, 0.5),
        (WARM, 0.1, 1.0),
        (WARM, 0.6, 1.0),
        (WARM, 0.8, 0.55),
        (WARM, 1.0, 0.1),
        (TrainConfig(WARMDOWN_RATIO=0.0), 1.0, 1.0),
    ],
)
def test_lr_multiplier(config: TrainConfig, progress: float, expected: float) -> None:
    assert lr_multiplier(progress, config) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("step", "expected"), [(0, 0.85), (150, 0.90), (300, 0.95), (10_000, 0.95)]
)
def test_muon_momentum_ramps_over_300_steps(step: int, expected: float) -> None:
    assert muon_momentum(step, PAPER) == pytest.approx(expected)


@pytest.mark.parametrize(("progress", "expected"), [(0.0, 0.2), (0.5, 0.1), (1.0, 0.0)])
def test_muon_weight_decay_fades_to_zero(progress: float, expected: float) -> None:
    assert muon_weight_decay(progress, PAPER) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("config", "training_s", "step", "expected"),
    [
        (TrainConfig(TIME_BUDGET=300), 150.0, 7, 0.5),
        (TrainConfig(TIME_BUDGET=300), 450.0, 7, 1.0),
        (TrainConfig(TIME_BUDGET=300, MAX_STEPS=20), 150.0, 5, 0.25),
    ],
)
def test_progress_is_time_based_unless_max_steps(
    config: TrainConfig, training_s: float, step: int, expected: float
) -> None:
    assert progress_of(training_s, step, config) == pytest.approx(expected)
