"""What a real GPU cluster does to a study in its first week, end to end: kopf against the
test API server, the node agent running the real trainer, results in SeaweedFS."""

from __future__ import annotations

from kube_cluster import NAMESPACE, STUDY, Cluster, operator, wait_for
from kubernetes import client

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
