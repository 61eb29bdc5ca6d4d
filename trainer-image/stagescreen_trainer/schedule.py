"""Schedules: pure functions of progress (or step) and the config, so they can be table-tested.

Progress is training seconds / TIME_BUDGET (the reference's wall-clock schedule), or
step / MAX_STEPS when MAX_STEPS is set, which makes a run's curve independent of timing.
"""

from __future__ import annotations

from stagescreen_trainer.config import TrainConfig


def lr_multiplier(progress: float, config: TrainConfig) -> float:
    """Linear warmup over WARMUP_RATIO, flat, then linear warmdown to FINAL_LR_FRAC."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < config.WARMUP_RATIO:
        return progress / config.WARMUP_RATIO
    if config.WARMDOWN_RATIO == 0 or progress < 1.0 - config.WARMDOWN_RATIO:
        return 1.0
    remaining = (1.0 - progress) / config.WARMDOWN_RATIO
    return remaining + (1.0 - remaining) * config.FINAL_LR_FRAC


def muon_momentum(step: int, config: TrainConfig) -> float:
    """Muon momentum ramps linearly from START to END over the first MUON_MOMENTUM_STEPS."""
    if config.MUON_MOMENTUM_STEPS == 0:
        return config.MUON_MOMENTUM_END
    frac = min(step / config.MUON_MOMENTUM_STEPS, 1.0)
    return (1 - frac) * config.MUON_MOMENTUM_START + frac * config.MUON_MOMENTUM_END


def muon_weight_decay(progress: float, config: TrainConfig) -> float:
    """Weight decay fades linearly to zero over the run, as in the reference."""
    return config.WEIGHT_DECAY * (1.0 - min(max(progress, 0.0), 1.0))


def progress_of(training_s: float, step: int, config: TrainConfig) -> float:
    """Fraction of the run done: step-based under MAX_STEPS, else time-based."""
    if config.MAX_STEPS:
        return min(step / config.MAX_STEPS, 1.0)
    return min(training_s / config.TIME_BUDGET, 1.0)
