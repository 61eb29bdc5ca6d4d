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

from stagescreen.statistics import families as fx

FDR = 0.05
"""The q threshold at which a main effect counts as retained (paper 4.4)."""


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
