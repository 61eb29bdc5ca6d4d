"""Replay: a study's planned runs answered from a table of measured runs instead of a model.

`stagescreen simulate STUDY --table FILE` asks how the staged workflow would have decided on a
past sweep or a public benchmark table. The table has a column per factor, named as the
factor, holding either the factor's values (low, high and, for bridge points, its centre; a
number or a string as the spec writes it) or the coded levels -1/0/+1; the column is read as
values when every entry is one of them, else as codes. An optional `budget` column (seconds,
or a duration such as 10m) says at which budget a row was measured; without one every budget
takes its values from the whole table. The metric column is named as `spec.metric.name`.
An optional `status` column (succeeded, diverged or failed; empty or absent reads as
succeeded) says how a measured run ended: a run that takes a diverged or failed row ends so,
without a metric, as the trainer would have recorded it, so a past sweep's losses count in
the replayed decisions as they did in the sweep.

A `seed` column keeps seed effects shared: the run with seed s takes seed s's value of its
condition at its budget, in every stage that runs it. Without one (a `replicate` column only
labels rows) each run takes a measured replicate of its condition at its budget that no
earlier run took, in an order drawn from `seed`; a study needing more replicates than the
table has is refused rather than shown a repeated value as a new measurement.

The table arrives as a DataFrame: the CLI reads the file (`simulate --table`, with the
reader `effects` uses), so the core does no file I/O. Every problem is a `ReplayError` with a
one-line message naming the column, condition, budget, seed or row at fault. Results are
marked `replay` (the table's name) and never synthetic.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from stagescreen.planning.ids import format_budget
from stagescreen.planning.plans import PlannedRun
from stagescreen.study.spec import Factor, StudySpec, parse_duration
from stagescreen_contract.status import RunStatus

BUDGET = "budget"
SEED = "seed"
STATUS = "status"
ENDINGS = (RunStatus.SUCCEEDED, RunStatus.DIVERGED, RunStatus.FAILED)
"""The statuses a `status` column may give a row: how the measured run ended."""


class ReplayError(ValueError):
    """A table cannot answer the study's runs; the message says what is missing or wrong."""


def _same(value: object, level: object) -> bool:
    """Whether a table entry is a factor's value: numbers compared as numbers (6 and 6.0
    agree), anything else as text."""
    if isinstance(value, int | float | np.number) and isinstance(level, int | float):
        return math.isclose(float(value), float(level), rel_tol=1e-9, abs_tol=1e-12)
    return str(value) == str(level)


def _factor_values(factor: Factor) -> dict[int, object]:
    """The factor's value at each coded level it has: low, high, and the centre where the
    factor has one (a factor whose decode refuses level 0 has none)."""
    values: dict[int, object] = {-1: factor.decode(-1), 1: factor.decode(1)}
    with contextlib.suppress(ValueError):
        values[0] = factor.decode(0)
    return values


def _coded(column: pd.Series, factor: Factor) -> tuple[pd.Series, str]:
    """The column as coded levels, and whether it was read as values or codes."""
    values = _factor_values(factor)

    def as_value(entry: object) -> int | None:
        return next((code for code, level in values.items() if _same(entry, level)), None)

    by_value = column.map(as_value)
    if by_value.notna().all():
        return by_value.astype(int), "values"
    by_code = column.map(lambda entry: next((c for c in (-1, 0, 1) if _same(entry, c)), None))
    if by_code.notna().all():
        return by_code.astype(int), "codes"
    bad = column[by_value.isna()].iloc[0]
    bad = bad.item() if isinstance(bad, np.generic) else bad
    shown = ", ".join(str(v) for _, v in sorted(values.items()))
    raise ReplayError(
        f"column {factor.name}: {bad!r} is not a level of {factor.name} (its values {shown}, "
        "or the codes -1, 0, +1)"
    )


