"""The kopf handlers of the operator: small, and all the same shape.

A ScreeningStudy created, resumed after an operator restart, changed in its spec, or simply
due for a look (the timer) is reconciled once (`kube.reconcile`): observe its store and
Jobs, call the pure controller, create what it asks for, merge-patch the status keys the
operator owns. A Job of a study that ends wakes its study at once instead of at the next
tick. A spec that is not a valid study gets status Failed with every problem and its field
path, and nothing is created. Deleting a study needs no cleanup of its own: its Jobs carry
owner references and go with it; its results stay in storage; its metrics and its entry in
the memo are dropped.

The handlers live on an explicit registry built from the operator's `Settings`
(`operator_registry`), never registered at import: the timer's interval and the webhook come
from the settings, and the startup handler puts them in kopf's memo with what the handlers
share (the API client, the `Metrics`, one `StudyMemo` per study). With a webhook port the
operator also serves the validating admission webhook (`admit`, path /study).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

from stagescreen.storage.ownership import ADOPT
from stagescreen.study.parse import parse_resource
from stagescreen.study.spec import GROUP, VERSION, SpecError
from stagescreen_operator.kube.admission import admission_problems
from stagescreen_operator.kube.cluster import PLURAL, Cluster, load_config
from stagescreen_operator.kube.jobs import STUDY_LABEL
from stagescreen_operator.kube.metrics import Metrics
from stagescreen_operator.kube.reconcile import Cache, Resource, reconcile
from stagescreen_operator.kube.settings import Settings
from stagescreen_operator.observe import study_store

OWNED = ("app.kubernetes.io/managed-by", "stagescreen-operator")
LIST_CHUNK = 500  # objects per page of kopf's initial lists


@dataclass
class StudyMemo:
    """What the handlers keep for one study: one reconcile at a time (the timer, a Job event
    and a spec change may coincide), when it was last reconciled, and the reconcile's cache."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    last: float = -1e9  # time.monotonic() of the last reconcile
    cache: Cache = field(default_factory=Cache)


def operator_registry(settings: Settings) -> kopf.OperatorRegistry:
    """Every handler of the operator, registered on a registry of its own."""
    registry = kopf.OperatorRegistry()
    configured, every = settings, settings.reconcile_s

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        """Keep kopf's own bookkeeping in annotations (the status is the study's), connect,
        and put the operator's settings and shared objects in the memo."""
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.execution.max_workers = 8
        # Only our Jobs, selected by the API server (a handler's labels= filters after the
        # whole cluster's Jobs were listed and watched), and lists in pages.
        settings.watching.label_selectors["batch", "v1", "jobs"] = "=".join(OWNED)
        settings.watching.chunk_size = LIST_CHUNK
        if configured.webhook_port:
            settings.admission.server = kopf.WebhookServer(
                port=configured.webhook_port,
                certfile=configured.webhook_cert,
                pkeyfile=configured.webhook_key,
                insecure=configured.webhook_insecure,
            )
        load_config()
        memo.settings = configured
        memo.cluster = Cluster()
        memo.metrics = Metrics()
        memo.studies = {}  # (namespace, name) -> StudyMemo
        if configured.metrics_port:
            memo.metrics.serve(configured.metrics_port)

    @kopf.on.cleanup(registry=registry)
    def stop(memo: kopf.Memo, **_: Any) -> None:
        """Free the metrics port (if startup got as far as opening it)."""
        metrics: Metrics | None = memo.get("metrics")
        if metrics is not None:
            metrics.stop()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In a pod, its ServiceAccount; elsewhere KUBECONFIG as it is when the operator
        starts."""
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    if settings.webhook_port:  # served at https://<service>:<port>/study (the chart's config)
        kopf.on.validate(
            GROUP,
            VERSION,
            PLURAL,
            id="study",
            operations=["CREATE", "UPDATE"],
            registry=registry,
        )(admit)

    @kopf.on.create(GROUP, VERSION, PLURAL, backoff=every, registry=registry)
    @kopf.on.resume(GROUP, VERSION, PLURAL, backoff=every, when=_unfinished, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", backoff=every, registry=registry)
    def study_changed(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
    ) -> None:
        """Reconcile now; a bad spec is a permanent error (retrying cannot fix it)."""
        status, invalid = _reconcile(body, memo, logger, "study_changed")
        patch.status.update(status)
        if invalid:
            raise kopf.PermanentError(status["message"])

    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        interval=every,
        initial_delay=every,
        backoff=every,
        registry=registry,
    )
    def study_tick(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
    ) -> None:
        """Progress, stall detection, and anything a missed event left behind."""
        if (body.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        patch.status.update(_reconcile(body, memo, logger, "study_tick")[0])

    @kopf.on.event("batch", "v1", "jobs", labels={OWNED[0]: OWNED[1]}, registry=registry)
    def job_changed(
        body: kopf.Body, namespace: str | None, memo: kopf.Memo, logger: kopf.Logger, **_: Any
    ) -> None:
        """A study's Job ended: reconcile the study now rather than at its next tick."""
        conditions = (body.get("status") or {}).get("conditions") or []
        if not any(c.get("status") == "True" for c in conditions):
            return
        study = (body.get("metadata") or {}).get("labels", {}).get(STUDY_LABEL)
        if not study or not namespace:
            return
        seen = memo.studies.get((namespace, study))
        if seen is not None and time.monotonic() - seen.last < 1.0:
            return
        cluster: Cluster = memo.cluster
        try:
            current = cluster.study(namespace, study)
        except ApiException as error:
            if error.status == 404:  # the study is gone; its Jobs go with it
                return
            raise
        status = _reconcile(current, memo, logger, "job_changed")[0]
        if status:  # nothing moved: no write
            cluster.patch_status(namespace, study, status)

    @kopf.on.delete(GROUP, VERSION, PLURAL, optional=True, registry=registry)
    def study_deleted(namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any) -> None:
        """The study is gone (its Jobs go with it by owner references): so are its metrics
        and what the handlers kept for it."""
        key = (namespace or "default", name or "")
        study: StudyMemo | None = memo.studies.get(key)
        with study.lock if study is not None else contextlib.nullcontext():
            # after a reconcile still running, whose metrics would otherwise come back
            memo.metrics.forget_study(*key)
            memo.studies.pop(key, None)

    return registry


