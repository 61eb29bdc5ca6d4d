"""The operator end to end: kopf running for real against the test API server, a node agent
running every Job's container as a local process (the real trainer, the real analysis
command), results in a real SeaweedFS S3."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent import NodeAgent
from apiserver import Running
from binaries import Tool
from kopf.testing import KopfRunner
from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families
from seaweed import S3Bucket

from stagescreen.storage.keys import StudyKeys
from stagescreen.storage.store import open_store
from stagescreen.study.parse import parse_study
from stagescreen_operator.corpus import corpus_for
from stagescreen_operator.kube.cluster import CALLS, CRD_CALLS, KOPF_CALLS
from stagescreen_operator.kube.handlers import operator_registry
from stagescreen_operator.kube.settings import Settings

GROUP, VERSION, PLURAL = "stagescreen.dev", "v1alpha1", "screeningstudies"
ROOT = Path(__file__).resolve().parents[3]
NAMESPACE = "ml"
TESTS, NODE = "stagescreen-tests", "node-agent"  # user agents: whose request is whose
WAIT_S = 300  # a study of 8 tiny runs and 2 analyses takes about 30 s on 2 cores

STUDY = """
apiVersion: stagescreen.dev/v1alpha1
kind: ScreeningStudy
metadata: {{name: tiny, namespace: ml}}
spec:
  factors:
    - {{name: DEPTH, code: A, low: 1, high: 2, scale: integer}}
    - {{name: MATRIX_LR, code: B, low: 0.02, high: 0.06}}
  design: {{type: full}}
  stages:
    - {{name: screen, kind: screen, budgets: [30], seeds: [1]}}
    - name: confirm
      kind: confirm
      budgets: [30]
      seeds: [1, 2]
      select:
        - {{from: screen, rule: best, role: best}}
        - {{from: screen, rule: worst, role: worst}}
  pools: [{{name: cpu, gpus: 0, nodeSelector: {{pool: cpu}}}}]
  storage:
    s3: {{endpoint: "{endpoint}", bucket: {bucket}, prefix: studies, region: us-east-1,
          secretRef: {{name: s3}}}}
  trainer:
    hyperparameters: {{ASPECT_RATIO: 32, HEAD_DIM: 32, SEQ_LEN: 64, DEVICE_BATCH_SIZE: 8,
                      TOTAL_BATCH_SIZE: 512, EVAL_TOKENS: 2048, MAX_STEPS: 40,
                      EXCLUDE_STEPS: 1, PEAK_FLOPS: 1.0e+11}}
  limits: {{parallelism: 4, maxFailedRuns: 1}}
