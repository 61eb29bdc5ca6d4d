"""A Kubernetes API server for tests: kmock's emulator, made to behave as the real one does
where an operator depends on it.

No kube-apiserver binary is obtainable here, so tests run kopf for real against kmock 0.8
over loopback HTTP. Out of the box that emulator differs from the API server in ways that
break an operator silently (issue 8 lists them); this layer fixes each, and test_apiserver.py
pins each fix to the API server's documented behaviour:

- objects get uid, resourceVersion, generation and creationTimestamp; generateName works;
  create answers 201 and 409 AlreadyExists for a live name;
- PATCH honours Content-Type: merge patch, JSON patch (a failed `test` is 422), strategic
  merge only for built-in kinds (415 on custom resources); a stale metadata.resourceVersion
  is 409 Conflict; a no-op patch changes nothing and sends no watch event;
- the status subresource is separate: a main-resource write cannot change status, a status
  write cannot change anything else; generation moves only when spec does;
- list and watch honour labelSelector and fieldSelector (metadata.name/namespace); lists
  carry kind and apiVersion, and come in pages with `limit` and `continue`; `sent` counts
  the bytes and number of list answers and watch events each client (User-Agent) was sent,
  by resource;
  `Accept: ...as=Table` returns the CRD's printer columns (what
  `kubectl get` shows);
- a watch from a resourceVersion replays only what happened after it (410 Gone when that is
  older than the kept history) and ends after timeoutSeconds;
- deleting an object deletes what it owns (owner references, background propagation), the
  garbage collector's job in a real cluster;
- Jobs and Pods are validated as the API server's built-in validation does
  (builtin_validation.py): bad names, label values, tolerations, quantities or requests
  above limits are 422 Invalid, naming each field;
- `inject` makes the next matching writes fail with a given status (500, 409, or a policy
  webhook's 403/422 with its message), as a busy or flaky API server does, before anything
  is changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import itertools
import json
import random
import string
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock
import yaml
from admission_chain import AdmissionChain
from builtin_validation import invalid_fields
from kmock._internal import enums, rendering

Obj = dict[str, Any]
HISTORY = 20_000  # watch events kept for resuming watches; older resourceVersions get 410
CONFLICT = 409
REASONS = {400: "BadRequest", 403: "Forbidden", 409: "Conflict", 422: "Invalid"}


def ApiError(status: int, reason: str, message: str) -> kmock.KubernetesError:
    """The API server's Status answer: code, machine-readable reason, message."""
    return kmock.KubernetesError(status, reason, message, {"causes": []})


@dataclass
class Fault:
    action: str  # create, update, delete
    plural: str
    status: int
    times: int
    message: str = ""
    after: int = 0  # matching writes let through first


