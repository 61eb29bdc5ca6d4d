"""The Jobs the operator creates: names, placement, environment, failure policy and security,
validated against the real Kubernetes schema (kubernetes-validate --strict)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes_validate
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from stagescreen.planning.planner import plan_stage
from stagescreen.study.parse import load_study, parse_study
from stagescreen_contract.caches import cache_defaults, cache_environment
from stagescreen_operator.cli import app
from stagescreen_operator.kube.jobs import analysis_job, job_name, run_job
from stagescreen_operator.kube.pools import cluster_pools, with_cluster_pools

ROOT = Path(__file__).resolve().parents[3]
PAPER = load_study(ROOT / "examples" / "paper.yaml")
K8S = "1.33.0"  # a current release; kubernetes-validate bundles its schemas
CORPUS = {"DATA_URI": "s3://b/data", "TOKENIZER_URI": "s3://b/tok"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def screen_jobs(study=PAPER) -> list[dict]:  # type: ignore[no-untyped-def]
    plan = plan_stage(study.spec, study.spec.stages[0], pd.DataFrame())
    return [run_job(study, run, namespace="ml", uid="u-1", corpus=CORPUS) for run in plan.runs]


def env_of(job: dict) -> dict:
    return {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_job_names_are_deterministic_labels_of_at_most_63_characters() -> None:
    assert job_name("paper", "screen-c01-2m-s1-a100") == "paper-screen-c01-2m-s1-a100"
    study = "a-study-with-a-rather-long-name-of-forty"
    long_a = job_name(study, "long-horizon-c04-b0-12h-s2-a100")
    long_b = job_name(study, "long-horizon-c04-b0-12h-s2-l40s")
    assert len(long_a) <= 63 and len(long_b) <= 63
    assert long_a != long_b
    assert long_a == job_name(study, "long-horizon-c04-b0-12h-s2-a100")
    assert DNS_LABEL.fullmatch(long_a) and DNS_LABEL.fullmatch(long_b)


def test_every_screen_job_of_the_paper_validates_strictly() -> None:
    jobs = screen_jobs()
    assert len(jobs) == 48
    for job in jobs:
        kubernetes_validate.validate(job, K8S, strict=True)
    assert len({job["metadata"]["name"] for job in jobs}) == 48


def test_a_run_lands_on_its_pool_with_its_gpus_and_its_identity() -> None:
    job = screen_jobs()[0]
    pod = job["spec"]["template"]["spec"]
    pool = PAPER.spec.pools[0]
    assert pod["nodeSelector"] == pool.node_selector
    assert pod["containers"][0]["resources"]["limits"][pool.gpu_resource] == "1"
    labels = job["metadata"]["labels"]
    assert labels["stagescreen.dev/pool"] == "a100"
    assert labels["stagescreen.dev/stage"] == "screen"
    assert job["metadata"]["annotations"]["stagescreen.dev/run-id"] == "screen-c01-2m-s1-a100"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    env = env_of(job)
    assert env["TIME_BUDGET"]["value"] == "120" and env["DEVICE"]["value"] == "cuda"
    assert env["RESULT_URI"]["value"] == "s3://stagescreen/studies/paper/runs/screen-c01-2m-s1-a100"


def test_credentials_come_by_reference_never_by_value() -> None:
    env = env_of(screen_jobs()[0])
    assert env["AWS_ACCESS_KEY_ID"] == {
        "name": "AWS_ACCESS_KEY_ID",
        "valueFrom": {"secretKeyRef": {"name": "stagescreen-s3", "key": "AWS_ACCESS_KEY_ID"}},
    }
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]


def test_disruptions_are_retried_and_bad_config_or_divergence_fail_at_once() -> None:
    spec = screen_jobs()[0]["spec"]
    ignore, fail = spec["podFailurePolicy"]["rules"]
    assert ignore == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert fail["action"] == "FailJob" and fail["onExitCodes"]["values"] == [2, 3]
    assert spec["activeDeadlineSeconds"] > 120  # budget, overhead and margin
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]
    assert pod["terminationGracePeriodSeconds"] == 120  # a checkpoint upload after SIGTERM
    assert pod["automountServiceAccountToken"] is False  # the trainer never calls the API


def test_a_pool_with_a_kueue_queue_submits_suspended_jobs_to_it() -> None:
    text = (ROOT / "examples" / "paper.yaml").read_text()
    queued = load_study(
        text.replace("    - name: a100\n", "    - name: a100\n      queueName: gpus\n", 1)
    )
    job = screen_jobs(queued)[0]
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpus"
    kubernetes_validate.validate(job, K8S, strict=True)


ESCAPE_HATCHES = {
    "imagePullSecrets": ["registry-creds"],
    "priorityClassName": "research-low",
    "runtimeClassName": "nvidia",
    "serviceAccountName": "s3-reader",
    "affinity": {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "preference": {
                        "matchExpressions": [
                            {
                                "key": "topology.kubernetes.io/zone",
                                "operator": "In",
                                "values": ["a"],
                            }
                        ]
                    },
                }
            ]
        },
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"stagescreen.dev/study": "paper"}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        },
    },
    "terminationGracePeriodSeconds": 300,
    "shmSizeLimit": "16Gi",
}


def test_every_pool_pod_setting_lands_in_the_pod_spec_and_validates_strictly() -> None:
    study = yaml.safe_load((ROOT / "examples" / "paper.yaml").read_text())
    study["spec"]["pools"][0] |= ESCAPE_HATCHES
    job = screen_jobs(parse_study(study))[0]
    kubernetes_validate.validate(job, K8S, strict=True)
    pod = job["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["priorityClassName"] == "research-low"
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["serviceAccountName"] == "s3-reader"
    # the named ServiceAccount's own automountServiceAccountToken decides (IRSA and kin)
    assert "automountServiceAccountToken" not in pod
    assert pod["affinity"] == ESCAPE_HATCHES["affinity"]
    assert pod["terminationGracePeriodSeconds"] == 300
    shm = next(volume for volume in pod["volumes"] if volume["name"] == "shm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}


def test_a_cluster_pool_gives_its_pod_settings_to_the_studies_that_name_it() -> None:
    """The chart's `pools` value is read with the same model, and a study's pool takes every
    field it leaves unset from the cluster's pool of its name."""
    cluster = cluster_pools(json.dumps([{"name": "a100", **ESCAPE_HATCHES, "gpus": 4}]))
    job = screen_jobs(with_cluster_pools(PAPER, cluster))[0]
    kubernetes_validate.validate(job, K8S, strict=True)
    pod = job["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia" and pod["serviceAccountName"] == "s3-reader"
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["priorityClassName"] == "research-low"
    assert pod["affinity"] == ESCAPE_HATCHES["affinity"]
    assert pod["terminationGracePeriodSeconds"] == 300
    assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["volumes"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"  # the study's


def test_home_and_every_cache_are_on_the_writable_cache_volume() -> None:
    job = screen_jobs()[0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "cache", "mountPath": "/cache"} in container["volumeMounts"]
    env = {name: entry["value"] for name, entry in env_of(job).items() if "value" in entry}
    assert env["STAGESCREEN_CACHE"] == "/cache"
    assert {name: env[name] for name in cache_environment("/cache")} == cache_environment("/cache")
    for name in ("HOME", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        assert env[name].startswith("/cache"), name
    # what the trainer image would set by itself from STAGESCREEN_CACHE is what the Job sets
    image_defaults = cache_defaults({"STAGESCREEN_CACHE": "/cache", "HOME": "/home/trainer"})
    assert image_defaults.items() <= env.items()


def test_the_analysis_job_validates_and_runs_under_its_own_service_account() -> None:
    job = analysis_job(
        PAPER, "screen", namespace="ml", uid="u-1", image="op:1", service_account="sa"
    )
    kubernetes_validate.validate(job, K8S, strict=True)
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "sa"
    assert pod["containers"][0]["args"] == ["analyse", "--namespace", "ml", "paper", "screen"]


def test_manifests_prints_the_first_stage_jobs_as_valid_yaml() -> None:
    result = CliRunner().invoke(app, ["manifests", str(ROOT / "examples" / "paper.yaml")])
    assert result.exit_code == 0, result.output
    jobs = list(yaml.safe_load_all(result.stdout))
    assert len(jobs) == 48
    for job in jobs:
        kubernetes_validate.validate(job, K8S, strict=True)


def test_manifests_say_they_are_a_preview_and_honour_the_studys_namespace(
    tmp_path: Path,
) -> None:
    paper = ROOT / "examples" / "paper.yaml"
    result = CliRunner().invoke(app, ["manifests", str(paper)])
    header = result.stdout.splitlines()[:3]
    assert header[0].startswith("# PREVIEW of the 48 Jobs the StageScreen operator creates")
    assert "Not for `kubectl apply`" in header[1] and "placeholder" in header[1]
    study = tmp_path / "team.yaml"
    study.write_text(
        paper.read_text().replace("  name: paper\n", "  name: paper\n  namespace: ml\n")
    )
    jobs = list(yaml.safe_load_all(CliRunner().invoke(app, ["manifests", str(study)]).stdout))
    assert {job["metadata"]["namespace"] for job in jobs} == {"ml"}
    other = CliRunner().invoke(app, ["manifests", str(study), "--namespace", "other"])
    assert other.exit_code == 2 and "declares metadata.namespace 'ml'" in other.stderr


@pytest.mark.parametrize("namespace", ["ML Team", "-ml", "ml_team", "a" * 64, ""])
def test_manifests_refuse_a_namespace_kubernetes_refuses_in_words(namespace: str) -> None:
    result = CliRunner().invoke(
        app, ["manifests", str(ROOT / "examples" / "paper.yaml"), "--namespace", namespace]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --namespace: must be a Kubernetes namespace: lowercase letters, digits and "
        "'-', starting and ending with a letter or digit, at most 63 characters, e.g. ml-team "
        f"(got {namespace!r})\n"
    )


def test_manifests_of_an_anchor_stage_say_they_wait_for_earlier_results() -> None:
    result = CliRunner().invoke(
        app, ["manifests", str(ROOT / "examples" / "paper.yaml"), "--stage", "confirm"]
    )
    assert result.exit_code == 2
    assert "--stage 'confirm': its Jobs depend on earlier results" in result.stderr
    unknown = CliRunner().invoke(
        app, ["manifests", str(ROOT / "examples" / "paper.yaml"), "--stage", "x"]
    )
    assert unknown.exit_code == 2 and "no such stage" in unknown.stderr
