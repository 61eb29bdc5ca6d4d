"""The run contract end to end: a planned run's environment starts the real trainer, its
record is a valid `RunRecord`, and it joins the plan in the results table; an executor's
failure record is a `RunRecord` too."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
from trainer_support import Prepared, trainer_command

from stagescreen.planning.environment import run_environment, run_folder
from stagescreen.planning.planner import plan_stage
from stagescreen.planning.plans import StagePlan
from stagescreen.planning.results import failure_record, results_table
from stagescreen.storage.keys import RESULT, StudyKeys
from stagescreen.storage.store import LocalStore
from stagescreen.study.parse import load_study
from stagescreen_contract.record import PROVENANCE_COLUMNS, Provenance, RunRecord
from stagescreen_contract.status import RunStatus
from stagescreen_trainer import __version__

STUDY = """
apiVersion: stagescreen.dev/v1alpha1
kind: ScreeningStudy
metadata: {name: contract}
spec:
  factors:
    - {name: DEPTH, code: A, low: 1, high: 2, scale: integer}
    - {name: MATRIX_LR, code: B, low: 0.02, high: 0.04}
  design: {type: full}
  stages:
    - {name: screen, kind: screen, budgets: [30s], seeds: [3]}
  pools: [{name: cpu}]
  trainer:
    hyperparameters: {ASPECT_RATIO: 32, HEAD_DIM: 32, SEQ_LEN: 64, DEVICE_BATCH_SIZE: 8,
                      TOTAL_BATCH_SIZE: 512, EVAL_TOKENS: 2048, MAX_STEPS: 3, THREADS: 1,
                      PEAK_FLOPS: 1.0e11, EXCLUDE_STEPS: 1}
    env: {PROGRESS_EVERY: "5"}
