"""What a real GPU cluster does to a study in its first week, end to end: kopf against the
test API server, the node agent running the real trainer, results in SeaweedFS."""

from __future__ import annotations

import time
from typing import Any

from kube_cluster import NAMESPACE, STUDY, Cluster, operator, wait_for
from kubernetes import client

from stagescreen_operator.kube.jobs import job_name

# The tiny study's screen alone (4 runs, one analysis): what these tests watch is how runs
# start, not what a second stage does with them.
SCREEN_ONLY = STUDY[: STUDY.index("    - name: confirm")] + STUDY[STUDY.index("  pools:") :]

POLICY = (
    'admission webhook "gpu-policy.example.com" denied the request: '
    "Jobs in namespace ml need the label cost-center"
)


def test_a_job_the_api_server_refuses_fails_the_study_with_its_message(cluster: Cluster) -> None:
    """A policy webhook refuses the third Job of the first batch (403): the study is Failed
    within that reconcile, with the API's message, and the two Jobs created before it are
    deleted (nothing half-created); the refused manifest is not retried on every tick."""
    cluster.server.server.inject("create", "jobs", 403, times=1, message=POLICY, after=2)
    with operator() as running:
        cluster.apply(STUDY)
        status = cluster.wait("tiny", {"Failed", "Succeeded", "Degraded"}, timeout=60)
        wait_for(lambda: not cluster.jobs(), "the batch's Jobs deleted")
    assert running.exception is None, running.output
    assert status["phase"] == "Failed", status
    assert POLICY in status["message"] and "refused Job tiny-screen-" in status["message"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "JobRefused"
    assert len(cluster.job_creations()) == 2  # the two before the refusal, none after
    events = client.CoreV1Api(cluster.api).list_namespaced_event(NAMESPACE).items
    assert any(event.reason == "JobRefused" and POLICY in event.message for event in events)


def seen_waiting(cluster: Cluster, reason: str) -> bool:
    """Whether the study's status says runs wait to start, for `reason`."""
    waiting = (cluster.study().get("status") or {}).get("waiting") or []
    return any("to start on pool" in line and reason in line for line in waiting)


def failed_runs(status: dict[str, Any]) -> int:
    return int((status.get("runs") or {}).get("failed", 0))


def test_a_cold_pool_delays_a_study_without_failing_a_run(cluster: Cluster) -> None:
    """No node can take a pod for 60 s (the pool scales up from zero): longer than the old
    deadline (budget 30 s + 5 s overhead + 15 s margin, counted from the Job's start). The
    runs wait, the status says why, and the study ends Succeeded with no failed run and no
    Job replaced (the startup allowance, 120 s here, covers the wait)."""
    cluster.agent.cold_until = time.monotonic() + 60
    with operator(deadline_margin_s=5, startup_allowance_s=120) as running:
        cluster.apply(SCREEN_ONLY)
        wait_for(lambda: seen_waiting(cluster, "Unschedulable"), "the waiting reason", 60)
        status = cluster.wait("tiny", {"Succeeded", "Failed", "Degraded"})
    assert running.exception is None, running.output
    assert status["phase"] == "Succeeded", status
    assert failed_runs(status) == 0 and status["progress"] == "4/4"
    assert not any(name.endswith("-a2") for name in cluster.job_creations())
    assert not status.get("waiting")  # nothing waits any more


def test_an_image_that_never_pulls_gets_a_new_job_and_the_study_succeeds(cluster: Cluster) -> None:
    """Two first Jobs land on a node whose image pull backs off forever: past the startup
    allowance (10 s here) each is replaced by a second Job, which runs; no run failed."""
    stuck = [job_name("tiny", f"screen-{c}-30s-s1-cpu") for c in ("c01", "c02")]
    cluster.agent.pull_failing.update(stuck)
    with operator(startup_allowance_s=10) as running:
        cluster.apply(SCREEN_ONLY)
        wait_for(lambda: seen_waiting(cluster, "ImagePullBackOff"), "the waiting reason", 60)
        status = cluster.wait("tiny", {"Succeeded", "Failed", "Degraded"})
    assert running.exception is None, running.output
    assert status["phase"] == "Succeeded", status
    assert failed_runs(status) == 0
    names = cluster.job_creations()
    assert {f"{name}-a2" for name in stuck} <= set(names)
    assert len(names) == len(set(names)) == 4 + 1 + 2  # two replaced, none made twice
    events = client.CoreV1Api(cluster.api).list_namespaced_event(NAMESPACE).items
    restarted = [event.message for event in events if event.reason == "RunRestarted"]
    assert len(restarted) == 2 and all("ImagePullBackOff" in m for m in restarted)
    waited = [event.message for event in events if event.reason == "RunWaiting"]
    assert len(waited) == 2 and all("ImagePullBackOff" in m for m in waited)  # once per Job


def test_jobs_refused_by_a_quota_wait_and_resume_when_it_frees(cluster: Cluster) -> None:
    """A ResourceQuota lets two pods exist at once; the study runs four at a time. The Job
    controller's creates are refused (FailedCreate events), the runs wait, and start as the
    quota frees: nothing is recorded failed or replaced."""
    cluster.agent.quota = 2
    with operator(startup_allowance_s=300) as running:
        cluster.apply(SCREEN_ONLY)
        wait_for(lambda: seen_waiting(cluster, "FailedCreate"), "the waiting reason", 60)
        status = cluster.wait("tiny", {"Succeeded", "Failed", "Degraded"})
    assert running.exception is None, running.output
    assert status["phase"] == "Succeeded", status
    assert failed_runs(status) == 0
    assert not any(name.endswith("-a2") for name in cluster.job_creations())