"""


@dataclass
class Cluster:
    """A running cluster of the test: API server, node agent, operator, S3."""

    api: client.ApiClient
    server: Running
    agent: NodeAgent
    s3: S3Bucket

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def apply(self, template: str) -> None:
        """Create the study of `template` (STUDY, FAILING) on this cluster's S3 bucket."""
        text = study_text(template, self.s3)
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, yaml.safe_load(text)
        )

    def study(self, name: str = "tiny") -> dict[str, Any]:
        return dict(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        )

    def wait(self, name: str, phases: set[str], timeout: float = WAIT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.study(name).get("status") or {}
            if status.get("phase") in phases:
                return status
            assert not self.agent.errors, self.agent.errors
            time.sleep(0.5)
        raise AssertionError(
            f"study {name} not {phases} after {timeout} s: {self.study(name).get('status')}"
        )

    def jobs(self) -> list[dict[str, Any]]:
        answer = client.BatchV1Api(self.api).list_namespaced_job(NAMESPACE, _preload_content=False)
        return list(json.loads(answer.data)["items"])

    def operator_calls(self) -> set[tuple[str, str, str]]:
        """(API group, resource, verb) of every call the operator (kopf and ours) and its
        analysis Jobs made: everything but the tests' and the node agent's own requests."""
        verbs = {"list": "list", "watch": "watch", "fetch": "get", "create": "create",
                 "update": "patch", "delete": "delete"}  # fmt: skip
        calls = set()
        for request in list(self.server.server):
            if request.resource is None or request.resource.plural is None or not request.action:
                continue  # discovery (/api, /apis): open to every authenticated client
            if request.headers.get("User-Agent") in (TESTS, NODE):
                continue
            resource = request.resource.plural
            if request.subresource:
                resource += f"/{request.subresource}"
            calls.add((request.resource.group, resource, verbs[request.action.value.lower()]))
        return calls

    def job_creations(self) -> list[str]:
        """Names of every Job the API server created (a refused duplicate is not one)."""
        return self.server.server.created("jobs")


def study_text(template: str, s3: S3Bucket) -> str:
    """A study template (STUDY, FAILING) on the test's bucket."""
    return template.format(endpoint=s3.endpoint.url, bucket=s3.name)


@pytest.fixture
def cluster(
    apiserver: Running,
    s3_bucket: S3Bucket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Cluster]:
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    api = config.new_client_from_config(str(kubeconfig))
    api.user_agent = TESTS
    node = config.new_client_from_config(str(kubeconfig))
    node.user_agent = NODE
    core = client.CoreV1Api(api)
    credentials = {
        "AWS_ACCESS_KEY_ID": s3_bucket.endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_bucket.endpoint.secret_key,
    }
    core.create_namespaced_secret(
        NAMESPACE,
        {
            "metadata": {"name": "s3"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in credentials.items()},
        },
    )
    study = parse_study(yaml.safe_load(study_text(STUDY, s3_bucket)))
    store = open_store(study.spec.storage.root())
    corpus_for(study, store, 1024, say=lambda line: None)  # what `stagescreen run` leaves there
    agent = NodeAgent(
        node,
        kubeconfig,
        tmp_path / "pods",
        extra_env={"STAGESCREEN_CACHE": str(tmp_path / "cache")},
    ).start()
    try:
        yield Cluster(api, apiserver, agent, s3_bucket)
    finally:
        agent.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# A study is looked at every 2 s, and a failed handler retried after 2 s (production: 15 s);
# the operator serves its admission webhook (plain HTTP, as only tests may), so the validate
# handler is registered; each test's API server calls no webhook. Ports are free ones, so
# test processes side by side do not collide.
SETTINGS = Settings(
    reconcile_s=2, webhook_port=free_port(), webhook_insecure=True, metrics_port=free_port()
)


def operator(**changes: Any) -> KopfRunner:
    """The operator, as `stagescreen operator` runs it, with the test settings changed."""
    registry = operator_registry(replace(SETTINGS, **changes))
    return KopfRunner(["run", "--standalone", "-A"], registry=registry, timeout=60)


def test_a_study_applied_to_the_cluster_runs_to_succeeded(cluster: Cluster, kubectl: Tool) -> None:
    with operator() as running:
        cluster.apply(STUDY)
        status = cluster.wait("tiny", {"Succeeded", "Failed", "Degraded"})
        check_metrics(status)  # served while the operator runs
    assert running.exception is None, running.output
    assert status["phase"] == "Succeeded", status
    assert status["progress"] == "8/8"
    assert status["stages"]["screen"]["phase"] == "Succeeded"
    assert status["stages"]["confirm"]["summary"].startswith("best ")
    assert status["best"]["stage"] == "confirm"
    assert status["reportUri"].startswith(cluster.s3.uri("studies/tiny/report.md"))
    runs = [
        job
        for job in cluster.jobs()
        if job["metadata"]["labels"]["app.kubernetes.io/component"] == "run"
    ]
    assert len(runs) == 8
    for job in runs:
        assert job["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "cpu"}
        assert job["metadata"]["ownerReferences"][0]["name"] == "tiny"
    names = cluster.job_creations()
    assert len(names) == len(set(names)) == 8 + 2  # no Job created twice; two analyses
    # Everything the operator did, the chart's RBAC allows (tests/chart compares the two).
    assert cluster.operator_calls() <= CALLS | KOPF_CALLS | CRD_CALLS, cluster.operator_calls()
    store = open_store(cluster.s3.uri("studies"))
    keys = StudyKeys("tiny")
    records = [k for k in store.list(keys.runs_prefix()) if k.endswith("/result.json")]
    assert len(records) == 8
    assert store.exists(keys.report())
    shown = on_the_cluster(kubectl, "get", "sstudy", "-n", NAMESPACE)
    described = on_the_cluster(kubectl, "describe", "sstudy", "tiny", "-n", NAMESPACE)
    print(f"$ kubectl get sstudy -n {NAMESPACE}\n{shown}")
    print(f"$ kubectl describe sstudy tiny -n {NAMESPACE}\n{described}")
    assert "Phase:" in described and "Succeeded" in described
    assert "stage screen: 4 runs started" in described  # the study's events
    assert "StudySucceeded" in described
    assert shown.split("\n")[0].split() == [
        "NAME",
        "STAGE",
        "PHASE",
        "DONE/TOTAL",
        "BEST",
        "METRIC",
        "AGE",
    ]
    assert shown.split("\n")[1].split()[:4] == ["tiny", "confirm", "Succeeded", "8/8"]
    # Deleting the study deletes its Jobs (owner references) and keeps its results; kopf
    # holds a finalizer (for the timer), which a running operator releases.
    with operator():
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "tiny")
        wait_for(lambda: not cluster.jobs(), "the study's Jobs deleted with it")
        wait_for(
            lambda: not any(("study", "tiny") in labels for _, labels in scrape()),
            "the deleted study's metrics dropped",
        )
    assert len([k for k in store.list(keys.runs_prefix()) if k.endswith("/result.json")]) == 8


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The operator's /metrics, as {(sample name, sorted labels): value}."""
    port = SETTINGS.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def check_metrics(status: dict[str, Any]) -> None:
    """What /metrics says about the study is what happened to it."""
    samples = scrape()
    study = (("namespace", NAMESPACE), ("study", "tiny"))

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted((*study, *labels.items()))))]

    for stage in ("screen", "confirm"):
        assert value("stagescreen_runs", stage=stage, pool="cpu", status="succeeded") == 4
        assert value("stagescreen_runs", stage=stage, pool="cpu", status="failed") == 0
    assert value("stagescreen_study_phase", phase="Succeeded") == 1
    assert value("stagescreen_study_phase", phase="Running") == 0
    assert value("stagescreen_study_best", metric="val_bpb") == status["best"]["mean"]
    assert value("stagescreen_stage_transitions_total", stage="screen", phase="Succeeded") >= 1
    assert value("stagescreen_study_gpu_seconds", pool="cpu") == 0  # a CPU pool
    assert samples[("stagescreen_run_duration_seconds_count", (("pool", "cpu"),))] >= 8
    assert value("stagescreen_jobs_pending", pool="cpu") == 0
    assert any(name == "stagescreen_reconcile_duration_seconds_count" for name, _ in samples)
    assert all("run_id" not in dict(labels) for _, labels in samples)  # bounded cardinality


