"""`greedy`: the paper's one-factor-at-a-time hill-climbing baseline.

A climb is sequential, so it is replayed from the completed runs rather than remembered: each
plan holds every point evaluated so far plus the next point of each climb (one per budget and
pool), and a restarted controller re-derives the same climb.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from stagescreen.kinds.base import Section, StageKind, StageResults, pack
from stagescreen.outcomes.model import GreedyClimb, GreedyStep, GreedySummary, StageOutcome
from stagescreen.planning.ids import condition_name
from stagescreen.planning.plans import (
    PlannedRun,
    StagePlan,
    expand_runs,
    stage_pools,
    with_identity_columns,
)
from stagescreen.planning.ranking import succeeded
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


@dataclass(frozen=True)
class ClimbStep:
    """One evaluated point of a greedy climb and whether it became the incumbent."""

    levels: Mapping[str, int]
    value: float | None
    accepted: bool


@dataclass(frozen=True)
class Climb:
    """A replayed greedy climb: the steps so far and the next point to run (None: stopped)."""

    steps: tuple[ClimbStep, ...]
    next_levels: Mapping[str, int] | None
    incumbent: Mapping[str, int] | None
    best: float | None


def _better(value: float | None, than: float | None, goal: str) -> bool:
    if value is None:
        return False
    if than is None:
        return True
    return value < than if goal == "minimize" else value > than


def greedy_climb(
    codes: Sequence[str],
    options: Mapping[str, Sequence[int]],
    start: Mapping[str, int],
    evaluated: Mapping[tuple[int, ...], float | None],
    goal: str,
    max_steps: int,
) -> Climb:
    """Replay one-factor-at-a-time hill climbing over what has been evaluated so far.

    From the incumbent, try each factor's other levels in factor order; a strictly better
    point becomes the incumbent. The climb stops after a full pass over all factors without
    improvement or after `max_steps` evaluated points. `evaluated` maps level tuples (in
    `codes` order) to the point's value, None when its runs failed (never accepted).
    """
    key = tuple(start[code] for code in codes)
    steps: list[ClimbStep] = []
    seen: set[tuple[int, ...]] = set()

    def visit(point: tuple[int, ...]) -> bool:
        """Record an evaluated point; False when it still has to run."""
        if point not in evaluated:
            return False
        if point not in seen:
            seen.add(point)
            steps.append(ClimbStep(dict(zip(codes, point, strict=True)), evaluated[point], False))
        return True

    def climb(next_point: tuple[int, ...] | None, incumbent: tuple[int, ...] | None) -> Climb:
        best = evaluated.get(incumbent) if incumbent is not None else None
        return Climb(
            steps=tuple(steps),
            next_levels=None
            if next_point is None or len(steps) >= max_steps
            else dict(zip(codes, next_point, strict=True)),
            incumbent=None if incumbent is None else dict(zip(codes, incumbent, strict=True)),
            best=best,
        )

    if not visit(key):
        return climb(key, None)
    steps[-1] = ClimbStep(steps[-1].levels, steps[-1].value, True)
    incumbent = key
    untried_since_accept = 0
    position = 0
    while untried_since_accept < len(codes) and len(steps) < max_steps:
        code_index = position % len(codes)
        position += 1
        improved = False
        for level in options[codes[code_index]]:
            if level == incumbent[code_index]:
                continue
            point = (*incumbent[:code_index], level, *incumbent[code_index + 1 :])
            if point in seen:
                continue
            if not visit(point):
                return climb(point, incumbent)
            if _better(evaluated[point], evaluated[incumbent], goal):
                steps[-1] = ClimbStep(steps[-1].levels, steps[-1].value, True)
                incumbent = point
                improved = True
                break
            if len(steps) >= max_steps:
                break
        untried_since_accept = 0 if improved else untried_since_accept + 1
    return climb(None, incumbent)


def _greedy_options(spec: StudySpec) -> dict[str, list[int]]:
    """Levels greedy may move a factor to: -1 and +1, and 0 where a centre is declared."""
    return {
        factor.code or "": [-1, 0, 1] if factor.centre is not None else [-1, 1]
        for factor in spec.factors
    }


def greedy_climbs(
    spec: StudySpec, stage: Stage, results: pd.DataFrame
) -> dict[tuple[int, str], Climb]:
    """Replay each greedy climb (one per budget and pool) from this stage's results.

    A point counts as evaluated once every seed has a run that ended (a pending or running one
    in the results table does not count); its value is the mean of the seeds that succeeded
    (None if none did).
    """
    results = with_identity_columns(results, spec.codes)
    codes = spec.codes
    metric = spec.metric.name
    mine = results[(results["stage"] == stage.name) & results["status"].isin(list(TERMINAL))]
    start = {code: int(stage.start.get(code, -1)) for code in codes}
    climbs = {}
    for budget in stage.budgets:
        for pool in stage_pools(spec, stage):
            rows = mine[(mine["budget_s"] == budget) & (mine["pool"] == pool)]
            evaluated: dict[tuple[int, ...], float | None] = {}
            for point, group in rows.groupby(list(codes), sort=False):
                values_of_point = point if isinstance(point, tuple) else (point,)
                point_key = tuple(int(float(str(v))) for v in values_of_point)
                if set(group["seed"]) >= set(stage.seeds):
                    values = succeeded(group, metric)[metric]
                    evaluated[point_key] = float(values.mean()) if len(values) else None
            climbs[(budget, pool)] = greedy_climb(
                codes, _greedy_options(spec), start, evaluated, spec.metric.goal, climb_steps(stage)
            )
    return climbs


def climb_steps(stage: Stage) -> int:
    """Points a climb may evaluate: its run limit over the seeds each point runs."""
    return max(1, (stage.max_runs or 1) // len(stage.seeds))


class Greedy(StageKind):
    """Climbs from `start` until a full pass improves nothing or `max_runs` is spent; a
    baseline. Its plan is `finished` once every climb has stopped."""

    name = "greedy"
    fields = ("max_runs", "start")
    baseline = True
    figures = ("search.png",)

    def plan(self, spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
        runs: list[PlannedRun] = []
        finished = True
        for (budget, pool), climb in greedy_climbs(spec, stage, results).items():
            points = [step.levels for step in climb.steps]
            if climb.next_levels is not None:
                points.append(climb.next_levels)
                finished = False
            conditions = [(condition_name(levels, spec), levels, None) for levels in points]
            runs += expand_runs(spec, stage, conditions, budgets=[budget], pools=[pool])
        return StagePlan(stage.name, tuple(runs), finished=finished)

    def expected_runs(self, spec: StudySpec, stage: Stage) -> int:
        """Its run limit, the most it can spend."""
        return climb_steps(stage) * self.runs_per_condition(spec, stage)

    def wall_s(
        self, spec: StudySpec, stage: Stage, runs_by_budget: Mapping[int, int], overhead_s: int
    ) -> float:
        """Each step waits for the one before: a climb occupies one slot per seed, so the
        stage never runs wider than its climbs' seeds at once."""
        width = len(stage.seeds) * len(stage.budgets) * len(stage_pools(spec, stage))
        slots = min(spec.limits.parallelism, width)
        return pack(self.durations(spec, stage, runs_by_budget, overhead_s), slots)

    def problems(self, stage: Stage, codes: Sequence[str] | None) -> list[tuple[str, str]]:
        if stage.max_runs is None:
            return [("maxRuns", "a greedy stage needs its run limit per budget")]
        return []

    def summarise(self, at: StageResults, out: StageOutcome) -> None:
        """Each (budget, pool) climb step by step, with its incumbent and whether it stopped."""
        spec = at.spec
        climbs = []
        for (budget, pool), climb in greedy_climbs(spec, at.stage, at.results).items():
            steps = [
                GreedyStep(
                    step=i,
                    condition_id=condition_name(step.levels, spec),
                    levels=dict(step.levels),
                    mean=step.value,
                    accepted=step.accepted,
                )
                for i, step in enumerate(climb.steps, 1)
            ]
            accepted = [s for s in steps if s.accepted]
            climbs.append(
                GreedyClimb(
                    budget_s=budget,
                    pool=pool,
                    steps=steps,
                    accepted=max(0, len(accepted) - 1),
                    best=climb.best,
                    best_step=accepted[-1].step if accepted else None,
                    stopped=climb.next_levels is None,
                )
            )
        out.greedy = GreedySummary(climbs=climbs)

    def plan_details(self, stage: Stage) -> list[str]:
        return [f"at most {stage.max_runs} runs per budget"] if stage.max_runs else []

    def search_sections(self, outcome: StageOutcome) -> list[Section]:
        if outcome.greedy is None or not outcome.greedy.climbs:
            return []
        return [("Greedy climbs", _greedy_section(outcome.greedy))]


def _greedy_section(greedy: GreedySummary) -> str:
    rows = []
    for climb in greedy.climbs:
        at_best = next((s for s in climb.steps if s.step == climb.best_step), None)
        incumbent = (
            f"`{DASH}` {DASH}"
            if at_best is None
            else f"`{fmt_text(at_best.condition_id)}` {fmt_levels(at_best.levels)}"
        )
        rows.append(
            [
                fmt_budget(climb.budget_s),
                fmt_text(climb.pool),
                str(len(climb.steps)),
                fmt_count(climb.accepted),
                fmt_mean(climb.best),
                fmt_count(climb.best_step),
                incumbent,
            ]
        )
    return md_table(["budget", "pool", "steps", "accepted", "best", "best step", "incumbent"], rows)