def _unfinished(body: kopf.Body, **_: Any) -> bool:
    """Whether a study found at start-up needs a look: not one that Succeeded or Failed for
    the spec it has now (an operator restart would otherwise scan the store of every
    finished study)."""
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    finished = status.get("phase") in ("Succeeded", "Failed")
    return not (finished and status.get("observedGeneration") == generation)


def admit(body: kopf.Body, **kwargs: Any) -> None:
    """The validating webhook: refuse a bad spec, or a change to work already done, at
    `kubectl apply`, with every problem and its field path."""
    problems = admission_problems(body, kwargs.get("old"))
    if problems:
        raise kopf.AdmissionError("; ".join(problems), code=422)


def _reconcile(
    body: Mapping[str, Any], memo: kopf.Memo, logger: kopf.Logger, handler: str
) -> tuple[dict[str, Any], bool]:
    """The status to patch after one reconcile, and whether the spec was found invalid (then
    the status says why, and no retry can help); one reconcile of a study at a time."""
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):  # being deleted: nothing to start, no metrics to set
        return {}, False
    namespace, name = meta.get("namespace") or "default", meta.get("name") or ""
    study: StudyMemo = memo.studies.setdefault((namespace, name), StudyMemo())
    metrics: Metrics = memo.metrics
    with study.lock, metrics.latency.labels(handler=handler).time():
        study.last = time.monotonic()
        try:
            return _reconcile_once(body, meta, namespace, study, memo, logger)
        except Exception:
            metrics.errors.labels(handler=handler).inc()
            raise


def _reconcile_once(
    body: Mapping[str, Any],
    meta: Mapping[str, Any],
    namespace: str,
    study: StudyMemo,
    memo: kopf.Memo,
    logger: kopf.Logger,
) -> tuple[dict[str, Any], bool]:
    previous = dict(body.get("status") or {})
    try:
        parsed = parse_resource(body)
        store = study_store(parsed)
    except SpecError:
        problems = "; ".join(admission_problems(body))
        logger.error(f"invalid spec: {problems}")
        return {"phase": "Failed", "message": f"invalid spec: {problems}"}, True
    resource = Resource(
        namespace=namespace,
        uid=meta.get("uid", ""),
        generation=meta.get("generation"),
        status=previous,
        adopt=(meta.get("annotations") or {}).get(ADOPT),
    )
    done = reconcile(
        parsed,
        resource,
        cluster=memo.cluster,
        store=store,
        cache=study.cache,
        settings=memo.settings,
        now=datetime.now(UTC),
    )
    involved: Any = body  # kopf takes any mapping with apiVersion, kind and metadata
    for event in done.events:
        kopf.event(involved, type=event.type, reason=event.reason, message=event.message)
    memo.metrics.record_study(done.sample)
    return (done.status if _changes(previous, done.status) else {}), False


def _changes(previous: dict[str, Any], status: dict[str, Any]) -> bool:
    """Whether patching `status` would change anything (no write when nothing moved)."""
    return any(previous.get(key) != value for key, value in status.items())