@dataclass
class Table:
    """A measured table indexed for replay; `run_rows` answers planned runs from it.

    Keeps which replicates earlier runs took, so one `Table` serves the whole study.
    """

    name: str
    rows: pd.DataFrame
    """Coded levels per factor code, `budget_s` and `seed` (where the table has those
    columns) and the metric, indexed as the source table's rows (from 0)."""
    factors: Mapping[str, Factor]
    """Factor code -> factor, in spec order."""
    read_as: Mapping[str, str]
    """Factor name -> "values" or "codes": how its column was read."""
    budgets: list[int] | None
    """The budgets the table measured; None when it has no budget column."""
    seeded: bool
    draw_seed: int = 0
    places: Sequence[str] = ()
    """Where each row sits in its file, for messages: "line 7" or "row 3" where the frame's
    index is named line or row (the CLI's reader names a CSV's file lines and a parquet
    file's rows so), else "row n" counting from 1."""
    _order: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    _used: dict[tuple[str, int], int] = field(default_factory=dict)

    def _describe(self, levels: Mapping[str, int]) -> str:
        parts = []
        for code, factor in self.factors.items():
            level = levels[code]
            value = _factor_values(factor).get(level, level)
            sign = "+" if level > 0 else "-" if level < 0 else "0"
            parts.append(f"{factor.name}={value} ({code}{sign})")
        return ", ".join(parts)

    def _candidates(self, run: PlannedRun) -> pd.DataFrame:
        """The table's rows of the run's condition at its budget; ReplayError when none."""
        rows = self.rows
        match = np.ones(len(rows), dtype=bool)
        for code in self.factors:
            match &= (rows[code] == run.levels[code]).to_numpy()
        if not match.any():
            centred = [
                factor.name
                for code, factor in self.factors.items()
                if run.levels[code] == 0 and not (rows[code] == 0).any()
            ]
            why = (
                f"; it has no centre level of {', '.join(centred)} (a bridge point replays "
                "only where the table measured the centre)"
                if centred
                else ""
            )
            raise ReplayError(
                f"the table has no run of condition {run.condition_id} "
                f"({self._describe(run.levels)}){why}"
            )
        if self.budgets is not None:
            match &= (rows["budget_s"] == run.budget_s).to_numpy()
            if not match.any():
                have = ", ".join(format_budget(b) for b in self.budgets)
                raise ReplayError(
                    f"the table has no run at budget {format_budget(run.budget_s)} (stage "
                    f"{run.stage!r}, condition {run.condition_id}); its budgets: {have}"
                )
        return rows[match]

    def _row(self, run: PlannedRun) -> int:
        """The table row (its index) the run takes."""
        candidates = self._candidates(run)
        where = f"condition {run.condition_id} at {format_budget(run.budget_s)}"
        if self.seeded:
            mine = candidates[candidates[SEED] == run.seed]
            if mine.empty:
                have = ", ".join(str(int(s)) for s in sorted(candidates[SEED].unique()))
                raise ReplayError(
                    f"the table has no seed {run.seed} of {where} (stage {run.stage!r}); its "
                    f"seeds there: {have}"
                )
            if len(mine) > 1:
                raise ReplayError(
                    f"the table has {len(mine)} rows of {where} with seed {run.seed}; a seed "
                    "column needs one row per condition, budget and seed"
                )
            return int(mine.index[0])
        key = (run.condition_id, run.budget_s if self.budgets is not None else 0)
        if key not in self._order:
            generator = np.random.default_rng([self.draw_seed, zlib.crc32(repr(key).encode())])
            self._order[key] = [int(i) for i in generator.permutation(candidates.index.to_numpy())]
        order, used = self._order[key], self._used.get(key, 0)
        if used == len(order):
            raise ReplayError(
                f"the table's {len(order)} replicates of {where} are all taken (stage "
                f"{run.stage!r} needs one more); add a seed column so runs of one seed share "
                "a value, or run fewer seeds"
            )
        self._used[key] = used + 1
        return order[used]

    def run_rows(self, runs: Sequence[PlannedRun], metric: str) -> pd.DataFrame:
        """Results-table rows for the planned runs, each a measured value of its condition
        (see the module docstring for which one), marked `replay` with the table's name."""
        out = []
        for run in runs:
            index = self._row(run)
            status = RunStatus(self.rows.at[index, STATUS])
            value = float(self.rows.at[index, metric])
            ended: dict[str, object] = {"status": status.value}
            if status != RunStatus.SUCCEEDED:
                # As a trainer's record of such a run: no metric, and why, where the user looks.
                ended |= {
                    metric: math.nan,
                    "reason": f"{status} in {self.name}, {self.places[index]}",
                }
            elif not math.isfinite(value):
                raise ReplayError(
                    f"table {self.places[index]}: {metric} is {value} for condition "
                    f"{run.condition_id} at {format_budget(run.budget_s)}; each run replayed "
                    "as succeeded needs a finite value (drop the row, give it one, or mark it "
                    "diverged or failed in a status column)"
                )
            else:
                ended[metric] = value
            out.append(
                run.to_row()
                | ended
                | {
                    "training_s": float(run.budget_s),
                    "wall_s": float(run.budget_s),
                    "replay": self.name,
                }
            )
        return pd.DataFrame(out)


