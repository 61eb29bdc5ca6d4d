"""Stage planning: from the spec and the results so far to the runs a stage needs.

Everything here is a pure function of `(spec, stage, results)`, so the kopf operator and the
local executor take the same decisions and a restarted controller re-derives them exactly:
run ids are deterministic from (stage, condition, budget, seed, pool), and the sequential
greedy baseline is replayed from the completed runs rather than remembered.

The paper's programme (section 4.6) maps onto stage kinds: a fractional `screen`, anchors
chosen by `select` rules for `confirm` / `bridge` / `long-horizon`, a `followup` factorial with
a dominant factor fixed, and two baselines, matched-cost `random` search over the full 2^k
space and `greedy` one-factor-at-a-time hill climbing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stagescreen import design as designs
from stagescreen.runstatus import TERMINAL, RunStatus
from stagescreen.spec import Selection, Stage, StudySpec


class PlanError(ValueError):
    """A stage cannot be planned yet or at all; the message says which stage and why."""


class NotReady(PlanError):
    """A source stage has runs still to end: plan again later; nothing is wrong."""


class Unplannable(PlanError):
    """The stage can never be planned as the spec stands; the study fails with this reason."""


@dataclass(frozen=True)
class Anchor:
    """A condition carried into a stage, with the rule and source stage that chose it."""

    condition_id: str
    levels: Mapping[str, int]
    role: str
    rule: str
    source: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "condition_id": self.condition_id,
            "role": self.role,
            "rule": self.rule,
            "source": self.source,
            "levels": dict(self.levels),
        }


@dataclass(frozen=True)
class PlannedRun:
    """One training run: what the trainer gets (levels decoded to hyperparameters) and where."""

    run_id: str
    stage: str
    condition_id: str
    levels: Mapping[str, int]
    hyperparameters: Mapping[str, int | float]
    budget_s: int
    seed: int
    pool: str
    role: str | None = None
    batch: int | None = None

    def to_row(self) -> dict[str, Any]:
        """The run's identity columns of the results table (docs/architecture.md, run contract)."""
        return {
            "stage": self.stage,
            "run_id": self.run_id,
            "condition_id": self.condition_id,
            "role": self.role,
            "batch": self.batch,
            "budget_s": self.budget_s,
            "seed": self.seed,
            "pool": self.pool,
            **self.levels,
            **self.hyperparameters,
        }


@dataclass(frozen=True)
class StagePlan:
    """The runs a stage needs now. `finished` is False while a sequential stage may add more."""

    stage: str
    runs: tuple[PlannedRun, ...]
    anchors: tuple[Anchor, ...] = ()
    finished: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)


# --- naming ---------------------------------------------------------------------------------


def format_budget(seconds: int) -> str:
    """Shortest exact spelling: 120 -> "2m", 90 -> "90s", 43200 -> "12h"."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def run_id(
    stage: str, condition_id: str, budget_s: int, seed: int, pool: str, batch: str = ""
) -> str:
    """Deterministic, DNS-safe run id, e.g. `screen-c07-5m-s1-a100`."""
    parts = [stage, batch, condition_id, format_budget(budget_s), f"s{seed}", pool]
    text = "-".join(part for part in parts if part).lower()
    return re.sub(r"[^a-z0-9-]+", "-", text)


def full_space_id(levels: Mapping[str, int], codes: Sequence[str]) -> str:
    """Id of a point of the full 2^k space, numbered as the paper does (`full32_c14`).

    Factors at their centre (0) are named after the low-level point with a suffix, so a
    bridge point with B centred reads `full32_c06-b0`.
    """
    corner = {code: -1 if levels[code] == 0 else levels[code] for code in codes}
    base = designs.condition_id(corner, codes)
    centred = "".join(f"{code.lower()}0" for code in codes if levels[code] == 0)
    return f"full{2 ** len(codes)}_{base}" + (f"-{centred}" if centred else "")


def condition_name(levels: Mapping[str, int], spec: StudySpec) -> str:
    """The screen design's id when the point is one of its runs, else its full-space id."""
    codes = spec.codes
    screen = spec.build_design()
    for cid, run in zip(screen.condition_ids, screen.runs(), strict=True):
        if all(run[code] == levels[code] for code in codes):
            return str(cid)
    return full_space_id(levels, codes)


