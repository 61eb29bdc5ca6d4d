"""`stagescreen run` end to end with the real trainer: a whole study, and a study killed at
several points and started again, which must end with the same runs and nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from seaweed import S3Bucket
from trainer_support import Prepared

from stagescreen.storage.keys import StudyKeys
from stagescreen.storage.store import LocalStore

# Deterministic runs (MAX_STEPS, one thread each), so an interrupted study must reproduce an
# uninterrupted one exactly: same records, same anchors, same run ids.
STUDY = """
apiVersion: stagescreen.dev/v1alpha1
kind: ScreeningStudy
metadata: {{name: tiny}}
spec:
  factors:
    - {{name: DEPTH, code: A, low: 1, high: 2, scale: integer}}
    - {{name: MATRIX_LR, code: B, low: 0.02, high: 0.06}}
  design: {{type: full}}
  stages:
    - {{name: screen, kind: screen, budgets: [30s], seeds: [1]}}
    - name: confirm
      kind: confirm
      budgets: [30s]
      seeds: [1, 2]
      select:
        - {{from: screen, rule: best, role: best}}
        - {{from: screen, rule: worst, role: worst}}
  pools: [{{name: cpu, gpus: 0}}]
  storage: {{local: {{path: {store}}}}}
  trainer:
    dataUri: {data}
    tokenizerUri: {tokenizer}
    hyperparameters: {{ASPECT_RATIO: 32, HEAD_DIM: 32, SEQ_LEN: 64, DEVICE_BATCH_SIZE: 8,
                      TOTAL_BATCH_SIZE: 512, EVAL_TOKENS: 2048, MAX_STEPS: 200,
                      EXCLUDE_STEPS: 1, PEAK_FLOPS: 1.0e+11, CHECKPOINT_EVERY: 0.2}}
  limits: {{parallelism: 2}}
