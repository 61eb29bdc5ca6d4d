"""The Kubernetes Jobs of a study: one batch/v1 Job per training run, one per stage analysis.

Pure functions from the spec and the planned run to the Job's manifest (a dict, as the API
takes it), so `stagescreen manifests` shows exactly what the operator creates, and tests
validate it against the real Kubernetes schema without a cluster.

What each training Job guarantees:
- its name is a deterministic function of (study, run id), at most 63 characters, so a
  restarted operator finds the Jobs it made and never starts a run twice;
- labels carry study, stage, condition, budget, seed, pool and role (never the run id, which
  can be longer than a label value: it is an annotation), and an owner reference ties it to
  the study, so deleting the study deletes its Jobs and keeps its results in storage;
- the pool's nodeSelector and tolerations and `<gpu_resource>: gpus` in its limits put the
  run on the pool its stage names; a pool with a Kueue queue gets the queue label and starts
  suspended, for Kueue to admit;
- the run's environment is `stagescreen.planning.environment.run_environment`, as on one machine; S3
  credentials come by secretKeyRef from the Secret the spec names, never copied;
- a preempted, evicted or drained pod (`DisruptionTarget`) does not count against
  `backoffLimit`: the new pod resumes from the run's checkpoint in storage; the trainer's
  bad-configuration and diverged exits fail the Job at once (its record says why);
- hardened pod: non-root, read-only root filesystem, no privilege escalation, no
  capabilities, RuntimeDefault seccomp; a memory-backed /dev/shm of the pool's size limit and
  emptyDirs for /tmp and /cache, where HOME and every torch, Inductor and Triton cache point;
  the one-line failure reason reaches the pod status (FallbackToLogsOnError);
- the pool's escape hatches: image pull secrets, priority and runtime class, ServiceAccount,
  affinity, and a grace period long enough to upload a checkpoint after SIGTERM.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from stagescreen.planning.cost import RUN_OVERHEAD_S
from stagescreen.planning.environment import run_environment, run_folder
from stagescreen.planning.plans import PlannedRun
from stagescreen.study.spec import API_VERSION, GROUP, KIND, Pool, Study
from stagescreen_contract.caches import CACHE_ROOT, cache_environment
from stagescreen_contract.status import EXIT_BAD_CONFIG, EXIT_DIVERGED

NAME_LIMIT = 63  # a DNS-1123 label: Job names become pod labels (batch.kubernetes.io/job-name)
TRAINER = "trainer"
BACKOFF_LIMIT = 2  # pod failures that are not disruptions: a crashed node, an OOM kill
DEADLINE_MARGIN_S = 600  # a GPU run compiles and warms up before its budget starts counting
RUN_ID = f"{GROUP}/run-id"
JOB_NAME = "batch.kubernetes.io/job-name"  # the Job controller's label on each pod it makes
ATTEMPT = f"{GROUP}/attempt"  # the how-many-th Job of its run (a replaced one never started)
STARTUP_ALLOWANCE_S = 1800  # for a pod to start: a GPU node scaling up, a large image pull
STUDY_LABEL = f"{GROUP}/study"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
CACHE = "/cache"  # the run's writable emptyDir: HOME and every cache (stagescreen_contract.caches)


def job_name(study: str, run_id: str) -> str:
    """`<study>-<run id>`, lowercased; longer than 63 characters, its tail becomes a hash of
    the whole, so two runs never share a name and the same run always gets the same one."""
    name = re.sub(r"[^a-z0-9-]+", "-", f"{study}-{run_id}".lower()).strip("-")
    if len(name) <= NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: NAME_LIMIT - len(digest) - 1].rstrip('-')}-{digest}"


def labels(study: str, run: PlannedRun | None = None, component: str = "run") -> dict[str, str]:
    """Selectable labels (bounded values: no run ids)."""
    out = {
        "app.kubernetes.io/name": "stagescreen",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "stagescreen-operator",
        STUDY_LABEL: study,
    }
    if run is not None:
        out |= {
            f"{GROUP}/stage": run.stage,
            f"{GROUP}/condition": run.condition_id,
            f"{GROUP}/budget-s": str(run.budget_s),
            f"{GROUP}/seed": str(run.seed),
            f"{GROUP}/pool": run.pool,
        }
        if run.role:
            out[f"{GROUP}/role"] = run.role
    return out


def owner_reference(study: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": study,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def deadline_s(run: PlannedRun, margin_s: int = DEADLINE_MARGIN_S) -> int:
    """The run's training deadline: the budget, the measured per-run overhead, and a margin
    for compilation and a resume after a disruption."""
    return run.budget_s + RUN_OVERHEAD_S + max(margin_s, run.budget_s // 2)


def run_job(
    study: Study,
    run: PlannedRun,
    *,
    namespace: str,
    uid: str,
    corpus: Mapping[str, str],
    attempt: int = 1,
    startup_s: int = STARTUP_ALLOWANCE_S,
    margin_s: int = DEADLINE_MARGIN_S,
) -> dict[str, Any]:
    """The `attempt`-th Job that trains one planned run on its pool, writing to its folder in
    the spec's store. activeDeadlineSeconds counts from the Job's start, pod or no pod, so it
    is the startup allowance plus the training deadline (the operator replaces a Job whose
    pod has not started within the allowance)."""
    name = study.metadata.name
    spec = study.spec
    pool = next(pool for pool in spec.pools if pool.name == run.pool)
    env = run_environment(spec, name, run, result_uri(study, run), corpus)
    env |= {"DEVICE": "cuda" if pool.gpus else "cpu", CACHE_ROOT: CACHE, **cache_environment(CACHE)}
    if pool.peak_tflops:
        env.setdefault("PEAK_FLOPS", f"{pool.peak_tflops * 1e12:.0f}")
    job_labels = labels(name, run)
    if pool.queue_name:
        job_labels[QUEUE_LABEL] = pool.queue_name
    container = {
        "name": TRAINER,
        "image": spec.trainer.image,
        "env": [*_env_list(env), *storage_env(study)],
        "resources": _resources(study, pool),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "cache", "mountPath": CACHE},
        ],
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": pool.termination_grace_period_seconds,
        "securityContext": _pod_security(),
        "containers": [container],
        "volumes": [
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": pool.shm_size_limit}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "cache", "emptyDir": {}},
        ],
        **_pool_pod_settings(pool),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name, run.run_id if attempt == 1 else f"{run.run_id}-a{attempt}"),
            "namespace": namespace,
            "labels": job_labels,
            "annotations": {RUN_ID: run.run_id, ATTEMPT: str(attempt)},
            "ownerReferences": [owner_reference(name, uid)],
        },
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "activeDeadlineSeconds": startup_s + deadline_s(run, margin_s),
            "suspend": bool(pool.queue_name),
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": TRAINER,
                            "operator": "In",
                            "values": [EXIT_BAD_CONFIG, EXIT_DIVERGED],
                        },
                    },
                ]
            },
            "template": {"metadata": {"labels": labels(name, run)}, "spec": pod},
        },
    }


def analysis_job(
    study: Study,
    stage: str,
    *,
    namespace: str,
    uid: str,
    image: str,
    service_account: str,
) -> dict[str, Any]:
    """The Job that analyses a finished stage (`stagescreen analyse`): it reads the stage's
    records from storage, writes results.parquet, outcome.json and the report there, and
    patches the stage outcome into the study's status through its own ServiceAccount."""
    name = study.metadata.name
    container = {
        "name": "analyse",
        "image": image,
        "args": ["analyse", "--namespace", namespace, name, stage],
        "env": [*storage_env(study), {"name": "HOME", "value": "/tmp"}],
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"memory": "4Gi"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name, f"analyse-{stage}"),
            "namespace": namespace,
            "labels": labels(name, component="analysis") | {f"{GROUP}/stage": stage},
            "ownerReferences": [owner_reference(name, uid)],
        },
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "activeDeadlineSeconds": 1800,
            "template": {
                "metadata": {"labels": labels(name, component="analysis")},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": service_account,
                    "securityContext": _pod_security(),
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def storage_env(study: Study) -> list[dict[str, Any]]:
    """Where the store is and how to reach it: endpoint and region as values, credentials by
    reference to the spec's Secret."""
    s3 = study.spec.storage.s3
    if s3 is None:
        return []
    env: list[dict[str, Any]] = []
    if s3.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": s3.endpoint})
    if s3.region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": s3.region})
    if s3.secret_ref is not None:
        ref = s3.secret_ref
        for variable, key in (
            ("AWS_ACCESS_KEY_ID", ref.access_key_key),
            ("AWS_SECRET_ACCESS_KEY", ref.secret_key_key),
        ):
            env.append(
                {"name": variable, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": key}}}
            )
    return env


def result_uri(study: Study, run: PlannedRun) -> str:
    """The run's folder in the spec's store, as the trainer is given it (RESULT_URI)."""
    return f"{study.spec.storage.root().rstrip('/')}/{run_folder(study.metadata.name, run)}"


def _env_list(env: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": key, "value": value} for key, value in sorted(env.items())]


def _pool_pod_settings(pool: Pool) -> dict[str, Any]:
    """What the pool says about a run's Pod beyond its GPUs, each field only when set.

    Without a ServiceAccount of its own a run mounts no API token: the trainer never calls
    the Kubernetes API. A pool that names one (IRSA, EKS Pod Identity, Workload Identity)
    leaves the choice to that ServiceAccount's own automountServiceAccountToken, which a
    pod-level `false` would override: the platform team that bound it to a cloud role knows
    whether its identity setup needs the token mounted, and its other workloads see the same.
    """
    out: dict[str, Any] = {}
    if pool.node_selector:
        out["nodeSelector"] = dict(pool.node_selector)
    if pool.tolerations:
        out["tolerations"] = [
            t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in pool.tolerations
        ]
    if pool.affinity is not None:
        out["affinity"] = pool.affinity.model_dump(mode="json", by_alias=True, exclude_none=True)
    if pool.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": name} for name in pool.image_pull_secrets]
    if pool.priority_class_name:
        out["priorityClassName"] = pool.priority_class_name
    if pool.runtime_class_name:
        out["runtimeClassName"] = pool.runtime_class_name
    if pool.service_account_name:
        out["serviceAccountName"] = pool.service_account_name
    else:
        out["automountServiceAccountToken"] = False
    return out


def _resources(study: Study, pool: Pool) -> dict[str, Any]:
    wanted = study.spec.trainer.resources
    requests = {key: str(value) for key, value in wanted.requests.items()}
    limits = {key: str(value) for key, value in wanted.limits.items()}
    if pool.gpus:
        limits[pool.gpu_resource] = str(pool.gpus)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
