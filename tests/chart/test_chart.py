"""The Helm chart: lint, every documented mode renders manifests valid for a current
Kubernetes, the CRD is the generated one, the RBAC grants exactly what the operator calls, and
the webhook can neither wedge the operator nor be installed with a CA nobody knows."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import celpy
import kubernetes_validate
import pytest
import yaml
from binaries import Tool

from stagescreen_operator.kube.cluster import CALLS, CRD_CALLS, KOPF_CALLS, OWNER_CALLS
from stagescreen_operator.kube.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "stagescreen"
K8S = "1.33.0"
MODES = {
    "default": [],
    "cluster-wide": ["--set", "clusterWide=true", "--set", "studyNamespaces={ml}"],
    "namespaced": ["--set", "watchNamespaces={ml,research}"],
    "webhook-off": ["--set", "webhook.enabled=false"],
    "cert-manager": ["--set", "webhook.certManager.enabled=true"],
    "cert-manager-issuer": [
        "--set", "webhook.certManager.enabled=true",
        "--set", "webhook.certManager.issuerRef.name=platform-ca",
        "--set", "webhook.certManager.issuerRef.kind=ClusterIssuer",
    ],
    "existing-tls": [
        "--set", "webhook.existingTLSSecret=webhook-tls", "--set", "webhook.caBundle=Q0E=",
    ],
    "monitoring": [
        "--set", "monitoring.serviceMonitor.enabled=true",
        "--set", "monitoring.prometheusRule.enabled=true",
        "--set", "monitoring.grafanaDashboard.enabled=true",
    ],
}  # fmt: skip
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}  # CRDs of prometheus-operator
CERT_MANAGER_KINDS = {"Certificate", "Issuer"}
OPERATOR = "system:serviceaccount:stagescreen:stagescreen"  # who the operator's requests are


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
        if doc["kind"] in CERT_MANAGER_KINDS:
            assert doc["apiVersion"] == "cert-manager.io/v1" and doc["spec"]
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
    documents = render(helm, *MODES["cluster-wide"])
    roles = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "ClusterRole"}
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


def test_the_default_install_works_in_its_own_namespace_and_nowhere_else(helm: Tool) -> None:
    """Namespaced by default: the operator watches the release namespace, may create Jobs
    only there, and the analysis Jobs' ServiceAccount and Role are there too."""
    documents = render(helm)
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=stagescreen"]
    cluster_roles = [doc for doc in documents if doc["kind"] == "ClusterRole"]
    assert [role["metadata"]["name"] for role in cluster_roles] == ["stagescreen-crd-reader"]
    assert not any(
        verb == "create" for role in cluster_roles for _, _, verb in grants(role["rules"])
    )
    placed = {
        (doc["kind"], doc["metadata"]["name"], doc["metadata"].get("namespace"))
        for doc in documents
        if doc["kind"] in ("Role", "RoleBinding", "ServiceAccount")
    }
    assert placed == {
        ("ServiceAccount", "stagescreen", "stagescreen"),
        ("ServiceAccount", "stagescreen-analysis", "stagescreen"),
        ("Role", "stagescreen-operator", "stagescreen"),
        ("RoleBinding", "stagescreen-operator", "stagescreen"),
        ("Role", "stagescreen-analysis", "stagescreen"),
        ("RoleBinding", "stagescreen-analysis", "stagescreen"),
    }
    role = next(
        d for d in documents if d["kind"] == "Role" and d["metadata"]["name"].endswith("-operator")
    )
    assert grants(role["rules"]) == CALLS | KOPF_CALLS | OWNER_CALLS
    webhook = next(d for d in documents if d["kind"] == "ValidatingWebhookConfiguration")
    selector = webhook["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]
    assert (selector["key"], selector["values"]) == ("kubernetes.io/metadata.name", ["stagescreen"])


def test_every_watched_namespace_gets_the_analysis_service_account(helm: Tool) -> None:
    documents = render(helm, *MODES["namespaced"])
    accounts = [
        doc["metadata"]["namespace"]
        for doc in documents
        if doc["kind"] == "ServiceAccount" and doc["metadata"]["name"] == "stagescreen-analysis"
    ]
    assert sorted(accounts) == ["ml", "research"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--set", "clusterWide=true", "--set", "watchNamespaces={ml}"], "leave watchNamespaces"),
        (["--set", "studyNamespaces={ml}"], "studyNamespaces is for clusterWide: true"),
        (["--set", "webhook.caBundle=Q0E="], "set both, or neither"),
        (
            ["--set", "webhook.certManager.enabled=true", "--set", "webhook.existingTLSSecret=x"],
            "cert-manager writes the webhook's Secret",
        ),
    ],
)
def test_values_that_contradict_each_other_fail_the_render(
    options: list[str], message: str, helm: Tool
) -> None:
    done = helm("template", "stagescreen", str(CHART), *options, check=False)
    assert done.returncode != 0 and message in done.stderr, done.stderr


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


def test_the_startup_allowance_reaches_the_operators_settings(helm: Tool) -> None:
    deployment = next(
        doc
        for doc in render(
            helm, "--set", "startup.allowanceSeconds=600", "--set", "startup.attempts=5"
        )
        if doc["kind"] == "Deployment"
    )
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        if "value" in e
    }
    settings = Settings.from_env(env)
    assert (settings.startup_allowance_s, settings.start_attempts) == (600, 5)


