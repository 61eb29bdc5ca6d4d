"""The kopf handlers of the operator: small, and all the same shape.

A ScreeningStudy created, resumed after an operator restart, changed in its spec, or simply
due for a look (the timer) is reconciled once (`kube.reconcile`): observe its store and
Jobs, call the pure controller, create what it asks for, merge-patch the status keys the
operator owns. A Job of a study that ends wakes its study at once instead of at the next
tick. A spec that is not a valid study gets status Failed with every problem and its field
path, and nothing is created. Deleting a study needs no handler: its Jobs carry owner
references and go with it; its results stay in storage.

With STAGESCREEN_WEBHOOK_PORT set (the chart's webhook on), the operator also serves the
validating admission webhook (`admit`, path /study) with STAGESCREEN_WEBHOOK_CERT and _KEY.

Configuration comes from the environment (the chart sets it; `stagescreen operator` flags
too): STAGESCREEN_ANALYSIS_IMAGE, STAGESCREEN_ANALYSIS_SERVICE_ACCOUNT, STAGESCREEN_VOCAB,
STAGESCREEN_RECONCILE_S, STAGESCREEN_POOLS (the cluster's pools, JSON), STAGESCREEN_WEBHOOK_*;
S3 credentials as AWS_* variables.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

from stagescreen.spec import SpecError
from stagescreen.studyfile import parse_study
from stagescreen_operator.kube import metrics
from stagescreen_operator.kube.admission import admission_problems
from stagescreen_operator.kube.cluster import GROUP, PLURAL, VERSION, Cluster, load_config
from stagescreen_operator.kube.pools import cluster_pools
from stagescreen_operator.kube.reconcile import Settings, reconcile
from stagescreen_operator.observe import study_store

RECONCILE_S = float(os.environ.get("STAGESCREEN_RECONCILE_S", "15"))
WEBHOOK_PORT = os.environ.get("STAGESCREEN_WEBHOOK_PORT")
OWNED = ("app.kubernetes.io/managed-by", "stagescreen-operator")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Keep kopf's own bookkeeping in annotations (the status is the study's), and connect."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 8
    memo.settings = Settings(
        analysis_image=os.environ.get("STAGESCREEN_ANALYSIS_IMAGE", Settings.analysis_image),
        analysis_service_account=os.environ.get(
            "STAGESCREEN_ANALYSIS_SERVICE_ACCOUNT", Settings.analysis_service_account
        ),
        vocab=int(os.environ.get("STAGESCREEN_VOCAB", Settings.vocab)),
        pools=cluster_pools(os.environ.get("STAGESCREEN_POOLS")),
    )
    load_config()
    memo.cluster = Cluster()
    memo.last = {}
    memo.locks = {}
    memo.records = {}  # per study: run records read so far (they never change once written)
    if os.environ.get("STAGESCREEN_METRICS_PORT"):
        metrics.serve(int(os.environ["STAGESCREEN_METRICS_PORT"]))
    port = os.environ.get("STAGESCREEN_WEBHOOK_PORT")
    if port:
        settings.admission.server = kopf.WebhookServer(
            port=int(port),
            certfile=os.environ.get("STAGESCREEN_WEBHOOK_CERT"),
            pkeyfile=os.environ.get("STAGESCREEN_WEBHOOK_KEY"),
            insecure=os.environ.get("STAGESCREEN_WEBHOOK_INSECURE") == "1",  # tests only
        )


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod, its ServiceAccount; elsewhere KUBECONFIG as it is when the operator starts."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def admit(body: kopf.Body, **kwargs: Any) -> None:
    """The validating webhook: refuse a bad spec, or a change to work already done, at
    `kubectl apply`, with every problem and its field path."""
    problems = admission_problems(body, kwargs.get("old"))
    if problems:
        raise kopf.AdmissionError("; ".join(problems), code=422)


if WEBHOOK_PORT:  # served at https://<service>:<port>/study (the chart's webhook config)
    kopf.on.validate(GROUP, VERSION, PLURAL, id="study", operations=["CREATE", "UPDATE"])(admit)


@kopf.on.create(GROUP, VERSION, PLURAL, backoff=RECONCILE_S)
@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=RECONCILE_S)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", backoff=RECONCILE_S)
def study_changed(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Reconcile now; a bad spec is a permanent error (retrying cannot fix it)."""
    status = _reconcile(body, memo, logger, "study_changed")
    patch.status.update(status)
    if status.get("phase") == "Failed" and status.get("message", "").startswith("invalid spec"):
        raise kopf.PermanentError(status["message"])


