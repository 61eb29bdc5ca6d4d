"""The pure part of the operator's reconcile: from a study's snapshot and its Jobs' states to
the records of lost runs, the Jobs to create and annotate, the events and the status patch.
Plain data in, plain data out: no kopf, no API server."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from planted import planted_study

from stagescreen.reports.formatting import decimals, se_from_interval
from stagescreen.statistics import synthetic
from stagescreen.storage.keys import IMAGE, OUTCOME, RESULT, StudyKeys
from stagescreen.storage.ownership import ADOPT, claim_folder
from stagescreen.storage.publish import publish_stage
from stagescreen.storage.store import Store, open_store
from stagescreen.study.parse import load_study
from stagescreen_operator.kube.job_state import ANNOUNCED, JobState, job_state
from stagescreen_operator.kube.jobs import JOB_NAME
from stagescreen_operator.kube.metrics import Metrics
from stagescreen_operator.kube.reconcile import (
    Cache,
    Event,
    Plan,
    Resource,
    failed_analyses,
    lost_runs,
    plan,
    reconcile,
    run_images,
    running_runs,
    stuck_runs,
)
from stagescreen_operator.kube.settings import Settings
from stagescreen_operator.snapshot import Snapshot, snapshot

ROOT = Path(__file__).resolve().parents[3]
STUDY = load_study(ROOT / "tests" / "data" / "quickstart-two-stages.yaml")
SPEC = STUDY.spec
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CORPUS = {"DATA_URI": "s3://b/data", "TOKENIZER_URI": "s3://b/tok"}
SETTINGS = Settings(analysis_image="op:1", analysis_service_account="analysis")
SCREEN = [
    "screen-c01-10s-s1-cpu",
    "screen-c01-20s-s1-cpu",
]  # the first two runs the controller starts


def job(
    name: str,
    *,
    run_id: str | None = None,
    stage: str | None = None,
    condition: str | None = None,
    reason: str = "",
    announced: bool = False,
) -> dict[str, Any]:
    """A Job of the study as the API returns it: Complete or Failed, else active."""
    component = "run" if run_id else "analysis"
    labels = {"app.kubernetes.io/component": component}
    if stage:
        labels["stagescreen.dev/stage"] = stage
    annotations = {"stagescreen.dev/run-id": run_id} if run_id else {}
    if announced:
        annotations[ANNOUNCED] = "true"
    status: dict[str, Any] = {"startTime": "2026-01-02T03:00:05Z", "ready": 1}
    if condition:
        status["conditions"] = [
            {"type": condition, "status": "True", "reason": reason, "message": ""}
        ]
    return {
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "status": status,
    }


def store_with(tmp_path: Path, records: dict[str, str]) -> Store:
    """A study folder holding a record with the given status for each run id."""
    store = open_store(str(tmp_path / "studies"))
    seen = snapshot(store, STUDY, running=frozenset())
    planned = {run.run_id: run for run in seen.decision.planned}
    model = synthetic.ResponseModel(effects={}, seed_sd=0.0)
    frame = synthetic.simulate_runs([planned[r] for r in records], model, SPEC.metric.name)
    for row in frame.to_dict("records"):
        record = {**row, "status": records[row["run_id"]], "reason": "loss was nan"}
        store.put_json(StudyKeys("quickstart").run(row["run_id"], RESULT), record)
    return store


def look(store: Store, jobs: list[JobState]) -> Snapshot:
    return snapshot(store, STUDY, running=running_runs(jobs), failed_analyses=failed_analyses(jobs))


def test_a_job_state_is_its_condition_and_its_annotations() -> None:
    cases = [
        (job("j1", run_id="r1"), ("run", "r1", "active", "", False)),
        (job("j2", run_id="r2", condition="Complete"), ("run", "r2", "succeeded", "", False)),
        (
            job("j3", run_id="r3", condition="Failed", reason="BackoffLimitExceeded"),
            ("run", "r3", "failed", "BackoffLimitExceeded", False),
        ),
        (job("a", stage="screen", announced=True), ("analysis", None, "active", "", True)),
    ]
    for manifest, expected in cases:
        state = job_state(manifest)
        assert (state.component, state.run_id, state.state, state.reason, state.announced) == (
            expected
        )


def test_running_runs_and_failed_analyses_come_from_the_jobs() -> None:
    jobs = [
        job_state(job("j1", run_id="r1")),
        job_state(job("j2", run_id="r2", condition="Complete")),
        job_state(job("a1", stage="screen", condition="Failed", reason="DeadlineExceeded")),
        job_state(job("a2", stage="confirm", condition="Complete")),
        job_state(job("a3", stage="other")),
    ]
    assert running_runs(jobs) == {"r1"}
    assert failed_analyses(jobs) == {
        "screen": "analysis of stage screen failed (a1): DeadlineExceeded",
        "confirm": "analysis of stage confirm ended without writing its outcome (a2)",
    }


def test_a_run_whose_job_failed_without_a_record_gets_a_failed_record(tmp_path: Path) -> None:
    store = store_with(tmp_path, {})
    jobs = [
        job_state(job("j1", run_id=SCREEN[0], condition="Failed", reason="BackoffLimitExceeded")),
        job_state(job("j2", run_id=SCREEN[1])),  # still active: not lost
        job_state(job("j3", run_id="not-planned", condition="Failed")),  # not ours to record
    ]
    lost = lost_runs("quickstart", look(store, jobs), jobs, NOW)
    assert [run.run_id for run in lost] == [SCREEN[0]]
    reason = "Job j1 ended without a run record: BackoffLimitExceeded"
    assert lost[0].record.status == "failed" and lost[0].record.reason == reason
    assert lost[0].record.wall_s == pytest.approx(240.0)
    assert lost[0].event == Event("Warning", "RunFailed", f"run {SCREEN[0]} failed: {reason}")


def test_a_lost_runs_record_names_the_image_its_pod_ran_by_digest(tmp_path: Path) -> None:
    """The kubelet's imageID (without a runtime's scheme) is the record's image digest; a
    pod that never pulled its image leaves it unknown."""
    digest = "registry.example/stagescreen-trainer@sha256:" + "a" * 64
    ran = {
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {"imageID": f"docker-pullable://{digest}", "state": {"terminated": {}}}
            ],
        }
    }
    failed = job("j1", run_id=SCREEN[0], condition="Failed", reason="BackoffLimitExceeded")
    assert job_state(failed, [ran]).image_digest == digest
    assert job_state(failed, [{"status": {"phase": "Pending"}}]).image_digest is None
    jobs = [job_state(failed, [ran])]
    lost = lost_runs("quickstart", look(store_with(tmp_path, {}), jobs), jobs, NOW)
    provenance = lost[0].record.provenance
    assert provenance is not None and provenance.image_digest == digest
    assert provenance.data_sha256 == {} and provenance.device is None


@pytest.mark.parametrize(
    ("records", "jobs", "creates", "events", "annotate", "phase"),
    [
        pytest.param(
            {},
            [],
            [f"quickstart-{SCREEN[0]}", f"quickstart-{SCREEN[1]}"],
            [("Normal", "RunsStarted", "stage screen: 2 runs started")],
            [],
            "Pending",
            id="a new study starts its first runs",
        ),
        pytest.param(
            {SCREEN[0]: "diverged"},
            [
                job("j0", run_id=SCREEN[0], condition="Complete"),
                job("j1", run_id=SCREEN[1]),
            ],
            ["quickstart-screen-c02-10s-s1-cpu"],
            [
                ("Warning", "RunDiverged", f"run {SCREEN[0]} diverged: loss was nan"),
                ("Normal", "RunsStarted", "stage screen: 1 run started"),
            ],
            ["j0"],
            "Running",
            id="a diverged run is announced once and its slot refilled",
        ),
        pytest.param(
            {SCREEN[0]: "diverged"},
            [
                job("j0", run_id=SCREEN[0], condition="Complete", announced=True),
                job("j1", run_id=SCREEN[1]),
            ],
            ["quickstart-screen-c02-10s-s1-cpu"],
            [("Normal", "RunsStarted", "stage screen: 1 run started")],
            [],
            "Running",
            id="an announced run is not announced again",
        ),
    ],
)
def test_plan_creates_announces_and_reports(
    tmp_path: Path,
    records: dict[str, str],
    jobs: list[dict[str, Any]],
    creates: list[str],
    events: list[tuple[str, str, str]],
    annotate: list[str],
    phase: str,
) -> None:
    states = [job_state(manifest) for manifest in jobs]
    seen = look(store_with(tmp_path, records), states)
    done = plan(
        STUDY,
        seen,
        states,
        resource=Resource(namespace="ml", uid="u-1"),
        settings=SETTINGS,
        corpus=CORPUS,
        now=NOW,
    )
    assert [created["metadata"]["name"] for created in done.creates] == creates
    assert [(e.type, e.reason, e.message) for e in done.events] == events
    assert list(done.annotate) == annotate
    assert done.status["phase"] == phase
    assert done.sample.status.phase == phase
    assert [c["type"] for c in done.status["conditions"]] == [
        "Ready",
        "Progressing",
        "Degraded",
        "Stalled",
    ]


def test_a_finished_stage_gets_one_analysis_job_and_a_failed_one_degrades_the_study(
    tmp_path: Path,
) -> None:
    store = store_with(tmp_path, {})
    screen = [run.run_id for run in look(store, []).decision.planned]
    store = store_with(tmp_path, dict.fromkeys(screen, "succeeded"))
    ended = [job(f"j{i}", run_id=run_id, condition="Complete") for i, run_id in enumerate(screen)]
    analysis = "quickstart-analyse-screen"
    confirm = ["quickstart-confirm-c04-10s-s1-cpu", "quickstart-confirm-c04-10s-s2-cpu"]
    cases = [
        ([], [analysis, *confirm], ["StageAnalysing", "RunsStarted"], "Analyzing", None),
        ([job(analysis, stage="screen")], confirm, ["RunsStarted"], "Analyzing", None),
        (  # the confirm runs still start, as they would for a study Degraded this way before
            [job(analysis, stage="screen", condition="Failed", reason="OOM")],
            confirm,
            ["RunsStarted", "StudyDegraded"],
            "Degraded",
            "AnalysisFailed",
        ),
    ]
    for jobs, creates, events, phase, degraded in cases:
        states = [job_state(manifest) for manifest in [*ended, *jobs]]
        done = plan(
            STUDY,
            look(store, states),
            states,
            resource=Resource(namespace="ml", uid="u-1", status={"phase": "Running"}),
            settings=SETTINGS,
            corpus=CORPUS,
            now=NOW,
        )
        assert [created["metadata"]["name"] for created in done.creates] == creates, phase
        assert [e.reason for e in done.events] == events
        assert done.status["phase"] == phase
        condition = next(c for c in done.status["conditions"] if c["type"] == "Degraded")
        assert condition["reason"] == (degraded or "AsPlanned")
        if degraded:
            assert done.status["message"] == f"analysis of stage screen failed ({analysis}): OOM"
            assert done.sample.failed_analyses == ("screen",)


def test_an_analysed_stages_rank_reversals_are_announced_once_and_counted(
    tmp_path: Path,
) -> None:
    store = store_with(tmp_path, {})
    screen = [run.run_id for run in look(store, []).decision.planned]
    store = store_with(tmp_path, dict.fromkeys(screen, "succeeded"))
    outcome = publish_stage(store, STUDY, "screen", look(store, []).decision.results)
    # the outcome as an analysis Job wrote it, carrying the reversal the planted study flags
    (reversal,) = planted_study()[2].reversals
    written = outcome.model_copy(update={"reversals": [reversal]}).to_json()
    store.put_json(StudyKeys("quickstart").stage("screen", OUTCOME), written)
    ended = [job(f"j{i}", run_id=run_id, condition="Complete") for i, run_id in enumerate(screen)]
    analysis = "quickstart-analyse-screen"
    # at the report's precision: two significant figures of the difference's SE
    se = se_from_interval(reversal.ci_low, reversal.ci_high, reversal.seeds - 1, reversal.level)
    digits = decimals([se])
    message = (
        "stage screen: c01 (best-1), ranked 1 by screen at 20s ahead of c02 (ranked 2), loses "
        f"to it at 80s on pool cpu: difference {reversal.difference:+.{digits}f} (98.33% CI "
        f"[{reversal.ci_low:+.{digits}f}, {reversal.ci_high:+.{digits}f}], paired over 4 seeds)"
    )
    for announced, events, annotate in [
        (False, [("Warning", "RankReversal", message)], [analysis]),
        (True, [], []),  # announced by an earlier reconcile: not again
    ]:
        done = plan(
            STUDY,
            look(store, []),
            [
                job_state(manifest)
                for manifest in [
                    *ended,
                    job(analysis, stage="screen", condition="Complete", announced=announced),
                ]
            ],
            resource=Resource(namespace="ml", uid="u-1", status={"phase": "Running"}),
            settings=SETTINGS,
            corpus=CORPUS,
            now=NOW,
        )
        reversals = [(e.type, e.reason, e.message) for e in done.events if "Rank" in e.reason]
        assert reversals == events
        assert [name for name in done.annotate if name == analysis] == annotate
        assert done.sample.reversals == {"screen": 1}
        metrics = Metrics()
        metrics.record_study(done.sample)
        for stage, count in (("screen", 1), ("confirm", 0)):
            labels = {"namespace": "ml", "study": "quickstart", "stage": stage}
            assert metrics.registry.get_sample_value("stagescreen_rank_reversals", labels) == count


def test_a_key_written_before_and_empty_now_is_removed_by_the_merge_patch(
    tmp_path: Path,
) -> None:
    done = plan(
        STUDY,
        look(store_with(tmp_path, {}), []),
        [],
        resource=Resource(namespace="ml", status={"reportUri": "s3://old", "unknown": 1}),
        settings=SETTINGS,
        corpus=CORPUS,
        now=NOW,
    )
    assert done.status["reportUri"] is None
    assert "unknown" not in done.status


UNSCHEDULABLE = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


def waiting_job(name: str, run_id: str, *, attempt: int = 1, failed: bool = False) -> JobState:
    """A run Job started at 03:00:05 whose pod the scheduler cannot place (or which then hit
    its deadline, the pod never having started)."""
    manifest = job(name, run_id=run_id, condition="Failed" if failed else None)
    manifest["status"].pop("ready")
    if failed:
        manifest["status"]["conditions"][0]["reason"] = "DeadlineExceeded"
    manifest["metadata"]["annotations"]["stagescreen.dev/attempt"] = str(attempt)
    pod = {
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": UNSCHEDULABLE,
                }
            ],
        }
    }
    return job_state(manifest, [] if failed else [pod])


def test_why_a_pod_has_not_started_comes_from_the_scheduler_the_kubelet_or_the_job_controller() -> (
    None
):
    pulling = {
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}}}
            ],
        }
    }
    running = {"status": {"phase": "Running"}}
    pending = job("j", run_id="r")
    pending["status"].pop("ready")
    assert waiting_job("j", "r").why_waiting == f"Unschedulable: {UNSCHEDULABLE}"
    assert job_state(pending, [pulling]).why_waiting == "ImagePullBackOff: Back-off"
    assert job_state(pending, [], "exceeded quota: gpu").why_waiting == (
        "FailedCreate: exceeded quota: gpu"
    )
    started = job_state(pending, [running])
    assert started.ran and started.why_waiting == ""
    assert not waiting_job("j", "r").ran


def test_a_run_whose_pod_never_started_gets_a_new_job_not_a_failed_record(tmp_path: Path) -> None:
    """Waiting past the startup allowance (1800 s by default), or ended by the deadline
    before a pod started: infrastructure, not the recipe. The Job is replaced (attempt 2,
    the old one deleted while it still waits), nothing is recorded, and the run keeps its
    slot (no other run starts in its place)."""
    store = store_with(tmp_path, {})
    jobs = [
        waiting_job("j1", SCREEN[0]),  # started 03:00:05, now 03:04:05: within the allowance
        waiting_job("j2", SCREEN[1], failed=True),
    ]
    seen = look(store, jobs)
    restarts, lost = stuck_runs("quickstart", seen, jobs, NOW, SETTINGS)
    assert [r.run_id for r in restarts] == [SCREEN[1]] and lost == ()
    assert lost_runs("quickstart", seen, jobs, NOW) == ()  # never started: not lost
    later = datetime(2026, 1, 2, 3, 40, tzinfo=UTC)
    restarts, lost = stuck_runs("quickstart", seen, jobs, later, SETTINGS)
    assert [r.run_id for r in restarts] == SCREEN and lost == ()
    running = snapshot(store, STUDY, running=frozenset(SCREEN))
    done = plan(
        STUDY,
        running,
        jobs,
        resource=Resource(namespace="ml", uid="u-1"),
        settings=SETTINGS,
        corpus=CORPUS,
        now=later,
        restarts=restarts,
    )
    names = [created["metadata"]["name"] for created in done.creates]
    assert names == [f"quickstart-{SCREEN[0]}-a2", f"quickstart-{SCREEN[1]}-a2"]
    assert [c["metadata"]["annotations"]["stagescreen.dev/attempt"] for c in done.creates] == [
        "2",
        "2",
    ]
    assert done.deletes == ("j1",)  # the failed one has no pod left to free
    waiting = [e.message for e in done.events if e.reason == "RunWaiting"]
    assert waiting == [
        f"run {SCREEN[0]} waits to start on pool cpu: Unschedulable: {UNSCHEDULABLE}"
    ]
    assert done.waits == ("j1",)  # told once: the Job is marked
    restarted = [e for e in done.events if e.reason == "RunRestarted"]
    assert len(restarted) == 2 and "Unschedulable" in restarted[0].message
    assert "attempt 2 of 3" in restarted[0].message
    line = f"1 run waits to start on pool cpu: Unschedulable: {UNSCHEDULABLE}"
    assert done.status["waiting"][-1] == line  # after the stages' own waits
    assert done.sample.waiting_by_reason == {("cpu", "Unschedulable"): 1}


def test_a_run_whose_pod_never_started_in_its_last_attempt_is_recorded_failed_with_why(
    tmp_path: Path,
) -> None:
    store = store_with(tmp_path, {})
    jobs = [waiting_job("j1-a3", SCREEN[0], attempt=3, failed=True)]
    restarts, lost = stuck_runs("quickstart", look(store, jobs), jobs, NOW, SETTINGS)
    assert restarts == ()
    (run,) = lost
    assert run.record.status == "failed"
    assert "attempt 3 of 3" in run.record.reason and "before a pod started" in run.record.reason


def test_a_job_queued_by_kueue_is_never_replaced(tmp_path: Path) -> None:
    manifest = job("j1", run_id=SCREEN[0])
    manifest["status"] = {}
    manifest["spec"] = {"suspend": True}
    jobs = [job_state(manifest)]
    assert jobs[0].why_waiting.startswith("Queued")
    later = datetime(2026, 1, 3, tzinfo=UTC)
    assert stuck_runs(
        "quickstart", look(store_with(tmp_path, {}), jobs), jobs, later, SETTINGS
    ) == (
        (),
        (),
    )


class NoCluster:
    """A cluster a refused reconcile must not touch."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a refused study called cluster.{name}")


