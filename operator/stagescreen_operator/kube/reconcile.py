"""One reconcile of a ScreeningStudy: observe its store and its Jobs, decide, act, report.

Called by every kopf handler of the study (create, resume, update, the timer, a Job of the
study changing), as often as it likes: each call derives everything from the store and the
API, so two calls in a row, or a call after an operator restart, take the same actions, and
a Job that exists already is never made twice (deterministic names; create answers 409).

Two parts. The pure one (`lost_runs`, `stuck_runs`, `plan`) takes the study's snapshot and its
Jobs' states (`kube.job_state`: what each Job, its pods and its FailedCreate events say) and
answers with data: the records to write for runs lost with their Job, the Jobs to create
and to mark announced, the events, the metric sample and the status patch; no API, no store,
no clock (`now` is passed in). The act part (`reconcile`) reads the Jobs and the store,
writes those records, and creates and annotates those Jobs; the handler emits the events and
sets the metrics.

What the Jobs add to the store's view:
- a run's Job that is active means the run is running;
- a run's Job that failed for good (backoffLimit, its deadline, the trainer's bad-config or
  diverged exit) and left no record gets a `failed` record with the Job's reason, so the
  controller never starts it again; a diverged or failed run is announced once as an event
  (the Job is marked as announced);
- a stage's analysis Job that failed for good (or ended without the outcome) is passed to the
  controller as a failed analysis, which makes the study Degraded with its reason;
- a stage whose analysis Job succeeded has each of its outcome's rank reversals announced
  once as a `RankReversal` event (the analysis Job is marked as announced). Announcements are
  at most once: a Job is marked before the handler posts its event, so a restart never
  repeats one and an event the API refused is not retried (the metric still counts it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pandas as pd
from kubernetes.client.rest import ApiException

from stagescreen.outcomes.model import StageOutcome
from stagescreen.outcomes.status import ENDED, StatusCondition, StudyStatus, study_conditions
from stagescreen.planning.cost import RUN_OVERHEAD_S
from stagescreen.planning.ids import format_budget
from stagescreen.planning.plans import PlannedRun
from stagescreen.planning.results import failure_record
from stagescreen.reports.formatting import decimals, fmt_effect, fmt_interval, se_from_interval
from stagescreen.statistics.stability import Reversal
from stagescreen.storage.keys import IMAGE, StudyKeys
from stagescreen.storage.ownership import claim_folder
from stagescreen.storage.publish import publish_record, publish_spec
from stagescreen.storage.store import Store
from stagescreen.study.spec import Study
from stagescreen_contract.record import Provenance, RunRecord
from stagescreen_contract.status import RunStatus
from stagescreen_operator.controller import AnalyseStage, Decision, StartRun
from stagescreen_operator.corpus import corpus_uris
from stagescreen_operator.kube.cluster import Cluster
from stagescreen_operator.kube.job_state import (
    ANNOUNCED,
    USUAL_WAITS,
    WAIT_ANNOUNCED,
    JobState,
    job_state,
)
from stagescreen_operator.kube.jobs import JOB_NAME, analysis_job, run_job
from stagescreen_operator.kube.metrics import StudySample
from stagescreen_operator.kube.pools import with_cluster_pools
from stagescreen_operator.kube.settings import Settings
from stagescreen_operator.snapshot import Snapshot, snapshot

STALL_MARGIN_S = 300  # beyond the longest running budget and the start-up overhead
REFUSED = (400, 403, 422)  # the API server will not take this manifest: retrying cannot help


@dataclass(frozen=True)
class Event:
    """An event to emit on the study."""

    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Resource:
    """The ScreeningStudy being reconciled: where it lives and the status it has now."""

    namespace: str
    uid: str = ""
    generation: int | None = None
    status: Mapping[str, Any] = field(default_factory=dict)
    adopt: str | None = None  # its stagescreen.dev/adopt annotation (storage.ownership.ADOPT)


@dataclass
class Cache:
    """What one study's reconciles keep between calls (in kopf's memo, dropped with the
    study): records and outcomes read so far, which never change once written."""

    records: dict[str, RunRecord] = field(default_factory=dict)
    outcomes: dict[str, StageOutcome] = field(default_factory=dict)
    images: set[str] = field(default_factory=set)  # runs whose image digest is in the store


@dataclass(frozen=True)
class LostRun:
    """A run whose Job ended for good without the trainer's record: the record to write."""

    run_id: str
    record: RunRecord
    event: Event


