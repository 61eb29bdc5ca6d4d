"""A node agent for tests: the kubelet, the scheduler and the Job controller of a one-node
cluster.

It follows the Jobs in the test API server and runs each Job's container as a local process,
the way a kubelet would run its pod: the container's environment (secretKeyRef values read
from the Secret), its command (the trainer image runs `python -m stagescreen_trainer`, the
operator image `stagescreen ARGS`), KUBECONFIG pointing at the test API server as a pod's
ServiceAccount would. Each pod is also a Pod object in the API server (labels of the Job's
template plus `batch.kubernetes.io/job-name`, owned by its Job) whose status says what a
kubelet's would: Pending with the scheduler's reason, the container waiting, running or
terminated with its exit code, and once its image is pulled (running or ended) the image's
digest as containerd reports it (`imageID`: `registry/name@sha256:<64 hex>`).

It writes the Job's status as the Job controller does: startTime when the Job starts (not
when its pod runs: activeDeadlineSeconds counts from there), active and ready; Complete with
succeeded, or Failed with the reason the Job controller gives (PodFailurePolicy for a FailJob
exit code, BackoffLimitExceeded after backoffLimit failed pods, DeadlineExceeded after
activeDeadlineSeconds); a pod disrupted (`preempt`) gets the DisruptionTarget condition,
which the Job's podFailurePolicy ignores, and a new pod starts. Suspended Jobs wait until
resumed.

What a real GPU cluster does in its first week, on demand:
- `cold_until`: no node can take a pod yet (the pool scales up from zero): pods stay Pending,
  PodScheduled False, reason Unschedulable;
- `pull_failing`: Jobs whose pods' image never pulls (ImagePullBackOff);
- `quota`: at most this many pods at once (a ResourceQuota); the Job controller's create of
  another is refused, and it posts a FailedCreate event on the Job, as the real one does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

POLL_S = 0.2
SELECTOR = "app.kubernetes.io/managed-by=stagescreen-operator"


@dataclass
class Pod:
    name: str
    process: subprocess.Popen[bytes] | None = None  # None: not started (Pending)
    disrupted: bool = False


@dataclass
class JobRun:
    namespace: str
    name: str
    job: dict[str, Any]
    pod: Pod | None = None
    failures: int = 0
    pods: int = 0
    done: bool = False
    started: float | None = None  # time.monotonic() the Job started (activeDeadlineSeconds)
    refused_at: float = -1e9  # last FailedCreate event


@dataclass
class NodeAgent:
    api: client.ApiClient
    kubeconfig: Path
    logs: Path
    jobs: dict[tuple[str, str], JobRun] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)
    crashing: set[str] = field(default_factory=set)  # Jobs whose every pod dies at once
    cold_until: float = 0.0  # time.monotonic() before which no node can take a pod
    pull_failing: set[str] = field(default_factory=set)  # Jobs whose image never pulls
    quota: int | None = None  # pods that may exist at once (a ResourceQuota)

    def __post_init__(self) -> None:
        self.batch = client.BatchV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> NodeAgent:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(30)
        with self.lock:
            for run in self.jobs.values():
                self._kill(run)

    def preempt(self, name: str) -> bool:
        """Evict the pod of Job `name` as a preemption would: SIGTERM, DisruptionTarget."""
        with self.lock:
            for run in self.jobs.values():
                process = run.pod.process if run.pod is not None else None
                if run.name == name and process is not None and process.poll() is None:
                    assert run.pod is not None
                    run.pod.disrupted = True
                    process.send_signal(signal.SIGTERM)
                    return True
        return False

    # --- the loop ------------------------------------------------------------------------
    def log_of(self, name: str, pod: int = 1) -> Path:
        """The output of the `pod`-th pod of Job `name`."""
        return self.logs / f"{name}-{pod}.log"

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self._sync()
            except Exception as error:  # keep playing the node; the test reads the errors
                self.errors.append(f"{type(error).__name__}: {error}")
            time.sleep(POLL_S)

    def _sync(self) -> None:
        listed = self.batch.list_job_for_all_namespaces(
            label_selector=SELECTOR, _preload_content=False
        )
        seen = set()
        for job in json.loads(listed.data)["items"]:
            meta = job["metadata"]
            key = (meta["namespace"], meta["name"])
            seen.add(key)
            with self.lock:
                run = self.jobs.setdefault(key, JobRun(meta["namespace"], meta["name"], job))
                run.job = job
                self._step(run)
        with self.lock:
            for key, run in list(self.jobs.items()):
                if key not in seen:  # the Job was deleted: its pods go (garbage collector)
                    self._kill(run)
                    del self.jobs[key]

    def _kill(self, run: JobRun) -> None:
        process = run.pod.process if run.pod is not None else None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def _step(self, run: JobRun) -> None:
        if run.done or run.job["spec"].get("suspend"):
            return
        if run.started is None:  # the Job controller starts the Job, pod or no pod
            run.started = time.monotonic()
            self._status(run, {"startTime": _now(), "active": 1, "ready": 0})
        deadline = run.job["spec"].get("activeDeadlineSeconds")
        if deadline and time.monotonic() - run.started > deadline:
            self._kill(run)
            if run.pod is not None and run.pod.process is None:  # never started: deleted
                self._delete_pod(run)
            elif run.pod is not None:
                self._pod_status(run, "Failed", terminated=137)
            self._finish(
                run, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline"
            )
            return
        if run.pod is None:
            self._create_pod(run)
            return
        if run.pod.process is None:
            self._schedule(run)
            return
        code = run.pod.process.poll()
        if code is None:
            return
        self._pod_status(run, "Succeeded" if code == 0 else "Failed", terminated=code)
        if run.pod.disrupted:  # podFailurePolicy Ignore: DisruptionTarget does not count
            run.pod = None
            self._create_pod(run)
            return
        if code == 0:
            self._finish(run, "Complete", None, None)
            return
        for rule in (run.job["spec"].get("podFailurePolicy") or {}).get("rules", []):
            codes = rule.get("onExitCodes") or {}
            if rule.get("action") == "FailJob" and code in codes.get("values", []):
                message = (
                    f"Container {codes.get('containerName')} for pod {run.name} failed with "
                    f"exit code {code} matching FailJob rule"
                )
                self._finish(run, "Failed", "PodFailurePolicy", message)
                return
        run.failures += 1
        if run.failures > run.job["spec"].get("backoffLimit", 6):
            self._finish(
                run, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
            )
            return
        run.pod = None
        self._create_pod(run)

    def _create_pod(self, run: JobRun) -> None:
        """The Job controller makes the Job's next pod, unless the quota refuses it."""
        live = sum(
            1
            for other in self.jobs.values()
            if other.pod is not None
            and not other.done
            and (other.pod.process is None or other.pod.process.poll() is None)
        )
        if self.quota is not None and live >= self.quota:
            if time.monotonic() - run.refused_at > 5:
                run.refused_at = time.monotonic()
                self._event(
                    run,
                    "FailedCreate",
                    f'Error creating: pods "{run.name}-x" is forbidden: exceeded quota: '
                    f"gpu-quota, requested: nvidia.com/gpu=1, used: nvidia.com/gpu={live}, "
                    f"limited: nvidia.com/gpu={self.quota}",
                )
            return
        run.pods += 1
        run.pod = Pod(f"{run.name}-{run.pods}")
        template = run.job["spec"]["template"]
        labels = (template.get("metadata") or {}).get("labels") or {}
        job_labels = {"batch.kubernetes.io/job-name": run.name, "job-name": run.name}
        body = {
            "metadata": {
                "name": run.pod.name,
                "labels": {**labels, **job_labels},
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": run.name,
                        "uid": run.job["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": template["spec"],
        }
        self.core.create_namespaced_pod(run.namespace, body, _preload_content=False)
        self._pod_status(run, "Pending")
        self._schedule(run)

    def _schedule(self, run: JobRun) -> None:
        """Start the pending pod's container where the node allows it, else say why not."""
        assert run.pod is not None
        if time.monotonic() < self.cold_until:
            self._pod_status(
                run,
                "Pending",
                unschedulable="0/3 nodes are available: 3 Insufficient nvidia.com/gpu. "
                "preemption: 0/3 nodes are available: 3 No preemption victims found.",
            )
            return
        if run.name in self.pull_failing:
            self._pod_status(
                run,
                "Pending",
                waiting=(
                    "ImagePullBackOff",
                    'Back-off pulling image "registry.example.com/stagescreen-trainer:dev"',
                ),
            )
            return
        self._start_pod(run)

    def _start_pod(self, run: JobRun) -> None:
        assert run.pod is not None
        spec = run.job["spec"]["template"]["spec"]
        container = spec["containers"][0]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        volumes = self.logs / "volumes" / f"{run.name}-{run.pods + 1}"
        mounts = {
            mount["mountPath"]: volumes / mount["name"]
            for mount in container.get("volumeMounts") or []
            if any(v["name"] == mount["name"] and "emptyDir" in v for v in spec.get("volumes", []))
        }
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = _on_this_node(item["value"], mounts)
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                secret = self.core.read_namespaced_secret(ref["name"], run.namespace)
                env[item["name"]] = base64.b64decode(secret.data[ref["key"]]).decode()
        if container["name"] == "trainer":
            command = [sys.executable, "-m", "stagescreen_trainer"]
            env.update(DEVICE="cpu", THREADS="1")
        else:
            command = [str(Path(sys.executable).parent / "stagescreen"), *container.get("args", [])]
        log = self.log_of(run.name, run.pods).open("wb")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if run.name in self.crashing:  # a node that kills the pod: OOM, a bad GPU
            process.kill()
        run.pod.process = process
        self._pod_status(run, "Running")
        self._status(run, {"active": 1, "ready": 1})

    def _finish(self, run: JobRun, kind: str, reason: str | None, message: str | None) -> None:
        run.done = True
        condition = {"type": kind, "status": "True", "lastTransitionTime": _now()}
        if reason:
            condition |= {"reason": reason, "message": message}
        status: dict[str, Any] = {"active": None, "ready": None, "conditions": [condition]}
        if kind == "Complete":
            status |= {"succeeded": 1, "completionTime": _now()}
        else:
            status |= {"failed": run.failures or 1}
        self._status(run, status)

    def _pod_status(
        self,
        run: JobRun,
        phase: str,
        *,
        unschedulable: str | None = None,
        waiting: tuple[str, str] | None = None,
        terminated: int | None = None,
    ) -> None:
        """The Pod's status as the scheduler and the kubelet report it."""
        assert run.pod is not None
        spec = run.job["spec"]["template"]["spec"]["containers"][0]
        container: dict[str, Any] = {"name": spec["name"], "ready": phase == "Running"}
        container["image"] = spec.get("image", "")
        if phase == "Running" or terminated is not None:  # pulled: the kubelet knows its digest
            container["imageID"] = image_id(container["image"])
        if waiting is not None:
            container["state"] = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
        elif terminated is not None:
            container["state"] = {"terminated": {"exitCode": terminated, "startedAt": _now()}}
        elif phase == "Running":
            container["state"] = {"running": {"startedAt": _now()}}
        else:
            container["state"] = {"waiting": {"reason": "ContainerCreating"}}
        scheduled: dict[str, Any] = {"type": "PodScheduled", "status": "True"}
        if unschedulable is not None:
            scheduled = {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
            }
        status = {"phase": phase, "conditions": [scheduled], "containerStatuses": [container]}
        try:
            self.core.patch_namespaced_pod_status(
                run.pod.name, run.namespace, {"status": status}, _preload_content=False
            )
        except ApiException as error:
            if error.status != 404:
                raise

    def _delete_pod(self, run: JobRun) -> None:
        assert run.pod is not None
        try:
            self.core.delete_namespaced_pod(run.pod.name, run.namespace, _preload_content=False)
        except ApiException as error:
            if error.status != 404:
                raise

    def _event(self, run: JobRun, reason: str, message: str) -> None:
        """An event on the Job, as the Job controller posts it."""
        involved = {"kind": "Job", "namespace": run.namespace, "name": run.name}
        body = {
            "metadata": {"generateName": f"{run.name}."},
            "involvedObject": {**involved, "uid": run.job["metadata"]["uid"]},
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": "job-controller"},
            "lastTimestamp": _now(),
        }
        self.core.create_namespaced_event(run.namespace, body, _preload_content=False)

    def _status(self, run: JobRun, status: dict[str, Any]) -> None:
        try:
            self.batch.patch_namespaced_job_status(run.name, run.namespace, {"status": status})
        except ApiException as error:
            if error.status != 404:
                raise


def _on_this_node(value: str, mounts: dict[str, Path]) -> str:
    """A value under a mounted emptyDir's path, as the path of that volume's folder: each
    emptyDir is a folder of its pod on this node, so a Job's HOME=/cache and its caches never
    reach the machine's root."""
    for path, folder in mounts.items():
        if value == path or value.startswith(f"{path}/"):
            folder.mkdir(parents=True, exist_ok=True)
            return f"{folder}{value[len(path) :]}"
    return value


def image_id(image: str) -> str:
    """The containerStatuses imageID a containerd kubelet reports for `image` (k3s, RKE2):
    the repository normalised as containerd does (a name without a registry is Docker Hub's,
    `stagescreen-trainer:dev` -> `docker.io/library/stagescreen-trainer`), without its tag,
    and the digest of the manifest it pulled, here SHA-256 of the reference, so each image
    name has its own stable digest."""
    repository = image.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    first = repository.split("/", 1)[0]
    if "/" not in repository:
        repository = f"docker.io/library/{repository}"
    elif "." not in first and ":" not in first and first != "localhost":
        repository = f"docker.io/{repository}"
    return f"{repository}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
