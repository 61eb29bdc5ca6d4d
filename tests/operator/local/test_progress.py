"""What `stagescreen run` shows: the trainer's progress lines read back, the ETA, the live
panel on a terminal and plain lines elsewhere."""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

from stagescreen.outcomes.status import StudyStatus, study_status
from stagescreen.study.parse import load_study
from stagescreen_operator.controller import Decision, Observed, decide
from stagescreen_operator.local.executor import Child, LocalExecutor
from stagescreen_operator.local.progress import (
    eta_seconds,
    panel,
    progress_events,
    run_progress,
)

ROOT = Path(__file__).resolve().parents[3]
STUDY = load_study(ROOT / "examples" / "quickstart.yaml")
# Lines as the trainer prints them (stagescreen_trainer.train.Trainer.progress_line).
LOG = (
    "device: cpu, threads 1\n"
    "step 00001 | training 0.00s/15s (0.0%) | loss 6.9316 | lrm 1.00 | 3,684 tok/s | mfu 0.1% "
    "| epoch 1 | eta 15s\n"
    "step 00207 | training 9.62s/15s (64.1%) | loss 3.8138 | lrm 0.72 | 25,200 tok/s | "
    "mfu 0.7% | epoch 1 | eta 5s\n"
)


def test_the_latest_progress_line_gives_step_loss_and_budget_fraction() -> None:
    seen = run_progress(LOG)
    assert seen is not None
    assert (seen.step, seen.loss) == (207, 3.8138)
    assert seen.fraction == pytest.approx(9.62 / 15)
    assert run_progress("device: cpu, threads 1\n") is None


def test_eta_counts_planned_runs_and_prices_the_stages_not_planned_yet() -> None:
    decision = decide(STUDY.spec, Observed())
    # Screen: 8 runs of 5 s and 8 of 15 s, each + 5 s overhead, on 2 slots = 120 s; then the
    # unplanned confirm (6 x 10 s + 6 x 20 s on 2 slots = 90 s) and longer (4 x 50 s / 2).
    assert eta_seconds(STUDY, decision, {}, slots=2) == pytest.approx(120 + 90 + 100)
    # A run 4 s into its budget has 4 s less to go.
    running = decision.actions[0].run.run_id  # type: ignore[union-attr]
    started = decide(STUDY.spec, Observed(running=frozenset({running})))
    later = eta_seconds(STUDY, started, {running: 4.0}, slots=2)
    assert later == pytest.approx(120 + 90 + 100 - 4.0 / 2)


def status_of(decision: Decision) -> StudyStatus:
    """The status the executor's snapshot builds for `decision`, no stage analysed yet."""
    return study_status(
        STUDY.spec,
        decision.phase,
        decision.results,
        {},
        reason=decision.reason,
        waiting=decision.waiting,
    )


def child_with_log(tmp_path: Path, text: str) -> Child:
    log = tmp_path / "run.log"
    log.write_text(text)
    run = decide(STUDY.spec, Observed()).actions[0].run  # type: ignore[union-attr]
    process = subprocess.Popen(["true"])
    process.wait()
    return Child(run, process, log.open("ab"), time.monotonic() - 3)


def test_the_live_panel_shows_stages_clock_and_each_running_run(tmp_path: Path) -> None:
    child = child_with_log(tmp_path, LOG)
    observed = Observed(running=frozenset({child.run.run_id}))
    decision = decide(STUDY.spec, observed)
    console = Console(record=True, width=150)
    console.print(panel(STUDY, decision, status_of(decision), {child.run.run_id: child}, 75, 2))
    text = console.export_text()
    assert "study phase Running, 0/16 runs ended" in text
    assert "screen   screen   Running" in text
    assert "phase    planned  ended  diverged  failed  running" in text
    assert "confirm  confirm  Pending        -      -         -       -        -" in text
    assert "elapsed 1 min 15 s, about 5 min" in text
    assert f"{child.run.run_id}  207   3.8138  64%" in text


def test_without_a_terminal_progress_is_plain_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = progress_events(STUDY, 2, console=Console(file=io.StringIO()))
    child = child_with_log(tmp_path, LOG)
    decision = decide(STUDY.spec, Observed(running=frozenset({child.run.run_id})))
    events.tick(decision, status_of(decision), {child.run.run_id: child})
    events.say("started")
    lines = capsys.readouterr().out.splitlines()
    assert any(line.endswith("study phase Running, 0/16 runs ended") for line in lines)
    assert any(
        line.endswith(f"running {child.run.run_id}: step 207, loss 3.8138, 64% of its budget")
        for line in lines
    )
    assert lines[-1].endswith(" started")


def test_on_cuda_each_running_trainer_holds_a_gpu_of_its_own(tmp_path: Path) -> None:
    executor = LocalExecutor(STUDY, store=None, corpus={}, device="cuda", gpus=["0", "1"])  # type: ignore[arg-type]
    assert executor._free_gpu() == "0"
    first = child_with_log(tmp_path, "")
    executor.children["a"] = Child(first.run, first.process, first.log, 0.0, gpu="0")
    assert executor._free_gpu() == "1"
    executor.children["b"] = Child(first.run, first.process, first.log, 0.0, gpu="1")
    assert executor._free_gpu() is None  # the controller starts no more than there are GPUs
