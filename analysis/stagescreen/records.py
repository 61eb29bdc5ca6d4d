"""Planned runs and the trainer's records, joined into the one results table analysis reads.

The planner knows what each run is (stage, condition, role, coded levels, budget, seed, pool);
the trainer's `result.json` knows how it went (status, val_bpb, timings) and carries its own
copy of the identity in another shape (nested coded levels, a float budget, no role). They
meet here, by run id, and nowhere else: identity columns come from the plan, outcome columns
from the record, so a record can never rename a run or move it to another condition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from stagescreen.runstatus import TERMINAL, RunStatus
from stagescreen.stages import PlannedRun

# What the results table takes from a run record, besides the metric: the columns the
# outcome, the manifest (GPU-seconds from wall_s) and the report read.
RECORD_COLUMNS = (
    "reason",
    "train_loss",
    "steps",
    "tokens",
    "training_s",
    "eval_s",
    "wall_s",
    "tokens_per_s",
    "mfu",
    "peak_memory_bytes",
    "eval_tokens",
)


@dataclass(frozen=True)
class Joined:
    """The results table, and the records that matched no planned run (reported, not used)."""

    table: pd.DataFrame
    unplanned: tuple[str, ...]


def results_table(
    planned: Sequence[PlannedRun],
    records: Mapping[str, Mapping[str, Any]],
    metric: str,
    running: Sequence[str] = (),
) -> Joined:
    """One row per planned run: its identity, coded levels and decoded hyperparameters from
    the plan; status, the metric and RECORD_COLUMNS from its record by run id. A run without
    a record is `running` when the executor says so, else `pending`."""
    active = set(running)
    rows = []
    for run in planned:
        row: dict[str, Any] = run.to_row()
        record = records.get(run.run_id)
        if record is None:
            row["status"] = str(RunStatus.RUNNING if run.run_id in active else RunStatus.PENDING)
            row[metric] = math.nan
            rows.append(row)
            continue
        row["status"] = str(RunStatus(record["status"]))
        row[metric] = _number(record.get(metric))
        for column in RECORD_COLUMNS:
            value = record.get(column)
            row[column] = value if column == "reason" else _number(value)
        rows.append(row)
    known = {run.run_id for run in planned}
    return Joined(pd.DataFrame(rows), tuple(sorted(set(records) - known)))


def _number(value: Any) -> float:
    """A record's number as float, NaN where the record has none (null, missing)."""
    if value is None or isinstance(value, bool):
        return math.nan
    return float(value)


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