# --- the webhook ---------------------------------------------------------------------------


def webhook_of(documents: list[dict[str, Any]]) -> dict[str, Any]:
    config = next(d for d in documents if d["kind"] == "ValidatingWebhookConfiguration")
    return dict(config["webhooks"][0])


def called(webhook: dict[str, Any], operation: str, user: str, old: Any, new: Any) -> bool:
    """Whether the API server calls the webhook for this request: every matchCondition
    evaluated for real (CEL), as the API server does before calling."""
    env = celpy.Environment()
    review = {
        "request": {"operation": operation, "userInfo": {"username": user}},
        "object": {"metadata": {"name": "s"}, "spec": new},
        "oldObject": None if old is None else {"metadata": {"name": "s"}, "spec": old},
    }
    activation = celpy.json_to_cel(review)
    return all(
        bool(env.program(env.compile(condition["expression"])).evaluate(activation))
        for condition in webhook["matchConditions"]
    )


def test_the_webhook_judges_only_user_changes_to_spec(helm: Tool) -> None:
    """kopf's finalizer and annotation patches leave spec alone, the status subresource is not
    in the rules, and the operator's own account is never judged: a webhook that is down
    blocks users, never the operator."""
    webhook = webhook_of(render(helm))
    assert webhook["rules"][0]["resources"] == ["screeningstudies"]  # not screeningstudies/status
    assert webhook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    spec, changed = {"seeds": [1]}, {"seeds": [1, 2]}
    assert called(webhook, "CREATE", "jane", None, spec)
    assert called(webhook, "UPDATE", "jane", spec, changed)
    assert not called(webhook, "UPDATE", "jane", spec, spec)  # labels, annotations, finalizers
    assert not called(webhook, "UPDATE", OPERATOR, spec, spec)  # kopf's bookkeeping
    assert not called(webhook, "UPDATE", OPERATOR, spec, changed)
    assert not called(webhook, "CREATE", OPERATOR, None, spec)


def test_the_generated_certificate_the_ca_bundle_and_the_pod_agree(helm: Tool) -> None:
    """Without a cluster to read (helm template, Argo CD) every render makes a new CA: the
    Secret, the caBundle and the pod's checksum all come from the same one, so a new
    certificate restarts the pod and the API server trusts what it serves."""
    checksums = set()
    for _ in range(2):
        documents = render(helm)
        secret = next(d for d in documents if d["kind"] == "Secret")
        assert webhook_of(documents)["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
        deployment = next(d for d in documents if d["kind"] == "Deployment")
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        digest = hashlib.sha256(
            json.dumps(secret["data"], separators=(",", ":"), sort_keys=True).encode()
        )
        assert annotations["checksum/webhook-tls"] == digest.hexdigest()[:16]
        checksums.add(annotations["checksum/webhook-tls"])
    assert len(checksums) == 2  # a new certificate: a new pod


def test_an_existing_secret_the_render_cannot_read_fails_naming_the_ways_out(
    helm: Tool,
) -> None:
    done = helm(
        "template", "stagescreen", str(CHART), "--set", "webhook.existingTLSSecret=tls", check=False
    )
    assert done.returncode != 0
    for way_out in ("webhook.caBundle", "webhook.certManager.enabled=true", "helm install"):
        assert way_out in done.stderr, done.stderr
    documents = render(helm, *MODES["existing-tls"])
    assert webhook_of(documents)["clientConfig"]["caBundle"] == "Q0E="
    assert not any(d["kind"] == "Secret" for d in documents)  # the user's Secret is theirs
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]
    assert "checksum/webhook-tls" in pod["metadata"]["annotations"]
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == "webhook-tls"


@pytest.mark.parametrize("mode", ["cert-manager", "cert-manager-issuer"])
def test_cert_manager_issues_the_certificate_and_injects_its_ca(mode: str, helm: Tool) -> None:
    documents = render(helm, *MODES[mode])
    config = next(d for d in documents if d["kind"] == "ValidatingWebhookConfiguration")
    annotations = config["metadata"]["annotations"]
    assert annotations["cert-manager.io/inject-ca-from"] == "stagescreen/stagescreen-webhook"
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]  # cert-manager fills it
    assert not any(d["kind"] == "Secret" for d in documents)
    certificate = next(d for d in documents if d["kind"] == "Certificate")
    assert certificate["metadata"]["name"] == "stagescreen-webhook"
    assert certificate["spec"]["secretName"] == "stagescreen-webhook-tls"
    assert "stagescreen-webhook.stagescreen.svc" in certificate["spec"]["dnsNames"]
    issuers = [d for d in documents if d["kind"] == "Issuer"]
    issuer = certificate["spec"]["issuerRef"]
    if mode == "cert-manager":
        assert [i["spec"] for i in issuers] == [{"selfSigned": {}}]
        assert issuer == {
            "name": issuers[0]["metadata"]["name"],
            "kind": "Issuer",
            "group": "cert-manager.io",
        }
    else:
        assert not issuers
        assert issuer == {
            "name": "platform-ca",
            "kind": "ClusterIssuer",
            "group": "cert-manager.io",
        }
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == "stagescreen-webhook-tls"
