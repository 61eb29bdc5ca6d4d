"""Whole runs as a Job runs them (`python -m stagescreen_trainer`): record, determinism,
kill-and-resume with SIGKILL and SIGTERM, divergence, and S3 in and out."""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch
from seaweed import S3Bucket
from trainer_support import Prepared, read_record, run_trainer, tiny_env, trainer_command

from stagescreen_trainer.data import split_shards
from stagescreen_trainer.device import compute_dtype
from stagescreen_trainer.prepare import validation_tokens
from stagescreen_trainer.storage import Location
from stagescreen_trainer.tokenizer import Tokenizer

CONTRACT_FIELDS = {
    "schema_version", "study", "stage", "run_id", "condition_id", "coded_levels",
    "hyperparameters", "budget_s", "seed", "pool", "status", "val_bpb", "train_loss", "steps",
    "tokens", "parameters", "training_s", "eval_s", "wall_s", "tokens_per_s", "mfu",
    "peak_memory_bytes", "device", "provenance", "resumed_from",
    "started_at", "finished_at", "attention",
}  # fmt: skip
CURVE_COLUMNS = {"step", "elapsed_s", "tokens", "train_loss", "lr"}
STEPS = 60
TRAINING = re.compile(r"^step (\d+) \| training (\d+\.\d+)s/")


class Watched:
    """A trainer process whose progress lines are read as they come."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            trainer_command(), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def last_progress(self) -> tuple[int, float]:
        found = [TRAINING.match(line) for line in self.lines]
        steps = [(int(m[1]), float(m[2])) for m in found if m]
        return steps[-1] if steps else (0, 0.0)

    def wait_until(
        self, reached: Callable[[int, float], bool], timeout: float = 90
    ) -> tuple[int, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            progress = self.last_progress()
            if reached(*progress):
                return progress
            assert self.process.poll() is None, f"trainer ended early: {self.lines[-5:]}"
            time.sleep(0.02)
        raise AssertionError(f"no progress in {timeout}s: {self.lines[-5:]}")

    def finish(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        self.reader.join(timeout)
        return code


def losses(folder: Path) -> list[float]:
    return [
        float(x) for x in pq.read_table(folder / "curve.parquet").column("train_loss").to_pylist()
    ]


@pytest.fixture(scope="module")
def reference(quickstart: Prepared, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of STEPS steps, the yardstick for determinism and resume."""
    out = tmp_path_factory.mktemp("reference")
    identity = {"STUDY": "demo", "STAGE": "screen", "RUN_ID": "c07-s1-b120", "CONDITION_ID": "c07"}
    env = tiny_env(
        quickstart, str(out), MAX_STEPS=STEPS, POOL="cpu", CODED_LEVELS='{"A": -1}', **identity
    )
    done = run_trainer(env)
    assert done.returncode == 0, done.stderr
    return out


def test_a_cpu_run_writes_a_complete_record_curve_and_log(reference: Path) -> None:
    record = read_record(reference)
    assert record.keys() >= CONTRACT_FIELDS
    assert record["status"] == "succeeded" and record["reason"] == ""
    assert (record["study"], record["run_id"], record["condition_id"]) == (
        "demo",
        "c07-s1-b120",
        "c07",
    )
    assert record["coded_levels"] == {"A": -1} and record["pool"] == "cpu"
    assert record["hyperparameters"]["DEPTH"] == 2 and record["hyperparameters"]["SEQ_LEN"] == 64
    assert record["steps"] == STEPS and record["tokens"] == STEPS * 512
    assert 0 < record["val_bpb"] < 8 and record["mfu"] > 0 and record["tokens_per_s"] > 0
    assert "band mask" in record["attention"]  # masks made at set-up, before any compile
    expected_dtype = str(compute_dtype(torch.device("cpu"), "auto")).removeprefix("torch.")
    assert record["compute_dtype"] == record["orthogonal_dtype"] == expected_dtype
    assert all(record["provenance"][name] for name in ("python", "torch", "device", "host"))
    assert all(record["provenance"]["libraries"][name] for name in ("pyarrow", "tiktoken"))
    curve = pq.read_table(reference / "curve.parquet")
    assert set(curve.column_names) >= CURVE_COLUMNS
    assert curve.column("step").to_pylist() == list(range(1, STEPS + 1))
    log = (reference / "log.txt").read_text()
    assert "val_bpb:" in log and "step 00001" in log