@dataclass(frozen=True)
class Restart:
    """A run whose Job's pod never started (no node, an image pull, a quota): replaced by a
    new Job, the old one deleted if it still waits."""

    run_id: str
    job: JobState
    reason: str


@dataclass(frozen=True)
class Plan:
    """What one reconcile does, as data."""

    status: dict[str, Any]  # the merge patch of the study's status
    events: tuple[Event, ...]
    creates: tuple[dict[str, Any], ...]  # Job manifests, runs and analyses
    annotate: tuple[str, ...]  # Jobs to mark announced
    sample: StudySample
    deletes: tuple[str, ...] = ()  # Jobs replaced while their pod still waited
    waits: tuple[str, ...] = ()  # Jobs to mark wait-announced


def reconcile(
    study: Study,
    resource: Resource,
    *,
    cluster: Cluster,
    store: Store,
    cache: Cache,
    settings: Settings,
    now: datetime,
) -> Plan:
    """Observe, decide and act once; what was done, with the status patch, the events to
    emit and the metric sample. The study's pools are completed from the cluster's
    (`Settings.pools`) before anything is built."""
    study = with_cluster_pools(study, settings.pools)
    ran = bool(resource.status.get("stages"))  # ran here before its folder had an owner file
    refusal = claim_folder(
        store, study, uid=resource.uid, adopt=resource.adopt, resumed=ran, now=now
    )
    if refusal is not None:  # another study's folder: nothing of it read, nothing created
        return refused_folder(study, resource, refusal, now)
    keys = StudyKeys(study.metadata.name)
    if not store.exists(keys.spec()):
        publish_spec(store, study)
    pods: dict[str, list[dict[str, Any]]] = {}
    for pod in cluster.pods(resource.namespace, study.metadata.name):
        owner = ((pod.get("metadata") or {}).get("labels") or {}).get(JOB_NAME, "")
        pods.setdefault(owner, []).append(pod)
    refused_pods = cluster.refused_pods(resource.namespace)
    jobs = tuple(
        job_state(
            job,
            pods.get(job["metadata"]["name"], ()),
            refused_pods.get(job["metadata"]["name"], ""),
        )
        for job in cluster.jobs(resource.namespace, study.metadata.name)
    )
    known = frozenset(cache.records)
    for run_id, digest in run_images(jobs, cache.images).items():  # before records are read
        key = keys.run(run_id, IMAGE)
        if not store.exists(key):
            store.put_text(key, digest + "\n")
        cache.images.add(run_id)

    def look() -> Snapshot:
        report = store.uri(keys.report()) if store.exists(keys.report()) else None
        return snapshot(
            store,
            study,
            running=running_runs(jobs) | {run.run_id for run in restarts},
            failed_analyses=failed_analyses(jobs),
            records=cache.records,
            outcomes=cache.outcomes,
            report_uri=report,
            generation=resource.generation,
        )

    restarts: tuple[Restart, ...] = ()
    seen = look()
    restarts, lost = stuck_runs(study.metadata.name, seen, jobs, now, settings)
    lost = (*lost_runs(study.metadata.name, seen, jobs, now), *lost)
    for run in lost:
        publish_record(store, run.record)
    if lost or restarts:
        seen = look()
    done = plan(
        study,
        seen,
        jobs,
        resource=resource,
        settings=settings,
        corpus=corpus_uris(study, store.uri, settings.vocab),
        now=now,
        lost=lost,
        known=known,
        restarts=restarts,
    )
    for name in done.annotate:
        cluster.annotate_job(resource.namespace, name, {ANNOUNCED: "true"})
    for name in done.waits:
        cluster.annotate_job(resource.namespace, name, {WAIT_ANNOUNCED: "true"})
    created: list[str] = []
    for job in done.creates:
        name = job["metadata"]["name"]
        try:
            cluster.create_job(job)
        except ApiException as error:
            if error.status not in REFUSED:
                raise
            for made in created:  # nothing half-created: the batch goes as a whole
                cluster.delete_job(resource.namespace, made)
            return refused_job(done, name, _api_message(error), now=now)
        created.append(name)
    for name in done.deletes:
        cluster.delete_job(resource.namespace, name)
    return done


