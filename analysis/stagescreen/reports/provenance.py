"""The study report's Provenance section: what differed between the runs of one study.

Two runs of one study that disagree more than their noise suggests may not have run the same
thing: another trainer build, other data shards, another device or driver. Each run's record
carries its provenance (`stagescreen_contract.record.Provenance`) and the results table its
`provenance.*` columns; this section lists, for each field that takes more than one value
across the study's runs, the values and how many runs had each. A device that differs only
between pools is expected (a pool is a kind of machine) and is said per pool. Runs whose
records predate provenance are left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from stagescreen_contract.record import PROVENANCE_COLUMNS
from stagescreen_contract.status import RunStatus

DEVICE = "provenance.device"
NO_RECORD = (str(RunStatus.PENDING), str(RunStatus.RUNNING))
UNKNOWN = "unknown"
DIGEST_CHARS = 12  # a SHA-256 is told apart from another by its first 12 hex digits


def provenance_section(tables: Sequence[pd.DataFrame | None]) -> str:
    """The section's markdown from the stages' results tables (None: a stage not run)."""
    runs = _runs_with_provenance(tables)
    if runs.empty:
        return (
            "No run recorded its provenance (simulated runs, or records written before "
            "provenance was kept)."
        )
    differed = [name for name in PROVENANCE_COLUMNS if runs[name].nunique(dropna=False) > 1]
    device_by_pool = DEVICE in differed and _one_per_pool(runs, DEVICE)
    items = []
    for name in differed:
        label = name.removeprefix("provenance.")
        if name == DEVICE and device_by_pool:
            per_pool = "; ".join(
                f"pool {pool}: {_counts(group[name])}"
                for pool, group in runs.groupby("pool", sort=True)
            )
            items.append(f"- {label}, one per pool (expected): {per_pool}")
        else:
            items.append(f"- {label}: {_counts(runs[name])}")
    expected = {DEVICE} if device_by_pool else set()
    if set(differed) <= expected:  # nothing differed, or only the device between pools
        shared = "trainer and data" if device_by_pool else "trainer, data and device"
        head = f"All {_runs(len(runs))} share one {shared}."
    else:
        head = f"What differed between the study's {_runs(len(runs))}:"
    parts = [head, *(["", *items] if items else [])]
    missing = _ended(tables) - len(runs)
    if missing:
        verb = "is" if missing == 1 else "are"
        parts += ["", f"{_runs(missing)} without a record of provenance {verb} left out."]
    return "\n".join(parts)


def _runs_with_provenance(tables: Sequence[pd.DataFrame | None]) -> pd.DataFrame:
    """The runs, from every stage, whose record carried provenance (any field known)."""
    frames = [t for t in tables if t is not None and set(PROVENANCE_COLUMNS) <= set(t.columns)]
    if not frames:
        return pd.DataFrame(columns=[*PROVENANCE_COLUMNS, "pool"])
    runs = pd.concat(frames, ignore_index=True)
    return runs[runs[list(PROVENANCE_COLUMNS)].notna().any(axis=1)]


def _ended(tables: Sequence[pd.DataFrame | None]) -> int:
    """How many runs have a record (neither pending nor running)."""
    return sum(
        int((~t["status"].isin(NO_RECORD)).sum())
        for t in tables
        if t is not None and "status" in t.columns
    )


def _one_per_pool(runs: pd.DataFrame, name: str) -> bool:
    return bool((runs.groupby("pool")[name].nunique(dropna=False) == 1).all())


def _counts(values: pd.Series) -> str:
    """`value (n runs)` for each value, most runs first; a digest shortened, None `unknown`."""
    counts = values.map(_shown).value_counts(sort=False)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{value} ({_runs(count)})" for value, count in ordered)


def _shown(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return UNKNOWN
    text = str(value)
    is_digest = len(text) == 64 and all(c in "0123456789abcdef" for c in text)
    return text[:DIGEST_CHARS] if is_digest else text


def _runs(count: int) -> str:
    return f"{count} run{'s' if count != 1 else ''}"
