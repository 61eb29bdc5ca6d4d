"""The `predicted` select rule: the corners a screen's or follow-up's fitted model predicts
best, run or not.

`best` can only promote a condition the source ran; a half fraction runs half the 2^k
corners, so the true best corner is outside it about half the time (issue 19: 49.7% on the
HPOLib tables). The main-effects model a screen fits predicts every corner, and confirming
the corners it predicts best found the true best more often than confirming the best run
(0.537 vs 0.454 at equal runs). This module makes that prediction; `ranking.select_anchors`
turns it into anchors.

The model, at the rule's budget, is the one the stage's outcome fits (`retention.stage_families`:
seed block, Lenth's margin when saturated, Simes over pools):
- the retained main effects (`retention.retained_factors` at that budget);
- for a follow-up with `interactions: true`, each two-factor interaction of its two-factor
  model that is estimable and holds the same retention rule (`retention.holds`: interval
  excludes zero and q <= 0.05, q by BH over that model's terms, Simes over pools). A
  follow-up is a full factorial, so its main effects are the same in both models.
On several pools each term's effect is the mean of its per-pool estimates: hosts shift the
metric's level, which no corner's rank depends on, and the retention rule already judged the
term over every pool. A corner's prediction is the mean of the source's usable runs at the
budget plus half of each kept effect times the product of its coded levels.

Factors with no kept term do not move the prediction; they stay at the levels of the best
*run* condition (the source's ranking), so the pick differs from what was measured only
where the evidence says it should. Among corners the model cannot tell apart, the one
closest to that condition (fewest such factors moved) comes first, then the lower coded
levels: the order is reproducible and k > 1 gives the next-closest distinct corners.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stagescreen.statistics import families as fx
from stagescreen.statistics.coding import EffectsError
from stagescreen.statistics.retention import free_factors, holds, retained_factors, stage_families
from stagescreen.study.spec import Stage, StudySpec


@dataclass(frozen=True)
class Corner:
    """One corner of the 2^k space and the metric the source's model predicts for it."""

    levels: Mapping[str, int]
    predicted: float


def kept_terms(spec: StudySpec, stage: Stage, usable: pd.DataFrame, at: int) -> dict[str, float]:
    """The terms the prediction uses and their effects (high minus low), largest first:
    retained main effects and, for a follow-up fitting interactions, the two-factor
    interactions that hold. Empty when nothing is retained."""
    rows = usable[usable["budget_s"] == at]
    if rows.empty:
        return {}
    factors = free_factors(spec, stage)
    mains = stage_families(spec, stage, rows, factors)
    terms = {term: _pooled_effect(mains, term) for term in retained_factors(mains)}
    if stage.interactions and len(factors) > 1:
        try:
            pairs = stage_families(spec, stage, rows, factors, 2)
        except EffectsError:
            pairs = []  # aliased two-factor terms: the main effects alone predict
        held = {
            effect.term
            for family in pairs
            for effect in family.effects
            if ":" in effect.term and holds(effect)
        }
        terms.update({term: _pooled_effect(pairs, term) for term in sorted(held)})
    return terms


def _pooled_effect(families: Sequence[fx.Family], term: str) -> float:
    """A term's effect averaged over the pools (families) that could estimate it."""
    values = [
        effect.effect
        for family in families
        for effect in family.effects
        if effect.term == term and effect.effect is not None
    ]
    return float(np.mean(values))


def predicted_corners(
    spec: StudySpec,
    stage: Stage,
    usable: pd.DataFrame,
    at: int,
    best: Mapping[str, int],
    terms: Mapping[str, float],
) -> list[Corner]:
    """Every corner of the stage's free factors, best predicted first (module docstring):
    factors in no kept term and factors the stage fixes keep the levels of `best`, the best
    run condition; ties go to the corner closest to `best`, then to the lower levels."""
    free = free_factors(spec, stage)
    moving = [code for code in free if any(code in term.split(":") for term in terms)]
    rows = usable[usable["budget_s"] == at]
    base = float(pd.to_numeric(rows[spec.metric.name]).mean())
    sign = 1.0 if spec.metric.goal == "minimize" else -1.0
    ranked: list[tuple[float, int, tuple[int, ...], Corner]] = []
    for point in itertools.product((-1, 1), repeat=len(free)):
        levels = dict(best) | dict(zip(free, point, strict=True))
        value = base + sum(
            effect / 2 * float(np.prod([levels[code] for code in term.split(":")]))
            for term, effect in terms.items()
        )
        moved = sum(levels[code] != best[code] for code in free if code not in moving)
        key = tuple(levels[code] for code in spec.codes)
        ranked.append((sign * value, moved, key, Corner(levels, value)))
    ranked.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in ranked]
