"""What a programme will spend, before anything runs: runs, GPU-hours and wall-clock.

Each stage's kind says how many runs it launches at each budget and how they pack onto the
parallel slots (`kinds.base.StageKind.runs_by_budget`, `wall_s`); this module adds up hours
per pool.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stagescreen.kinds import kind_of
from stagescreen.planning.plans import stage_pools
from stagescreen.study.spec import Stage, StudySpec


def expected_runs(spec: StudySpec, stage: Stage) -> int:
    """How many runs a stage will launch, known before any of its sources has run.

    Anchor stages count one condition per pick (k per rule, one for control), the most they
    can run: once the sources are complete, two rules picking the same condition plan it
    once (one recipe, one id), and the manifest counts the plan. A greedy stage counts its
    run limit, the most it can spend.
    """
    return kind_of(stage).expected_runs(spec, stage)


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
    is sequential, so each of its steps waits for the previous one, and each rung of a halving
    ladder waits for the rung before it.
    """
    pools = {pool.name: pool for pool in spec.pools}
    kind = kind_of(stage)
    runs = kind.expected_runs(spec, stage)
    per_budget = kind.runs_by_budget(spec, stage)
    gpu_hours: dict[str, float] = {}
    run_hours: dict[str, float] = {}
    for budget in stage.budgets:
        per_pool = per_budget[budget] // len(stage_pools(spec, stage))
        for pool in stage_pools(spec, stage):
            gpus = pools[pool].gpus if pool in pools else 1
            hours = per_pool * (budget + overhead_s) / 3600
            run_hours[pool] = run_hours.get(pool, 0.0) + hours
            gpu_hours[pool] = gpu_hours.get(pool, 0.0) + hours * gpus
    wall = kind.wall_s(spec, stage, per_budget, overhead_s)
    return StageCost(stage.name, stage.kind, runs, gpu_hours, wall / 3600, run_hours)


def programme_cost(spec: StudySpec, overhead_s: int = 0) -> list[StageCost]:
    """Every stage's cost, in the order the stages run."""
    return [stage_cost(spec, stage, overhead_s) for stage in spec.stages]


def budget_hours(costs: Sequence[StageCost]) -> float:
    """Total GPU-hours across stages and pools."""
    return math.fsum(hours for cost in costs for hours in cost.gpu_hours.values())


def over_cap(spec: StudySpec, overhead_s: int = RUN_OVERHEAD_S) -> str | None:
    """Why the plan does not fit `limits.maxGpuHours` (its GPU-hours, the limit, what to
    change), or None: a study that cannot finish within its cap is refused before it starts,
    rather than stopped part-way with the stages that decide it never run."""
    limit = spec.limits.max_gpu_hours
    if limit is None:
        return None
    costs = programme_cost(spec, overhead_s)
    total = budget_hours(costs)
    if total <= limit:
        return None
    largest = max(costs, key=lambda cost: math.fsum(cost.gpu_hours.values()))
    return (
        f"the plan needs {total:,.1f} GPU-hours ({overhead_s} s of overhead per run "
        f"included), more than maxGpuHours {limit:g}; raise maxGpuHours to at least "
        f"{math.ceil(total):,}, or cut budgets, seeds or stages (stage {largest.stage!r} "
        f"alone needs {math.fsum(largest.gpu_hours.values()):,.1f}; `stagescreen plan` "
        "prices every stage)"
    )