def _budget_s(entry: object) -> int:
    """A budget column entry in seconds: a number of seconds or a duration such as 10m."""
    try:
        return parse_duration(str(entry))
    except ValueError as error:
        raise ReplayError(f"column {BUDGET}: {error}") from None


def _status(entry: object) -> str:
    """A status column entry: how the measured run ended; an empty entry reads as succeeded,
    so a table need mark only the runs that did not."""
    if entry is None or (isinstance(entry, float) and math.isnan(entry)) or not str(entry).strip():
        return RunStatus.SUCCEEDED.value
    text = str(entry).strip().lower()
    if text not in ENDINGS:
        raise ReplayError(
            f"column {STATUS}: {entry!r} is not how a run ended (succeeded, diverged or "
            "failed; an empty entry reads as succeeded)"
        )
    return text


def table_for(spec: StudySpec, frame: pd.DataFrame, name: str, draw_seed: int = 0) -> Table:
    """The table indexed for replaying `spec`'s runs (`name` marks the results), or
    ReplayError naming what is wrong; `draw_seed` orders the replicates of a table without
    a seed column."""
    metric = spec.metric.name
    if frame.empty:
        raise ReplayError("the table has no rows")
    needed = [factor.name for factor in spec.factors] + [metric]
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise ReplayError(
            f"no column {', '.join(missing)} (a column per factor, named as the factor, "
            f"and the metric {metric}; the table has {', '.join(map(str, frame.columns))})"
        )
    places = (
        [f"{frame.index.name} {label}" for label in frame.index]
        if frame.index.name in ("line", "row")
        else [f"row {number}" for number in range(1, len(frame) + 1)]
    )
    frame = frame.reset_index(drop=True)
    rows = pd.DataFrame(index=frame.index)
    read_as = {}
    factors = dict(zip(spec.codes, spec.factors, strict=True))
    for code, factor in factors.items():
        rows[code], read_as[factor.name] = _coded(frame[factor.name], factor)
    budgets = None
    if BUDGET in frame.columns:
        rows["budget_s"] = frame[BUDGET].map(_budget_s)
        budgets = sorted(int(b) for b in rows["budget_s"].unique())
    seeded = SEED in frame.columns
    if seeded:
        seeds = pd.to_numeric(frame[SEED], errors="coerce")
        if seeds.isna().any() or (seeds != seeds.round()).any():
            bad = frame[SEED][seeds.isna() | (seeds != seeds.round())].iloc[0]
            raise ReplayError(f"column {SEED}: {bad!r} is not a whole-number seed")
        rows[SEED] = seeds.astype(int)
    rows[STATUS] = frame[STATUS].map(_status) if STATUS in frame.columns else ENDINGS[0].value
    rows[metric] = pd.to_numeric(frame[metric], errors="coerce")
    return Table(name, rows, factors, read_as, budgets, seeded, draw_seed, places)