def test_a_study_refused_its_folder_fails_saying_why_and_reads_and_creates_nothing(
    tmp_path: Path,
) -> None:
    store = store_with(tmp_path, {"screen-c01-10s-s1-cpu": "succeeded"})
    assert claim_folder(store, STUDY, uid="u-old", now=NOW) is None
    before = {key: store.get_bytes(key) for key in store.list()}
    cache = Cache()

    def once(status: dict[str, Any]) -> Plan:
        return reconcile(
            STUDY,
            Resource(namespace="ml", uid="u-new", status=status),
            cluster=NoCluster(),  # type: ignore[arg-type]
            store=store,
            cache=cache,
            settings=SETTINGS,
            now=NOW,
        )

    done = once({})
    assert done.status["phase"] == "Failed"
    assert done.status["message"].startswith(f"storage folder {store.uri('quickstart')}/ ")
    assert f'{ADOPT}: "u-old"' in done.status["message"]
    degraded = next(c for c in done.status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "StorageFolderTaken")
    assert [(e.type, e.reason) for e in done.events] == [("Warning", "StudyFailed")]
    assert (done.creates, done.annotate) == ((), ())
    assert done.status["runs"]["total"] == 0 and not done.sample.records
    assert not cache.records and not cache.outcomes
    assert {key: store.get_bytes(key) for key in store.list()} == before  # nothing written
    assert once(done.status).events == ()  # announced once


