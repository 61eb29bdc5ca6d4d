"""A stage's rank stability: how its rankings agree across its budgets and with the stages it
took anchors from, and which of its anchors reversed the order their source gave them.

Which rankings are compared (the statistics are `stagescreen.statistics.stability`'s):
- each pool's rankings at consecutive budgets of the stage (`StageOutcome.ranking`);
- each source stage's ranking, as its `select` rules rank it (`ranking.rank_conditions` at the
  rule's `at`, over all the source's pools), against this stage's at its longest budget on
  each pool, on the conditions both ranked with a succeeded run;
- a reversal: an anchor this stage took from a source, which the source ranked ahead of
  another condition this stage ran, and which loses to it at this stage's longest budget
  (`stability.loses`: the paired difference's interval, Bonferroni's over every such pair of
  the stage, excludes zero on the losing side).
Pure: the spec, the results table and the stage's outcome in, records out.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import pandas as pd

from stagescreen.outcomes.model import StageOutcome
from stagescreen.planning.ranking import rank_conditions, succeeded
from stagescreen.statistics.means import bonferroni_level
from stagescreen.statistics.stability import (
    RankAgreement,
    Reversal,
    kendall_tau,
    loses,
)
from stagescreen.study.spec import Stage, StudySpec

Order = list[str]
"""Condition ids, best first."""


@dataclass(frozen=True)
class _Pair:
    """Two conditions of one (budget, pool) cell of this stage in their source's order."""

    source: str
    source_budget_s: int
    budget_s: int
    pool: str
    ahead: str
    ahead_rank: int
    behind: str
    behind_rank: int


def rank_stability(
    spec: StudySpec, stage: Stage, results: pd.DataFrame, outcome: StageOutcome
) -> tuple[list[RankAgreement], list[Reversal]]:
    """The stage's rank agreements and its anchors' reversals (module docstring)."""
    orders: dict[tuple[int, str], Order] = {}
    for row in sorted(outcome.ranking, key=lambda row: row.rank):
        if row.n > 0:
            orders.setdefault((row.budget_s, row.pool), []).append(row.condition_id)
    if not orders:
        return [], []
    longest = max(budget for budget, _ in orders)
    pools = sorted({pool for _, pool in orders})
    agreement = []
    for pool in pools:
        budgets = sorted(budget for budget, p in orders if p == pool)
        for earlier, later in pairwise(budgets):
            tau = kendall_tau(orders[earlier, pool], orders[later, pool])
            agreement.append(
                RankAgreement(
                    pool=pool,
                    earlier=stage.name,
                    earlier_budget_s=earlier,
                    later=stage.name,
                    later_budget_s=later,
                    **tau.model_dump(),
                )
            )
    pairs: dict[tuple[str, str, frozenset[str]], _Pair] = {}
    for source, at, order in _source_orders(spec, stage, results):
        taken = {a.condition_id for a in outcome.anchors if a.source == source}
        rank_at_source = {c: i for i, c in enumerate(order, 1)}
        for pool in pools:
            if (longest, pool) not in orders:
                continue
            here = orders[longest, pool]
            tau = kendall_tau(order, here)
            agreement.append(
                RankAgreement(
                    pool=pool,
                    earlier=source,
                    earlier_budget_s=at,
                    later=stage.name,
                    later_budget_s=longest,
                    **tau.model_dump(),
                )
            )
            both = [c for c in order if c in here]
            for i, a in enumerate(both):
                for b in both[i + 1 :] if a in taken else ():
                    # two rules ranking one source at different budgets: one test per pair,
                    # as the first rule ordered it
                    pairs.setdefault(
                        (source, pool, frozenset((a, b))),
                        _Pair(
                            source, at, longest, pool, a, rank_at_source[a], b, rank_at_source[b]
                        ),
                    )
    return agreement, _reversals(spec, stage, results, outcome, list(pairs.values()))


def _source_orders(
    spec: StudySpec, stage: Stage, results: pd.DataFrame
) -> list[tuple[str, int, Order]]:
    """(source, budget, ranking) of each stage and budget this stage's `select` rules rank."""
    out: list[tuple[str, int, Order]] = []
    for selection in stage.select:
        source = selection.from_
        if source is None:  # a control: declared, not ranked
            continue
        at = max(spec.stage(source).budgets) if selection.at == "longest" else selection.at
        if any((source, at) == (s, a) for s, a, _ in out):
            continue
        rows = results[results["stage"] == source] if not results.empty else results
        ranked = rank_conditions(rows, spec.metric.name, spec.metric.goal, at)
        if not ranked.empty:
            out.append((source, at, list(ranked.loc[ranked["n"] > 0, "condition_id"])))
    return out


def _reversals(
    spec: StudySpec,
    stage: Stage,
    results: pd.DataFrame,
    outcome: StageOutcome,
    pairs: list[_Pair],
) -> list[Reversal]:
    """The pairs whose `ahead` loses at this stage, each tested at Bonferroni's level over
    all of them."""
    metric = spec.metric.name
    rows = succeeded(results[results["stage"] == stage.name], metric)
    values = {
        (int(budget), str(pool), str(condition)): group.set_index("seed")[metric].astype(float)
        for (budget, pool, condition), group in rows.groupby(["budget_s", "pool", "condition_id"])
    }
    roles = {(row.budget_s, row.pool, row.condition_id): row.role for row in outcome.ranking}
    level = bonferroni_level(len(pairs))
    out = []
    for pair in pairs:
        budget, pool = pair.budget_s, pair.pool
        ahead, behind = values[budget, pool, pair.ahead], values[budget, pool, pair.behind]
        lower_is_better = spec.metric.goal == "minimize"
        gap = loses(ahead, behind, lower_is_better=lower_is_better, pairs=len(pairs))
        if gap is None or gap.effect is None or gap.ci_low is None or gap.ci_high is None:
            continue
        out.append(
            Reversal(
                pool=pair.pool,
                budget_s=pair.budget_s,
                source=pair.source,
                source_budget_s=pair.source_budget_s,
                ahead=pair.ahead,
                ahead_role=roles[budget, pool, pair.ahead],
                ahead_rank=pair.ahead_rank,
                behind=pair.behind,
                behind_role=roles[budget, pool, pair.behind],
                behind_rank=pair.behind_rank,
                difference=gap.effect,
                ci_low=gap.ci_low,
                ci_high=gap.ci_high,
                p=None if gap.p is None else min(1.0, gap.p * len(pairs)),
                level=level,
                seeds=len(set(ahead.index) & set(behind.index)),
            )
        )
    return out
