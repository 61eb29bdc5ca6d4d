"""Validating admission in the test API server's write path, as kube-apiserver does it.

On a create, update (patch) or delete, before anything is stored, every webhook of every
registered ValidatingWebhookConfiguration whose rules match the request is considered:

- its namespaceSelector (against the namespace's labels, `kubernetes.io/metadata.name`
  included) and objectSelector (against the new or the old object's labels) must match;
- its matchConditions are evaluated for real, in CEL (cel-python), over `object`,
  `oldObject` and `request`: one false skips the webhook; an error (and none false) is a
  failure of the webhook;
- it is POSTed an AdmissionReview v1 (clientConfig.url; a service reference names
  https://<service>.<namespace>.svc, which does not resolve in a test, as a Service with no
  endpoints does not answer), over TLS verified against caBundle, within timeoutSeconds;
- a refusal answers the request with the webhook's code (at least 400) and
  `admission webhook "<name>" denied the request: <message>`; a failure to call it (refused
  connection, timeout, bad TLS, bad answer) with failurePolicy Fail answers 500
  `Internal error occurred: failed calling webhook "<name>": ...`, and with Ignore lets the
  request through.

Who calls is the request's bearer token: the test API server takes a token for its user's
name. A test gives an identity to a client by the token in its kubeconfig (the default one,
`test`, is user `test`; `system:serviceaccount:<namespace>:<name>` is that ServiceAccount).

The object a webhook judges is the stored one with the request's patch applied. It is
computed, the webhooks called and then the write done, not under one lock: a write that
lands on the same object while a webhook is being called is not seen by it (the real API
server retries such a race; tests do not make one).
"""

from __future__ import annotations

import base64
import copy
import ssl
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import celpy
import kmock
from kmock._internal import enums, rendering

Obj = dict[str, Any]
WEBHOOKS = "validatingwebhookconfigurations"
ADMISSION = "admissionregistration.k8s.io"  # its own objects are never sent to webhooks
OPERATIONS = {
    enums.action.CREATE: "CREATE",
    enums.action.UPDATE: "UPDATE",
    enums.action.DELETE: "DELETE",
}


class WebhookFailed(Exception):
    """The webhook could not be called or did not answer a valid AdmissionReview."""