def test_eval_tokens_beyond_the_shard_scores_it_once_and_says_so(
    quickstart: Prepared, reference: Path, tmp_path: Path
) -> None:
    assert (
        read_record(reference)["eval_tokens"] == 2048 and read_record(reference)["warnings"] == []
    )
    done = run_trainer(tiny_env(quickstart, str(tmp_path), MAX_STEPS=2, EVAL_TOKENS=10**9))
    assert done.returncode == 0, done.stderr
    record = read_record(tmp_path)
    tokenizer = Tokenizer.load(quickstart.tokenizer)
    _, val = split_shards(Location(str(quickstart.data)))
    texts = pq.read_table(quickstart.data / val).column("text").to_pylist()
    assert record["eval_tokens"] == validation_tokens(tokenizer, texts)
    assert record["eval_bytes"] == sum(len(t.encode("utf-8")) for t in texts)
    assert len(record["warnings"]) == 1 and "EVAL_TOKENS=1000000000" in record["warnings"][0]
    assert "warning: EVAL_TOKENS" in done.stdout


def test_same_seed_and_config_give_an_identical_loss_curve(
    quickstart: Prepared, reference: Path, tmp_path: Path
) -> None:
    done = run_trainer(tiny_env(quickstart, str(tmp_path), MAX_STEPS=STEPS))
    assert done.returncode == 0, done.stderr
    assert losses(tmp_path) == losses(reference)
    assert read_record(tmp_path)["val_bpb"] == read_record(reference)["val_bpb"]
    other = tmp_path / "seed"
    done = run_trainer(tiny_env(quickstart, str(other), MAX_STEPS=8, RUN_SEED=7))
    assert done.returncode == 0, done.stderr
    assert losses(other) != losses(reference)[:8]


def test_sigterm_checkpoints_and_the_restart_continues_the_same_curve(
    quickstart: Prepared, reference: Path, tmp_path: Path
) -> None:
    env = tiny_env(quickstart, str(tmp_path), MAX_STEPS=STEPS, PROGRESS_EVERY=0.01)
    first = Watched(env)
    first.wait_until(lambda step, _: step >= 15)
    first.process.send_signal(signal.SIGTERM)
    assert first.finish() == 75
    assert (tmp_path / "ckpt" / "state.pt").is_file()
    assert not (tmp_path / "result.json").exists()  # not finished: no record yet
    done = run_trainer(env)
    assert done.returncode == 0, done.stderr
    record = read_record(tmp_path)
    assert 15 <= record["resumed_from"]["step"] < STEPS
    assert losses(tmp_path) == losses(reference)  # model, optimiser, data, RNG all restored
    assert record["val_bpb"] == read_record(reference)["val_bpb"]


def resume_after(
    sig: signal.Signals, quickstart: Prepared, out: Path, budget: float, every: float
) -> tuple[dict[str, Any], float]:
    env = tiny_env(quickstart, str(out), TIME_BUDGET=budget, CHECKPOINT_EVERY=every)
    first = Watched(env)
    first.wait_until(lambda _, training: training >= budget / 2)
    first.process.send_signal(sig)
    code = first.finish()
    _, reached = first.last_progress()
    assert code == (-9 if sig == signal.SIGKILL else 75), first.process.stderr
    done = run_trainer(env)
    assert done.returncode == 0, done.stderr
    record = read_record(out)
    elapsed = pq.read_table(out / "curve.parquet").column("elapsed_s").to_pylist()
    longest_step = max(b - a for a, b in itertools.pairwise(elapsed))
    assert record["status"] == "succeeded" and record["resumed_from"] is not None
    assert budget <= record["training_s"] <= budget + longest_step  # stops at the budget
    lost = reached - record["resumed_from"]["training_s"]  # work redone after the restart
    assert lost <= every + longest_step
    assert budget <= record["training_s"] + max(lost, 0) <= budget + every + 2 * longest_step
    assert "resumed from" in (out / "log.txt").read_text()
    return record, lost


def test_sigkill_mid_run_then_restart_finishes_within_one_checkpoint_interval(
    quickstart: Prepared, tmp_path: Path
) -> None:
    record, _ = resume_after(signal.SIGKILL, quickstart, tmp_path, budget=4.0, every=1.0)
    assert record["resumed_from"]["training_s"] >= 1.0  # an interval checkpoint was taken


def test_sigterm_mid_run_loses_no_training_time(quickstart: Prepared, tmp_path: Path) -> None:
    _, lost = resume_after(signal.SIGTERM, quickstart, tmp_path, budget=4.0, every=100.0)
    assert lost <= 0.0  # the checkpoint was taken at the signal, after the last progress line


def test_exploding_learning_rate_ends_diverged_with_a_record(
    quickstart: Prepared, tmp_path: Path
) -> None:
    huge = {"EMBEDDING_LR": "1e30", "UNEMBEDDING_LR": "1e30", "MATRIX_LR": "1e30"}
    done = run_trainer(tiny_env(quickstart, str(tmp_path), MAX_STEPS=20, **huge))
    assert done.returncode == 3
    record = read_record(tmp_path)
    assert record["status"] == "diverged" and record["val_bpb"] is None
    assert "nan" in record["reason"] and record["reason"] in done.stderr
    assert record["steps"] < 20


