"""A Job of a study as the operator reads it: where it stands, whether a pod of it ever
started, and why not yet.

The Job's own status says active, succeeded or failed; its pods and the Job controller's
FailedCreate events say whether the run got as far as running (then what happened is the
recipe's) or is still waiting for infrastructure (no node, an image pull, a quota), and why,
in the words of the scheduler, the kubelet or the quota. Pure: manifests in, `JobState` out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stagescreen.study.spec import GROUP
from stagescreen_operator.kube.jobs import ATTEMPT, RUN_ID

ANNOUNCED = f"{GROUP}/announced"  # its run's end was told as an event
WAIT_ANNOUNCED = f"{GROUP}/wait-announced"  # its run's wait for a pod was told as an event
# Reasons a pod has not started that are only the normal path (not worth an event).
USUAL_WAITS = ("Queued", "NoPod", "ContainerCreating")


@dataclass(frozen=True)
class JobState:
    """A Job of the study, as the API reports it."""

    name: str
    component: str  # run or analysis
    run_id: str | None
    stage: str | None
    state: str  # active, succeeded or failed
    reason: str
    started: str | None
    announced: bool
    waiting: bool  # created but no pod ready: suspended (Kueue) or no node can take it yet
    attempt: int = 1  # the how-many-th Job of its run
    ran: bool = False  # a pod of it started (a container ran): what it did is the recipe's
    why_waiting: str = ""  # the scheduler's, kubelet's or Job controller's reason, if waiting
    wait_announced: bool = False
    image_digest: str | None = None  # the image its pod ran, by digest (containerStatuses)

    @property
    def wait_code(self) -> str:
        """The reason's code (Unschedulable, ImagePullBackOff, FailedCreate, Queued, ...)."""
        return self.why_waiting.split(":")[0]


def job_state(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]] = (), refused: str = ""
) -> JobState:
    """Where a Job stands: its Complete or Failed condition, else active; whether a pod of
    it ever started, and why not yet (from its `pods`, or `refused`: the message of its last
    FailedCreate event)."""
    meta = job.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    status = job.get("status") or {}
    state, reason = "active", ""
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            state = "succeeded"
        elif condition.get("type") == "Failed":
            state = "failed"
            reason = ": ".join(
                part for part in (condition.get("reason"), condition.get("message")) if part
            )
    suspended = bool((job.get("spec") or {}).get("suspend"))
    waiting = state == "active" and (suspended or not status.get("ready"))
    ran = bool(status.get("ready") or status.get("succeeded")) or any(map(_started, pods))
    return JobState(
        name=meta.get("name", ""),
        component=labels.get("app.kubernetes.io/component", ""),
        run_id=annotations.get(RUN_ID),
        stage=labels.get(f"{GROUP}/stage"),
        state=state,
        reason=reason,
        started=status.get("startTime"),
        announced=ANNOUNCED in annotations,
        wait_announced=WAIT_ANNOUNCED in annotations,
        waiting=waiting,
        attempt=int(annotations.get(ATTEMPT) or 1),
        ran=ran,
        why_waiting="Queued: suspended until admitted"
        if suspended
        else (_why_waiting(pods, refused) if waiting and not ran else ""),
        image_digest=_image_digest(pods),
    )


def _image_digest(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The image a container of the Job's pods ran, as the kubelet resolved it: the
    containerStatuses' imageID (`registry/name@sha256:...`, without a runtime's
    `docker-pullable://` scheme); None before a pod's image was pulled."""
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            image_id = str(container.get("imageID") or "")
            if image_id:
                return image_id.split("://", 1)[-1]
    return None


def _started(pod: Mapping[str, Any]) -> bool:
    """Whether a container of the pod has run (is running, or ended)."""
    if (pod.get("status") or {}).get("phase") in ("Running", "Succeeded"):
        return True
    return any(
        "running" in (c.get("state") or {}) or "terminated" in (c.get("state") or {})
        for c in (pod.get("status") or {}).get("containerStatuses") or []
    )


def _why_waiting(pods: Sequence[Mapping[str, Any]], refused: str) -> str:
    """`Reason: message` of a Job whose pod has not started: the scheduler's (Unschedulable),
    the kubelet's (ImagePullBackOff, ...), or the Job controller's FailedCreate."""
    for pod in pods:
        status = pod.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                return (
                    f"{condition.get('reason') or 'Unschedulable'}: {condition.get('message', '')}"
                )
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] != "ContainerCreating":
                return f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
    if refused and not pods:
        return f"FailedCreate: {refused}"
    return "ContainerCreating: the pod is starting" if pods else "NoPod: no pod created yet"