def on_the_cluster(kubectl: Tool, *args: str) -> str:
    """The real kubectl (make tools) against the test API server."""
    return kubectl("--kubeconfig", os.environ["KUBECONFIG"], *args).stdout


FAILING = STUDY.replace(
    "{{name: MATRIX_LR, code: B, low: 0.02, high: 0.06}}",
    "{{name: UNEMBEDDING_LR, code: B, low: 0.004, high: 500}}",
).replace("MAX_STEPS: 40", "MAX_STEPS: 400, CHECKPOINT_EVERY: 0.5")


def test_failures_are_recorded_with_their_reasons_and_degrade_the_study(cluster: Cluster) -> None:
    """c02 and c04 (UNEMBEDDING_LR 500) diverge; c03's pods die on the node until the Job
    gives up; c01 is preempted mid-run and resumes from its checkpoint; the API refuses the
    first two Job creations (500) and two writes to the study (409). More than maxFailedRuns
    (1) failed: Degraded, no more starts."""
    from stagescreen_operator.kube.jobs import job_name

    c01, c03 = (job_name("tiny", f"screen-{c}-30s-s1-cpu") for c in ("c01", "c03"))
    cluster.agent.crashing.add(c03)
    cluster.server.server.inject("create", "jobs", 500, times=2)
    cluster.server.server.inject("update", PLURAL, 409, times=2)  # status patches refused
    with operator() as running:
        cluster.apply(FAILING)
        wait_for(lambda: "step 0" in _text(cluster.agent.log_of(c01)), "c01 training")
        assert cluster.agent.preempt(c01)
        cluster.wait("tiny", {"Degraded", "Failed", "Succeeded"})  # from 2 failures on
        wait_for(lambda: len(runs_ended(cluster)) == 4, "all screen runs recorded")
        wait_for(
            lambda: "3 runs" in (cluster.study().get("status") or {}).get("message", ""),
            "the third failure counted",
        )
        status = cluster.study()["status"]
    assert running.exception is None, running.output
    assert status["phase"] == "Degraded", status
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "TooManyFailedRuns")
    assert "3 runs failed or diverged, more than maxFailedRuns 1" in degraded["message"]
    records = runs_ended(cluster)
    for condition in ("c02", "c04"):
        record = records[f"screen-{condition}-30s-s1-cpu"]
        assert record["status"] == "diverged" and "above DIVERGE_LOSS" in record["reason"]
    crashed = records["screen-c03-30s-s1-cpu"]
    assert crashed["status"] == "failed" and "BackoffLimitExceeded" in crashed["reason"]
    resumed = records["screen-c01-30s-s1-cpu"]
    assert resumed["status"] == "succeeded" and resumed["resumed_from"], resumed
    assert cluster.agent.log_of(c01, 2).exists()  # the preempted pod was replaced
    names = cluster.job_creations()
    assert len(names) == len(set(names))  # nothing created twice
    # No confirm run started; the complete screen may still be analysed (Degraded stops
    # new runs, not the analysis of what has ended).
    assert {n for n in names if "analyse" not in n} == {
        job_name("tiny", f"screen-{c}-30s-s1-cpu") for c in ("c01", "c02", "c03", "c04")
    }
    reasons = {
        event.reason
        for event in client.CoreV1Api(cluster.api).list_namespaced_event(NAMESPACE).items
    }
    assert {"RunsStarted", "RunDiverged", "RunFailed", "StudyDegraded"} <= reasons


