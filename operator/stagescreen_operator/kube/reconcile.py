"""One reconcile of a ScreeningStudy: observe its store and its Jobs, decide, act, report.

Called by every kopf handler of the study (create, resume, update, the timer, a Job of the
study changing), as often as it likes: each call derives everything from the store and the
API, so two calls in a row, or a call after an operator restart, take the same actions, and
a Job that exists already is never made twice (deterministic names; create answers 409).

What the Jobs add to the store's view:
- a run's Job that is active means the run is running;
- a run's Job that failed for good (backoffLimit, its deadline, the trainer's bad-config or
  diverged exit) and left no record gets a `failed` record with the Job's reason, so the
  controller never starts it again; a diverged or failed run is announced once as an event
  (the Job is marked as announced);
- a stage's analysis Job that failed for good makes the study Degraded with its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from stagescreen.keys import RESULT, StudyKeys
from stagescreen.publish import publish_spec, read_outcomes
from stagescreen.records import failure_record
from stagescreen.spec import Pool, Study
from stagescreen.stages import RUN_OVERHEAD_S
from stagescreen.status import (
    Phase,
    StatusCondition,
    StudyStatus,
    study_conditions,
    study_status,
)
from stagescreen.store import Store
from stagescreen_contract.record import RunRecord
from stagescreen_contract.status import RunStatus
from stagescreen_contract.variables import CORPUS_VOCAB
from stagescreen_operator.controller import AnalyseStage, Decision, Observed, StartRun, decide
from stagescreen_operator.corpus import corpus_uris
from stagescreen_operator.kube import metrics
from stagescreen_operator.kube.cluster import Cluster
from stagescreen_operator.kube.jobs import GROUP, RUN_ID, analysis_job, run_job
from stagescreen_operator.kube.pools import with_cluster_pools
from stagescreen_operator.observe import observe_store

ANNOUNCED = f"{GROUP}/announced"
ENDINGS = ("Succeeded", "Degraded", "Failed")  # phases announced as events
STALL_MARGIN_S = 300  # beyond the longest running budget and the start-up overhead

Announce = Callable[[str, str, str], None]  # (type Normal|Warning, reason, message)


@dataclass(frozen=True)
class Settings:
    """What the operator is configured with (chart values, `stagescreen operator` flags)."""

    analysis_image: str = "stagescreen-operator:dev"
    analysis_service_account: str = "stagescreen-analysis"
    vocab: int = CORPUS_VOCAB  # of the prepared corpus, when a spec names none
    pools: tuple[Pool, ...] = ()  # the cluster's pools (chart value `pools`)


@dataclass(frozen=True)
class JobState:
    """A Job of the study, as the API reports it."""

    name: str
    component: str  # run or analysis
    run_id: str | None
    stage: str | None
    state: str  # active, succeeded or failed
    reason: str
    started: str | None
    announced: bool
    waiting: bool  # created but no pod ready: suspended (Kueue) or no node can take it yet


def job_state(job: Mapping[str, Any]) -> JobState:
    """Where a Job stands: its Complete or Failed condition, else active."""
    meta = job.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    status = job.get("status") or {}
    state, reason = "active", ""
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            state = "succeeded"
        elif condition.get("type") == "Failed":
            state = "failed"
            reason = ": ".join(
                part for part in (condition.get("reason"), condition.get("message")) if part
            )
    return JobState(
        name=meta.get("name", ""),
        component=labels.get("app.kubernetes.io/component", ""),
        run_id=annotations.get(RUN_ID),
        stage=labels.get(f"{GROUP}/stage"),
        state=state,
        reason=reason,
        started=status.get("startTime"),
        announced=ANNOUNCED in annotations,
        waiting=state == "active"
        and (bool((job.get("spec") or {}).get("suspend")) or not status.get("ready")),
    )


def reconcile(
    study: Study,
    *,
    namespace: str,
    uid: str,
    generation: int | None,
    previous: Mapping[str, Any],
    cluster: Cluster,
    store: Store,
    now: datetime,
    announce: Announce,
    settings: Settings,
    records: dict[str, RunRecord] | None = None,
) -> dict[str, Any]:
    """Observe, decide and act once; the status to merge-patch onto the study; its pools are
    completed from the cluster's (`Settings.pools`) before anything is built.

    `records` caches the study's run records between calls (a written record never changes),
    so a reconcile reads from S3 only the records that are new."""
    study = with_cluster_pools(study, settings.pools)
    name, spec = study.metadata.name, study.spec
    keys = StudyKeys(name)
    if not store.exists(keys.spec()):
        publish_spec(store, study)
    jobs = [job_state(job) for job in cluster.jobs(namespace, name)]
    runs = {job.run_id: job for job in jobs if job.component == "run" and job.run_id}
    active = frozenset(run_id for run_id, job in runs.items() if job.state == "active")

    def observe() -> tuple[Observed, Decision]:
        stored = observe_store(store, study, records)
        observed = replace(stored, running=active, interrupted=stored.interrupted - active)
        return observed, decide(spec, observed)

    known = set(records or {})
    observed, decision = observe()
    lost = _record_lost_runs(study, runs, observed.records, decision, store, now, announce)
    if lost:
        observed, decision = observe()
    _announce_ended(namespace, runs, observed.records, cluster, announce, skip=lost)

    corpus = corpus_uris(study, store.uri, settings.vocab)
    analyses = {job.stage: job for job in jobs if job.component == "analysis" and job.stage}
    started: dict[str, int] = {}
    problems: list[str] = []
    for action in decision.actions:
        if isinstance(action, StartRun):
            run = action.run
            job = run_job(
                study,
                run,
                namespace=namespace,
                uid=uid,
                corpus=corpus,
            )
            if cluster.create_job(job):
                started[run.stage] = started.get(run.stage, 0) + 1
        elif isinstance(action, AnalyseStage):
            problem = _analyse(study, action.stage, analyses, namespace, uid, cluster, settings)
            if problem:
                problems.append(problem)
            elif action.stage not in analyses:
                announce("Normal", "StageAnalysing", f"stage {action.stage}: analysis started")
    for stage, count in started.items():
        noun = "run" if count == 1 else "runs"
        announce("Normal", "RunsStarted", f"stage {stage}: {count} {noun} started")

    phase: Phase = decision.phase
    message = decision.reason
    if problems and phase == "Running":
        phase, message = "Degraded", "; ".join(problems)
    report = store.uri(keys.report()) if store.exists(keys.report()) else None
    status = study_status(
        spec,
        phase,
        decision.results,
        read_outcomes(store, study, observed.analysed),
        reason=message,
        waiting=decision.waiting,
        report_uri=report,
        generation=generation,
    )
    earlier = [StatusCondition.model_validate(c) for c in previous.get("conditions") or []]
    status.conditions = study_conditions(
        status.phase,
        status.message,
        stalled=_stalled(decision, runs, observed.records, now),
        previous=earlier,
        now=now.isoformat(timespec="seconds"),
        reason="AnalysisFailed" if problems else None,
    )
    active_runs = [decision.run(run_id) for run_id in active]
    metrics.record_study(
        namespace,
        spec,
        status,
        decision.results,
        observed.records,
        set(observed.records) - known,
        pending_by_pool=_pending(jobs, decision),
        longest_running_s=max((run.budget_s for run in active_runs if run), default=0),
        failed_analyses=[stage for stage, job in analyses.items() if job.state == "failed"],
        study=name,
    )
    if status.phase != previous.get("phase") and status.phase in ENDINGS:
        kind = "Normal" if status.phase == "Succeeded" else "Warning"
        announce(kind, f"Study{status.phase}", message or f"study is {status.phase}")
    document = status.model_dump(mode="json", exclude_none=True)
    owned = {field.alias or name for name, field in StudyStatus.model_fields.items()}
    for key in (previous.keys() & owned) - document.keys():
        document[key] = None  # merge patch: a key we wrote before and have no value for now
    return document


def _pending(jobs: list[JobState], decision: Decision) -> dict[str, int]:
    """Run Jobs whose pod is not ready (suspended for Kueue, or no node can take them yet), by
    pool; every pool of the study appears, so a gauge falls back to zero."""
    out = dict.fromkeys({run.pool for run in decision.planned}, 0)
    for job in jobs:
        run = decision.run(job.run_id) if job.run_id else None
        if run is not None and job.waiting:
            out[run.pool] = out.get(run.pool, 0) + 1
    return out


def _record_lost_runs(
    study: Study,
    runs: Mapping[str, JobState],
    records: Mapping[str, RunRecord],
    decision: Decision,
    store: Store,
    now: datetime,
    announce: Announce,
) -> set[str]:
    """A failed record for every run whose Job ended for good without the trainer's; the ids
    of the runs recorded (and announced) now."""
    wrote: set[str] = set()
    for run_id, job in runs.items():
        run = decision.run(run_id)
        if job.state == "active" or run_id in records or run is None:
            continue
        why = job.reason or "the Job ended"
        reason = f"Job {job.name} ended without a run record: {why}"
        wall = _seconds_since(job.started, now)
        store.put_json(
            StudyKeys(study.metadata.name).run(run_id, RESULT),
            failure_record(study.metadata.name, run, reason, wall).model_dump(mode="json"),
        )
        announce("Warning", "RunFailed", f"run {run_id} failed: {reason}")
        wrote.add(run_id)
    return wrote


def _announce_ended(
    namespace: str,
    runs: Mapping[str, JobState],
    records: Mapping[str, RunRecord],
    cluster: Cluster,
    announce: Announce,
    skip: set[str],
) -> None:
    """One event per diverged or failed run, its reason from the trainer's record (`skip`:
    runs announced already by this reconcile)."""
    for run_id, job in runs.items():
        record = records.get(run_id)
        if job.state == "active" or job.announced or record is None or run_id in skip:
            continue
        status = record.status
        if status in (RunStatus.DIVERGED, RunStatus.FAILED):
            reason = "RunDiverged" if status == RunStatus.DIVERGED else "RunFailed"
            announce("Warning", reason, f"run {run_id} {status}: {record.reason}")
            cluster.annotate_job(namespace, job.name, {ANNOUNCED: "true"})


def _analyse(
    study: Study,
    stage: str,
    analyses: Mapping[str, JobState],
    namespace: str,
    uid: str,
    cluster: Cluster,
    settings: Settings,
) -> str:
    """Start the stage's analysis Job, or say why the stage cannot be analysed."""
    existing = analyses.get(stage)
    if existing is None:
        cluster.create_job(
            analysis_job(
                study,
                stage,
                namespace=namespace,
                uid=uid,
                image=settings.analysis_image,
                service_account=settings.analysis_service_account,
            )
        )
        return ""
    if existing.state == "failed":
        return f"analysis of stage {stage} failed ({existing.name}): {existing.reason}"
    if existing.state == "succeeded":  # ended well but its outcome is not in the store
        return f"analysis of stage {stage} ended without writing its outcome ({existing.name})"
    return ""


def _stalled(
    decision: Decision,
    runs: Mapping[str, JobState],
    records: Mapping[str, RunRecord],
    now: datetime,
) -> str | None:
    """Why the study looks stalled: runs are active but none has ended for longer than the
    longest of their budgets plus overhead and margin."""
    active = [job for job in runs.values() if job.state == "active"]
    if not active:
        return None
    finished = [r.finished_at for r in records.values() if r.finished_at]
    starts = [job.started for job in active if job.started]
    last = max(finished) if finished else (min(starts) if starts else None)
    if last is None:
        return None
    planned = [decision.run(job.run_id) for job in active if job.run_id]
    longest = max((run.budget_s for run in planned if run is not None), default=0)
    quiet = _seconds_since(last, now)
    if quiet <= longest + RUN_OVERHEAD_S + STALL_MARGIN_S:
        return None
    return f"no run has ended for {quiet:.0f} s while {len(active)} run(s) are active"


def _seconds_since(stamp: str | None, now: datetime) -> float:
    if not stamp:
        return 0.0
    return max(0.0, (now - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds())
