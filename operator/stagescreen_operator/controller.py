"""The controller: one pure function from what is observed to what to do next.

    decide(spec, observed) -> Decision

The local executor and the Kubernetes operator both loop observe -> decide -> act; neither
keeps state of its own beyond what storage (run records, published outcomes) and its own
processes or Jobs show, so a restart from any point takes the same next actions. No I/O and
no clock reads here: the caller passes everything in.

Each call re-plans every stage from the records (planning is deterministic and never changes
its mind, stagescreen.planning.planner), joins plans and records into the results table
(stagescreen.planning.results), then:
- a stage whose source stages are still running waits; one that can never be planned fails
  the study with the planner's reason;
- runs with no record and no process start, in stage order, up to `limits.parallelism`
  running at once, interrupted ones first (they resume from their checkpoint);
- once more than `limits.maxFailedRuns` runs have failed or diverged, nothing more starts and
  the study is Degraded (stages already complete are still analysed); a run that would take
  the GPU-hours past `limits.maxGpuHours` does not start;
- a stage whose plan is final and whose runs have all ended is analysed once; one whose
  analysis ended without its outcome (an analysis Job that failed) makes the study Degraded;
- when every stage is analysed the study has Succeeded.

The study's phase is decided here and nowhere else: `Decision.phase` is what the status
reports (Pending until a run has started or ended, Analyzing while no run runs and a stage
waits for its analysis), so the resource, `stagescreen status` and the progress display agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from stagescreen.outcomes.status import ENDED, Phase, stage_phase
from stagescreen.planning.planner import plan_stage
from stagescreen.planning.plans import NotReady, PlannedRun, StagePlan, Unplannable
from stagescreen.planning.results import compute_seconds, results_table
from stagescreen.study.spec import StudySpec
from stagescreen_contract.record import RunRecord
from stagescreen_contract.status import TERMINAL, RunStatus


@dataclass(frozen=True)
class Observed:
    """Everything the controller may know: what storage holds and what is running."""

    records: Mapping[str, RunRecord] = field(default_factory=dict)  # run id -> record
    running: frozenset[str] = frozenset()  # run ids with a live process or Job
    interrupted: frozenset[str] = frozenset()  # ended with a checkpoint and no record
    analysed: frozenset[str] = frozenset()  # stages whose outcome is published
    # stage -> why its analysis ended without publishing the outcome (a failed analysis Job)
    failed_analyses: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StartRun:
    run: PlannedRun
    resume: bool = False  # an interrupted run: it continues from its checkpoint


@dataclass(frozen=True)
class AnalyseStage:
    stage: str


Action = StartRun | AnalyseStage


@dataclass(frozen=True)
class Decision:
    """What to do now, and where the study stands (the status the executors report)."""

    actions: tuple[Action, ...]
    phase: Phase
    reason: str = ""
    waiting: tuple[str, ...] = ()  # why stages or runs are held back, one line each
    results: pd.DataFrame = field(default_factory=pd.DataFrame, compare=False, repr=False)
    planned: tuple[PlannedRun, ...] = field(default=(), compare=False, repr=False)
    failed_analyses: tuple[str, ...] = ()  # why stages due for analysis cannot be analysed

    @property
    def ended(self) -> bool:
        """Whether the study has ended: nothing more starts (running runs may still end)."""
        return self.phase in ENDED

    def run(self, run_id: str) -> PlannedRun | None:
        """The planned run with this id, if any stage plans it now."""
        return next((run for run in self.planned if run.run_id == run_id), None)


def decide(spec: StudySpec, observed: Observed) -> Decision:
    """The next actions for a study, from its records and its running runs alone."""
    plans, waiting, failure = _plans(spec, observed)
    planned = [run for plan in plans.values() for run in plan.runs]
    results = results_table(
        planned, observed.records, spec.metric.name, running=sorted(observed.running)
    ).table
    if failure:
        return Decision((), "Failed", failure, tuple(waiting), results, tuple(planned))
    status = _status_by_run(results)
    if len(plans) == len(spec.stages) and observed.analysed >= set(plans):
        return Decision((), "Succeeded", "", (), results, tuple(planned))
    due = [
        name
        for name, plan in plans.items()
        if name not in observed.analysed and _complete(plan, status)
    ]
    analyse = [AnalyseStage(name) for name in due if name not in observed.failed_analyses]
    problems = tuple(
        observed.failed_analyses[name] for name in due if name in observed.failed_analyses
    )
    failed = sum(
        status.get(run.run_id) in (RunStatus.FAILED, RunStatus.DIVERGED) for run in planned
    )
    if failed > spec.limits.max_failed_runs:
        reason = (
            f"{failed} runs failed or diverged, more than maxFailedRuns "
            f"{spec.limits.max_failed_runs}: no new run starts"
        )
        return Decision(
            tuple(analyse), "Degraded", reason, tuple(waiting), results, tuple(planned), problems
        )
    starts, held = _starts(spec, planned, status, observed, results)
    phase: Phase = "Degraded" if problems else _phase(results, observed.analysed)
    return Decision(
        (*analyse, *starts),
        phase,
        "; ".join(problems),
        (*waiting, *held),
        results,
        tuple(planned),
        problems,
    )


def _phase(results: pd.DataFrame, analysed: frozenset[str]) -> Phase:
    """A study that goes on: Analyzing while no run runs and a stage with every run ended
    waits for its outcome; Pending while no run has started or ended; else Running."""
    if results.empty:
        return "Pending"
    ended = results["status"].isin([str(s) for s in TERMINAL])
    running = bool((results["status"] == str(RunStatus.RUNNING)).any())
    waiting_analysis = any(
        stage_phase(results.loc[results["stage"] == stage, "status"], stage in analysed)
        == "Analyzing"
        for stage in results["stage"].unique()
    )
    if not running and waiting_analysis:
        return "Analyzing"
    if not running and not ended.any():
        return "Pending"
    return "Running"


def _plans(spec: StudySpec, observed: Observed) -> tuple[dict[str, StagePlan], list[str], str]:
    """Every stage that can be planned now, in spec order; why the others wait; or why the
    study cannot go on. Each stage is planned against the records of the stages before it."""
    plans: dict[str, StagePlan] = {}
    waiting: list[str] = []
    for stage in spec.stages:
        planned = [run for plan in plans.values() for run in plan.runs]
        so_far = results_table(planned, observed.records, spec.metric.name).table
        try:
            plan = plan_stage(spec, stage, so_far)
            # A greedy climb or halving ladder grows from its own records, step by step.
            while not plan.finished:
                own = results_table([*planned, *plan.runs], observed.records, spec.metric.name)
                step = plan_stage(spec, stage, own.table)
                if step == plan:
                    break
                plan = step
            plans[stage.name] = plan
        except NotReady as wait:
            waiting.append(str(wait))
        except Unplannable as error:
            return plans, waiting, f"stage {stage.name!r} cannot be planned: {error}"
    return plans, waiting, ""


def _status_by_run(results: pd.DataFrame) -> dict[str, RunStatus]:
    if results.empty:
        return {}
    return {
        str(run_id): RunStatus(status)
        for run_id, status in zip(results["run_id"], results["status"], strict=True)
    }


def _complete(plan: StagePlan, status: Mapping[str, RunStatus]) -> bool:
    return plan.finished and all(status.get(run.run_id) in TERMINAL for run in plan.runs)


def _starts(
    spec: StudySpec,
    planned: Sequence[PlannedRun],
    status: Mapping[str, RunStatus],
    observed: Observed,
    results: pd.DataFrame,
) -> tuple[list[StartRun], list[str]]:
    """Runs to start now within parallelism and the GPU-hour cap; why others are held."""
    slots = spec.limits.parallelism - len(observed.running)
    waiting = [
        run
        for run in planned
        if status.get(run.run_id) == RunStatus.PENDING and run.run_id not in observed.running
    ]
    waiting.sort(key=lambda run: run.run_id not in observed.interrupted)  # resumes first
    gpus = {pool.name: pool.gpus for pool in spec.pools}
    cap = spec.limits.max_gpu_hours
    spent = compute_seconds(results)
    committed = sum(seconds * gpus.get(pool, 1) for pool, seconds in spent.items()) + sum(
        run.budget_s * gpus.get(run.pool, 1) for run in planned if run.run_id in observed.running
    )
    starts: list[StartRun] = []
    held: list[str] = []
    for run in waiting:
        if len(starts) >= slots:
            break
        cost = run.budget_s * gpus.get(run.pool, 1)
        if cap is not None and cost and committed + cost > cap * 3600:
            held.append(
                f"run {run.run_id} would take the study to "
                f"{(committed + cost) / 3600:.2f} GPU-hours, over maxGpuHours {cap:g}"
            )
            continue
        committed += cost
        starts.append(StartRun(run, resume=run.run_id in observed.interrupted))
    return starts, held
