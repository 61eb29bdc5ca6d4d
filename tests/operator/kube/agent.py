"""A node agent for tests: the kubelet and the Job controller of a one-node cluster.

It follows the Jobs in the test API server and runs each Job's container as a local process,
the way a kubelet would run its pod: the container's environment (secretKeyRef values read
from the Secret), its command (the trainer image runs `python -m stagescreen_trainer`, the
operator image `stagescreen ARGS`), KUBECONFIG pointing at the test API server as a pod's
ServiceAccount would. It then writes the Job's status as the Job controller does: startTime
and active while a pod runs; Complete with succeeded, or Failed with the reason the Job
controller gives (PodFailurePolicy for a FailJob exit code, BackoffLimitExceeded after
backoffLimit failed pods, DeadlineExceeded after activeDeadlineSeconds); a pod disrupted
(`preempt`) gets the DisruptionTarget condition, which the Job's podFailurePolicy ignores,
and a new pod starts. Suspended Jobs wait until resumed.
"""

from __future__ import annotations

import base64
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
    process: subprocess.Popen[bytes]
    started: float
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


@dataclass
class NodeAgent:
    api: client.ApiClient
    kubeconfig: Path
    logs: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    jobs: dict[tuple[str, str], JobRun] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)
    crashing: set[str] = field(default_factory=set)  # Jobs whose every pod dies at once

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
                if run.pod is not None and run.pod.process.poll() is None:
                    run.pod.process.kill()
                    run.pod.process.wait()

    def preempt(self, name: str) -> bool:
        """Evict the pod of Job `name` as a preemption would: SIGTERM, DisruptionTarget."""
        with self.lock:
            for run in self.jobs.values():
                if run.name == name and run.pod is not None and run.pod.process.poll() is None:
                    run.pod.disrupted = True
                    run.pod.process.send_signal(signal.SIGTERM)
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
        import json

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
                if key not in seen:  # the Job was deleted: so is its pod
                    if run.pod is not None and run.pod.process.poll() is None:
                        run.pod.process.kill()
                    del self.jobs[key]

    def _step(self, run: JobRun) -> None:
        if run.done or run.job["spec"].get("suspend"):
            return
        if run.pod is None:
            self._start_pod(run)
            return
        code = run.pod.process.poll()
        deadline = run.job["spec"].get("activeDeadlineSeconds")
        if code is None:
            if deadline and time.monotonic() - run.pod.started > deadline:
                run.pod.process.kill()
                run.pod.process.wait()
                self._finish(
                    run,
                    "Failed",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
            return
        if run.pod.disrupted:  # podFailurePolicy Ignore: DisruptionTarget does not count
            self._start_pod(run)
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
        self._start_pod(run)

    def _start_pod(self, run: JobRun) -> None:
        spec = run.job["spec"]["template"]["spec"]
        container = spec["containers"][0]
        env = {**os.environ, **self.extra_env, "KUBECONFIG": str(self.kubeconfig)}
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
        run.pods += 1
        log = self.log_of(run.name, run.pods).open("wb")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if run.name in self.crashing:  # a node that kills the pod: OOM, a bad GPU
            process.kill()
        first = run.pod is None
        run.pod = Pod(process, time.monotonic())
        if first:  # the Job controller's startTime; the pod is running, so ready
            self._status(run, {"startTime": _now(), "active": 1, "ready": 1})

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


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
