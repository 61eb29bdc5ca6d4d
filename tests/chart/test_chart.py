"""The Helm chart: lint, every documented mode renders manifests valid for a current
Kubernetes, the CRD is the generated one, and the RBAC grants exactly what the operator calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from binaries import Tool

from stagescreen_operator.kube.cluster import CALLS, CRD_CALLS, KOPF_CALLS, OWNER_CALLS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "stagescreen"
K8S = "1.33.0"
MODES = {
    "cluster-wide": [],
    "namespaced": ["--set", "watchNamespaces={ml,research}"],
    "webhook-off": ["--set", "webhook.enabled=false"],
    "monitoring": [
        "--set", "monitoring.serviceMonitor.enabled=true",
        "--set", "monitoring.prometheusRule.enabled=true",
        "--set", "monitoring.grafanaDashboard.enabled=true",
    ],
}  # fmt: skip
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}  # CRDs of prometheus-operator


def render(helm: Tool, *options: str) -> list[dict[str, Any]]:
    out = helm("template", "stagescreen", str(CHART), "-n", "stagescreen", *options).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_the_chart_lints_strictly(helm: Tool) -> None:
    helm("lint", "--strict", str(CHART))


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_renders_manifests_a_current_kubernetes_accepts(mode: str, helm: Tool) -> None:
    documents = render(helm, *MODES[mode])
    kinds = {doc["kind"] for doc in documents}
    assert {"Deployment", "ServiceAccount", "Service"} <= kinds
    for doc in documents:
        if doc["kind"] in MONITORING_KINDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["spec"]
            continue
        kubernetes_validate.validate(doc, K8S, strict=True)
    assert ("ValidatingWebhookConfiguration" in kinds) == (mode != "webhook-off")
    assert ("PrometheusRule" in kinds) == (mode == "monitoring")


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_cluster_wide_rbac_grants_exactly_what_the_operator_calls(helm: Tool) -> None:
    roles = {doc["metadata"]["name"]: doc for doc in render(helm) if doc["kind"] == "ClusterRole"}
    assert grants(roles["stagescreen-operator"]["rules"]) == CALLS | KOPF_CALLS | OWNER_CALLS
    assert grants(roles["stagescreen-crd-reader"]["rules"]) == CRD_CALLS
    assert all("*" not in str(role["rules"]) for role in roles.values())


def test_namespaced_rbac_is_a_role_per_watched_namespace(helm: Tool) -> None:
    documents = render(helm, *MODES["namespaced"])
    operator_roles = [
        doc
        for doc in documents
        if doc["kind"] == "Role" and doc["metadata"]["name"].endswith("-operator")
    ]
    assert sorted(role["metadata"]["namespace"] for role in operator_roles) == ["ml", "research"]
    for role in operator_roles:
        assert grants(role["rules"]) == CALLS | KOPF_CALLS | OWNER_CALLS
    assert [doc["metadata"]["name"] for doc in documents if doc["kind"] == "ClusterRole"] == [
        "stagescreen-crd-reader"
    ]


def test_analysis_jobs_may_only_read_and_write_a_study_status(helm: Tool) -> None:
    documents = render(helm, *MODES["namespaced"])
    analysis = [
        d for d in documents if d["kind"] == "Role" and d["metadata"]["name"].endswith("-analysis")
    ]
    assert sorted(role["metadata"]["namespace"] for role in analysis) == ["ml", "research"]
    for role in analysis:
        assert grants(role["rules"]) == {
            ("stagescreen.dev", "screeningstudies/status", "get"),
            ("stagescreen.dev", "screeningstudies/status", "patch"),
        }


def test_a_wrong_value_is_refused_naming_its_path(helm: Tool) -> None:
    done = helm("template", "stagescreen", str(CHART), "--set", "webhook.port=80", check=False)
    assert done.returncode != 0 and "/webhook/port" in done.stderr
    typo = helm("template", "stagescreen", str(CHART), "--set", "watchNamespace=ml", check=False)
    assert typo.returncode != 0 and "watchNamespace" in typo.stderr


def test_the_deployment_is_hardened_and_probed(helm: Tool) -> None:
    deployment = next(doc for doc in render(helm) if doc["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 1
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]
    assert env["STAGESCREEN_WEBHOOK_PORT"]["value"] == "9443"


def test_the_dashboard_and_the_alerts_ship_as_they_are_tested(helm: Tool) -> None:
    documents = render(helm, *MODES["monitoring"])
    rule = next(doc for doc in documents if doc["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    dashboard = next(doc for doc in documents if doc["kind"] == "ConfigMap")
    assert json.loads(dashboard["data"]["stagescreen.json"])["title"] == "StageScreen"


def test_the_cluster_pools_reach_the_operator(helm: Tool) -> None:
    deployment = next(
        doc
        for doc in render(helm, "--set", "pools[0].name=a100", "--set", "pools[0].queueName=gpus")
        if doc["kind"] == "Deployment"
    )
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert json.loads(env["STAGESCREEN_POOLS"]) == [{"name": "a100", "queueName": "gpus"}]