def refused_job(done: Plan, job: str, message: str, *, now: datetime) -> Plan:
    """The plan after the API server refused to create `job`: nothing created, the study
    Failed with the API's message (retrying the same manifest cannot succeed; a new spec
    or a fixed cluster policy, then a change to the study, can)."""
    why = f"the API server refused Job {job}: {message}"
    conditions = study_conditions(
        "Failed",
        why,
        stalled=None,
        previous=[StatusCondition.model_validate(c) for c in done.status.get("conditions") or []],
        now=now.isoformat(timespec="seconds"),
        reason="JobRefused",
    )
    status = done.status | {
        "phase": "Failed",
        "message": why,
        "conditions": [c.model_dump(mode="json", exclude_none=True) for c in conditions],
    }
    events = (*done.events, Event("Warning", "JobRefused", why))
    return replace(done, status=status, events=events, creates=())


def _api_message(error: ApiException) -> str:
    """The Status message of an API error answer (its body), else the HTTP reason."""
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"


def refused_folder(study: Study, resource: Resource, message: str, now: datetime) -> Plan:
    """The plan of a study refused its storage folder (`claim_folder`): Failed, saying why
    and the ways out; no Job, no record, no event but the study's failure."""
    earlier = [StatusCondition.model_validate(c) for c in resource.status.get("conditions") or []]
    conditions = study_conditions(
        "Failed",
        message,
        stalled=None,
        previous=earlier,
        now=now.isoformat(timespec="seconds"),
        reason="StorageFolderTaken",
    )
    status = StudyStatus(
        phase="Failed",
        message=message,
        conditions=conditions,
        observed_generation=resource.generation,
    )
    changed = resource.status.get("phase") != "Failed"
    events = (Event("Warning", "StudyFailed", message),) if changed else ()
    sample = StudySample(
        namespace=resource.namespace,
        study=study.metadata.name,
        spec=study.spec,
        status=status,
        results=pd.DataFrame(),
        records={},
        new=frozenset(),
        pending_by_pool={},
        waiting_by_reason={},
        longest_running_s=0,
        failed_analyses=(),
    )
    return Plan(status.model_dump(mode="json", exclude_none=True), events, (), (), sample)


def run_images(jobs: Sequence[JobState], recorded: AbstractSet[str]) -> dict[str, str]:
    """Run id -> the image digest its latest Job's pod ran, for the runs not yet `recorded`:
    written once beside the run's record, where reading the record joins it in
    (`observe_store`), since the trainer cannot see its own image."""
    return {
        run_id: job.image_digest
        for run_id, job in _runs(jobs).items()
        if job.image_digest and run_id not in recorded
    }


def running_runs(jobs: Sequence[JobState]) -> frozenset[str]:
    """The runs whose Job is active."""
    return frozenset(
        job.run_id
        for job in jobs
        if job.component == "run" and job.run_id and job.state == "active"
    )


