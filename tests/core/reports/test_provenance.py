"""The study report's Provenance section: what differed between the runs of one study, the
device said per pool when pools differ, and one line when nothing differed."""

from __future__ import annotations

import pandas as pd

from stagescreen.reports.provenance import provenance_section
from stagescreen_contract.record import Provenance

A100 = Provenance(
    trainer_version="0.1.0",
    trainer_commit="c" * 40,
    data_sha256={"shard_00.parquet": "a" * 64, "shard_01.parquet": "b" * 64},
    tokenizer_sha256={"tokenizer.pkl": "d" * 64},
    device="NVIDIA A100-SXM4-80GB",
    torch="2.13.0",
    cuda_runtime="12.8",
    cuda_driver="550.54.15",
    python="3.11.7",
)
L40S = A100.model_copy(update={"device": "NVIDIA L40S"})


def _table(runs: list[tuple[str, str, Provenance | None]]) -> pd.DataFrame:
    """A results table's rows: pool, status and the provenance.* columns of each run."""
    rows = []
    for pool, status, provenance in runs:
        columns = provenance.columns() if provenance else dict.fromkeys(A100.columns())
        rows.append({"pool": pool, "status": status, **columns})
    return pd.DataFrame(rows)


def test_a_device_that_differs_by_pool_is_said_per_pool_and_nothing_else_differed() -> None:
    screen = _table([("a100", "succeeded", A100)] * 3 + [("l40s", "succeeded", L40S)])
    confirm = _table([("a100", "failed", A100), ("a100", "pending", None)])
    text = provenance_section([screen, None, confirm])
    assert text.splitlines()[0] == "All 5 runs share one trainer and data."
    assert (
        "- device, one per pool (expected): pool a100: NVIDIA A100-SXM4-80GB (4 runs); "
        "pool l40s: NVIDIA L40S (1 run)"
    ) in text
    assert "left out" not in text  # the pending run has no record yet


def test_fields_that_differ_list_their_values_and_how_many_runs_each() -> None:
    other_data = A100.model_copy(update={"data_sha256": {"shard_00.parquet": "e" * 64}})
    mixed = L40S.model_copy(update={"cuda_driver": None})
    table = _table(
        [
            ("gpu", "succeeded", A100),
            ("gpu", "succeeded", A100),
            ("gpu", "succeeded", other_data),
            ("gpu", "succeeded", mixed),
            ("gpu", "succeeded", None),
        ]
    )
    text = provenance_section([table])
    lines = text.splitlines()
    assert lines[0] == "What differed between the study's 4 runs:"
    data = [line for line in lines if line.startswith("- data_sha256: ")]
    assert len(data) == 1 and "(3 runs)" in data[0] and "(1 run)" in data[0]
    assert "- device: NVIDIA A100-SXM4-80GB (3 runs), NVIDIA L40S (1 run)" in lines
    assert "- cuda_driver: 550.54.15 (3 runs), unknown (1 run)" in lines
    assert not any(line.startswith(("- torch", "- python", "- trainer")) for line in lines)
    assert lines[-1] == "1 run without a record of provenance is left out."


def test_one_trainer_data_and_device_is_one_line() -> None:
    text = provenance_section([_table([("a100", "succeeded", A100)] * 2)])
    assert text == "All 2 runs share one trainer, data and device."


def test_tables_without_provenance_say_so() -> None:
    older = pd.DataFrame([{"pool": "a100", "status": "succeeded", "val_bpb": 1.0}])
    assert provenance_section([older, None]).startswith("No run recorded its provenance")
