"""The study status: one builder for the resource's status, `stagescreen status` and the
progress display, from the controller's phase, the results table and published outcomes.
(The study's phase itself is decided by the controller: tests/operator/test_controller.py.)"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from crdschema import openapi, pruned

from stagescreen.outcomes import analyse
from stagescreen.outcomes import model as outcome
from stagescreen.outcomes.status import (
    StudyStatus,
    rehearsal,
    rehearsed_status,
    stage_summary,
    study_conditions,
    study_status,
)
from stagescreen.statistics import synthetic
from stagescreen.study.parse import load_study
from stagescreen_contract.status import RunStatus

ROOT = Path(__file__).resolve().parents[3]
STUDY = load_study(ROOT / "tests" / "data" / "quickstart-two-stages.yaml")
SPEC = STUDY.spec
MODEL = synthetic.ResponseModel(effects={"A": 0.1, "B": -0.05}, seed_sd=0.001, noise_sd=0.001)


@pytest.fixture(scope="module")
def both() -> pd.DataFrame:
    screen = synthetic.simulate_stage(SPEC, "screen", pd.DataFrame(), MODEL)
    return synthetic.simulate_stage(SPEC, "confirm", screen, MODEL)


def with_status(results: pd.DataFrame, stage: str, *states: RunStatus) -> pd.DataFrame:
    """`results` with the first runs of `stage` set to `states` (no metric, no wall time)."""
    out = results.copy()
    ids = out.loc[out["stage"] == stage, "run_id"].iloc[: len(states)]
    for run_id, state in zip(ids, states, strict=True):
        out.loc[out["run_id"] == run_id, ["status", "val_bpb", "wall_s"]] = [str(state), None, None]
    return out


def test_a_running_study_reports_counts_current_stage_best_and_compute(
    both: pd.DataFrame,
) -> None:
    screen = analyse.stage_outcome(SPEC, SPEC.stage("screen"), both, "quickstart")
    results = with_status(both, "confirm", RunStatus.RUNNING, RunStatus.PENDING, RunStatus.FAILED)
    status = study_status(SPEC, "Running", results, {"screen": screen})
    assert status.phase == "Running"
    assert status.current_stage == "confirm"
    assert (status.runs.total, status.runs.running, status.runs.pending) == (28, 1, 1)
    assert (status.runs.succeeded, status.runs.failed, status.runs.ended) == (25, 1, 26)
    assert status.progress == "26/28"
    assert status.stages["screen"].phase == "Succeeded"
    assert status.stages["screen"].summary == stage_summary(screen)
    assert status.stages["confirm"].phase == "Running"
    # The study's best is the last analysed stage's, under the outcome's own names.
    assert screen.best is not None and status.best is not None
    assert (status.best.condition_id, status.best.stage) == (screen.best.condition_id, "screen")
    assert status.best.mean == screen.best.mean
    # its interval is the one decisions quote: selection-aware over the screen's candidates
    assert status.best.candidates == screen.best.candidates and screen.best.candidates > 1
    assert (status.best.ci_low, status.best.ci_high) == (
        screen.best.selection_ci_low,
        screen.best.selection_ci_high,
    )
    # Compute counts ended runs only: a failed run without a wall time counts its budget.
    ended = results[results["status"].isin(["succeeded", "failed", "diverged"])]
    expected = ended["wall_s"].fillna(ended["budget_s"].astype(float)).sum()
    assert status.run_seconds == {"cpu": pytest.approx(expected)}
    assert status.gpu_seconds == {"cpu": 0.0}  # the pool has gpus: 0


def test_a_stage_whose_runs_have_all_ended_is_analyzing_until_its_outcome_exists(
    both: pd.DataFrame,
) -> None:
    status = study_status(SPEC, "Analyzing", both, {})  # the phase is the controller's
    assert status.phase == "Analyzing"
    assert {name: stage.phase for name, stage in status.stages.items()} == {
        "screen": "Analyzing",
        "confirm": "Analyzing",
    }
    assert status.best is None


def test_nothing_started_is_pending_and_an_unplanned_stage_has_no_row(both: pd.DataFrame) -> None:
    fresh = both[both["stage"] == "screen"].assign(status="pending", val_bpb=None)
    status = study_status(SPEC, "Pending", fresh, {})
    assert status.phase == "Pending"
    assert list(status.stages) == ["screen"]
    assert status.current_stage is None
    assert status.progress == "0/16"


def test_a_waiting_reason_is_listed_once(both: pd.DataFrame) -> None:
    """Several stages held back by the same stage give the same reason: one line says it."""
    fresh = both[both["stage"] == "screen"].assign(status="pending", val_bpb=None)
    why = "stage 'confirm' waits for stage 'screen': 16 of its 16 planned runs have not ended"
    status = study_status(SPEC, "Pending", fresh, {}, waiting=[why, why, "other", why])
    assert status.waiting == [why, "other"]


def test_a_simulated_study_has_ended_with_every_simulated_run(both: pd.DataFrame) -> None:
    """`simulate` writes results and outcomes, never run records: its status counts the
    results tables' runs as ended and says which rehearsal it is."""
    outcomes = {
        name: analyse.stage_outcome(SPEC, SPEC.stage(name), both, "quickstart").model_copy(
            update={"synthetic": True}
        )
        for name in ("screen", "confirm")
    }
    assert rehearsal(outcomes) == "SYNTHETIC"
    replayed = {
        name: o.model_copy(update={"synthetic": False, "replay": "t.csv"})
        for name, o in outcomes.items()
    }
    assert rehearsal(replayed) == "REPLAY"
    assert rehearsal({}) is None
    status = rehearsed_status(SPEC, both, outcomes, {})
    assert (status.phase, status.progress, status.message) == ("Succeeded", "28/28", None)
    assert {name: stage.phase for name, stage in status.stages.items()} == {
        "screen": "Succeeded",
        "confirm": "Succeeded",
    }
    assert status.best is not None and status.best.stage == "confirm"
    cut = rehearsed_status(SPEC, both, {"screen": outcomes["screen"]}, {"confirm": "is not JSON"})
    assert cut.phase == "Failed"
    assert cut.message == "stage confirm: its outcome.json is not JSON; simulate the study again"