def failed_analyses(jobs: Sequence[JobState]) -> dict[str, str]:
    """Stage -> why its analysis Job ended without publishing the outcome (the controller
    looks only at stages whose outcome is not in the store)."""
    out = {}
    for job in jobs:
        if job.component != "analysis" or not job.stage:
            continue
        if job.state == "failed":
            out[job.stage] = f"analysis of stage {job.stage} failed ({job.name}): {job.reason}"
        elif job.state == "succeeded":
            out[job.stage] = (
                f"analysis of stage {job.stage} ended without writing its outcome ({job.name})"
            )
    return out


def lost_runs(
    study: str, seen: Snapshot, jobs: Sequence[JobState], now: datetime
) -> tuple[LostRun, ...]:
    """A failed record for every planned run whose Job ended for good without the
    trainer's, so the controller never starts it again (a Job whose pod never started is
    not lost but stuck: `stuck_runs`)."""
    lost = []
    for run_id, job in _runs(jobs).items():
        run = seen.decision.run(run_id)
        if job.state == "active" or run_id in seen.observed.records or run is None:
            continue
        if not job.ran:
            continue
        why = job.reason or "the Job ended"
        reason = f"Job {job.name} ended without a run record: {why}"
        record = failure_record(study, run, reason, _seconds_since(job.started, now))
        if job.image_digest:
            record = record.model_copy(
                update={"provenance": Provenance(image_digest=job.image_digest)}
            )
        lost.append(
            LostRun(run_id, record, Event("Warning", "RunFailed", f"run {run_id} failed: {reason}"))
        )
    return tuple(lost)


def stuck_runs(
    study: str, seen: Snapshot, jobs: Sequence[JobState], now: datetime, settings: Settings
) -> tuple[tuple[Restart, ...], tuple[LostRun, ...]]:
    """Runs whose Job's pod never started: still waiting past the startup allowance, or
    ended (its deadline) without starting. Each is restarted with a new Job, up to
    `settings.start_attempts` Jobs; then recorded failed with the last reason."""
    restarts, lost = [], []
    for run_id, job in _runs(jobs).items():
        run = seen.decision.run(run_id)
        if job.ran or run is None or run_id in seen.observed.records:
            continue
        if job.state == "active":
            waited = _seconds_since(job.started, now) if job.started else 0.0
            if job.wait_code == "Queued" or waited <= settings.startup_allowance_s:
                continue
            reason = f"its pod did not start in {waited:.0f} s ({job.why_waiting})"
        elif job.state == "failed":
            reason = f"its Job ended before a pod started ({job.why_waiting or job.reason})"
        else:
            continue
        if job.attempt < settings.start_attempts:
            restarts.append(Restart(run_id, job, reason))
            continue
        why = f"Job {job.name} (attempt {job.attempt} of {settings.start_attempts}): {reason}"
        record = failure_record(study, run, why, 0.0)
        lost.append(
            LostRun(run_id, record, Event("Warning", "RunFailed", f"run {run_id} failed: {why}"))
        )
    return tuple(restarts), tuple(lost)