@dataclass
class Watcher:
    resource: kmock.resource
    namespace: str | None
    selector: Mapping[str, str | None]
    fields: Mapping[str, str]
    queue: asyncio.Queue[Obj]


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    _counter: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _version: int = attrs.field(default=0, init=False)
    _history: list[tuple[int, kmock.resource, Obj]] = attrs.field(factory=list, init=False)
    _floor: int = attrs.field(default=0, init=False)
    _watchers: list[Watcher] = attrs.field(factory=list, init=False)
    _faults: list[Fault] = attrs.field(factory=list, init=False)
    _columns: dict[kmock.resource, list[Obj]] = attrs.field(factory=dict, init=False)
    _custom: set[kmock.resource] = attrs.field(factory=set, init=False)
    # (User-Agent, plural) -> [bytes, answers] of list answers and watch events sent
    sent: dict[tuple[str, str], list[int]] = attrs.field(factory=dict, init=False)
    # Validating webhooks called on writes (admission_chain.py), with this server's patching.
    admission: AdmissionChain = attrs.field(
        default=attrs.Factory(lambda s: AdmissionChain(s, _merge, _json_patch), takes_self=True),
        init=False,
    )

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()
        self.fallback["get /version/"] << self._serve_server_version
        self.fallback["get /api/"] << self._serve_api

    # --- set-up -------------------------------------------------------------------------
    def add_crd(self, crd: Mapping[str, Any]) -> None:
        """Serve a CustomResourceDefinition's resource, as the API server does once applied."""
        spec = crd["spec"]
        for version in spec["versions"]:
            key = kmock.resource(spec["group"], version["name"], spec["names"]["plural"])
            self.resources[key] = kmock.ResourceInfo(
                kind=spec["names"]["kind"],
                singular=spec["names"].get("singular"),
                namespaced=spec["scope"] == "Namespaced",
                shortnames=spec["names"].get("shortNames", []),
                verbs=["get", "list", "watch", "create", "update", "patch", "delete"],
                subresources=list(version.get("subresources") or {}),
            )
            self._columns[key] = list(version.get("additionalPrinterColumns") or [])
            self._custom.add(key)

    def inject(
        self,
        action: str,
        plural: str,
        status: int,
        times: int = 1,
        message: str = "",
        after: int = 0,
    ) -> None:
        """The next `times` writes of `action` on `plural` (after letting `after` through)
        fail with `status` (and `message`, as a policy webhook's denial reads), changing
        nothing."""
        self._faults.append(Fault(action, plural, status, times, message, after))

    def created(self, plural: str) -> list[str]:
        """Names of the objects of `plural` created so far, once per creation (a refused
        duplicate create is not one)."""
        return [
            event["object"]["metadata"]["name"]
            for _, resource, event in self._history
            if resource.plural == plural and event["type"] == "ADDED"
        ]

    def kubeconfig(self, url: str) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": url}}],
            "users": [{"name": "test", "user": {"token": "test"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            "current-context": "test",
        }

    # --- requests -------------------------------------------------------------------------
    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None or request.action not in (
            enums.action.CREATE,
            enums.action.UPDATE,
            enums.action.DELETE,
        ):
            return await super()._handle(request)
        try:
            self._fault(request)
            await self.admission.admit(request)
            async with self._lock:
                status, body = self._write(request)
        except kmock.KubernetesError as error:
            return await self._render_error(error)
        return aiohttp.web.json_response(body, status=status)

    def _fault(self, request: rendering.Request) -> None:
        for fault in self._faults:
            if (
                fault.times > 0
                and fault.action == str(request.action.value).lower()
                and request.resource is not None
                and fault.plural == request.resource.plural
            ):
                if fault.after > 0:
                    fault.after -= 1
                    continue
                fault.times -= 1
                reason = REASONS.get(fault.status, "InternalError")
                raise ApiError(
                    fault.status, reason, fault.message or f"injected fault: {fault.status}"
                )

    # --- writes (under the lock) ------------------------------------------------------------
    def _write(self, request: rendering.Request) -> tuple[int, Obj]:
        resource = request.resource
        assert resource is not None
        if request.action == enums.action.CREATE:
            return self._create(request, resource)
        key = (resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            raise ApiError(404, "NotFound", f'{resource.plural} "{request.name}" not found')
        if request.action == enums.action.DELETE:
            return 200, self._delete(key)
        return 200, self._patch(request, key)

    def _create(self, request: rendering.Request, resource: kmock.resource) -> tuple[int, Obj]:
        data = copy.deepcopy(request.data or {})
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            meta["name"] = meta["generateName"] + suffix
        if not meta.get("name"):
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if request.namespace:
            meta["namespace"] = request.namespace
        key = (resource, meta.get("namespace"), meta["name"])
        if key in self._objects and not self._objects[key].deleted:
            raise ApiError(
                CONFLICT, "AlreadyExists", f'{resource.plural} "{meta["name"]}" already exists'
            )
        info = self.resources.get(resource)
        if info is not None and info.kind in ("Job", "Pod") and resource not in self._custom:
            invalid = invalid_fields(info.kind, data)
            if invalid:
                group = f".{resource.group}" if resource.group else ""
                raise ApiError(
                    422,
                    "Invalid",
                    f'{info.kind}{group} "{meta["name"]}" is invalid: [{", ".join(invalid)}]',
                )
        if info is not None and "status" in info.subresources:
            data.pop("status", None)
        meta.update(
            uid=str(uuid.uuid4()),
            generation=1,
            creationTimestamp=_now(),
            resourceVersion=self._next_version(),
        )
        if key in self._objects:
            self._objects[key].create(data)
        else:
            self._objects[key] = data
        self._emit("ADDED", resource, data)
        return 201, data

    def _patch(self, request: rendering.Request, key: Any) -> Obj:
        resource = key[0]
        old = copy.deepcopy(self._objects[key].raw)
        kind = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        patch = request.data
        if kind == "application/json-patch+json":
            new = _json_patch(old, patch)
        elif kind == "application/strategic-merge-patch+json" and resource in self._custom:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "strategic merge patch is not supported for custom resources",
            )
        elif kind in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            new = _merge(old, patch)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format: {kind}",
            )
        wanted = (
            (patch or {}).get("metadata", {}).get("resourceVersion")
            if isinstance(patch, dict)
            else None
        )
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise ApiError(
                CONFLICT,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version",
            )
        info = self.resources.get(resource)
        if info is not None and "status" in info.subresources:
            if request.subresource == "status":
                new = (
                    {**old, "status": new.get("status")}
                    if "status" in new
                    else {k: v for k, v in old.items() if k != "status"}
                )
            elif "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        new["metadata"]["uid"] = old["metadata"]["uid"]
        if new == old:
            return old
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = self._next_version()
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._objects[key].patch(_merge_diff(old, new))
            return self._remove(key)
        self._objects[key].patch(_merge_diff(old, new))
        self._emit("MODIFIED", resource, new)
        return new

    def _delete(self, key: Any) -> Obj:
        obj = copy.deepcopy(self._objects[key].raw)
        meta = obj["metadata"]
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = _now()
                meta["resourceVersion"] = self._next_version()
                self._objects[key].patch({"metadata": meta})
                self._emit("MODIFIED", key[0], obj)
            return obj
        return self._remove(key)

    def _remove(self, key: Any) -> Obj:
        obj = copy.deepcopy(self._objects[key].raw)
        obj["metadata"]["resourceVersion"] = self._next_version()
        self._objects[key].delete()
        self._emit("DELETED", key[0], obj)
        uid = obj["metadata"]["uid"]
        for other, item in list(self._objects.items()):
            if item.deleted:
                continue
            owners = item.get("metadata", {}).get("ownerReferences") or []
            if any(ref.get("uid") == uid for ref in owners):
                self._delete(other)
        return obj

    def _next_version(self) -> str:
        self._version = next(self._counter)
        return str(self._version)

    def _emit(self, kind: str, resource: kmock.resource, obj: Obj) -> None:
        event = {"type": kind, "object": copy.deepcopy(obj)}
        self._history.append((int(obj["metadata"]["resourceVersion"]), resource, event))
        if len(self._history) > HISTORY:
            self._floor = self._history.pop(0)[0]
        for watcher in self._watchers:
            if watcher.resource == resource and _selected(event["object"], watcher):
                watcher.queue.put_nowait(event)

    # --- reads ------------------------------------------------------------------------------
    def _selected_objects(self, request: rendering.Request) -> list[Obj]:
        criteria = _criteria(request)
        return [
            copy.deepcopy(obj.raw)
            for (resource, namespace, _), obj in self._objects.items()
            if resource == request.resource
            and not obj.deleted
            and (request.namespace is None or namespace == request.namespace)
            and _selected(obj.raw, criteria)
        ]

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        resource = request.resource
        assert resource is not None
        if resource not in set(self._get_resources()):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        async with self._lock:
            items = self._selected_objects(request)
            version = str(self._version)
        items.sort(
            key=lambda item: (item["metadata"].get("namespace") or "", item["metadata"]["name"])
        )
        start = int(request.params.get("continue") or 0)
        limit = int(request.params.get("limit") or 0)
        more = ""
        if limit and start + limit < len(items):
            more = str(start + limit)  # a real server's token is opaque; this one is an offset
        items = items[start : start + limit] if limit else items[start:]
        info = self.resources.get(resource)
        kind = info.kind if info is not None and info.kind else resource.plural.capitalize()
        api_version = f"{resource.group}/{resource.version}" if resource.group else resource.version
        accept = request.headers.get("Accept") or ""
        if "as=Table" in accept:
            return self._table(resource, items, version)
        answer = {
            "apiVersion": api_version,
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": version, **({"continue": more} if more else {})},
            "items": items,
        }
        self._count(request, answer)
        return answer

    def _count(self, request: rendering.Request, payload: Any) -> None:
        """Add the JSON size of a list answer or a watch event to its client's total."""
        key = (request.headers.get("User-Agent") or "", request.resource.plural or "")
        total = self.sent.setdefault(key, [0, 0])
        total[0] += len(json.dumps(payload))
        total[1] += 1

    def _table(self, resource: kmock.resource, items: list[Obj], version: str) -> Obj:
        columns = [
            {"name": "Name", "type": "string", "format": "name", "description": "Name"},
            *(
                {
                    "name": c["name"],
                    "type": c["type"],
                    "format": "",
                    "description": c.get("description", ""),
                }
                for c in self._columns.get(resource, [])
            ),
        ]
        rows = [
            {
                "cells": [
                    item["metadata"]["name"],
                    *(_cell(item, c) for c in self._columns.get(resource, [])),
                ],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": item["metadata"],
                },
            }
            for item in items
        ]
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": version},
            "columnDefinitions": columns,
            "rows": rows,
        }

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""
        criteria = _criteria(request)
        queue: asyncio.Queue[Obj] = asyncio.Queue()
        watcher = Watcher(
            request.resource, request.namespace, criteria.selector, criteria.fields, queue
        )  # type: ignore[arg-type]
        since = request.params.get("resourceVersion")
        async with self._lock:
            if since and since != "0" and int(since) < self._floor:
                gone = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "code": 410,
                    "reason": "Expired",
                    "status": "Failure",
                    "message": f"too old resource version: {since}",
                }
                yield {"type": "ERROR", "object": gone}
                return
            if since and since != "0":
                backlog = [
                    event
                    for rv, resource, event in self._history
                    if rv > int(since)
                    and resource == request.resource
                    and _selected(event["object"], watcher)
                ]
            else:
                backlog = [
                    {"type": "ADDED", "object": obj} for obj in self._selected_objects(request)
                ]
            for event in backlog:
                queue.put_nowait(event)
            self._watchers.append(watcher)
        timeout = float(request.params.get("timeoutSeconds") or 3600)
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    return
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=left)
                except TimeoutError:
                    return
                self._count(request, event)
                yield event
        finally:
            self._watchers.remove(watcher)


