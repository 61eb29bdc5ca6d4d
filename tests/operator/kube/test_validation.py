"""A bad study never runs: the webhook refuses it at apply time over real HTTP (kopf's
admission server), and where no webhook is installed the create handler marks it Failed with
the same messages and creates nothing."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from apiserver import Running
from bad_specs import BROKEN, base, broken
from kube_cluster import GROUP, NAMESPACE, PLURAL, VERSION, free_port, operator
from kubernetes import client, config


def review(study: dict, old: dict | None = None) -> dict:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "review-1",
            "kind": {"group": GROUP, "version": VERSION, "kind": "ScreeningStudy"},
            "resource": {"group": GROUP, "version": VERSION, "resource": PLURAL},
            "operation": "UPDATE" if old else "CREATE",
            "userInfo": {"username": "researcher"},
            "object": study,
            "oldObject": old,
            "dryRun": False,
        },
    }


def ask(port: int, payload: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/study",
        json.dumps(payload).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return dict(json.loads(answer.read())["response"])


def wait_until_serving(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError("the admission webhook did not start")


def test_the_webhook_refuses_every_broken_spec_naming_its_field(
    apiserver: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("KUBECONFIG", str(apiserver.write_kubeconfig(tmp_path / "kubeconfig")))
    with operator(webhook_port=port) as runner:
        wait_until_serving(port)
        assert ask(port, review(base()))["allowed"] is True
        for name, (_, path) in BROKEN.items():
            answer = ask(port, review(broken(name)))
            assert answer["allowed"] is False, name
            assert answer["status"]["code"] == 422
            assert path in answer["status"]["message"], (name, answer["status"]["message"])
        old = base()
        old["status"] = {"stages": {"screen": {"runs": {"total": 4}}}}
        changed = json.loads(json.dumps(old))
        changed["spec"]["stages"][0]["seeds"] = [1, 2]
        answer = ask(port, review(changed, old))
        assert answer["allowed"] is False
        assert "spec.stages[0].seeds: stage 'screen' has started" in answer["status"]["message"]
    assert runner.exception is None, runner.output


def test_without_a_webhook_a_broken_study_is_failed_with_its_problems_and_runs_nothing(
    apiserver: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test API server calls no webhook, as a cluster without the chart's webhook."""
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    api = config.new_client_from_config(str(kubeconfig))
    custom = client.CustomObjectsApi(api)
    names = {}
    with operator() as runner:
        for index, name in enumerate(sorted(BROKEN)):
            study = broken(name)
            if BROKEN[name][1] != "metadata.name":  # the case is the name itself
                study["metadata"]["name"] = f"bad-{index}"
            custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, study)
            names[study["metadata"]["name"]] = BROKEN[name][1]
        deadline = time.monotonic() + 120
        pending = dict(names)
        while pending and time.monotonic() < deadline:
            for study, path in list(pending.items()):
                status = (
                    custom.get_namespaced_custom_object(
                        GROUP, VERSION, NAMESPACE, PLURAL, study
                    ).get("status")
                    or {}
                )
                if status.get("phase") == "Failed":
                    assert path in status["message"], (study, status["message"])
                    del pending[study]
            time.sleep(0.5)
    assert runner.exception is None, runner.output
    assert not pending, f"not marked Failed: {sorted(pending)}"
    assert client.BatchV1Api(api).list_namespaced_job(NAMESPACE).items == []