@kopf.timer(
    GROUP, VERSION, PLURAL, interval=RECONCILE_S, initial_delay=RECONCILE_S, backoff=RECONCILE_S
)
def study_tick(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Progress, stall detection, and anything a missed event left behind."""
    if (body.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return
    patch.status.update(_reconcile(body, memo, logger, "study_tick"))


@kopf.on.event("batch", "v1", "jobs", labels={OWNED[0]: OWNED[1]})
def job_changed(
    body: kopf.Body, namespace: str | None, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """A study's Job ended: reconcile the study now rather than at its next tick."""
    conditions = (body.get("status") or {}).get("conditions") or []
    if not any(c.get("status") == "True" for c in conditions):
        return
    study = (body.get("metadata") or {}).get("labels", {}).get(f"{GROUP}/study")
    if (
        not study
        or not namespace
        or time.monotonic() - memo.last.get((namespace, study), -1e9) < 1.0
    ):
        return
    cluster: Cluster = memo.cluster
    try:
        current = cluster.study(namespace, study)
    except ApiException as error:
        if error.status == 404:  # the study is gone; its Jobs go with it
            return
        raise
    status = _reconcile(current, memo, logger, "job_changed")
    if status:  # nothing moved: no write
        cluster.patch_status(namespace, study, status)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def study_deleted(namespace: str | None, name: str | None, **_: Any) -> None:
    """The study is gone (its Jobs go with it by owner references): so are its metrics."""
    metrics.forget_study(namespace or "default", name or "")


def _reconcile(
    body: Mapping[str, Any], memo: kopf.Memo, logger: kopf.Logger, handler: str
) -> dict[str, Any]:
    """The status to patch after one reconcile (or after finding the spec invalid); one
    reconcile of a study at a time (the timer, a Job event and a spec change may coincide)."""
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace") or "default", meta.get("name")
    with (
        memo.locks.setdefault((namespace, name), threading.Lock()),
        metrics.LATENCY.labels(handler=handler).time(),
    ):
        memo.last[(namespace, name)] = time.monotonic()
        try:
            return _reconcile_once(body, meta, namespace, memo, logger)
        except Exception:
            metrics.ERRORS.labels(handler=handler).inc()
            raise


def _reconcile_once(
    body: Mapping[str, Any],
    meta: Mapping[str, Any],
    namespace: str,
    memo: kopf.Memo,
    logger: kopf.Logger,
) -> dict[str, Any]:
    previous = dict(body.get("status") or {})
    try:
        study = parse_study({key: body[key] for key in ("apiVersion", "kind", "metadata", "spec")})
        store = study_store(study)
    except SpecError:
        problems = "; ".join(admission_problems(body))
        logger.error(f"invalid spec: {problems}")
        return {"phase": "Failed", "message": f"invalid spec: {problems}"}
    now = datetime.now(UTC)

    def announce(kind: str, reason: str, message: str) -> None:
        involved: Any = body  # kopf takes any mapping with apiVersion, kind and metadata
        kopf.event(involved, type=kind, reason=reason, message=message)

    status = reconcile(
        study,
        namespace=namespace,
        uid=meta.get("uid", ""),
        generation=meta.get("generation"),
        previous=previous,
        cluster=memo.cluster,
        store=store,
        now=now,
        announce=announce,
        settings=memo.settings,
        records=memo.records.setdefault((namespace, meta.get("name")), {}),
    )
    if not _changes(previous, status):
        return {}
    return status


def _changes(previous: dict[str, Any], status: dict[str, Any]) -> bool:
    """Whether patching `status` would change anything (no write when nothing moved)."""
    return any(previous.get(key) != value for key, value in status.items())