"""


@pytest.fixture(scope="module")
def plan() -> StagePlan:
    spec = load_study(STUDY).spec
    return plan_stage(spec, spec.stage("screen"), pd.DataFrame())


def test_a_planned_runs_environment_trains_it_and_its_record_joins_the_plan(
    quickstart: Prepared, plan: StagePlan, tmp_path: Path
) -> None:
    spec = load_study(STUDY).spec
    store = LocalStore(tmp_path)
    run = plan.runs[3]  # c04: DEPTH=2, MATRIX_LR=0.04
    corpus = {"DATA_URI": str(quickstart.data), "TOKENIZER_URI": str(quickstart.tokenizer)}
    env = run_environment(spec, "contract", run, store.uri(run_folder("contract", run)), corpus)
    assert (env["DEPTH"], env["MATRIX_LR"], env["TIME_BUDGET"], env["RUN_SEED"]) == (
        "2",
        "0.04",
        "30",
        "3",
    )
    done = subprocess.run(
        trainer_command(), env={**_base_env(), **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    written = json.loads(store.get_text(StudyKeys("contract").run(run.run_id, RESULT)))
    record = RunRecord.model_validate(written)
    # the model holds every field the trainer writes, with the values it wrote
    assert record.model_extra == {}
    assert record.model_dump(mode="json") == written
    assert record.status == RunStatus.SUCCEEDED and record.steps == 3
    assert record.val_bpb is not None and record.tokens_per_s is not None
    # what the trainer passes through is the plan's identity, in the record's own shapes
    assert (record.run_id, record.condition_id, record.stage) == (
        run.run_id,
        run.condition_id,
        "screen",
    )
    assert record.coded_levels == dict(run.levels) and record.budget_s == 30.0
    assert record.hyperparameters["DEPTH"] == 2 and record.hyperparameters["MATRIX_LR"] == 0.04
    # provenance: the files it read, hashed; the device and its software
    provenance = record.provenance
    assert provenance is not None
    validation = sorted(quickstart.data.glob("*.parquet"))[-1].name
    assert validation in provenance.data_sha256
    assert provenance.data_sha256 == {
        name: hashlib.sha256((quickstart.data / name).read_bytes()).hexdigest()
        for name in provenance.data_sha256
    }
    assert provenance.tokenizer_sha256 == {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in quickstart.tokenizer.iterdir()
        if path.name in provenance.tokenizer_sha256
    }
    assert len(provenance.tokenizer_sha256) == 3
    assert provenance.trainer_version == __version__ and provenance.image_digest is None
    assert provenance.device and provenance.torch == torch.__version__ and provenance.host
    assert set(provenance.libraries) == {"pyarrow", "tiktoken", "boto3"}
    assert provenance.python == platform.python_version()

    joined = results_table(
        plan.runs, {run.run_id: record}, "val_bpb", running=[plan.runs[0].run_id]
    )
    table = joined.table.set_index("run_id")
    row = table.loc[run.run_id]
    assert row["status"] == "succeeded" and row["val_bpb"] == record.val_bpb
    assert (row["A"], row["B"], row["budget_s"], row["condition_id"]) == (1, 1, 30, "c04")
    assert row["steps"] == 3 and row["wall_s"] > 0
    assert row["provenance.device"] == provenance.device
    assert row["provenance.data_sha256"] == provenance.columns()["provenance.data_sha256"]
    assert pd.isna(table.loc[plan.runs[0].run_id, "provenance.device"])
    assert table.loc[plan.runs[0].run_id, "status"] == "running"
    assert table.loc[plan.runs[1].run_id, "status"] == "pending"
    assert math.isnan(table.loc[plan.runs[1].run_id, "val_bpb"])


def test_records_of_no_planned_run_are_reported_not_joined(plan: StagePlan) -> None:
    failed = RunRecord(status=RunStatus.FAILED, reason="out of memory: ...")
    records = {
        plan.runs[0].run_id: failed,
        "screen-c99-30s-s3-cpu": RunRecord(status=RunStatus.SUCCEEDED),
    }
    joined = results_table(plan.runs, records, "val_bpb")
    assert joined.unplanned == ("screen-c99-30s-s3-cpu",)
    assert len(joined.table) == len(plan.runs)
    first = joined.table.iloc[0]
    assert first["status"] == "failed" and math.isnan(first["val_bpb"])
    assert first["reason"].startswith("out of memory")


def test_an_unknown_status_in_a_record_is_an_error() -> None:
    with pytest.raises(ValueError, match="'finished'"):
        RunRecord.model_validate({"status": "finished"})


def test_an_executors_failure_record_is_a_run_record(plan: StagePlan) -> None:
    run = plan.runs[1]
    record = failure_record("contract", run, "the Job ended: BackoffLimitExceeded", 12.5)
    read = RunRecord.model_validate(json.loads(json.dumps(record.model_dump(mode="json"))))
    assert read == record
    assert (read.status, read.reason, read.wall_s) == (
        RunStatus.FAILED,
        "the Job ended: BackoffLimitExceeded",
        12.5,
    )
    assert (read.run_id, read.condition_id, read.pool, read.seed) == (
        run.run_id,
        run.condition_id,
        run.pool,
        run.seed,
    )
    assert read.coded_levels == dict(run.levels) and read.val_bpb is None and read.steps == 0


def test_an_older_record_reads_through_the_one_before_validator() -> None:
    """NaN where a number was not measured, a status written with capitals, a null count:
    what a hand-written or older record holds still reads."""
    read = RunRecord.model_validate(
        {"status": " Succeeded ", "val_bpb": float("nan"), "steps": None, "pool": None}
    )
    assert (read.status, read.val_bpb, read.steps, read.pool) == (RunStatus.SUCCEEDED, None, 0, "")


def test_a_record_with_provenance_reads_back_and_one_without_reads_as_none() -> None:
    provenance = Provenance(
        trainer_version="0.1.0",
        data_sha256={"shard_01.parquet": "b" * 64, "shard_00.parquet": "a" * 64},
        device="NVIDIA A100-SXM4-80GB",
    )
    record = RunRecord(status=RunStatus.SUCCEEDED, provenance=provenance)
    read = RunRecord.model_validate(json.loads(json.dumps(record.model_dump(mode="json"))))
    assert read == record and read.provenance == provenance
    columns = provenance.columns()
    manifest = f"{'a' * 64}  shard_00.parquet\n{'b' * 64}  shard_01.parquet\n"
    assert columns["provenance.data_sha256"] == hashlib.sha256(manifest.encode()).hexdigest()
    assert columns["provenance.tokenizer_sha256"] is None
    assert columns["provenance.device"] == "NVIDIA A100-SXM4-80GB"
    assert tuple(columns) == PROVENANCE_COLUMNS
    older = RunRecord.model_validate({"status": "succeeded", "val_bpb": 1.2})
    assert older.provenance is None
    assert RunRecord.model_validate({"status": "failed", "provenance": None}).provenance is None
    # a record of a trainer before provenance kept its host, versions and device name apart
    before = {
        "status": "succeeded",
        "host": "node-7",
        "device_name": "NVIDIA L40S",
        "code_version": "abc123",
        "versions": {"python": "3.11.7", "torch": "2.13.0", "cuda": None, "pyarrow": "21.0"},
    }
    moved = RunRecord.model_validate(before).provenance
    assert moved == Provenance(
        trainer_version="abc123",
        device="NVIDIA L40S",
        torch="2.13.0",
        python="3.11.7",
        libraries={"pyarrow": "21.0"},
        host="node-7",
    )
    assert "host" not in RunRecord.model_validate(before).model_dump()
    assert moved.columns()["provenance.libraries"] == "pyarrow 21.0"


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