def user_of(request: rendering.Request) -> Obj:
    """The caller's userInfo: the bearer token is the user's name; a ServiceAccount's name
    gives its groups, as the API server's token authenticator does."""
    header = request.headers.get("Authorization") or ""
    username = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not username:
        return {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
    groups = ["system:authenticated"]
    parts = username.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{parts[2]}", *groups]
    return {"username": username, "groups": groups}


@dataclass(frozen=True)
class Review:
    """One request as admission sees it: the AdmissionRequest and where it was made."""

    request: Obj
    namespace: str | None

    @property
    def labels(self) -> Iterator[Mapping[str, str]]:
        for which in ("object", "oldObject"):
            if self.request.get(which) is not None:
                yield (self.request[which].get("metadata") or {}).get("labels") or {}


@dataclass
class AdmissionChain:
    """The validating webhooks of one test API server, called on its writes.

    `merge` and `json_patch` are the server's own patch functions, so a webhook judges the
    object the write would store."""

    server: kmock.KubernetesEmulator
    merge: Callable[[Any, Any], Any]
    json_patch: Callable[[Obj, Any], Obj]

    async def admit(self, request: rendering.Request) -> None:
        """Refuse `request` (raise the API server's error) as its webhooks say; return when
        it may proceed."""
        review = self._review(request)
        if review is None:
            return
        for webhook in self._webhooks():
            if _matches(webhook, review, self._namespace_labels(review.namespace)):
                await self._call(webhook, review)

    # --- what is asked ------------------------------------------------------------------------
    def _review(self, request: rendering.Request) -> Review | None:
        resource = request.resource
        if resource is None or resource.group == ADMISSION or request.action not in OPERATIONS:
            return None
        operation = OPERATIONS[request.action]
        stored = self._stored(resource, request.namespace, request.name)
        if operation == "CREATE":
            new: Obj | None = copy.deepcopy(request.data or {})
            assert new is not None
            if request.namespace:
                new.setdefault("metadata", {})["namespace"] = request.namespace
            old = None
        elif stored is None:
            return None  # the write answers 404
        elif operation == "DELETE":
            new, old = None, stored
        else:
            new, old = self._patched(request, stored), stored
            if new is None:
                return None  # a patch format the write refuses (415)
        info = self.server.resources.get(resource)
        kind = info.kind if info is not None and info.kind else ""
        group_version = {"group": resource.group, "version": resource.version}
        name = request.name or ((new or {}).get("metadata") or {}).get("name", "")
        return Review(
            {
                "uid": str(uuid.uuid4()),
                "kind": {**group_version, "kind": kind},
                "resource": {**group_version, "resource": resource.plural},
                "subResource": request.subresource or "",
                "requestKind": {**group_version, "kind": kind},
                "requestResource": {**group_version, "resource": resource.plural},
                "name": name,
                "namespace": request.namespace or "",
                "operation": operation,
                "userInfo": user_of(request),
                "object": new,
                "oldObject": old,
                "dryRun": False,
            },
            request.namespace,
        )

    def _patched(self, request: rendering.Request, stored: Obj) -> Obj | None:
        kind = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        if kind == "application/json-patch+json":
            return self.json_patch(stored, request.data)
        if kind in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            return dict(self.merge(stored, request.data))
        return None

    def _stored(self, resource: kmock.resource, namespace: str | None, name: str | None) -> Any:
        for (kind, where, called), obj in self.server._objects.items():
            if (kind, where, called) == (resource, namespace, name) and not obj.deleted:
                return copy.deepcopy(obj.raw)
        return None

    def _webhooks(self) -> list[Obj]:
        return [
            webhook
            for (resource, _, _), obj in list(self.server._objects.items())
            if resource.plural == WEBHOOKS and resource.group == ADMISSION and not obj.deleted
            for webhook in obj.raw.get("webhooks") or []
        ]

    def _namespace_labels(self, namespace: str | None) -> Mapping[str, str]:
        if namespace is None:
            return {}
        stored = self._stored(kmock.resource("", "v1", "namespaces"), None, namespace) or {}
        labels = (stored.get("metadata") or {}).get("labels") or {}
        return {**labels, "kubernetes.io/metadata.name": namespace}

    # --- the call -----------------------------------------------------------------------------
    async def _call(self, webhook: Obj, review: Review) -> None:
        name = webhook["name"]
        try:
            if not _conditions_hold(webhook, review):
                return
            answer = await _post(webhook, review)
        except WebhookFailed as failure:
            if webhook.get("failurePolicy", "Fail") == "Ignore":
                return
            message = f'failed calling webhook "{name}": {failure}'
            raise kmock.KubernetesError(
                500,
                "InternalError",
                f"Internal error occurred: {message}",
                {"causes": [{"message": message}]},
            ) from None
        if answer.get("allowed"):
            return
        status = answer.get("status") or {}
        denied = f'admission webhook "{name}" denied the request'
        why = status.get("message") or status.get("reason")
        raise kmock.KubernetesError(
            max(int(status.get("code") or 0), 400),
            status.get("reason") or "",
            f"{denied}: {why}" if why else f"{denied} without explanation",
            {"causes": []},
        )


def _matches(webhook: Obj, review: Review, namespace_labels: Mapping[str, str]) -> bool:
    """The webhook's rules, namespaceSelector and objectSelector select this request."""
    request = review.request
    resource = request["resource"]
    asked = resource["resource"] + (f"/{request['subResource']}" if request["subResource"] else "")
    if not any(
        _among(resource["group"], rule.get("apiGroups"))
        and _among(resource["version"], rule.get("apiVersions"))
        and _among(request["operation"], rule.get("operations"))
        and _resource_among(asked, rule.get("resources"))
        for rule in webhook.get("rules") or []
    ):
        return False
    if review.namespace is not None and not _selected(
        namespace_labels, webhook.get("namespaceSelector")
    ):
        return False
    selector = webhook.get("objectSelector")
    return not selector or any(_selected(labels, selector) for labels in review.labels)


def _among(value: str, allowed: list[str] | None) -> bool:
    return "*" in (allowed or []) or value in (allowed or [])


def _resource_among(asked: str, allowed: list[str] | None) -> bool:
    """`pods`; `pods/status`; `*`: every resource, no subresource; `*/*`: every resource and
    subresource; `pods/*`: every subresource of pods; `*/status`."""
    plural, _, sub = asked.partition("/")
    for pattern in allowed or []:
        want, _, want_sub = pattern.partition("/")
        if want in ("*", plural) and (
            want_sub == sub or (want_sub == "*" and (bool(sub) or want == "*"))
        ):
            return True
    return False


def _selected(labels: Mapping[str, str], selector: Mapping[str, Any] | None) -> bool:
    """A LabelSelector (matchLabels, matchExpressions); empty or absent selects everything."""
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for term in selector.get("matchExpressions") or []:
        key, operator, values = term["key"], term["operator"], term.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _conditions_hold(webhook: Obj, review: Review) -> bool:
    """Every matchCondition true: call; one false: skip; an error and none false: fail."""
    environment = celpy.Environment()
    activation = celpy.json_to_cel(
        {
            "object": review.request["object"],
            "oldObject": review.request["oldObject"],
            "request": review.request,
        }
    )
    errors = []
    for condition in webhook.get("matchConditions") or []:
        try:
            program = environment.program(environment.compile(condition["expression"]))
            value = program.evaluate(activation)
        except (celpy.CELParseError, celpy.CELEvalError) as error:
            errors.append(f"{condition['name']}: {error.args[0] if error.args else error}")
            continue
        if not isinstance(value, celpy.celtypes.BoolType):
            errors.append(f"{condition['name']}: not a bool: {value}")
        elif not value:
            return False
    if errors:
        raise WebhookFailed("failed to evaluate match condition: " + "; ".join(errors))
    return True


def _url(webhook: Obj) -> str:
    config = webhook.get("clientConfig") or {}
    if config.get("url"):
        return str(config["url"])
    service = config["service"]
    port = service.get("port", 443)
    return f"https://{service['name']}.{service['namespace']}.svc:{port}{service.get('path', '')}"


def _tls(webhook: Obj) -> ssl.SSLContext:
    bundle = (webhook.get("clientConfig") or {}).get("caBundle")
    if not bundle:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cadata=base64.b64decode(bundle).decode())
    except (ValueError, ssl.SSLError) as error:
        raise WebhookFailed(f"failed to call webhook: bad caBundle: {error}") from None


async def _post(webhook: Obj, review: Review) -> Obj:
    """POST the AdmissionReview; its `response`, or WebhookFailed saying why not."""
    timeout = float(webhook.get("timeoutSeconds", 10))
    url = _url(webhook)
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": review.request,
    }
    where = f'Post "{url}?timeout={timeout:g}s"'
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.post(
                url, json=body, ssl=_tls(webhook) if url.startswith("https") else False
            ) as answer,
        ):
            if answer.status != 200:
                raise WebhookFailed(f"{where}: the server answered {answer.status}")
            data = await answer.json(content_type=None)
    except TimeoutError:
        raise WebhookFailed(f"failed to call webhook: {where}: context deadline exceeded") from None
    except (aiohttp.ClientError, OSError, ValueError) as error:
        raise WebhookFailed(f"failed to call webhook: {where}: {error}") from None
    response = data.get("response") if isinstance(data, dict) else None
    if not isinstance(response, dict) or response.get("uid") != review.request["uid"]:
        raise WebhookFailed(f"{where}: the answer is no AdmissionReview response to this request")
    return response
