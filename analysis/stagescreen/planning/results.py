"""Planned runs and the trainer's records, joined into the one results table analysis reads.

The planner knows what each run is (stage, condition, role, coded levels, budget, seed, pool);
the trainer's `result.json` (a `RunRecord`, stagescreen_contract.record) knows how it went
(status, val_bpb, timings) and carries its own copy of the identity in another shape (nested
coded levels, a float budget, no role). They meet here, by run id, and nowhere else: identity
columns come from the plan, outcome columns from the record, so a record can never rename a
run or move it to another condition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

from stagescreen.planning.plans import PlannedRun
from stagescreen_contract.record import PROVENANCE_COLUMNS, Provenance, RunRecord
from stagescreen_contract.status import TERMINAL, RunStatus


@dataclass(frozen=True)
class ResultRow:
    """One row of the results table: who the run is (from the plan) and how it went (from its
    record). Its columns are the plan's identity columns (`PlannedRun.to_row`: stage, run and
    condition ids, role, batch, budget, seed, pool, coded levels, hyperparameters), `status`,
    the spec's metric under its own name, and the record fields below: what the outcome, the
    manifest (GPU-seconds from wall_s) and the report read."""

    run: PlannedRun
    status: RunStatus
    value: float = math.nan  # the spec's metric, e.g. val_bpb
    reason: str | None = None
    train_loss: float = math.nan
    steps: float = math.nan
    tokens: float = math.nan
    training_s: float = math.nan
    eval_s: float = math.nan
    wall_s: float = math.nan
    tokens_per_s: float = math.nan
    mfu: float = math.nan
    peak_memory_bytes: float = math.nan
    eval_tokens: float = math.nan
    # `provenance.*` columns (Provenance.columns), all None without a record's provenance
    provenance: Mapping[str, str | None] = field(
        default_factory=lambda: dict.fromkeys(PROVENANCE_COLUMNS)
    )

    @classmethod
    def of(cls, run: PlannedRun, record: RunRecord | None, metric: str, running: bool) -> ResultRow:
        """The row of a planned run from its record; without one it is running or pending."""
        if record is None:
            return cls(run, RunStatus.RUNNING if running else RunStatus.PENDING)
        numbers = {name: _number(record.number(name)) for name in RECORD_NUMBERS}
        return cls(
            run,
            record.status,
            _number(record.number(metric)),
            reason=record.reason,
            provenance=record.provenance.columns()
            if record.provenance
            else dict.fromkeys(PROVENANCE_COLUMNS),
            **numbers,
        )

    def to_row(self, metric: str) -> dict[str, Any]:
        measured = {name: getattr(self, name) for name in ("reason", *RECORD_NUMBERS)}
        return {
            **self.run.to_row(),
            "status": str(self.status),
            metric: self.value,
            **measured,
            **self.provenance,
        }


RECORD_NUMBERS = tuple(
    f.name
    for f in fields(ResultRow)
    if f.name not in ("run", "status", "value", "reason", "provenance")
)


@dataclass(frozen=True)
class Joined:
    """The results table, and the records that matched no planned run (reported, not used)."""

    table: pd.DataFrame
    unplanned: tuple[str, ...]


def results_table(
    planned: Sequence[PlannedRun],
    records: Mapping[str, RunRecord],
    metric: str,
    running: Sequence[str] = (),
) -> Joined:
    """One `ResultRow` per planned run, joined with its record by run id, as a DataFrame.
    A run without a record is `running` when the executor says so, else `pending`."""
    active = set(running)
    rows = [
        ResultRow.of(run, records.get(run.run_id), metric, run.run_id in active).to_row(metric)
        for run in planned
    ]
    known = {run.run_id for run in planned}
    return Joined(pd.DataFrame(rows), tuple(sorted(set(records) - known)))


def _number(value: float | None) -> float:
    """A record's number as float, NaN where the record has none (null, missing)."""
    return math.nan if value is None else value


@dataclass(frozen=True)
class StageCounts:
    """Where a stage's planned runs stand, as progress and status lines show it."""

    planned: int
    ended: int
    running: int
    failed: int  # failed or diverged, among the ended


def stage_counts(results: pd.DataFrame, stage: str) -> StageCounts:
    """Counts of one stage's rows of the results table (all zero before it is planned)."""
    if results.empty:
        return StageCounts(0, 0, 0, 0)
    status = results.loc[results["stage"] == stage, "status"]
    return StageCounts(
        planned=len(status),
        ended=int(status.isin([str(s) for s in TERMINAL]).sum()),
        running=int((status == str(RunStatus.RUNNING)).sum()),
        failed=int(status.isin([str(RunStatus.FAILED), str(RunStatus.DIVERGED)]).sum()),
    )


def compute_seconds(results: pd.DataFrame) -> dict[str, float]:
    """Wall-seconds spent by the ended runs of a results table, by pool: each run's recorded
    wall time (start-up, training, evaluation), its budget where the record has none.
    Times a pool's GPUs per run, these are its GPU-seconds."""
    if results.empty:
        return {}
    ended = results[results["status"].isin([str(s) for s in TERMINAL])]
    wall = (
        pd.to_numeric(ended["wall_s"], errors="coerce")
        if "wall_s" in ended.columns
        else pd.Series(math.nan, index=ended.index)
    ).fillna(ended["budget_s"].astype(float))
    return {
        str(pool): float(seconds) for pool, seconds in wall.groupby(ended["pool"]).sum().items()
    }


def failure_record(study: str, run: PlannedRun, reason: str, wall_s: float) -> RunRecord:
    """The record an executor writes for a run whose trainer ended without writing its own
    (killed, crashed in start-up, its pod failed for good), so it is never started again."""
    return RunRecord(
        study=study,
        stage=run.stage,
        run_id=run.run_id,
        condition_id=run.condition_id,
        coded_levels=dict(run.levels),
        budget_s=float(run.budget_s),
        seed=run.seed,
        pool=run.pool,
        status=RunStatus.FAILED,
        reason=reason,
        wall_s=wall_s,
    )


def with_image_digest(record: RunRecord, digest: str) -> RunRecord:
    """The record with the image digest its executor saw the run's pod run (the kube operator
    writes it beside the record, `runs/<run_id>/image.txt`), where the record has none: a
    trainer cannot see its own image, so its records get the digest here, as they are read.
    A digest the record carries, or an empty one, leaves the record as it is."""
    provenance = record.provenance or Provenance()
    if provenance.image_digest or not digest:
        return record
    joined = provenance.model_copy(update={"image_digest": digest})
    return record.model_copy(update={"provenance": joined})
