"""What confirm, bridge and long-horizon share: anchors chosen by `select` rules from earlier
stages, each run at every budget, seed and pool of the stage.

The kinds differ in what the programme means by them (paper 4.6: confirm the screen's best,
bridge to the centre levels, repeat the anchors at long horizons), not in how they plan or
summarise: win counts between the anchors and, once budgets, conditions and seeds all vary,
the variance shares of budget and condition (paper 4.4, 5.7).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

import pandas as pd

from stagescreen.kinds.base import Section, StageKind, StageResults
from stagescreen.outcomes.model import PairWins, StageOutcome
from stagescreen.planning.plans import Condition, StagePlan, expand_runs
from stagescreen.planning.ranking import select_anchors, unique_anchors
from stagescreen.reports.formatting import (
    fmt_budget,
    fmt_count,
    fmt_fixed,
    fmt_percent,
    fmt_significant,
    fmt_text,
    md_table,
)
from stagescreen.statistics.means import VarianceShare, variance_shares, win_count
from stagescreen.statistics.noise import difference_floors
from stagescreen.study.spec import Stage, StudySpec


class AnchorKind(StageKind):
    """A stage of anchors: every `select` rule's picks, one run set per condition."""

    fields = ("select",)
    needs_complete_sources = True
    figures = ("variance-shares.png", "anchors.png")

    def plan(self, spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
        anchors = unique_anchors(
            [a for selection in stage.select for a in select_anchors(spec, selection, results)]
        )
        picked: list[Condition] = [(a.condition_id, a.levels, a.role) for a in anchors]
        also = {a.condition_id: a.also for a in anchors}
        runs = [
            replace(run, also=also[run.condition_id]) for run in expand_runs(spec, stage, picked)
        ]
        return StagePlan(stage.name, tuple(runs), tuple(anchors))

    def expected_runs(self, spec: StudySpec, stage: Stage) -> int:
        """One condition per pick (k per rule, one for control), the most the stage can run:
        once the sources are complete, two rules reaching the same levels plan them once
        (one recipe, one id: `unique_anchors`), and the manifest counts the plan."""
        picks = sum(selection.picks for selection in stage.select)
        return picks * self.runs_per_condition(spec, stage)

    def problems(self, stage: Stage, codes: Sequence[str] | None) -> list[tuple[str, str]]:
        if not stage.select:
            return [("select", f"a {self.name} stage needs at least one selection rule")]
        return []

    def summarise(self, at: StageResults, out: StageOutcome) -> None:
        """The noise floor of a difference between anchors, win counts between every pair
        of anchors (by role, else condition) within each budget and pool, and the variance
        shares of budget and condition once both, and the seeds, vary."""
        metric, usable = at.spec.metric.name, at.usable
        out.noise_floor = difference_floors(usable, metric)
        label = usable["role"].fillna(usable["condition_id"]).astype(str)
        for (budget, pool), cell in usable.assign(_label=label).groupby(["budget_s", "pool"]):
            values = {name: group[metric].to_numpy(float) for name, group in cell.groupby("_label")}
            for left, right in itertools.combinations(sorted(values), 2):
                count = win_count(
                    values[left], values[right], lower_is_better=at.spec.metric.goal == "minimize"
                )
                out.win_counts.append(
                    PairWins(
                        budget_s=int(budget),
                        pool=str(pool),
                        left=left,
                        right=right,
                        **count.model_dump(),
                    )
                )
        if all(usable[column].nunique() > 1 for column in ("budget_s", "condition_id", "seed")):
            blocks = ["seed", *(["pool"] if usable["pool"].nunique() > 1 else [])]
            out.variance_shares = variance_shares(
                usable, metric, factors=("budget_s", "condition_id"), blocks=blocks
            )

    def finding_sections(self, outcome: StageOutcome) -> list[Section]:
        if not outcome.variance_shares:
            return []
        return [("Variance shares", _variance_section(outcome.variance_shares))]

    def ranking_sections(self, outcome: StageOutcome, goal: str) -> list[Section]:
        if not outcome.win_counts:
            return []
        return [("Win counts", _win_section(outcome.win_counts, goal))]


def _variance_section(shares: Sequence[VarianceShare]) -> str:
    """Sums of squares at three significant figures and each share as a percentage: a share is
    no estimate on the metric's scale, so the SE rule does not set its precision."""
    return md_table(
        ["term", "df", "sum of squares", "η²"],
        [
            [
                fmt_text(r.term),
                fmt_fixed(r.df, 0),
                fmt_significant(r.sum_sq, 3),
                fmt_percent(r.eta_sq, 1),
            ]
            for r in shares
        ],
    )


def _win_section(wins: Sequence[PairWins], goal: str) -> str:
    better = "<" if goal != "maximize" else ">"
    rows = [
        [
            fmt_budget(entry.budget_s),
            fmt_text(entry.pool),
            f"{fmt_text(entry.left)} {better} {fmt_text(entry.right)}",
            f"{entry.wins}/{entry.total}",
            fmt_count(entry.ties),
        ]
        for entry in wins
    ]
    return (
        md_table(["budget", "pool", "comparison", "wins", "ties"], rows)
        + "\n\nDescriptive cross-seed pairings (n_left × n_right), not independent trials."
    )