@dataclass(frozen=True)
class Criteria:
    namespace: str | None
    selector: Mapping[str, str | None]
    fields: Mapping[str, str]


def _criteria(request: rendering.Request) -> Criteria:
    selector: dict[str, str | None] = {}
    for term in filter(None, (request.params.get("labelSelector") or "").split(",")):
        key, _, value = term.partition("=")
        selector[key.strip()] = value.strip() if value else None  # None: the key exists
    fields = {}
    for term in filter(None, (request.params.get("fieldSelector") or "").split(",")):
        key, _, value = term.partition("=")
        fields[key.strip()] = value.strip()
    return Criteria(request.namespace, selector, fields)


def _selected(obj: Obj, criteria: Any) -> bool:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    if getattr(criteria, "namespace", None) and meta.get("namespace") != criteria.namespace:
        return False
    for key, value in criteria.selector.items():
        if key not in labels or (value is not None and labels[key] != value):
            return False
    return all(_path(obj, "." + key) == value for key, value in criteria.fields.items())


def _path(obj: Obj, path: str) -> Any:
    """A simple JSONPath (.a.b.c), as CRD printer columns and field selectors use."""
    value: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _cell(item: Obj, column: Mapping[str, Any]) -> Any:
    """A printer column's cell as the API server renders it: dates as an age ("42s")."""
    value = _path(item, column["jsonPath"])
    if column["type"] != "date" or not value:
        return value
    then = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    for limit, unit, size in ((120, "s", 1), (7200, "m", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"


def _merge(old: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(old) if isinstance(old, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def _merge_diff(old: Obj, new: Obj) -> Obj:
    """The merge patch that turns `old` into `new` (None removes a key)."""
    out: Obj = {}
    for key in old.keys() - new.keys():
        out[key] = None
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            inner = _merge_diff(old[key], value)
            if inner:
                out[key] = inner
        elif old.get(key) != value or key not in old:
            out[key] = copy.deepcopy(value)
    return out


def _json_patch(doc: Obj, operations: Any) -> Obj:
    """RFC 6902 JSON patch (add, remove, replace, test); a failed test is 422 Invalid."""
    out = copy.deepcopy(doc)
    for op in operations or []:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        parent: Any = out
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op.get("value"):
                raise ApiError(
                    422, "Invalid", f"the server rejected our request: test failed at {op['path']}"
                )
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                parent.pop(last, None)
        else:
            raise ApiError(422, "Invalid", f"unsupported JSON patch operation {kind!r}")
    return out


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)


T = TypeVar("T")


@dataclass
class Running:
    """A live API server: its URL, its handler and the loop it runs on."""

    server: ApiServer
    url: str
    loop: asyncio.AbstractEventLoop

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump(self.server.kubeconfig(self.url)))
        return path


@contextlib.contextmanager
def serve(crd: Path) -> Iterator[Running]:
    """An API server serving the built-in kinds and `crd`, from its own thread and event
    loop, so blocking clients (the kubernetes client, kubectl, kopf's runner thread) can talk
    to it from the caller's thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    box: dict[str, Any] = {}

    async def run() -> None:
        async with ApiServer() as server, kmock.Server(server) as http:
            server.add_crd(yaml.safe_load(crd.read_text()))
            box.update(server=server, url=str(http.url).rstrip("/"))
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the API server did not start")
    try:
        yield Running(box["server"], box["url"], loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