def plan(
    study: Study,
    seen: Snapshot,
    jobs: Sequence[JobState],
    *,
    resource: Resource,
    settings: Settings,
    corpus: Mapping[str, str],
    now: datetime,
    lost: Sequence[LostRun] = (),
    known: frozenset[str] = frozenset(),
    restarts: Sequence[Restart] = (),
) -> Plan:
    """What to do about a study seen as `seen` whose Jobs are `jobs`: `corpus` is what its
    run Jobs read, `lost` the records this reconcile wrote (announced here), `known` the run
    records read before it (the others are new to the metrics), `restarts` the runs whose
    pod never started, to give a new Job."""
    decision, observed = seen.decision, seen.observed
    runs = _runs(jobs)
    analyses = {job.stage: job for job in jobs if job.component == "analysis" and job.stage}
    events = [run.event for run in lost]
    annotate = []
    skip = {run.run_id for run in lost}
    for run_id, job in runs.items():  # one event per diverged or failed run, from its record
        record = observed.records.get(run_id)
        if job.state == "active" or job.announced or record is None or run_id in skip:
            continue
        ended = record.status
        if ended in (RunStatus.DIVERGED, RunStatus.FAILED):
            reason = "RunDiverged" if ended == RunStatus.DIVERGED else "RunFailed"
            events.append(Event("Warning", reason, f"run {run_id} {ended}: {record.reason}"))
            annotate.append(job.name)
    for stage, job in analyses.items():  # once per analysed stage: its reversals, as events
        outcome = seen.outcomes.get(stage)
        if job.state != "succeeded" or job.announced or outcome is None or not outcome.reversals:
            continue
        events += [_reversal_event(stage, reversal) for reversal in outcome.reversals]
        annotate.append(job.name)
    waits = []
    for pool, job in _waiting(jobs, decision):  # once per Job: why its run has not started
        if job.wait_announced or job.wait_code in USUAL_WAITS:
            continue
        message = f"run {job.run_id} waits to start on pool {pool}: {job.why_waiting}"
        events.append(Event("Warning", "RunWaiting", message[:1000]))
        waits.append(job.name)
    creates = []
    deletes = []

    def job_for(run: PlannedRun, attempt: int = 1) -> dict[str, Any]:
        return run_job(
            study,
            run,
            namespace=resource.namespace,
            uid=resource.uid,
            corpus=corpus,
            attempt=attempt,
            startup_s=settings.startup_allowance_s,
            margin_s=settings.deadline_margin_s,
        )

    for restart in restarts:
        run = decision.run(restart.run_id)
        assert run is not None  # stuck_runs keeps planned runs only
        attempt = restart.job.attempt + 1
        creates.append(job_for(run, attempt))
        if restart.job.state == "active":
            deletes.append(restart.job.name)
        events.append(
            Event(
                "Warning",
                "RunRestarted",
                f"run {restart.run_id}: {restart.reason}; new Job, attempt {attempt} of "
                f"{settings.start_attempts}",
            )
        )
    started: dict[str, int] = {}
    for action in decision.actions:
        if isinstance(action, StartRun):
            run = action.run
            creates.append(job_for(run))
            started[run.stage] = started.get(run.stage, 0) + 1
        elif isinstance(action, AnalyseStage) and action.stage not in analyses:
            creates.append(
                analysis_job(
                    study,
                    action.stage,
                    namespace=resource.namespace,
                    uid=resource.uid,
                    image=settings.analysis_image,
                    service_account=settings.analysis_service_account,
                )
            )
            events.append(
                Event("Normal", "StageAnalysing", f"stage {action.stage}: analysis started")
            )
    for stage, count in started.items():
        noun = "run" if count == 1 else "runs"
        events.append(Event("Normal", "RunsStarted", f"stage {stage}: {count} {noun} started"))
    previous = resource.status
    earlier = [StatusCondition.model_validate(c) for c in previous.get("conditions") or []]
    groups = _waiting_groups(jobs, decision)
    status = seen.status.model_copy(
        update={
            "waiting": [*seen.status.waiting, *_waiting_lines(groups)],
            "conditions": study_conditions(
                seen.status.phase,
                seen.status.message,
                stalled=_stalled(decision, runs, observed.records, now),
                previous=earlier,
                now=now.isoformat(timespec="seconds"),
                reason="AnalysisFailed" if decision.failed_analyses else None,
            ),
        }
    )
    if status.phase != previous.get("phase") and status.phase in ENDED:  # announced as events
        kind = "Normal" if status.phase == "Succeeded" else "Warning"
        events.append(
            Event(kind, f"Study{status.phase}", decision.reason or f"study is {status.phase}")
        )
    active = [decision.run(run_id) for run_id in running_runs(jobs)]
    sample = StudySample(
        namespace=resource.namespace,
        study=study.metadata.name,
        spec=study.spec,
        status=status,
        results=decision.results,
        records=observed.records,
        new=frozenset(observed.records) - known,
        pending_by_pool=_pending(jobs, decision),
        waiting_by_reason={key: len(waiting) for key, waiting in groups.items()},
        longest_running_s=max((run.budget_s for run in active if run), default=0),
        failed_analyses=tuple(stage for stage, job in analyses.items() if job.state == "failed"),
        reversals={stage: len(outcome.reversals) for stage, outcome in seen.outcomes.items()},
    )
    document = status.model_dump(mode="json", exclude_none=True)
    owned = {field.alias or name for name, field in StudyStatus.model_fields.items()}
    for key in (previous.keys() & owned) - document.keys():
        document[key] = None  # merge patch: a key we wrote before and have no value for now
    return Plan(
        document,
        tuple(events),
        tuple(creates),
        tuple(annotate),
        sample,
        tuple(deletes),
        tuple(waits),
    )


