"""The retention rule (paper 4.4): which main effects of a screen or follow-up hold.

One rule for every family, read at the longest budget the stage ran: a factor is retained
when its interval excludes zero and its q is at most `FDR`. On several pools q is the
factor's: Simes' combination of its p over the pools, then BH over the factors
(`families.fit_effects` with `q_across`), so the retained set's false-discovery rate is
controlled per factor, not per (factor, pool). The effect kinds apply the rule to their
outcome (`kinds.fitted`), the power rehearsal (`power`) to every simulated replicate.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from stagescreen.planning.plans import stage_pools
from stagescreen.statistics import families as fx
from stagescreen.statistics.coding import model_terms
from stagescreen.study.spec import Stage, StudySpec

FDR = 0.05
"""The q threshold at which a main effect counts as retained (paper 4.4)."""


def free_factors(spec: StudySpec, stage: Stage) -> list[str]:
    """The factors a stage varies: every factor it does not `fix`."""
    return [code for code in spec.codes if code not in stage.fix]


def stage_families(
    spec: StudySpec, stage: Stage, rows: pd.DataFrame, factors: Sequence[str], order: int = 1
) -> list[fx.Family]:
    """A screen's or follow-up's effects per budget (and pool), as its outcome fits them and
    the `predicted` select rule refits them: seed as a block when the stage runs several
    seeds, Lenth's margin for a saturated family. On several pools each factor's p-values
    over a budget's pools are combined (Simes) and BH runs over the factors, so retaining a
    factor is one claim per factor (factor-level FDR 0.041 with two pools and 0.037 with
    four, where BH across every pool's effects reached 0.056 and 0.082, and BH per pool 0.069
    and 0.158)."""
    block = "seed" if len(stage.seeds) > 1 else None
    groups = ["budget_s", "pool"] if len(stage_pools(spec, stage)) > 1 else ["budget_s"]
    terms = len(model_terms(factors, order))
    saturated = block is None and rows.groupby(groups).size().max() <= terms + 1
    return fx.fit_effects(
        rows,
        spec.metric.name,
        factors,
        by=groups,
        block=block,
        order=order,
        lenth=saturated,
        q_across=["pool"] if "pool" in groups else (),
    )


def judged_budget(families: Sequence[fx.Family]) -> int | None:
    """The budget whose families a retention decision reads: the longest the stage ran."""
    budgets = [family.by["budget_s"] for family in families]
    return max((int(b) for b in budgets if isinstance(b, int | float)), default=None)


def judged(families: Sequence[fx.Family]) -> list[fx.Family]:
    """The families a retention decision reads: those at `judged_budget`."""
    at = judged_budget(families)
    return [family for family in families if family.by["budget_s"] == at]


def retained_factors(families: Sequence[fx.Family], fdr: float = FDR) -> list[str]:
    """Main effects that hold at the longest budget: interval excludes zero and q <= fdr.

    One rule for every family. In a saturated (unreplicated) family the interval and p come
    from Lenth's pseudo standard error and its simulated null distribution, so the same rule
    reads "exceeds Lenth's margin of error and survives BH". On several pools q is the
    factor's (Simes over the pools, BH over the factors), and the factor is retained when its
    interval excludes zero on at least one pool. Order: largest absolute effect first.
    """
    kept: dict[str, float] = {}
    for family in judged(families):
        for effect in family.effects:
            if ":" not in effect.term and holds(effect, fdr):
                kept[effect.term] = max(kept.get(effect.term, 0.0), abs(effect.effect or 0.0))
    return sorted(kept, key=lambda term: -kept[term])


def holds(effect: fx.Effect, fdr: float = FDR) -> bool:
    """The retention rule for one effect: its interval excludes zero and q <= fdr."""
    if effect.effect is None or effect.ci_low is None or effect.ci_high is None:
        return False
    return (effect.ci_low > 0 or effect.ci_high < 0) and effect.q is not None and effect.q <= fdr
