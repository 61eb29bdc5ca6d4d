"""The controller's decide(): table tests for each action and stage kind, the limits, and a
restart from any point of a recorded study."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from stagescreen.planning.cost import expected_runs
from stagescreen.statistics import synthetic
from stagescreen.study.parse import load_study, parse_study
from stagescreen.study.spec import StudySpec
from stagescreen_contract.record import RunRecord
from stagescreen_operator.controller import AnalyseStage, Decision, Observed, StartRun, decide

ROOT = Path(__file__).resolve().parents[2]
PAPER = load_study(ROOT / "examples" / "paper.yaml").spec
QUICK = load_study(ROOT / "tests" / "data" / "quickstart-two-stages.yaml").spec
MODEL = synthetic.ResponseModel(effects=synthetic.default_effects(PAPER), seed_sd=0.0)


def with_limits(spec: StudySpec, **limits: Any) -> StudySpec:
    return spec.model_copy(update={"limits": spec.limits.model_copy(update=limits)})


def records_for(
    runs: list[Any], spec: StudySpec, status: str = "succeeded"
) -> dict[str, RunRecord]:
    """Synthetic result.json records for planned runs, read as the executors read them."""
    model = synthetic.ResponseModel(effects=synthetic.default_effects(spec), seed_sd=0.0)
    frame = synthetic.simulate_runs(runs, model, spec.metric.name)
    out = {}
    for row in frame.to_dict("records"):
        out[row["run_id"]] = RunRecord.model_validate({**row, "status": status})
    return out


def play(spec: StudySpec) -> list[tuple[Observed, Decision]]:
    """Run a whole study against a perfect executor: every started run ends at the next
    observation with a synthetic record, every analysis is published at once."""
    observed = Observed()
    history = []
    for _ in range(500):
        decision = decide(spec, observed)
        history.append((observed, decision))
        if decision.ended:
            return history
        started = [a.run for a in decision.actions if isinstance(a, StartRun)]
        analysed = {a.stage for a in decision.actions if isinstance(a, AnalyseStage)}
        assert started or analysed or observed.running, decision.waiting
        observed = Observed(
            records={**observed.records, **records_for(started, spec)},
            analysed=observed.analysed | analysed,
        )
    raise AssertionError("the study did not end")


@pytest.fixture(scope="module")
def paper_history() -> list[tuple[Observed, Decision]]:
    return play(with_limits(PAPER, parallelism=1000, max_gpu_hours=None))


def test_a_new_study_starts_the_screen_up_to_the_parallelism() -> None:
    decision = decide(QUICK, Observed())
    assert decision.phase == "Pending"  # nothing has started or ended yet
    assert [a.run.run_id for a in decision.actions] == [
        "screen-c01-10s-s1-cpu",
        "screen-c01-20s-s1-cpu",
    ]


def test_running_runs_hold_their_slots_and_are_not_started_twice() -> None:
    first = decide(QUICK, Observed())
    running = frozenset(a.run.run_id for a in first.actions)
    assert decide(QUICK, Observed(running=running)).actions == ()
    still = frozenset(sorted(running)[:1])
    one_free = decide(QUICK, Observed(running=still))
    assert len(one_free.actions) == 1 and one_free.actions[0].run.run_id not in still


def test_an_interrupted_run_resumes_first() -> None:
    plan = decide(with_limits(QUICK, parallelism=100), Observed()).actions
    last = plan[-1].run.run_id
    decision = decide(QUICK, Observed(interrupted=frozenset({last})))
    assert decision.actions[0] == StartRun(plan[-1].run, resume=True)


def test_a_stage_is_analysed_once_when_its_runs_have_ended(paper_history: list) -> None:
    analyses = [
        a.stage
        for _, decision in paper_history
        for a in decision.actions
        if isinstance(a, AnalyseStage)
    ]
    assert sorted(analyses) == sorted(stage.name for stage in PAPER.stages)


def test_anchor_stages_wait_for_their_sources(paper_history: list) -> None:
    first = paper_history[0][1]
    assert any("stage 'confirm' waits for stage 'screen'" in line for line in first.waiting)
    assert {a.run.stage for a in first.actions if isinstance(a, StartRun)} >= {"screen", "random"}
    assert not any(a.run.stage == "confirm" for a in first.actions if isinstance(a, StartRun))


def test_the_whole_paper_programme_runs_to_success(paper_history: list) -> None:
    """Every stage kind: screen, random, greedy (step by step), confirm, follow-up, bridge,
    cross-host and long-horizon anchors."""
    final = paper_history[-1][1]
    assert final.phase == "Succeeded"
    started = [
        a.run for _, decision in paper_history for a in decision.actions if isinstance(a, StartRun)
    ]
    assert len(started) == len({run.run_id for run in started})  # nothing started twice
    kinds = {stage.name: stage.kind for stage in PAPER.stages}
    assert {kinds[run.stage] for run in started} == set(kinds.values())
    assert set(final.results["run_id"]) == {run.run_id for run in started}
    greedy_rounds = [
        decision
        for _, decision in paper_history
        if any(
            isinstance(a, StartRun) and a.run.stage.startswith("greedy") for a in decision.actions
        )
    ]
    assert len(greedy_rounds) > 3  # a climb advances one point per round, from its results


def test_a_restart_from_any_point_takes_the_same_next_actions(paper_history: list) -> None:
    for observed, decision in paper_history[:: max(1, len(paper_history) // 8)]:
        again = decide(with_limits(PAPER, parallelism=1000, max_gpu_hours=None), observed)
        assert again == decision


def test_a_halving_ladder_starts_each_rung_once_the_one_before_has_ended() -> None:
    data = yaml.safe_load((ROOT / "tests" / "data" / "quickstart-two-stages.yaml").read_text())
    data["spec"]["stages"] = [
        {"name": "ladder", "kind": "halving", "budgets": ["10s", "20s", "40s"], "eta": 2},
        {
            "name": "winner",
            "kind": "bridge",
            "budgets": ["60s"],
            "select": [{"from": "ladder", "rule": "halving-winner"}],
        },
    ]
    spec = with_limits(parse_study(data).spec, parallelism=1000)
    history = play(spec)
    assert history[-1][1].phase == "Succeeded"
    rounds = [
        [(a.run.stage, a.run.budget_s) for a in decision.actions if isinstance(a, StartRun)]
        for _, decision in history
    ]
    assert [sorted(set(started)) for started in rounds if started] == [
        [("ladder", 10)],
        [("ladder", 20)],
        [("ladder", 40)],
        [("winner", 60)],
    ]
    assert [len(started) for started in rounds if started] == [8, 4, 2, 1]
    assert expected_runs(spec, spec.stage("ladder")) == 8 + 4 + 2
    # A restarted controller replays the ladder from the records and decides the same.
    for observed, decision in history:
        assert decide(spec, observed) == decision


def test_more_failures_than_tolerated_degrade_the_study_and_stop_launching() -> None:
    spec = with_limits(QUICK, parallelism=100, max_failed_runs=2)
    runs = [a.run for a in decide(spec, Observed()).actions]
    failed = records_for(runs[:3], spec, status="failed")
    decision = decide(spec, Observed(records=failed))
    assert decision.phase == "Degraded" and "3 runs failed or diverged" in decision.reason
    assert not any(isinstance(a, StartRun) for a in decision.actions)
    tolerated = decide(spec, Observed(records=records_for(runs[:2], spec, status="diverged")))
    assert tolerated.phase == "Running" and tolerated.actions


def test_no_run_starts_past_the_gpu_hour_cap() -> None:
    """Paper screen runs cost 2-10 GPU-minutes; a 0.1 GPU-hour cap admits a few."""
    spec = with_limits(PAPER, parallelism=1000, max_gpu_hours=0.1)
    decision = decide(spec, Observed())
    started = [a.run for a in decision.actions if isinstance(a, StartRun)]
    assert sum(run.budget_s for run in started) <= 360
    assert any("over maxGpuHours 0.1" in line for line in decision.waiting)


def test_a_stage_that_can_never_be_planned_fails_the_study() -> None:
    spec = with_limits(QUICK, parallelism=1000, max_failed_runs=1000)
    screen = [a.run for a in decide(spec, Observed()).actions]
    decision = decide(spec, Observed(records=records_for(screen, spec, status="failed")))
    assert decision.phase == "Failed"
    assert "stage 'confirm' cannot be planned" in decision.reason
    assert decision.actions == ()


def test_decide_is_deterministic_and_reads_no_clock() -> None:
    observed = Observed(
        records=records_for([a.run for a in decide(QUICK, Observed()).actions], QUICK)
    )
    assert decide(QUICK, observed) == decide(QUICK, replace(observed))


def test_the_phase_of_a_study_that_goes_on_is_decided_here() -> None:
    """Pending until a run starts or ends, Running while runs run, Analyzing while nothing
    runs and an ended stage waits for its outcome; a failed analysis degrades the study."""
    spec = with_limits(QUICK, parallelism=100)
    screen = [a.run for a in decide(spec, Observed()).actions]
    ended = records_for(screen, spec)
    cases = [
        (Observed(), "Pending", ""),
        (Observed(running=frozenset({screen[0].run_id})), "Running", ""),
        (Observed(records=records_for(screen[:1], spec)), "Running", ""),
        (Observed(records=ended), "Analyzing", ""),
        (
            Observed(records=ended, failed_analyses={"screen": "analysis of stage screen failed"}),
            "Degraded",
            "analysis of stage screen failed",
        ),
    ]
    for observed, phase, reason in cases:
        decision = decide(spec, observed)
        assert (decision.phase, decision.reason) == (phase, reason), observed
        assert decision.ended == (phase == "Degraded")


def test_a_stage_whose_analysis_failed_is_not_analysed_again_and_says_why() -> None:
    spec = with_limits(QUICK, parallelism=100)
    screen = [a.run for a in decide(spec, Observed()).actions]
    ended = records_for(screen, spec)
    assert AnalyseStage("screen") in decide(spec, Observed(records=ended)).actions
    failed = decide(spec, Observed(records=ended, failed_analyses={"screen": "Job x failed"}))
    assert not any(isinstance(a, AnalyseStage) for a in failed.actions)
    assert failed.failed_analyses == ("Job x failed",)