def _reversal_event(stage: str, reversal: Reversal) -> Event:
    """A RankReversal warning: an anchor of `stage` lost to one its source ranked behind it."""
    r = reversal
    # the report's precision (two significant figures of the difference's SE), no signed zero
    digits = decimals([se_from_interval(r.ci_low, r.ci_high, r.seeds - 1, r.level)])
    return Event(
        "Warning",
        "RankReversal",
        f"stage {stage}: {r.ahead} ({r.ahead_role or 'anchor'}), ranked {r.ahead_rank} by "
        f"{r.source} at {format_budget(r.source_budget_s)} ahead of {r.behind} (ranked "
        f"{r.behind_rank}), loses to it at {format_budget(r.budget_s)} on pool {r.pool}: "
        f"difference {fmt_effect(r.difference, digits)} ({r.level:.2%} CI "
        f"{fmt_interval(r.ci_low, r.ci_high, digits)}, paired over {r.seeds} seeds)",
    )


def _runs(jobs: Sequence[JobState]) -> dict[str, JobState]:
    """The study's run Jobs by run id: each run's latest attempt."""
    out: dict[str, JobState] = {}
    for job in jobs:
        latest = out.get(job.run_id or "")
        if (
            job.component == "run"
            and job.run_id
            and (latest is None or job.attempt > latest.attempt)
        ):
            out[job.run_id] = job
    return out


def _waiting(jobs: Sequence[JobState], decision: Decision) -> list[tuple[str, JobState]]:
    """(pool, Job) of the active run Jobs whose pod has not started, and why."""
    out = []
    for job in _runs(jobs).values():
        run = decision.run(job.run_id) if job.run_id else None
        if run is not None and job.state == "active" and job.why_waiting:
            out.append((run.pool, job))
    return out


def _waiting_groups(
    jobs: Sequence[JobState], decision: Decision
) -> dict[tuple[str, str], list[JobState]]:
    """(pool, reason code) -> the run Jobs waiting for their pod to start, for it."""
    groups: dict[tuple[str, str], list[JobState]] = {}
    for pool, job in _waiting(jobs, decision):
        groups.setdefault((pool, job.wait_code), []).append(job)
    return groups


def _waiting_lines(groups: Mapping[tuple[str, str], list[JobState]]) -> list[str]:
    """One status line per pool and reason (a 2,000-run study's status stays small)."""
    lines = []
    for (pool, _), waiting in sorted(groups.items()):
        count = len(waiting)
        noun = "run waits" if count == 1 else "runs wait"
        lines.append(f"{count} {noun} to start on pool {pool}: {waiting[0].why_waiting[:300]}")
    return lines


def _pending(jobs: Sequence[JobState], decision: Decision) -> dict[str, int]:
    """Run Jobs whose pod is not ready (suspended for Kueue, or no node can take them yet), by
    pool; every pool of the study appears, so a gauge falls back to zero."""
    out = dict.fromkeys({run.pool for run in decision.planned}, 0)
    for job in jobs:
        run = decision.run(job.run_id) if job.run_id else None
        if run is not None and job.waiting:
            out[run.pool] = out.get(run.pool, 0) + 1
    return out


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