"""


def write_study(folder: Path, quickstart: Prepared) -> Path:
    path = folder / "tiny.yaml"
    store = folder / "store"
    path.write_text(STUDY.format(store=store, data=quickstart.data, tokenizer=quickstart.tokenizer))
    return path


def command(study: Path) -> list[str]:
    stagescreen = Path(sys.executable).parent / "stagescreen"
    return [str(stagescreen), "run", str(study), "--workers", "2"]


def with_home(folder: Path) -> dict[str, str]:
    """The environment with HOME in `folder`, so the executor's trainer logs are this test's."""
    return {**os.environ, "HOME": str(folder)}


def wait_until_training(home: Path, started_line: str, timeout: float = 120) -> None:
    """Until the trainer the executor announced in `started_line` has taken a step: from
    then on SIGTERM makes it checkpoint (a fixed sleep raced a slow start-up on a busy host)."""
    run_id = started_line.split("start ", 1)[1].split()[0]
    log = home / ".cache" / "stagescreen" / "logs" / "tiny" / f"{run_id}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and any(line.startswith("step ") for line in log.read_text().splitlines()):
            return
        time.sleep(0.1)
    raise AssertionError(f"{run_id} took no step in {timeout:.0f} s; its log: {log}")


def records(folder: Path) -> dict[str, dict[str, Any]]:
    store = LocalStore(folder / "store")
    keys = StudyKeys("tiny")
    found = {}
    for key in store.list(keys.runs_prefix()):
        if key.endswith("/result.json"):
            record = store.get_json(key)
            found[record["run_id"]] = record
    return found


@pytest.fixture(scope="module")
def uninterrupted(quickstart: Prepared, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted")
    done = subprocess.run(
        command(write_study(folder, quickstart)), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "study tiny: Succeeded" in done.stdout
    return folder


def test_a_study_runs_to_its_report(uninterrupted: Path) -> None:
    found = records(uninterrupted)
    stages = {record["stage"] for record in found.values()}
    assert stages == {"screen", "confirm"} and len(found) == 4 + 2 * 2  # 2 anchors x 2 seeds
    assert all(record["status"] == "succeeded" for record in found.values())
    study = uninterrupted / "store" / "tiny"
    for name in ("spec.yaml", "manifest.json", "report.md"):
        assert (study / name).is_file(), name
    outcome = json.loads((study / "stages" / "confirm" / "outcome.json").read_text())
    assert outcome["stage"] == "confirm"
    # a trained study's report answers first: what it found, what to run next, how sure
    report = (study / "report.md").read_text()
    assert report.split("\n## ")[1].startswith("Decision\n")
    decision = report.split("## Decision")[1].split("\n## ")[0]
    for part in ("What the study found", "What to run next", "How far to trust it"):
        assert f"**{part}**" in decision
    assert f"`{outcome['best_per_pool'][0]['condition_id']}`" in decision
    assert "SYNTHETIC" not in decision and "8 runs planned (8 succeeded" in decision


@pytest.mark.parametrize(
    ("kill_after", "signal_to_send"),
    [
        ("start screen-c01", signal.SIGKILL),  # mid-run: the trainers checkpoint and resume
        ("succeeded screen-c03", signal.SIGKILL),  # between runs of the screen
        ("analysed stage screen", signal.SIGKILL),  # right after an analysis, before confirm
        ("start confirm", signal.SIGINT),  # Ctrl-C
    ],
)
def test_a_killed_study_resumes_to_the_same_runs(
    quickstart: Prepared,
    uninterrupted: Path,
    tmp_path: Path,
    kill_after: str,
    signal_to_send: signal.Signals,
) -> None:
    study = write_study(tmp_path, quickstart)
    env = with_home(tmp_path)
    process = subprocess.Popen(
        command(study), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if kill_after in line:
            if kill_after.startswith("start"):
                wait_until_training(tmp_path, line)
            else:
                time.sleep(0.2)
            process.send_signal(signal_to_send)
            break
    process.wait(timeout=120)
    assert any(kill_after in line for line in seen), "".join(seen)
    time.sleep(1.0)  # trainers orphaned by SIGKILL get SIGTERM, checkpoint and exit
    done = subprocess.run(command(study), capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = records(uninterrupted)
    got = records(tmp_path)
    assert set(got) == set(expected)
    for run_id, record in got.items():
        assert record["status"] == "succeeded", (run_id, record["reason"])
        assert record["val_bpb"] == expected[run_id]["val_bpb"], run_id
    resumed = [r for r in got.values() if r["resumed_from"]]
    if kill_after.startswith("start"):
        assert resumed, "a run killed mid-way resumes from its checkpoint"


def test_status_reads_where_the_study_stands_from_its_store(uninterrupted: Path) -> None:
    stagescreen = Path(sys.executable).parent / "stagescreen"
    done = subprocess.run(
        [str(stagescreen), "status", str(uninterrupted / "store" / "tiny")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "study phase Succeeded, 8/8 runs ended"
    screen = next(line for line in lines if line.startswith("screen"))
    assert screen.split() == ["screen", "screen", "Succeeded", "4", "4", "0", "0", "0"]
    assert any(line.startswith("  screen: retained ") for line in lines)
    assert next(line for line in lines if line.startswith("best so far: c0"))
    assert any(line.startswith("compute: cpu 0.0") and "CPU run-h" in line for line in lines)
    assert "started, not ended: none" in lines


def test_run_rejects_a_bad_device_and_store_before_any_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stagescreen_operator.cli import app

    quickstart = str(Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml")
    runner = CliRunner()
    bad_device = runner.invoke(app, ["run", quickstart, "--device", "tpu"])
    assert bad_device.exit_code == 2 and "--device='tpu'" in bad_device.output
    bad_store = runner.invoke(app, ["run", quickstart, "--store", "ftp://somewhere"])
    assert bad_store.exit_code == 2 and "--store 'ftp://somewhere'" in bad_store.output


def test_run_refuses_a_folder_holding_another_spec_before_any_work(tmp_path: Path) -> None:
    """Rerunning a study resumes it; the same name with other levels into the same --store
    would mix two specs' runs, so it is refused, naming the folder and the ways out."""
    from datetime import UTC, datetime

    from typer.testing import CliRunner

    from stagescreen.storage.ownership import claim_folder
    from stagescreen.study.parse import load_study, parse_study
    from stagescreen_operator.cli import app

    quickstart = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
    study = load_study(quickstart)
    document = study.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["factors"][0]["high"] += 1
    store = LocalStore(tmp_path / "store")
    # a dumped spec holds budgets in whole seconds, as a stored one does
    claimed = claim_folder(
        store, parse_study(document, stored=True), uid=None, now=datetime.now(UTC)
    )
    assert claimed is None
    before = store.list()
    refused = CliRunner().invoke(app, ["run", str(quickstart), "--store", str(store.root)])
    assert refused.exit_code == 2, refused.output
    said = " ".join(refused.output.split())
    assert f"storage folder {store.uri(study.metadata.name)}/ holds the runs" in said
    assert "differs in spec.factors" in said
    assert "another --store" in said and "another metadata.name" in said
    assert store.list() == before  # nothing written: no spec, no corpus, no run


def test_a_study_on_s3_killed_mid_run_resumes_to_the_same_runs(
    quickstart: Prepared,
    uninterrupted: Path,
    tmp_path: Path,
    s3_bucket: S3Bucket,
) -> None:
    """The same study with every record, checkpoint and outcome on SeaweedFS S3."""
    study = write_study(tmp_path, quickstart)
    store = s3_bucket.uri("studies")
    env = with_home(tmp_path)
    process = subprocess.Popen(
        [*command(study), "--store", store],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "start screen-c02" in line:
            wait_until_training(tmp_path, line)
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=120)
    time.sleep(1.0)
    done = subprocess.run(
        [*command(study), "--store", store], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    keys = s3_bucket.stored_keys("studies/tiny/")
    results = {
        key.split("/")[3]: json.loads(s3_bucket.read(key))
        for key in keys
        if key.endswith("/result.json")
    }
    expected = records(uninterrupted)
    assert set(results) == set(expected)
    assert all(results[r]["val_bpb"] == expected[r]["val_bpb"] for r in expected)
    assert any(r["resumed_from"] for r in results.values())
    assert "studies/tiny/report.md" in keys
