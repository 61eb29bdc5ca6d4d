"""The operator end to end: kopf running for real against the test API server, a node agent
running every Job's container as a local process (the real trainer, the real analysis
command), results in a real SeaweedFS S3."""

from __future__ import annotations

import os
import re
import urllib.request
from typing import Any

import pytest
import yaml
from agent import image_id
from binaries import Tool
from kube_cluster import (
    GROUP,
    NAMESPACE,
    NODE,
    PLURAL,
    SETTINGS,
    STUDY,
    TESTS,
    VERSION,
    Cluster,
    operator,
    runs_ended,
    study_text,
    text_of,
    wait_for,
)
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from stagescreen.storage.keys import StudyKeys
from stagescreen.storage.ownership import ADOPT
from stagescreen.storage.store import open_store
from stagescreen_operator.kube.cluster import CALLS, CRD_CALLS, KOPF_CALLS


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
    # The operator lists and watches only its own Jobs: the API server selects them.
    for request in list(cluster.server.server):
        if request.headers.get("User-Agent") in (TESTS, NODE) or request.resource is None:
            continue
        if request.resource.plural in ("jobs", "pods") and request.action.value.lower() in (
            "list",
            "watch",
        ):
            assert "stagescreen" in (request.params.get("labelSelector") or ""), request.url
    store = open_store(cluster.s3.uri("studies"))
    keys = StudyKeys("tiny")
    records = [k for k in store.list(keys.runs_prefix()) if k.endswith("/result.json")]
    assert len(records) == 8
    assert store.exists(keys.report())
    # The image each run's pod ran, as the kubelet reported it, is in its results: the
    # operator wrote it beside the record, and the analysis joined it in.
    digest = image_id(runs[0]["spec"]["template"]["spec"]["containers"][0]["image"])
    assert re.fullmatch(r"docker\.io/library/stagescreen-trainer@sha256:[0-9a-f]{64}", digest)
    for stage in ("screen", "confirm"):
        results = store.get_frame(keys.stage(stage, "results.parquet"))
        assert (results["status"] == "succeeded").all()
        assert (results["provenance.image_digest"] == digest).all(), results
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
        wait_for(lambda: "step 0" in text_of(cluster.agent.log_of(c01)), "c01 training")
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


OTHER_LEVELS = STUDY.replace(
    "MATRIX_LR, code: B, low: 0.02, high: 0.06", "MATRIX_LR, code: B, low: 0.02, high: 0.08"
)


def test_a_study_re_created_under_its_name_reads_the_old_runs_only_when_it_adopts_them(
    cluster: Cluster,
) -> None:
    """Delete a finished study and apply the same name with other levels: it fails, naming
    the folder and the ways out, and reads nothing of the old one (no run counted, no Job).
    The same spec with `stagescreen.dev/adopt: "<old uid>"` takes the old runs over and ends
    Succeeded without a new Job."""
    store = open_store(cluster.s3.uri("studies"))
    keys = StudyKeys("tiny")
    folder = f"storage folder {cluster.s3.uri('studies/tiny')}/"

    def gone() -> bool:
        listed = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
        return not listed["items"]

    def delete() -> None:
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "tiny")
        wait_for(gone, "the study deleted")

    def apply(template: str, annotations: dict[str, str] | None = None) -> str:
        body = yaml.safe_load(study_text(template, cluster.s3))
        body["metadata"]["annotations"] = annotations or {}
        created = cluster.custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, body
        )
        return str(created["metadata"]["uid"])

    with operator() as running:
        first = apply(STUDY)
        assert cluster.wait("tiny", {"Succeeded", "Failed", "Degraded"})["phase"] == "Succeeded"
        records = runs_ended(cluster)
        outcome = store.get_json(keys.stage("confirm", "outcome.json"))
        delete()
        second = apply(OTHER_LEVELS)
        assert second != first  # a re-created study is another object
        status = cluster.wait("tiny", {"Succeeded", "Failed", "Degraded", "Running"})
        assert status["phase"] == "Failed", status
        message = " ".join(status["message"].split())
        assert message.startswith(folder), message
        assert f"uid {first}" in message and "differs in spec.factors" in message
        assert "another metadata.name or spec.storage.s3.prefix" in message
        assert not status.get("runs", {}).get("total") and not status.get("stages"), status
        failed = next(c for c in status["conditions"] if c["type"] == "Degraded")
        assert failed["reason"] == "StorageFolderTaken"
        delete()
        apply(STUDY)  # the old spec, not adopted: refused, saying how to adopt
        status = cluster.wait("tiny", {"Succeeded", "Failed", "Degraded", "Running"})
        assert status["phase"] == "Failed", status
        assert f'{ADOPT}: "{first}"' in " ".join(status["message"].split())
        delete()
        third = apply(STUDY, {ADOPT: first})
        status = cluster.wait("tiny", {"Succeeded", "Failed", "Degraded"})
    assert running.exception is None, running.output
    assert status["phase"] == "Succeeded", status
    assert status["progress"] == "8/8"
    assert len(cluster.job_creations()) == 8 + 2  # the first study's Jobs only
    assert runs_ended(cluster) == records  # the old runs, nothing added or rewritten
    assert store.get_json(keys.stage("confirm", "outcome.json")) == outcome
    owner = store.get_json(keys.owner())
    assert (owner["uid"], owner["adopted_from"]) == (third, first)
