"""Rank stability: whether two rankings of the same conditions agree, and whether an anchor
a ranking put ahead loses at a later stage.

Staged screening bets that the order short runs give holds at longer ones: later stages run
only what an earlier ranking promoted. Two measures say how far that bet held.

- `kendall_tau`: Kendall's tau between two rankings on the conditions both rank (scipy's
  `kendalltau` on their positions; rankings are strict orders, so tau-b is tau-a). Its
  interval is Fisher's z for tau with the variance of Fieller, Hartley and Pearson (1957),
  var(atanh tau) = 0.437 / (n - 4), the one Bonett and Wright (2000) recommend for Kendall's
  tau: deterministic, and it treats the conditions as drawn from the recipes one might have
  run, which is what a claim that "short runs rank like long ones" is about. At tau = +-1
  the transform is infinite; the interval is then taken at the tau one discordant pair short
  and closed at +-1, so a perfect agreement on five conditions does not read as certain.
- `loses`: the paired difference (`means.paired_difference`, the paired t over the seeds both
  ran) of an anchor an earlier ranking put ahead against one it put behind, kept only when its
  interval excludes zero in the opposite order: the later stage says that the earlier order
  was wrong. The interval is Bonferroni's over the `pairs` a stage tests (level 1 - 0.05 /
  pairs), because a stage tests every pair of its anchors and an alert hangs on any one: with
  4 tied anchors on 4 seeds, 95% intervals flagged a reversal in 14.2% of 500 simulated
  stages, Bonferroni's in 2.6% (`tests/core/statistics/test_stability.py`).

The outcome's records of both (`RankAgreement`, `Reversal`) are here beside them; which
rankings a stage compares is `stagescreen.outcomes.stability`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
from scipy import stats

from stagescreen.statistics.families import Effect, Record
from stagescreen.statistics.means import bonferroni_level, paired_difference
from stagescreen.storage.jsonvalues import JsonFloat

MIN_CONDITIONS = 3
"""Fewer conditions in common give tau no meaning (two conditions: +-1 always)."""
MIN_FOR_INTERVAL = 5
"""Fieller-Hartley-Pearson's variance divides by n - 4."""
FHP_VARIANCE = 0.437
"""n-4 times the variance of atanh(tau) (Fieller, Hartley and Pearson 1957)."""


class Tau(Record):
    """Kendall's tau of two rankings over the `n` conditions both rank, with its interval and
    scipy's p (no association); None where it cannot be computed (`reason` says why)."""

    n: int
    tau: JsonFloat = None
    ci_low: JsonFloat = None
    ci_high: JsonFloat = None
    p: JsonFloat = None
    reason: str | None = None


class RankAgreement(Tau):
    """Tau between the ranking of `earlier` at `earlier_budget_s` and that of `later` at
    `later_budget_s` on `pool` (the earlier one over all its pools when it is another stage,
    as `select` ranks it): consecutive budgets of one stage, or a source stage and the stage
    that ran its anchors."""

    pool: str
    earlier: str
    earlier_budget_s: int
    later: str
    later_budget_s: int


class Reversal(Record):
    """An anchor `ahead` that stage `source` ranked ahead of `behind` (ranks `ahead_rank` <
    `behind_rank` at `source_budget_s`) and that loses to it at this stage's `budget_s` on
    `pool`: `difference` is ahead minus behind (the paired t over `seeds` common seeds), its
    interval (confidence `level`, Bonferroni over the stage's pairs) excluding zero on the
    losing side; `p` is the two-sided p Bonferroni-adjusted to the same pairs (min(1, p *
    pairs)), so p < 1 - level exactly when the interval excludes zero."""

    pool: str
    budget_s: int
    source: str
    source_budget_s: int
    ahead: str
    ahead_role: str | None = None
    ahead_rank: int
    behind: str
    behind_role: str | None = None
    behind_rank: int
    difference: float
    ci_low: float
    ci_high: float
    p: JsonFloat = None
    level: float
    seeds: int


def kendall_tau(left: Sequence[str], right: Sequence[str], level: float = 0.95) -> Tau:
    """Tau between two rankings (condition ids, best first) on the conditions both rank."""
    shared = set(left) & set(right)
    common = [c for c in left if c in shared]
    n = len(common)
    if n < MIN_CONDITIONS:
        return Tau(n=n, reason=f"{n} conditions ranked by both; tau needs {MIN_CONDITIONS}")
    position = {c: i for i, c in enumerate(c for c in right if c in shared)}
    result = stats.kendalltau(range(n), [position[c] for c in common])
    tau, p = float(result.statistic), float(result.pvalue)
    if n < MIN_FOR_INTERVAL:
        reason = f"{n} conditions ranked by both; an interval needs {MIN_FOR_INTERVAL}"
        return Tau(n=n, tau=tau, p=p, reason=reason)
    pairs = n * (n - 1) / 2
    edge = 1 - 2 / pairs  # tau with one pair discordant: where a perfect tau is transformed
    z = math.atanh(max(-edge, min(edge, tau)))
    half = float(stats.norm.ppf((1 + level) / 2)) * math.sqrt(FHP_VARIANCE / (n - 4))
    low = -1.0 if tau < -edge else math.tanh(z - half)
    high = 1.0 if tau > edge else math.tanh(z + half)
    return Tau(n=n, tau=tau, ci_low=low, ci_high=high, p=p)


def loses(
    ahead: pd.Series, behind: pd.Series, *, lower_is_better: bool, pairs: int = 1
) -> Effect | None:
    """ahead minus behind over the seeds both ran (series indexed by seed) when its interval,
    Bonferroni's over `pairs` (`means.bonferroni_level`), says `ahead` is worse; else None
    (ahead not worse, or no interval)."""
    gap = paired_difference(ahead, behind, confidence=bonferroni_level(pairs))
    if gap.ci_low is None or gap.ci_high is None:
        return None
    worse = gap.ci_low > 0 if lower_is_better else gap.ci_high < 0
    return gap if worse else None
