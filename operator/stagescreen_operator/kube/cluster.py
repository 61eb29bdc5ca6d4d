"""The Kubernetes API calls the operator and the analysis Job make, and nothing else.

Every call the operator makes itself is here: list, create, patch and delete Jobs in a
study's namespace; list their pods and FailedCreate events (why a pod has not started); get
and patch a ScreeningStudy's status. Events go through kopf's poster. Bodies
and answers are plain dicts, as the API speaks them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from stagescreen.study.spec import GROUP, VERSION
from stagescreen_operator.kube.jobs import STUDY_LABEL

PLURAL = "screeningstudies"

# (API group, resource, verb) for every call below, and for what kopf does for the handlers
# (watch studies and Jobs, keep its annotations and finalizer on studies, post events): what
# the chart's operator Role grants, no more (tests compare the two, and the calls the
# operator makes in the end-to-end tests with this list).
CALLS = frozenset(
    {
        ("batch", "jobs", "list"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "patch"),
        ("batch", "jobs", "delete"),
        ("", "pods", "list"),
        ("", "events", "list"),
        (GROUP, "screeningstudies/status", "get"),
        (GROUP, "screeningstudies/status", "patch"),
    }
)
KOPF_CALLS = frozenset(
    {
        (GROUP, "screeningstudies", "list"),
        (GROUP, "screeningstudies", "watch"),
        (GROUP, "screeningstudies", "patch"),
        ("batch", "jobs", "watch"),
        ("", "events", "create"),
    }
)
# Not a call but a permission the API server checks when a Job's owner reference to its study
# sets blockOwnerDeletion (OwnerReferencesPermissionEnforcement, e.g. on OpenShift).
OWNER_CALLS = frozenset({(GROUP, "screeningstudies/finalizers", "update")})
# Cluster-wide and read-only, in any mode: kopf follows CRDs to see its resources appear.
CRD_CALLS = frozenset(
    {
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    }
)


class NoCluster(Exception):
    """Neither a pod's ServiceAccount nor a kubeconfig says which cluster to talk to."""


def load_config() -> None:
    """In a pod, its ServiceAccount; elsewhere, KUBECONFIG or ~/.kube/config. Raises
    NoCluster saying what to set when there is neither, rather than retrying forever."""
    try:
        config.load_incluster_config()
    except config.ConfigException:  # KUBECONFIG as it is now, not as it was at import
        where = os.environ.get("KUBECONFIG")
        try:
            config.load_kube_config(config_file=where)
        except (config.ConfigException, OSError) as error:
            named = f"KUBECONFIG ({where})" if where else "~/.kube/config (KUBECONFIG is unset)"
            raise NoCluster(
                f"no Kubernetes cluster to talk to: not in a pod (no in-cluster service "
                f"account: KUBERNETES_SERVICE_HOST is unset or its token is missing) and "
                f"{named} holds no usable kubeconfig ({error}); set KUBECONFIG to your "
                "cluster's kubeconfig file (e.g. export KUBECONFIG=~/.kube/config) or run "
                "this in the cluster, where the chart's ServiceAccount is mounted"
            ) from None


class Cluster:
    """The operator's view of one API server."""

    def __init__(self, api: client.ApiClient | None = None) -> None:
        self.api = api or client.ApiClient()
        self.batch = client.BatchV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def jobs(self, namespace: str, study: str) -> list[dict[str, Any]]:
        """The Jobs of one study (runs and analyses), by the study label."""
        answer = self.batch.list_namespaced_job(
            namespace, label_selector=f"{STUDY_LABEL}={study}", _preload_content=False
        )
        return list(_body(answer).get("items") or [])

    def pods(self, namespace: str, study: str) -> list[dict[str, Any]]:
        """The pods of one study's Jobs (their template carries the study label)."""
        answer = self.core.list_namespaced_pod(
            namespace, label_selector=f"{STUDY_LABEL}={study}", _preload_content=False
        )
        return list(_body(answer).get("items") or [])

    def refused_pods(self, namespace: str) -> dict[str, str]:
        """Job name -> the last message of its FailedCreate events (a quota, a LimitRange or
        an admission policy refused its pod), in the namespace."""
        answer = self.core.list_namespaced_event(
            namespace,
            field_selector="involvedObject.kind=Job,reason=FailedCreate",
            _preload_content=False,
        )
        events = sorted(
            _body(answer).get("items") or [],
            key=lambda event: str(event.get("lastTimestamp") or event.get("eventTime") or ""),
        )
        return {event["involvedObject"]["name"]: event.get("message", "") for event in events}

    def create_job(self, job: Mapping[str, Any]) -> bool:
        """Create a Job; False when one of that name exists (a restarted operator, a race)."""
        try:
            body: Any = dict(job)  # the client sends a dict as it is
            self.batch.create_namespaced_job(job["metadata"]["namespace"], body)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and its pods (background propagation); gone already is fine."""
        try:
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise

    def annotate_job(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        self.batch.patch_namespaced_job(
            name, namespace, {"metadata": {"annotations": dict(annotations)}}
        )

    def study(self, namespace: str, name: str) -> dict[str, Any]:
        """A ScreeningStudy, read through its status subresource (all the analysis Job may)."""
        answer = self.custom.get_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
        )
        return _body(answer)

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the given status keys, leaving every other key as it is."""
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": dict(status)}
        )


def _body(answer: Any) -> dict[str, Any]:
    """The JSON of an answer asked for with _preload_content=False (raw, not client models)."""
    return dict(json.loads(answer.data))
