"""The run manifest, the paper's Table 1: runs and GPU-seconds per stage and pool.

Written to `<study>/manifest.json` beside the stage outcomes whenever a stage is analysed;
the report prints it as the study's last table. A pure function of the spec and the results
table.
"""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, computed_field

from stagescreen.outcomes.analyse import TERMINAL_ORDER, stage_rows, status_counts
from stagescreen.outcomes.model import SCHEMA_VERSION
from stagescreen.planning.cost import expected_runs
from stagescreen.planning.planner import plan_stage
from stagescreen.planning.plans import PlanError, stage_pools
from stagescreen.planning.results import compute_seconds
from stagescreen.study.spec import Stage, StudySpec


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RunCounts(_Record):
    """Runs planned and ended in each terminal state, with the GPU-seconds they took:
    planned = succeeded + diverged + failed + pending."""

    planned: int = 0
    succeeded: int = 0
    failed: int = 0
    diverged: int = 0
    gpu_seconds: float = 0.0

    @property
    def ended(self) -> int:
        return self.succeeded + self.failed + self.diverged

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pending(self) -> int:
        """Planned runs not ended yet (not launched, queued or running); written to
        manifest.json so that each line and the total add up there too."""
        return max(0, self.planned - self.ended)


class ManifestLine(RunCounts):
    """One stage on one pool."""

    stage: str
    kind: str
    pool: str
    budgets_s: list[int]


class PoolUse(_Record):
    """What one pool ran over the whole study."""

    runs: int = 0
    gpu_seconds: float = 0.0


class Manifest(_Record):
    """`<study>/manifest.json`: a line per stage and pool, the totals, the use per pool."""

    schema_version: int = SCHEMA_VERSION
    study: str
    stages: list[ManifestLine] = Field(default_factory=list)
    total: RunCounts = Field(default_factory=RunCounts)
    pools: dict[str, PoolUse] = Field(default_factory=dict)


def _planned_per_pool(spec: StudySpec, stage: Stage, results: pd.DataFrame) -> dict[str, int]:
    """Runs a stage plans on each pool: exactly its plan's once that is final (a greedy
    stage whose climbs have stopped, often short of maxRuns; an anchor stage whose sources
    are complete, one condition per distinct anchor), else the expected count, its most."""
    pools = stage_pools(spec, stage)
    try:
        plan = plan_stage(spec, stage, results)
    except PlanError:
        plan = None
    if plan is not None and plan.finished:
        return {pool: sum(run.pool == pool for run in plan.runs) for pool in pools}
    return dict.fromkeys(pools, expected_runs(spec, stage) // len(pools))


def manifest(spec: StudySpec, results: pd.DataFrame, study: str) -> Manifest:
    """Run accounting per stage and pool, the paper's Table 1.

    GPU-seconds count each run's wall time (training, evaluation and start-up) times the
    pool's GPUs per run; runs without a wall time count their budget.
    """
    pools = {pool.name: pool for pool in spec.pools}
    lines: list[ManifestLine] = []
    for stage in spec.stages:
        rows = stage_rows(results, stage)
        planned = _planned_per_pool(spec, stage, results)
        for pool in stage_pools(spec, stage):
            mine = rows[rows["pool"] == pool] if not rows.empty else rows
            seconds = compute_seconds(mine).get(pool, 0.0) * (
                pools[pool].gpus if pool in pools else 1
            )
            status = mine["status"] if not mine.empty else pd.Series(dtype=object)
            lines.append(
                ManifestLine(
                    stage=stage.name,
                    kind=stage.kind,
                    pool=pool,
                    budgets_s=list(stage.budgets),
                    planned=planned[pool],
                    **status_counts(status),
                    gpu_seconds=seconds,
                )
            )
    per_pool: dict[str, PoolUse] = {}
    for line in lines:
        use = per_pool.setdefault(line.pool, PoolUse())
        use.runs += line.ended
        use.gpu_seconds += line.gpu_seconds
    total = RunCounts(
        **{
            key: sum(getattr(line, key) for line in lines)
            for key in ("planned", *(status.value for status in TERMINAL_ORDER), "gpu_seconds")
        }
    )
    return Manifest(study=study, stages=lines, total=total, pools=per_pool)
