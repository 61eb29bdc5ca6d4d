"""The chart's `pools` value: every Pool field, the pod settings included, passes the values
schema (generated from the Pool model) and reaches the operator as the model reads it; a
value Kubernetes would refuse is refused by `helm install`, naming its path."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from binaries import Tool

from stagescreen_operator.kube.pools import cluster_pools

CHART = Path(__file__).resolve().parents[2] / "charts" / "stagescreen"
POOL = {
    "name": "l40s",
    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L40S"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "imagePullSecrets": ["registry-creds"],
    "priorityClassName": "research-low",
    "runtimeClassName": "nvidia",
    "serviceAccountName": "s3-reader",
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    "terminationGracePeriodSeconds": 300,
    "shmSizeLimit": "16Gi",
}


def render_pools(helm: Tool, pools: list[dict]) -> str:  # type: ignore[type-arg]
    done = helm("template", "stagescreen", str(CHART), "--set-json", f"pools={json.dumps(pools)}")
    deployment = next(
        doc for doc in yaml.safe_load_all(done.stdout) if doc and doc["kind"] == "Deployment"
    )
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return str(next(e["value"] for e in env if e["name"] == "STAGESCREEN_POOLS"))


def test_every_pool_setting_passes_the_schema_and_reaches_the_operator(helm: Tool) -> None:
    text = render_pools(helm, [POOL])
    assert json.loads(text) == [POOL]
    (pool,) = cluster_pools(text)
    assert pool.runtime_class_name == "nvidia" and pool.shm_size_limit == "16Gi"
    assert pool.model_dump(mode="json", by_alias=True, exclude_unset=True) == POOL


def test_a_pool_setting_kubernetes_would_refuse_fails_the_install(helm: Tool) -> None:
    for field, value in (
        ("shmSizeLimit", "8GB"),
        ("terminationGracePeriodSeconds", -1),
        ("imagePullSecrets", "registry-creds"),
        ("affinity", {"nodeAfinity": {}}),
    ):
        done = helm(
            "template",
            "stagescreen",
            str(CHART),
            "--set-json",
            f"pools={json.dumps([{'name': 'a100', field: value}])}",
            check=False,
        )
        assert done.returncode != 0, field
        assert "/pools/0" in done.stderr, (field, done.stderr)