class Ran:
    """A cluster holding one run's Job, Complete, and its pod, which ran `image_id`."""

    def __init__(self, run_id: str, image_id: str) -> None:
        self.job = job("j1", run_id=run_id, stage="screen", condition="Complete")
        container = {"imageID": image_id, "state": {"terminated": {"exitCode": 0}}}
        self.pod = {
            "metadata": {"labels": {JOB_NAME: "j1"}},
            "status": {"phase": "Succeeded", "containerStatuses": [container]},
        }

    def jobs(self, namespace: str, study: str) -> list[dict[str, Any]]:
        return [self.job]

    def pods(self, namespace: str, study: str) -> list[dict[str, Any]]:
        return [self.pod]

    def refused_pods(self, namespace: str) -> dict[str, str]:
        return {}

    def create_job(self, job: dict[str, Any]) -> bool:
        return True

    def annotate_job(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        pass


def test_the_image_a_runs_pod_ran_is_written_once_beside_its_record_and_joined_into_it(
    tmp_path: Path,
) -> None:
    """The trainer cannot see its image: the operator writes the pod's digest beside the
    run's record, once, and reading the record joins it into its provenance."""
    run_id = SCREEN[0]
    digest = "registry.example/stagescreen-trainer@sha256:" + "b" * 64
    store = store_with(tmp_path, {run_id: "succeeded"})
    cluster = Ran(run_id, f"docker-pullable://{digest}")
    image = StudyKeys("quickstart").run(run_id, IMAGE)
    cache = Cache()

    def once() -> Plan:
        return reconcile(
            STUDY,
            Resource(namespace="ml", uid="u1"),
            cluster=cluster,  # type: ignore[arg-type]
            store=store,
            cache=cache,
            settings=SETTINGS,
            now=NOW,
        )

    assert run_images([job_state(cluster.job, [cluster.pod])], set()) == {run_id: digest}
    assert run_images([job_state(cluster.job, [cluster.pod])], {run_id}) == {}
    done = once()
    assert store.get_text(image) == digest + "\n"
    provenance = cache.records[run_id].provenance
    assert provenance is not None and provenance.image_digest == digest
    results = done.sample.results.set_index("run_id")
    assert results.at[run_id, "provenance.image_digest"] == digest
    store.put_text(image, "written before\n")
    once()  # this operator wrote it: not again
    cache = Cache()
    once()  # a restarted one finds it in the store
    assert store.get_text(image) == "written before\n"