def test_conditions_say_ready_progressing_degraded_and_stalled_with_transition_times() -> None:
    running = study_conditions("Running", None, stalled=None, previous=[], now="t0")
    assert [(c.type, c.status) for c in running] == [
        ("Ready", "False"), ("Progressing", "True"), ("Degraded", "False"), ("Stalled", "False"),
    ]  # fmt: skip
    degraded = study_conditions(
        "Degraded", "4 runs failed or diverged", stalled=None, previous=running, now="t1"
    )
    by_type = {c.type: c for c in degraded}
    assert (by_type["Degraded"].status, by_type["Degraded"].reason) == ("True", "TooManyFailedRuns")
    assert by_type["Degraded"].message == "4 runs failed or diverged"
    assert by_type["Degraded"].last_transition_time == "t1"  # it changed
    assert by_type["Ready"].last_transition_time == "t0"  # it did not
    stalled = study_conditions(
        "Running", None, stalled="no run ended for 900 s", previous=running, now="t2"
    )
    assert [c.status for c in stalled if c.type == "Stalled"] == ["True"]


def test_the_status_survives_the_crd_schema_and_reads_back(both: pd.DataFrame) -> None:
    screen = analyse.stage_outcome(SPEC, SPEC.stage("screen"), both, "quickstart")
    status = study_status(
        SPEC,
        "Running",
        both,
        {"screen": screen},
        waiting=["stage 'next' waits"],
        report_uri="file:///runs/quickstart/report.md",
        generation=3,
    )
    document = status.model_dump(mode="json", exclude_none=True)
    assert document["best"]["conditionId"] == screen.best.condition_id  # type: ignore[union-attr]
    assert pruned(document, openapi()["properties"]["status"], "status") == []
    assert StudyStatus.model_validate(yaml.safe_load(yaml.safe_dump(document))) == status


def test_the_outcome_reads_back_from_its_json(both: pd.DataFrame) -> None:
    screen = analyse.stage_outcome(SPEC, SPEC.stage("screen"), both, "quickstart")
    written = screen.to_json()
    assert outcome.StageOutcome.model_validate(written).to_json() == written
    assert stage_summary(screen).startswith("retained A, B; best ")
