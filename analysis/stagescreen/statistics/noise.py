"""The noise floor of an analysed stage: how noisy its runs were, and the smallest effect its
design would have found.

A stage that retains nothing says little until one knows what it could have seen. Per budget
(and pool) each fitted stage records its runs' residual sd under the model it was read with,
and the smallest contrast that model detects at 80% power in a two-sided test at alpha 0.05:

    detectable = (t(1 - alpha/2, df) + t(power, df)) * se

(the usual two-t approximation to the noncentral t), with se and df the contrast's own:
- effect stages (screen, followup): the main-effects family of `families.fit_effects`, se the
  largest standard error of its effects (the same for every effect of a complete orthogonal
  design), df its residual df; one test, before BH across the family;
- anchor stages (confirm, bridge, long-horizon): the difference of two conditions within the
  seeds, from `metric ~ C(condition) + C(seed)`, se = sd * sqrt(2 / seeds) for two conditions
  that ran every seed of the cell.
A decision read from an effect stage quotes the difference of two of its conditions, not its
effect's figure (`difference_detectable`): two single runs differ with se sd * sqrt(2), twice a
single-seed 2^3's effect se.

The sd is what the model leaves unexplained: run noise and, for an effect model, any
interaction it does not fit; seed shifts are blocked out when a stage has several seeds (with
one seed they are a constant). A family without residual df (a saturated single-seed screen
read by Lenth's margin) has no measured run noise: its record says so with None.
`pooled_noise` combines the records of a finished study into one sd per budget, which
`stagescreen simulate --noise-from` plants in place of the paper's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from scipy import stats

from stagescreen.statistics.families import Family
from stagescreen.storage.jsonvalues import JsonFloat

POWER = 0.8
ALPHA = 0.05


class NoiseFloor(BaseModel):
    """One budget's (and pool's) measured run noise and the smallest contrast detected.

    `contrast`: "effect" (a high-minus-low main effect) or "difference" (two conditions
    compared within seeds); `sd`: the residual sd of one run, on `df` residual degrees of
    freedom; `se`: the contrast's standard error; `detectable`: the contrast detected at 80%
    power, two-sided alpha 0.05. None where the runs leave no residual df.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    budget_s: int
    pool: str | None = None
    contrast: str
    sd: JsonFloat = None
    df: int | None = None
    se: JsonFloat = None
    detectable: JsonFloat = None


def detectable(se: float, df: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """The contrast a two-sided t test at `alpha` on `df` df detects with `power`."""
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se)


def difference_detectable(floor: NoiseFloor, seeds: int) -> float | None:
    """The smallest difference between two conditions, each on `seeds` seeds, detected within
    seeds: a difference record's own figure; from an effect record's run sd, se
    sd * sqrt(2 / seeds) on its df. Not the effect's figure: a high-minus-low effect averages
    half the design's runs on each side, two single runs differ with se sd * sqrt(2)."""
    if floor.contrast == "difference":
        return floor.detectable
    if floor.sd is None or not floor.df:
        return None
    return detectable(floor.sd * math.sqrt(2 / max(seeds, 1)), floor.df)


def residual_sd(x: np.ndarray, y: np.ndarray) -> tuple[float | None, int]:
    """The residual sd of the least-squares fit of y on x, and its df (n - rank)."""
    df = len(y) - int(np.linalg.matrix_rank(x)) if len(y) else 0
    if df <= 0:
        return None, max(df, 0)
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ beta
    return math.sqrt(float(residual @ residual) / df), df


def _indicators(values: pd.Series) -> list[np.ndarray]:
    """One indicator column per level but the first (sorted): a categorical term."""
    levels = sorted(values.unique(), key=str)
    return [(values == level).to_numpy(float) for level in levels[1:]]


def effect_floors(
    families: Sequence[Family], usable: pd.DataFrame, metric: str, factors: Sequence[str]
) -> list[NoiseFloor]:
    """The noise floor of each main-effects family, refitting its model on its rows (the
    coded factor columns, seeds as a block when there are several) for the residual sd."""
    floors = []
    for family in families:
        rows = usable[usable["budget_s"] == family.by["budget_s"]]
        pool = family.by.get("pool")
        if pool is not None:
            rows = rows[rows["pool"] == pool]
        x = np.column_stack(
            [np.ones(len(rows)), *_indicators(rows["seed"]), rows[list(factors)].to_numpy(float)]
        )
        sd, df = residual_sd(x, rows[metric].to_numpy(float))
        if not family.df_resid:
            sd = None  # judged by Lenth's margin, if at all: no replicate measured the noise
        ses = [e.se for e in family.effects if e.se is not None]
        se = max(ses) if ses and sd is not None else None
        budget = int(family.by["budget_s"])  # type: ignore[arg-type]
        floors.append(_floor(budget, pool, "effect", sd, df, se))
    return floors


def difference_floors(usable: pd.DataFrame, metric: str) -> list[NoiseFloor]:
    """The noise floor of two conditions' difference within seeds, per budget and pool, from
    `metric ~ C(condition) + C(seed)`."""
    floors = []
    for (budget, pool), cell in usable.groupby(["budget_s", "pool"], sort=True):
        x = np.column_stack(
            [np.ones(len(cell)), *_indicators(cell["seed"]), *_indicators(cell["condition_id"])]
        )
        sd, df = residual_sd(x, cell[metric].to_numpy(float))
        seeds = cell["seed"].nunique()
        se = None if sd is None else sd * math.sqrt(2 / seeds)
        floors.append(_floor(int(budget), pool, "difference", sd, df, se))
    return floors


def _floor(
    budget_s: int, pool: object, contrast: str, sd: float | None, df: int, se: float | None
) -> NoiseFloor:
    """One record; no df and no detectable size where no sd was measured."""
    return NoiseFloor(
        budget_s=budget_s,
        pool=None if pool is None else str(pool),
        contrast=contrast,
        sd=sd,
        df=df if sd is not None else None,
        se=se,
        detectable=None if se is None else detectable(se, df),
    )


def pooled_noise(floors: Iterable[NoiseFloor]) -> dict[int, float]:
    """One run noise sd per budget: the residual variances of every record at that budget
    (every stage and pool) pooled, weighted by their df. Budgets with no measured sd are
    left out."""
    sums: dict[int, list[float]] = {}
    for floor in floors:
        if floor.sd is None or not floor.df:
            continue
        total = sums.setdefault(floor.budget_s, [0.0, 0.0])
        total[0] += floor.df * floor.sd**2
        total[1] += floor.df
    return {budget: math.sqrt(ss / df) for budget, (ss, df) in sorted(sums.items())}