def decode_levels(levels: Mapping[str, int], spec: StudySpec) -> dict[str, int | float]:
    """Coded levels to the trainer's hyperparameters, by factor name."""
    return {factor.name: factor.decode(levels[factor.code or ""]) for factor in spec.factors}


# --- ranking and selection ------------------------------------------------------------------


def succeeded(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows that count for ranking: status succeeded and a finite metric."""
    if results.empty:
        return results
    ok = results["status"].eq(RunStatus.SUCCEEDED) & np.isfinite(
        pd.to_numeric(results[metric], errors="coerce")
    )
    return results[ok]


def rank_conditions(
    results: pd.DataFrame, metric: str, goal: str, at: int | str = "longest"
) -> pd.DataFrame:
    """Condition means at one budget, best first: condition_id, role, levels, n, mean.

    Ties break on condition id so the ranking, and everything promoted from it, is
    reproducible.
    """
    rows = succeeded(results, metric)
    if rows.empty:
        return rows
    budget = rows["budget_s"].max() if at == "longest" else at
    rows = rows[rows["budget_s"] == budget]
    grouped = rows.groupby("condition_id", sort=True)
    table = grouped.agg(n=(metric, "size"), mean=(metric, "mean"), role=("role", "first"))
    table = table.reset_index()
    table["budget_s"] = budget
    ascending = goal == "minimize"
    return table.sort_values(["mean", "condition_id"], ascending=[ascending, True]).reset_index(
        drop=True
    )


def _levels_of(results: pd.DataFrame, condition: str, codes: Sequence[str]) -> dict[str, int]:
    row = results[results["condition_id"] == condition].iloc[0]
    return {code: int(row[code]) for code in codes}


def _source_role(results: pd.DataFrame, condition: str) -> str | None:
    """The role an anchor already had in its source stage, so it keeps its name onwards."""
    roles = results.loc[results["condition_id"] == condition, "role"].dropna()
    return str(roles.iloc[0]) if len(roles) else None


def _roles(selection: Selection, count: int) -> list[str]:
    role = selection.role or selection.rule
    return [role] if count == 1 else [f"{role}-{i}" for i in range(1, count + 1)]


def _among(results: pd.DataFrame, roles: Sequence[str]) -> pd.DataFrame:
    if not roles:
        return results
    role = results["role"].fillna("")
    pattern = "|".join(re.escape(r) for r in roles)
    return results[role.str.fullmatch(f"(?:{pattern})(?:-[0-9]+)?")]


def select_anchors(spec: StudySpec, selection: Selection, results: pd.DataFrame) -> list[Anchor]:
    """The anchors one `select` rule picks from the results of its source stage."""
    codes = spec.codes
    if selection.rule == "control":
        levels = {code: int(selection.levels[code]) for code in codes}
        cid = condition_name(levels, spec)
        return [Anchor(cid, levels, _roles(selection, 1)[0], "control", None)]
    source = selection.from_ or ""
    rows = _among(results[results["stage"] == source], selection.among)
    # `longest` is the longest budget the source declares, never merely the longest that
    # happens to have results: a ranking must not move as the source's runs come in.
    at = max(spec.stage(source).budgets) if selection.at == "longest" else selection.at
    ranking = rank_conditions(rows, spec.metric.name, spec.metric.goal, at)
    if ranking.empty:
        raise Unplannable(
            f"select rule {selection.rule!r} from stage {source!r}: no succeeded runs to rank "
            f"at {at} s"
        )
    if selection.rule == "worst":
        picked = list(ranking["condition_id"].iloc[::-1][: selection.k])
    elif selection.rule in ("greedy-winner", "random-winner"):
        picked = list(ranking["condition_id"].iloc[:1])
    else:
        picked = list(ranking["condition_id"].iloc[: selection.k])
    anchors = []
    for role, cid in zip(_roles(selection, len(picked)), picked, strict=True):
        levels = _levels_of(rows, cid, codes)
        if selection.role is None and selection.rule in ("best", "worst"):
            role = _source_role(rows, cid) or role
        if selection.rule == "bridge":
            levels = {
                code: 0 if code in selection.factors else level for code, level in levels.items()
            }
            suffix = "".join(f"{code.lower()}0" for code in codes if code in selection.factors)
            cid = f"{cid}-{suffix}"
        anchors.append(Anchor(cid, levels, role, selection.rule, source))
    return anchors


# --- baselines ------------------------------------------------------------------------------


def random_draws(
    codes: Sequence[str], batches: int, draws_per_batch: int, seed: int
) -> list[tuple[int, int, dict[str, int]]]:
    """Independent uniform draws (with replacement) from the full 2^k space, per batch.

    Returns (batch, draw, levels) with batch and draw counted from 1; the same seed always
    gives the same draws, so a restarted controller plans the same runs.
    """
    space = designs.full_factorial(codes).runs()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(space), size=(batches, draws_per_batch))
    return [
        (b + 1, d + 1, dict(space[int(picks[b, d])]))
        for b in range(batches)
        for d in range(draws_per_batch)
    ]


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


# --- planning -------------------------------------------------------------------------------


def stage_pools(spec: StudySpec, stage: Stage) -> list[str]:
    """The pools a stage runs on: those it names, else the first declared pool."""
    return list(stage.pools) or [spec.pools[0].name]


Condition = tuple[str, Mapping[str, int], str | None]
"""A condition to run: its id, coded levels and anchor role (None outside anchor stages)."""


def _expand(
    spec: StudySpec,
    stage: Stage,
    conditions: Sequence[Condition],
    *,
    budgets: Sequence[int] = (),
    pools: Sequence[str] = (),
    tag: str = "",
    batch: int | None = None,
) -> list[PlannedRun]:
    """Every condition x budget x seed x pool, in that nesting (condition outermost).

    Budgets and pools default to the stage's; a greedy climb narrows them to its own.
    """
    runs = []
    for cid, levels, role in conditions:
        hyper = decode_levels(levels, spec)
        for budget in budgets or stage.budgets:
            for seed in stage.seeds:
                for pool in pools or stage_pools(spec, stage):
                    runs.append(
                        PlannedRun(
                            run_id=run_id(stage.name, cid, budget, seed, pool, tag),
                            stage=stage.name,
                            condition_id=cid,
                            levels=dict(levels),
                            hyperparameters=hyper,
                            budget_s=budget,
                            seed=seed,
                            pool=pool,
                            role=role,
                            batch=batch,
                        )
                    )
    return runs


def followup_design(spec: StudySpec, stage: Stage) -> designs.Design:
    """Full factorial over the factors the follow-up leaves free (paper 5.3: D fixed)."""
    free = [code for code in spec.codes if code not in stage.fix]
    return designs.full_factorial(free)


def _require_complete_sources(spec: StudySpec, stage: Stage, results: pd.DataFrame) -> None:
    """Anchors are chosen only from finished stages, so a plan never changes its mind.

    A source is complete when its own plan is finished (a greedy climb has stopped) and every
    run of that plan has ended (succeeded, diverged or failed); until then the stage is not
    ready. Ranking half a screen would pick other anchors than the whole one and orphan the
    runs already launched for them.
    """
    ended = set(results.loc[results["status"].isin(list(TERMINAL)), "run_id"])
    for source_name in dict.fromkeys(s.from_ for s in stage.select if s.from_ is not None):
        source_plan = plan_stage(spec, spec.stage(source_name), results)
        waiting = [run.run_id for run in source_plan.runs if run.run_id not in ended]
        if waiting:
            raise NotReady(
                f"stage {stage.name!r} waits for stage {source_name!r}: {len(waiting)} of its "
                f"{len(source_plan.runs)} planned runs have not ended (first: {waiting[0]})"
            )
        if not source_plan.finished:
            raise NotReady(
                f"stage {stage.name!r} waits for stage {source_name!r}: its climbs have not stopped"
            )


def plan_stage(spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
    """The runs `stage` needs, given every result recorded so far (any stage).

    For greedy stages the plan holds the runs of every point evaluated so far plus the next
    point of each climb; `finished` turns True when every climb has stopped.
    """
    results = _with_identity_columns(results, spec.codes)
    if stage.kind == "screen":
        screen = spec.build_design()
        conditions = [
            (str(cid), run, None)
            for cid, run in zip(screen.condition_ids, screen.runs(), strict=True)
        ]
        return StagePlan(stage.name, tuple(_expand(spec, stage, conditions)))
    if stage.kind == "followup":
        # Follow-up points are named as everywhere else (the screen's id when the point is
        # one of its runs, else its full-space id), never by the follow-up's own numbering,
        # so one id always means one set of levels across the study.
        points = [
            {code: int(stage.fix.get(code, run.get(code, 0))) for code in spec.codes}
            for run in followup_design(spec, stage).runs()
        ]
        conditions = [(condition_name(levels, spec), levels, None) for levels in points]
        return StagePlan(stage.name, tuple(_expand(spec, stage, conditions)))
    if stage.kind in ("confirm", "bridge", "long-horizon"):
        _require_complete_sources(spec, stage, results)
        anchors = _unique_anchors(
            [a for selection in stage.select for a in select_anchors(spec, selection, results)]
        )
        picked: list[Condition] = [(a.condition_id, a.levels, a.role) for a in anchors]
        return StagePlan(stage.name, tuple(_expand(spec, stage, picked)), tuple(anchors))
    if stage.kind == "random":
        return StagePlan(stage.name, tuple(_plan_random(spec, stage)))
    return _plan_greedy(spec, stage, results)


def _unique_anchors(anchors: Sequence[Anchor]) -> list[Anchor]:
    """One anchor per condition; a condition picked by two rules keeps the first role."""
    unique: dict[str, Anchor] = {}
    for anchor in anchors:
        unique.setdefault(anchor.condition_id, anchor)
    return list(unique.values())


def _plan_random(spec: StudySpec, stage: Stage) -> list[PlannedRun]:
    runs = []
    width = len(str(stage.draws_per_batch))
    for batch, draw, levels in random_draws(
        spec.codes, stage.batches, stage.draws_per_batch, stage.draw_seed
    ):
        cid = condition_name(levels, spec)
        tag = f"b{batch}d{draw:0{width}d}"
        runs += _expand(spec, stage, [(cid, levels, None)], tag=tag, batch=batch)
    return runs


def greedy_climbs(
    spec: StudySpec, stage: Stage, results: pd.DataFrame
) -> dict[tuple[int, str], Climb]:
    """Replay each greedy climb (one per budget and pool) from this stage's results.

    A point counts as evaluated once every seed has a run that ended (a pending or running one
    in the results table does not count); its value is the mean of the seeds that succeeded
    (None if none did).
    """
    results = _with_identity_columns(results, spec.codes)
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
            max_steps = max(1, (stage.max_runs or 1) // len(stage.seeds))
            climbs[(budget, pool)] = greedy_climb(
                codes, _greedy_options(spec), start, evaluated, spec.metric.goal, max_steps
            )
    return climbs


def _plan_greedy(spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
    runs: list[PlannedRun] = []
    finished = True
    for (budget, pool), climb in greedy_climbs(spec, stage, results).items():
        points = [step.levels for step in climb.steps]
        if climb.next_levels is not None:
            points.append(climb.next_levels)
            finished = False
        conditions = [(condition_name(levels, spec), levels, None) for levels in points]
        runs += _expand(spec, stage, conditions, budgets=[budget], pools=[pool])
    return StagePlan(stage.name, tuple(runs), finished=finished)


def _with_identity_columns(results: pd.DataFrame, codes: Sequence[str]) -> pd.DataFrame:
    """An empty or partial results table with the columns planning reads."""
    needed = ["stage", "run_id", "condition_id", "role", "budget_s", "seed", "pool", "status"]
    missing = [column for column in [*needed, *codes] if column not in results.columns]
    if not missing:
        return results
    return results.assign(**{column: pd.Series(dtype=object) for column in missing})


# --- cost -----------------------------------------------------------------------------------


def expected_runs(spec: StudySpec, stage: Stage) -> int:
    """How many runs a stage will launch, known before any of its sources has run.

    Anchor stages count one condition per pick (k per rule, one for control), the most they
    can run: once the sources are complete, two rules picking the same condition plan it
    once (one recipe, one id), and the manifest counts the plan. A greedy stage counts its
    run limit, the most it can spend.
    """
    per_condition = len(stage.budgets) * len(stage.seeds) * len(stage_pools(spec, stage))
    if stage.kind == "screen":
        return len(spec.build_design().matrix) * per_condition
    if stage.kind == "followup":
        return len(followup_design(spec, stage).matrix) * per_condition
    if stage.kind == "random":
        return stage.batches * stage.draws_per_batch * per_condition
    if stage.kind == "greedy":
        max_steps = max(1, (stage.max_runs or 1) // len(stage.seeds))
        return max_steps * per_condition
    picks = sum(
        1 if s.rule in ("control", "greedy-winner", "random-winner") else s.k for s in stage.select
    )
    return picks * per_condition


RUN_OVERHEAD_S = 5
"""Seconds a run spends beyond its training budget: interpreter and torch start-up, data
loading, evaluation and the final checkpoint. Measured on the CPU quickstart (a 5-45 s run
takes 2.6-4.7 s longer inside the trainer, about 2 s more to start the process); GPU runs
that compile their model start slower: price them with `stagescreen plan --overhead`."""


@dataclass(frozen=True)
class StageCost:
    """What a stage will spend: runs, GPU-hours and run-hours per pool, and wall-clock at
    the parallelism. Run-hours are the runs' own durations; on a CPU pool (gpus: 0) they are
    what the study costs."""

    stage: str
    kind: str
    runs: int
    gpu_hours: Mapping[str, float]
    wall_hours: float
    run_hours: Mapping[str, float] = field(default_factory=dict)


def stage_cost(spec: StudySpec, stage: Stage, overhead_s: int = 0) -> StageCost:
    """Cost of one stage; `overhead_s` adds start-up and evaluation time to every run.

    Wall-clock packs the runs onto `limits.parallelism` slots longest-first; a greedy climb
    is sequential, so each of its steps waits for the previous one.
    """
    pools = {pool.name: pool for pool in spec.pools}
    runs = expected_runs(spec, stage)
    per_budget = runs // len(stage.budgets)
    gpu_hours: dict[str, float] = {}
    run_hours: dict[str, float] = {}
    durations: list[int] = []
    for budget in stage.budgets:
        per_pool = per_budget // len(stage_pools(spec, stage))
        for pool in stage_pools(spec, stage):
            gpus = pools[pool].gpus if pool in pools else 1
            hours = per_pool * (budget + overhead_s) / 3600
            run_hours[pool] = run_hours.get(pool, 0.0) + hours
            gpu_hours[pool] = gpu_hours.get(pool, 0.0) + hours * gpus
            durations += [budget + overhead_s] * per_pool
    slots = spec.limits.parallelism
    if stage.kind == "greedy":
        width = len(stage.seeds) * len(stage.budgets) * len(stage_pools(spec, stage))
        slots = min(slots, width)
    wall = _pack(sorted(durations, reverse=True), slots)
    return StageCost(stage.name, stage.kind, runs, gpu_hours, wall / 3600, run_hours)


def _pack(durations: Sequence[int], slots: int) -> float:
    """Makespan of longest-first list scheduling on `slots` identical workers."""
    if not durations:
        return 0.0
    loads = [0] * max(1, min(slots, len(durations)))
    for duration in durations:
        loads[loads.index(min(loads))] += duration
    return float(max(loads))


def programme_cost(spec: StudySpec, overhead_s: int = 0) -> list[StageCost]:
    """Every stage's cost, in the order the stages run."""
    return [stage_cost(spec, stage, overhead_s) for stage in spec.stages]


def budget_hours(costs: Sequence[StageCost]) -> float:
    """Total GPU-hours across stages and pools."""
    return math.fsum(hours for cost in costs for hours in cost.gpu_hours.values())