def runs_ended(cluster: Cluster) -> dict[str, dict[str, Any]]:
    store = open_store(cluster.s3.uri("studies"))
    keys = StudyKeys("tiny")
    found = [
        store.get_json(k) for k in store.list(keys.runs_prefix()) if k.endswith("/result.json")
    ]
    return {record["run_id"]: record for record in found}


def wait_for(check: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _any_job(cluster: Cluster) -> bool:
    return bool(cluster.jobs())


def _screen_analysed(cluster: Cluster) -> bool:
    stages = (cluster.study().get("status") or {}).get("stages") or {}
    return (stages.get("screen") or {}).get("phase") == "Succeeded"


@pytest.mark.parametrize(
    "stop_when", [_any_job, _screen_analysed], ids=["first-jobs", "screen-analysed"]
)
def test_an_operator_restarted_mid_study_finishes_it_with_the_same_runs(
    cluster: Cluster, stop_when: Any
) -> None:
    with operator() as first:
        cluster.apply(STUDY)
        wait_for(lambda: stop_when(cluster), stop_when.__name__)
    assert first.exception is None, first.output
    with operator() as second:  # the Jobs ran on while no operator was there
        status = cluster.wait("tiny", {"Succeeded", "Failed", "Degraded"})
    assert second.exception is None, second.output
    assert status["phase"] == "Succeeded", status
    names = cluster.job_creations()
    assert len(names) == len(set(names)) == 8 + 2  # every Job made once, none made again
    ended = runs_ended(cluster)
    assert {run for run in ended if run.startswith("screen-")} == {
        f"screen-{c}-30s-s1-cpu" for c in ("c01", "c02", "c03", "c04")
    }
    assert len([r for r in runs_ended(cluster) if r.startswith("confirm-")]) == 4
