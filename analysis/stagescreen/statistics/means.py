"""Condition means and the confirmation-stage summaries of the paper (4.4, 5.7, 5.9).

Student-t means per condition (raw, or seed-adjusted when conditions lost seeds), the paired
difference of two conditions over the seeds both ran, the Bonferroni level that makes a best's
interval and its comparisons selection-aware, cross-seed win counts, and Type-II ANOVA eta^2
shares of budget, condition and their interaction. What ranks conditions and judges a best
against its runner-up; the effects of factors live in `stagescreen.statistics.families`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.weightstats import DescrStatsW

from stagescreen.statistics.coding import EffectsError, usable_rows
from stagescreen.statistics.families import Effect, Record
from stagescreen.storage.jsonvalues import JsonFloat, Scalar, json_ready


class VarianceShare(Record):
    """One row of a Type-II ANOVA table with its eta^2 = SS_term / SS_total."""

    term: str
    df: float
    sum_sq: float
    eta_sq: JsonFloat


def variance_shares(
    data: pd.DataFrame,
    response: str,
    *,
    factors: Sequence[str] = ("budget", "condition_id"),
    blocks: Sequence[str] = ("seed",),
) -> list[VarianceShare]:
    """Type-II ANOVA eta^2 shares of `response ~ C(f1)*C(f2)*... + C(block1) + ...` (5.7).

    eta^2 = SS_term / SS_total with SS_total the sum of squares about the grand mean, as the
    paper defines it. With balanced data the Type-II sums of squares add up to SS_total; with
    runs missing they do not, and the shares need not sum to one (the table says so). They are
    descriptive effect sizes, not variance components. Blocks (seed, and pool when a stage ran
    on several hosts) enter additively.
    """
    columns = [*factors, *blocks]
    usable = usable_rows(data, response, columns)
    constant = [column for column in columns if usable[column].nunique() < 2]
    if constant:
        raise EffectsError(
            f"variance shares need at least two levels of every term; "
            f"{', '.join(repr(c) for c in constant)} has one"
        )
    frame = pd.DataFrame({"y": usable[response].astype(float)})
    for i, column in enumerate(columns):
        frame[f"g{i}"] = usable[column].astype(str)
    formula = "y ~ " + " * ".join(f"C(g{i})" for i in range(len(factors)))
    formula += "".join(f" + C(g{i})" for i in range(len(factors), len(columns)))
    table = anova_lm(smf.ols(formula, data=frame, eval_env=0).fit(), typ=2)
    readable = {f"C(g{i})": column for i, column in enumerate(columns)}
    y = frame["y"].to_numpy()
    total = float(((y - y.mean()) ** 2).sum())
    shares = []
    for term, row in table.iterrows():
        name = (
            "residual"
            if term == "Residual"
            else ":".join(readable[part] for part in str(term).split(":"))
        )
        shares.append(
            VarianceShare(
                term=name,
                df=float(row["df"]),
                sum_sq=float(row["sum_sq"]),
                eta_sq=float(row["sum_sq"]) / total,
            )
        )
    return shares


class ConditionMean(Record):
    """Mean of one cell (`key`: its grouping values) with its Student-t interval (None for a
    single run)."""

    key: dict[str, Scalar]
    n: int
    mean: float
    sd: JsonFloat
    ci_low: JsonFloat
    ci_high: JsonFloat


def mean_interval(
    values: Iterable[float], level: float = 0.95
) -> tuple[float, float | None, float | None]:
    """A cell's mean and Student-t interval, mean +- t(n-1) * sd / sqrt(n) (paper 4.4); no
    interval for a single run."""
    cell = DescrStatsW(np.asarray(list(values), dtype=float))
    if cell.nobs < 2:
        return float(cell.mean), None, None
    low, high = cell.tconfint_mean(alpha=1 - level)
    return float(cell.mean), float(low), float(high)


def condition_means(
    data: pd.DataFrame,
    response: str,
    by: Sequence[str] | str = ("condition_id",),
    level: float = 0.95,
) -> list[ConditionMean]:
    """Per cell: n, mean, sample sd and the Student-t interval (`mean_interval`)."""
    columns = [by] if isinstance(by, str) else list(by)
    usable = usable_rows(data, response, columns)
    out = []
    for key, group in usable.groupby(columns, sort=True):
        values = group[response].to_numpy(dtype=float)
        mean, low, high = mean_interval(values, level)
        sd = float(values.std(ddof=1)) if len(values) > 1 else None
        cell = {c: json_ready(k) for c, k in zip(columns, key, strict=True)}
        out.append(
            ConditionMean(key=cell, n=len(values), mean=mean, sd=sd, ci_low=low, ci_high=high)
        )
    return out


def _quadratic_form_df(per_run: np.ndarray, covariance: np.ndarray) -> float:
    """Satterthwaite's df of the variance estimate sum(per_run * e^2), taken exactly from its
    first two moments when the residuals e have `covariance` C (Bell and McCaffrey's df for
    heteroscedastic variance estimators): mean sum(d C_rr), variance 2 sum(d_r d_s C_rs^2)."""
    mean = float(per_run @ np.diag(covariance))
    return mean**2 / float(per_run @ (covariance * covariance) @ per_run)


def _cell_chi_square_df(
    cell: np.ndarray, residual_maker: np.ndarray, measured: np.ndarray
) -> np.ndarray:
    """Each measured cell's df as a chi-square on its own noise: tr(R_cc)^2 / tr(R_cc^2) over
    the cell's block of the residual maker, the two-moment (Satterthwaite) df of sum(e^2).

    Not the cell's residual df tr(R_cc), which is smaller whenever the cell's residuals are
    correlated: two conditions sharing one residual df have residuals +-e in each cell, 0.5
    residual df each, yet each cell's sum of squares is one chi-square on 1 df (t quantile
    12.7, where 0.5 df gave 165 and intervals 13x too wide).
    """
    out = np.zeros(len(measured))
    for c in np.flatnonzero(measured):
        block = residual_maker[np.ix_(cell == c, cell == c)]
        out[c] = np.trace(block) ** 2 / float((block * block).sum())
    return out


def adjusted_means(
    data: pd.DataFrame,
    response: str,
    by: str = "condition_id",
    blocks: Sequence[str] = ("seed",),
    level: float = 0.95,
) -> list[ConditionMean]:
    """Block-adjusted (least-squares) means of each `by` level, each with its own noise.

    Fits `y ~ C(by) + C(block) + ...` and averages each condition's fitted value over every
    level of every block. When a condition lost a seed (diverged, failed, still missing), its
    raw mean is pulled by the seeds it happens to have, and seeds shift every condition alike;
    the adjusted mean compares conditions as if each had run every seed. With every condition
    on every seed it equals the raw mean. `sd` stays the raw sample sd of the cell.

    What the interval covers: the condition's mean over the seeds (and pools) the stage ran,
    their shifts as they fell, not the mean over the seed distribution. Every ranking and
    comparison reads conditions on the same seeds, where those shifts cancel.

    Cells are not equally noisy (the paper's worst cell has 6x the sd of its best), so the fit
    is weighted by condition: each condition's variance is its residual sum of squares from the
    unweighted fit over its residual df (the sum of 1 - leverage over its runs), the fit is
    redone by weighted least squares with those variances, and each adjusted mean's interval is
    a t interval on the smaller of two Satterthwaite df: one that treats each cell's variance as
    a chi-square on its own noise (`_cell_chi_square_df`), and the exact two-moment df of the
    whole variance estimate, whose cells' residuals also carry the other cells' noise through
    the block estimates. Each alone fell short where the other did not (91% for a best down to 2
    runs on 3 seeds; 93% for a worst on 3 runs of 4). On the 2^3 with 5 seeds, the worst cell's
    sd 6x the best's and three conditions short of seeds (2000 repetitions), one pooled variance
    gave the best an interval 3x the width its own noise needs (coverage 100%) and the worst's
    covered 68%; weighted, 99% and 95%, every condition 95-99% (with 3 seeds and the best down
    to 2 runs, 99% and 94%). Taking a cell's residual df for its chi-square df (not its
    two-moment df) drove the df below 1 when two conditions shared one residual df, and intervals
    13x too wide (coverage 99.6%, now 95%); with its two-moment df those designs cover 93-98%
    (600 repetitions; the 3-seed worst 92.5%). Iterating the weights to convergence drove the
    quietest condition's variance towards zero (coverage 82%), so they are estimated once. No
    interval for a condition whose runs leave no residual df (a single run, say): nothing
    measures its noise.
    """
    usable = usable_rows(data, response, [by, *blocks])
    groups = usable[by].astype(str)
    conditions = sorted(groups.unique())
    columns = [np.ones(len(usable))]
    columns += [(groups == c).to_numpy(float) for c in conditions[1:]]
    averaged = []  # each block dummy's average over the block's levels: 1/levels
    for block in blocks:
        levels = sorted(usable[block].astype(str).unique())
        columns += [(usable[block].astype(str) == v).to_numpy(float) for v in levels[1:]]
        averaged += [1 / len(levels)] * (len(levels) - 1)
    x = np.column_stack(columns)
    if int(np.linalg.matrix_rank(x)) < x.shape[1]:
        raise EffectsError(
            f"adjusted means: the conditions share too few {', '.join(blocks)} levels to "
            "compare them through a common block (each kept different seeds)"
        )
    y = usable[response].to_numpy(float)
    cell = pd.Categorical(groups, categories=conditions).codes
    # residuals of the unweighted fit, e = R y, and each cell's residual df
    residual_maker = np.eye(len(y)) - x @ np.linalg.inv(x.T @ x) @ x.T
    residuals = residual_maker @ y
    df = np.bincount(cell, np.diag(residual_maker), minlength=len(conditions))
    measured = df > 1e-9
    moment_df = _cell_chi_square_df(cell, residual_maker, measured)
    # A cell fitted exactly is resolved to float precision at best; a floor keeps its weight
    # finite. A cell with no residual df has its runs fitted exactly whatever their weight.
    floor = (np.finfo(float).eps * float(np.abs(y).max())) ** 2
    variance = np.bincount(cell, residuals**2, minlength=len(conditions))
    variance = np.maximum(variance / np.where(measured, df, 1.0), floor)
    variance[~measured] = variance[measured].mean() if measured.any() else 1.0
    # the residuals' covariance R V R under those variances, for the df of each interval
    covariance = residual_maker @ (variance[cell][:, None] * residual_maker)
    weighted = x / variance[cell][:, None]
    influence = np.linalg.inv(x.T @ weighted) @ weighted.T  # params = influence @ y
    params = influence @ y
    out = []
    for i, condition in enumerate(conditions):
        weights = np.array([1.0, *(float(i == j) for j in range(1, len(conditions))), *averaged])
        mean = float(weights @ params)
        loading = np.bincount(cell, (weights @ influence) ** 2, len(conditions))
        parts = np.where(measured, loading * variance, 0.0)
        var = float(parts.sum())
        low = high = None
        if measured[i] and var > 0:
            per_run = np.where(measured, loading / np.where(measured, df, 1.0), 0.0)[cell]
            dof = min(
                var**2 / float((parts[measured] ** 2 / moment_df[measured]).sum()),
                _quadratic_form_df(per_run, covariance),
            )
            half = float(stats.t.ppf((1 + level) / 2, dof)) * math.sqrt(var)
            low, high = mean - half, mean + half
        values = y[cell == i]
        sd = float(values.std(ddof=1)) if len(values) > 1 else None
        key = usable.loc[groups == condition, by].iloc[0]
        out.append(
            ConditionMean(
                key={by: json_ready(key)}, n=len(values), mean=mean, sd=sd, ci_low=low, ci_high=high
            )
        )
    return out


def paired_difference(
    left: pd.Series, right: pd.Series, level: float = 0.95, *, confidence: float | None = None
) -> Effect:
    """left minus right over the blocks (seeds) both ran, with the paired-t interval and p.

    `left` and `right` are indexed by block (seed). Runs of different conditions with one seed
    share that seed's shift, so the difference of two conditions is read within each seed:
    the paired t on the common seeds, which is the condition contrast of
    `y ~ C(condition) + C(seed)` fitted to the pair. An unpaired (Welch) interval counts the
    seed shift twice as noise and separates far too rarely when seeds vary more than runs.
    `confidence` overrides the interval's level (a Bonferroni-adjusted one, say) while `p`
    stays the plain two-sided p. A seed run twice (as a baseline may) counts once, at its mean:
    its runs are not independent pairs. None interval with fewer than two common seeds.
    """
    left, right = (side.groupby(level=0).mean() for side in (left, right))
    common = left.index.intersection(right.index)
    pairs = (left.loc[common] - right.loc[common]).to_numpy(dtype=float)
    if len(pairs) == 0:
        return Effect(term="difference", effect=None, reason="no seed in common")
    estimate = float(pairs.mean())
    if len(pairs) < 2:
        return Effect(term="difference", effect=estimate, reason="fewer than two common seeds")
    df = len(pairs) - 1
    se = float(pairs.std(ddof=1) / math.sqrt(len(pairs)))
    if se == 0:
        return Effect(term="difference", effect=estimate, se=0.0, reason="identical differences")
    t_crit = float(stats.t.ppf((1 + (confidence or level)) / 2, df))
    p = float(2 * stats.t.sf(abs(estimate) / se, df))
    return Effect(
        term="difference",
        effect=estimate,
        se=se,
        ci_low=estimate - t_crit * se,
        ci_high=estimate + t_crit * se,
        p=p,
    )


def bonferroni_level(comparisons: int, level: float = 0.95) -> float:
    """The confidence of each of `comparisons` intervals that hold jointly at `level`.

    1 - (1 - level) / comparisons (Bonferroni): every interval of the family covers at once
    with probability at least `level`, whatever the correlation between them, so one picked
    from the family after seeing the data (the best of k conditions) still covers at `level`.
    One comparison is the plain level.
    """
    return 1 - (1 - level) / max(comparisons, 1)


class WinCount(Record):
    """How many of the n_left * n_right pairings the left value wins (descriptive only)."""

    wins: int
    ties: int
    total: int

    def __str__(self) -> str:
        return f"{self.wins}/{self.total}"


def win_count(
    left: Iterable[float], right: Iterable[float], *, lower_is_better: bool = True
) -> WinCount:
    """Cross-seed win count: every left value against every right value (paper 4.4)."""
    a = np.asarray(list(left), dtype=float)[:, None]
    b = np.asarray(list(right), dtype=float)[None, :]
    wins = (a < b) if lower_is_better else (a > b)
    return WinCount(wins=int(wins.sum()), ties=int((a == b).sum()), total=int(a.size * b.size))
