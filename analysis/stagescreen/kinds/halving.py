"""`halving`: successive halving over the full 2^k space, one rung per budget.

The multi-fidelity baseline an automated search would use and the paper leaves out (its
section 7): Jamieson and Talwalkar 2016, the inner loop of Hyperband (Li et al. 2018). Each
rung keeps the best 1/eta of the one before; the ladder is replayed from the completed runs,
so a restarted controller re-derives the same survivors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stagescreen import design as designs
from stagescreen.kinds.base import Section, StageKind, StageResults, pack
from stagescreen.outcomes.model import (
    HalvingLadder,
    HalvingRung,
    HalvingSummary,
    HalvingWinner,
    RungConfiguration,
    StageOutcome,
)
from stagescreen.planning.ids import condition_name
from stagescreen.planning.plans import (
    PlannedRun,
    StagePlan,
    expand_runs,
    stage_pools,
    with_identity_columns,
)
from stagescreen.planning.ranking import rank_conditions
from stagescreen.reports.formatting import (
    DASH,
    fmt_budget,
    fmt_count,
    fmt_levels,
    fmt_mean,
    fmt_text,
    md_table,
)
from stagescreen.study.spec import Stage, StudySpec
from stagescreen_contract.status import TERMINAL


def halving_rungs(stage: Stage, factors: int) -> list[int]:
    """Configurations per rung of a halving ladder, one rung per budget: `initial` (default
    the whole 2^k space), then ceil(n / eta) of the rung before, so never fewer than one.

    The counts are fixed before any run, so the stage is priced exactly: a configuration that
    failed ranks last and is still promoted when too few others succeeded.
    """
    sizes = [stage.initial or 2**factors]
    for _ in stage.budgets[1:]:
        sizes.append(math.ceil(sizes[-1] / stage.eta))
    return sizes


def halving_configurations(
    codes: Sequence[str], initial: int | None, seed: int
) -> list[dict[str, int]]:
    """The first rung: the whole 2^k space, or `initial` of its points drawn without
    replacement from `seed`. Kept in the space's order, so the same seed gives the same runs
    and drawing all 2^k is the whole space."""
    size = 1 << len(codes)
    if initial is None or initial >= size:
        return [designs.full_factorial_run(codes, index) for index in range(size)]
    picks = np.random.default_rng(seed).choice(size, size=initial, replace=False)
    return [designs.full_factorial_run(codes, int(pick)) for pick in sorted(picks)]


@dataclass(frozen=True)
class RungEntry:
    """A configuration in one rung: its mean over the seeds that succeeded, None if none did."""

    condition_id: str
    levels: Mapping[str, int]
    mean: float | None


@dataclass(frozen=True)
class Rung:
    """One rung of a replayed halving ladder: its runs and configurations, in planned order
    until every run has ended, then ranked best first with their means; the first
    `survivors` of them run at the next budget (none after the last)."""

    budget_s: int
    pool: str
    runs: tuple[PlannedRun, ...]
    entries: tuple[RungEntry, ...]
    complete: bool
    survivors: int


def halving_ladders(
    spec: StudySpec, stage: Stage, results: pd.DataFrame
) -> dict[str, tuple[Rung, ...]]:
    """Replay each halving ladder (one per pool) from this stage's results, up to and
    including its first rung with runs still to end.

    A complete rung ranks its configurations by their mean over seeds, as anchors are ranked
    (`rank_conditions`: ties on condition id), a configuration with no succeeded run last.
    The best `halving_rungs` allows go on to the next budget.
    """
    results = with_identity_columns(results, spec.codes)
    sizes = halving_rungs(stage, len(spec.codes))
    first = [
        RungEntry(condition_name(levels, spec), levels, None)
        for levels in halving_configurations(spec.codes, stage.initial, stage.draw_seed)
    ]
    ladders = {}
    for pool in stage_pools(spec, stage):
        rungs: list[Rung] = []
        entries = first
        for budget, survivors in zip(stage.budgets, [*sizes[1:], 0], strict=True):
            conditions = [(entry.condition_id, entry.levels, None) for entry in entries]
            runs = tuple(expand_runs(spec, stage, conditions, budgets=[budget], pools=[pool]))
            ids = {run.run_id for run in runs}
            ended = results[results["run_id"].isin(ids) & results["status"].isin(list(TERMINAL))]
            if set(ended["run_id"]) < ids:
                rungs.append(Rung(budget, pool, runs, tuple(entries), False, survivors))
                break
            ranked = _rank_rung(spec, entries, ended, budget)
            rungs.append(Rung(budget, pool, runs, tuple(ranked), True, survivors))
            entries = [RungEntry(e.condition_id, e.levels, None) for e in ranked[:survivors]]
        ladders[pool] = tuple(rungs)
    return ladders


def _rank_rung(
    spec: StudySpec, entries: Sequence[RungEntry], ended: pd.DataFrame, budget: int
) -> list[RungEntry]:
    """A complete rung's configurations with their means, ranked as anchors are
    (`rank_conditions`: one with failures behind, then by mean, ties on condition id)."""
    ranking = rank_conditions(ended, spec.metric.name, spec.metric.goal, budget)
    levels = {entry.condition_id: entry.levels for entry in entries}
    return [
        RungEntry(str(cid), levels[str(cid)], None if pd.isna(mean) else float(mean))
        for cid, mean in zip(ranking["condition_id"], ranking["mean"], strict=True)
    ]


class Halving(StageKind):
    """A ladder per pool over `initial` configurations (all 2^k by default, drawn from
    `draw_seed`); a baseline. Its plan holds every rung whose predecessor has ended and is
    `finished` once the last rung is planned."""

    name = "halving"
    fields = ("draw_seed", "eta", "initial")
    baseline = True

    def plan(self, spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
        ladders = halving_ladders(spec, stage, results).values()
        runs = [run for ladder in ladders for rung in ladder for run in rung.runs]
        finished = all(len(ladder) == len(stage.budgets) for ladder in ladders)
        return StagePlan(stage.name, tuple(runs), finished=finished)

    def expected_runs(self, spec: StudySpec, stage: Stage) -> int:
        return sum(self.runs_by_budget(spec, stage).values())

    def runs_by_budget(self, spec: StudySpec, stage: Stage) -> dict[int, int]:
        """The rungs narrow: `halving_rungs` configurations at each budget."""
        width = len(stage.seeds) * len(stage_pools(spec, stage))
        sizes = halving_rungs(stage, len(spec.codes))
        return {budget: size * width for budget, size in zip(stage.budgets, sizes, strict=True)}

    def wall_s(
        self, spec: StudySpec, stage: Stage, runs_by_budget: Mapping[int, int], overhead_s: int
    ) -> float:
        """Each rung waits for the rung before it."""
        slots = spec.limits.parallelism
        return math.fsum(
            pack([budget + overhead_s] * count, slots) for budget, count in runs_by_budget.items()
        )

    def problems(self, stage: Stage, codes: Sequence[str] | None) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if len(stage.budgets) < 2:
            problems.append(
                ("budgets", "a halving stage needs at least two budgets, one per rung (got 1)")
            )
        if codes is not None and stage.initial is not None and stage.initial > 2 ** len(codes):
            problems.append(
                (
                    "initial",
                    f"more configurations than the full 2^{len(codes)} space holds "
                    f"({2 ** len(codes)}; got {stage.initial})",
                )
            )
        return problems

    def summarise(self, at: StageResults, out: StageOutcome) -> None:
        """Each pool's ladder: per rung its budget, how many configurations ran and those that
        went on with their means there; the winner is the best of the last rung once it
        ended."""
        stage = at.stage

        def entry(of: RungEntry) -> RungConfiguration:
            return RungConfiguration(
                condition_id=of.condition_id, levels=dict(of.levels), mean=of.mean
            )

        ladders = []
        for pool, ladder in halving_ladders(at.spec, stage, at.rows).items():
            rungs = [
                HalvingRung(
                    budget_s=rung.budget_s,
                    configurations=len(rung.entries),
                    complete=rung.complete,
                    survivors=[entry(e) for e in rung.entries[: rung.survivors] if rung.complete],
                )
                for rung in ladder
            ]
            last = ladder[-1]
            top = last.entries[0] if len(ladder) == len(stage.budgets) and last.complete else None
            winner = (
                None
                if top is None or top.mean is None
                else HalvingWinner(**entry(top).model_dump(), budget_s=last.budget_s)
            )
            ladders.append(HalvingLadder(pool=pool, rungs=rungs, winner=winner))
        out.halving = HalvingSummary(eta=stage.eta, ladders=ladders)

    def search_sections(self, outcome: StageOutcome) -> list[Section]:
        if outcome.halving is None or not outcome.halving.ladders:
            return []
        return [("Successive halving", _halving_section(outcome.halving))]


def _halving_section(halving: HalvingSummary) -> str:
    rows = []
    winners = []
    for ladder in halving.ladders:
        for rung in ladder.rungs:
            went_on = ", ".join(
                f"`{fmt_text(s.condition_id)}` {fmt_mean(s.mean)}" for s in rung.survivors
            )
            rows.append(
                [
                    fmt_budget(rung.budget_s),
                    fmt_text(ladder.pool),
                    fmt_count(rung.configurations),
                    went_on or DASH,
                ]
            )
        winner = ladder.winner
        if winner is not None:
            winners.append(
                f"Winner on {fmt_text(ladder.pool)}: "
                f"`{fmt_text(winner.condition_id)}` {fmt_levels(winner.levels)}, "
                f"mean {fmt_mean(winner.mean)} at {fmt_budget(winner.budget_s)}."
            )
    header = ["budget", "pool", "configurations", "went on (mean at this budget)"]
    keep = f"Each rung keeps the best 1/{fmt_count(halving.eta)}, rounded up."
    return "\n\n".join([md_table(header, rows), " ".join([keep, *winners])])
