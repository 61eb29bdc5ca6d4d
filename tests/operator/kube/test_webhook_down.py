"""A webhook that cannot stop the operator, end to end: the chart's
ValidatingWebhookConfiguration with nothing answering at its address, failurePolicy Fail,
in the test API server's write path (admission_chain.py); kopf against it as the operator's
ServiceAccount, the node agent running the real trainer, results in SeaweedFS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from binaries import Tool
from kube_cluster import (
    GROUP,
    NAMESPACE,
    PLURAL,
    ROOT,
    STUDY,
    VERSION,
    Cluster,
    free_port,
    operator,
    study_text,
    wait_for,
)
from kubernetes import client


def test_a_broken_webhook_refuses_users_and_never_the_operator(
    cluster: Cluster, helm: Tool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart's webhook with nothing answering at its address, failurePolicy Fail: a
    user's spec change and a new study are refused, while the operator, whose requests are
    its ServiceAccount's, adds its finalizer, runs the study admitted earlier to Succeeded
    and, when it is deleted, removes the finalizer."""
    cluster.apply(STUDY)  # admitted while the webhook was up
    rendered = helm(
        "template", "stagescreen", str(ROOT / "charts" / "stagescreen"),
        "-n", "stagescreen", "--set", f"watchNamespaces={{{NAMESPACE}}}",
    ).stdout  # fmt: skip
    config_ = next(
        doc
        for doc in yaml.safe_load_all(rendered)
        if doc and doc["kind"] == "ValidatingWebhookConfiguration"
    )
    hook = config_["webhooks"][0]
    assert hook["failurePolicy"] == "Fail"
    url = f"https://127.0.0.1:{free_port()}/study"  # the webhook is down
    hook["clientConfig"] = {"url": url, "caBundle": hook["clientConfig"]["caBundle"]}
    client.AdmissionregistrationV1Api(cluster.api).create_validating_webhook_configuration(
        config_, _preload_content=False
    )
    account = cluster.server.server.kubeconfig(cluster.server.url)
    account["users"][0]["user"]["token"] = "system:serviceaccount:stagescreen:stagescreen"
    kubeconfig = tmp_path / "operator-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(account))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # the operator's identity

    def refused(call: Any) -> str:
        try:
            call()
        except client.ApiException as error:
            assert error.status == 500, error.body
            return str(json.loads(error.body)["message"])
        raise AssertionError("the API server let a user's write past a broken webhook")

    change = {"spec": {"limits": {"parallelism": 2, "maxFailedRuns": 1}}}
    with operator() as running:
        message = refused(
            lambda: cluster.custom.patch_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, "tiny", change
            )
        )
        assert message.startswith(
            'Internal error occurred: failed calling webhook "study.stagescreen.dev": '
            f'failed to call webhook: Post "{url}?timeout=10s": '
        ), message
        another = yaml.safe_load(study_text(STUDY, cluster.s3))
        another["metadata"]["name"] = "another"
        refused(
            lambda: cluster.custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, another
            )
        )
        status = cluster.wait("tiny", {"Succeeded", "Failed", "Degraded"})
        assert cluster.study()["metadata"]["finalizers"]
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "tiny")
        wait_for(lambda: not _exists(cluster, "tiny"), "the finalizer removed, the study gone")
    assert running.exception is None, running.output
    assert status["phase"] == "Succeeded", status
    assert status["progress"] == "8/8"
    kopf_writes = {
        request.headers.get("Authorization")
        for request in list(cluster.server.server)
        if str(request.headers.get("User-Agent")).startswith("kopf/")
        and request.resource is not None
        and request.resource.plural == PLURAL
        and request.action is not None
        and request.action.value.lower() == "update"
    }
    assert kopf_writes == {"Bearer system:serviceaccount:stagescreen:stagescreen"}


def _exists(cluster: Cluster, name: str) -> bool:
    try:
        cluster.study(name)
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True