def test_reads_data_from_and_writes_everything_to_seaweedfs_s3(
    quickstart: Prepared, s3_bucket: S3Bucket
) -> None:
    s3_bucket.upload(quickstart.data, "corpus/shards")
    s3_bucket.upload(quickstart.tokenizer, "corpus/tokenizer")
    root = s3_bucket.uri()
    env = tiny_env(
        Prepared(data=Path("unused"), tokenizer=Path("unused")),
        f"{root}/demo/runs/r1",
        DATA_URI=f"{root}/corpus/shards",
        TOKENIZER_URI=f"{root}/corpus/tokenizer",
        MAX_STEPS=6,
        CHECKPOINT_EVERY=0.001,
        RUN_ID="r1",
        **s3_bucket.endpoint.env(),  # tiny_env leaves the test's AWS_ variables out
    )
    done = run_trainer(env)
    assert done.returncode == 0, done.stderr
    keys = set(s3_bucket.stored_keys("demo/"))
    expected = {"result.json", "curve.parquet", "log.txt", "ckpt/state.pt"}
    assert keys == {f"demo/runs/r1/{name}" for name in expected}
    record = json.loads(s3_bucket.read("demo/runs/r1/result.json"))
    assert record["status"] == "succeeded" and record["run_id"] == "r1" and record["val_bpb"] > 0


def test_missing_shards_fail_with_a_record_naming_data_uri(
    quickstart: Prepared, tmp_path: Path
) -> None:
    empty = tmp_path / "no-shards"
    empty.mkdir()
    done = run_trainer(
        tiny_env(quickstart, str(tmp_path / "out"), DATA_URI=str(empty), MAX_STEPS=2)
    )
    assert done.returncode == 4
    record = read_record(tmp_path / "out")
    assert record["status"] == "failed" and record["steps"] == 0
    assert f"DATA_URI={str(empty)!r}" in record["reason"] and "need at least 2" in record["reason"]
    # The console gets the one-line reason; the traceback goes to log.txt only.
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"failed: {record['reason']}"
    assert "Traceback" in (tmp_path / "out" / "log.txt").read_text()


@pytest.mark.skipif(
    not Path("/proc/sys/vm/overcommit_memory").is_file()
    or Path("/proc/sys/vm/overcommit_memory").read_text().strip() != "0",
    reason="needs the kernel to refuse absurd allocations (overcommit heuristic mode)",
)
def test_a_model_too_big_for_memory_fails_as_out_of_memory(
    quickstart: Prepared, tmp_path: Path
) -> None:
    # width 2^20: each block matrix alone would need 4 TiB
    env = tiny_env(quickstart, str(tmp_path), DEPTH=1, ASPECT_RATIO=2**20, HEAD_DIM=64, MAX_STEPS=2)
    done = run_trainer(env)
    assert done.returncode == 4
    record = read_record(tmp_path)
    assert record["status"] == "failed" and record["reason"].startswith("out of memory: ")


def test_a_loss_above_the_limit_ends_diverged_naming_the_limit(
    quickstart: Prepared, tmp_path: Path
) -> None:
    """Exploding (not only NaN) losses stop the run: here every loss is above the limit."""
    done = run_trainer(tiny_env(quickstart, str(tmp_path), MAX_STEPS=20, DIVERGE_LOSS=0.5))
    assert done.returncode == 3
    record = read_record(tmp_path)
    assert record["status"] == "diverged" and record["steps"] == 1
    assert "DIVERGE_LOSS=0.5" in record["reason"]


def test_a_run_long_enough_to_checkpoint_saves_its_training_before_evaluation(
    quickstart: Prepared, tmp_path: Path
) -> None:
    """An eviction during evaluation must cost the evaluation only: a restart resumes at the
    budget, trains no further and reproduces the same val_bpb."""
    env = tiny_env(quickstart, str(tmp_path), TIME_BUDGET=3, CHECKPOINT_EVERY=1)
    first = run_trainer(env)
    assert first.returncode == 0, first.stderr
    assert "checkpoint (before evaluation)" in (tmp_path / "log.txt").read_text()
    finished = read_record(tmp_path)
    again = run_trainer(env)
    assert again.returncode == 0, again.stderr
    record = read_record(tmp_path)
    assert record["resumed_from"]["training_s"] >= 3
    assert record["steps"] == finished["steps"]
    assert record["val_bpb"] == finished["val_bpb"]
