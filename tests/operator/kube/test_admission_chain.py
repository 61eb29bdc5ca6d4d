"""The test API server calls validating webhooks on writes as the real one does: rules and
selectors pick the webhooks, matchConditions (CEL) skip them, an AdmissionReview v1 says who
asks what, a refusal is the API's answer, and a webhook that cannot be called refuses or lets
through by its failurePolicy, within its timeoutSeconds, over TLS checked against caBundle."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from apiserver import Running
from kubernetes import client, config
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "stagescreen.dev", "v1alpha1", "screeningstudies"
OPERATOR = "system:serviceaccount:stagescreen:stagescreen"
# The chart's conditions (tests/chart pins the chart to them).
SPEC_WRITTEN = "request.operation == 'CREATE' || object.spec != oldObject.spec"
NOT_THE_OPERATOR = f"request.userInfo.username != '{OPERATOR}'"


def api(running: Running, tmp_path: Path, user: str = "test") -> client.CustomObjectsApi:
    """A client whose requests are `user`'s: the test API server takes the bearer token for
    the user's name."""
    kubeconfig = running.server.kubeconfig(running.url)
    kubeconfig["users"][0]["user"]["token"] = user
    path = tmp_path / f"kubeconfig-{user.replace(':', '-')}"
    path.write_text(yaml.safe_dump(kubeconfig))
    return client.CustomObjectsApi(config.new_client_from_config(str(path)))


def study(name: str = "s1", x: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScreeningStudy",
        "metadata": {"name": name},
        "spec": {"x": x},
    }


@dataclass
class Webhook:
    """A webhook server on loopback: the reviews it was sent; it answers with `answer`."""

    url: str
    reviews: list[dict[str, Any]] = field(default_factory=list)


@contextlib.contextmanager
def webhook(
    answer: Callable[[dict[str, Any]], dict[str, Any]] = lambda _: {"allowed": True},
    delay: float = 0,
    cert: tuple[Path, Path] | None = None,
) -> Iterator[Webhook]:
    served = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            served.reviews.append(review["request"])
            time.sleep(delay)
            response = {"uid": review["request"]["uid"], **answer(review["request"])}
            body = json.dumps({**review, "response": response}).encode()
            with contextlib.suppress(ConnectionError):  # the API server gave up waiting
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    scheme = "http"
    if cert is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    served.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/study"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()


def register(running: Running, tmp_path: Path, url: str, **settings: Any) -> None:
    """A ValidatingWebhookConfiguration for ScreeningStudies calling `url`; `settings`
    override the webhook's fields (failurePolicy, matchConditions, ...)."""
    hook = {
        "name": "study.stagescreen.dev",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 10,
        "clientConfig": {"url": url},
        "rules": [
            {
                "apiGroups": [GROUP],
                "apiVersions": [VERSION],
                "resources": [PLURAL],
                "operations": ["CREATE", "UPDATE"],
            }
        ],
        **settings,
    }
    body = {"metadata": {"name": "stagescreen"}, "webhooks": [hook]}
    admin = config.new_client_from_config(str(running.write_kubeconfig(tmp_path / "admin")))
    client.AdmissionregistrationV1Api(admin).create_validating_webhook_configuration(
        body, _preload_content=False
    )


def refusal(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(ApiException) as refused:
        call()
    return refused.value.status, json.loads(refused.value.body)["message"]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_webhook_is_sent_who_asks_what_and_its_refusal_is_the_answer(
    apiserver: Running, tmp_path: Path
) -> None:
    def answer(request: dict[str, Any]) -> dict[str, Any]:
        if request["object"]["spec"]["x"] > 1:
            return {"allowed": False, "status": {"code": 422, "message": "spec.x: at most 1"}}
        return {"allowed": True}

    with webhook(answer) as served:
        register(apiserver, tmp_path, served.url)
        jane = api(apiserver, tmp_path, "jane")
        jane.create_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, study())
        status, message = refusal(
            lambda: jane.patch_namespaced_custom_object(
                GROUP, VERSION, "ml", PLURAL, "s1", {"spec": {"x": 2}}
            )
        )
    assert status == 422
    assert (
        message == 'admission webhook "study.stagescreen.dev" denied the request: spec.x: at most 1'
    )
    stored = jane.get_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, "s1")
    assert stored["spec"] == {"x": 1}  # refused before anything changed
    create, update = served.reviews
    assert (create["operation"], create["oldObject"], create["namespace"]) == ("CREATE", None, "ml")
    assert create["userInfo"] == {"username": "jane", "groups": ["system:authenticated"]}
    assert create["kind"] == {"group": GROUP, "version": VERSION, "kind": "ScreeningStudy"}
    assert create["resource"] == {"group": GROUP, "version": VERSION, "resource": PLURAL}
    assert update["operation"] == "UPDATE" and update["name"] == "s1"
    assert (update["oldObject"]["spec"], update["object"]["spec"]) == ({"x": 1}, {"x": 2})


def test_a_webhook_that_is_down_refuses_users_spec_changes_and_nothing_of_the_operator(
    apiserver: Running, tmp_path: Path
) -> None:
    """The chart's matchConditions: kopf's finalizer and annotation patches, status writes,
    deletes and every request of the operator's ServiceAccount pass a dead webhook."""
    jane = api(apiserver, tmp_path, "jane")
    jane.create_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, study())
    url = f"https://127.0.0.1:{closed_port()}/study"
    register(
        apiserver,
        tmp_path,
        url,
        matchConditions=[
            {"name": "spec-written", "expression": SPEC_WRITTEN},
            {"name": "not-the-operator", "expression": NOT_THE_OPERATOR},
        ],
    )
    status, message = refusal(
        lambda: jane.patch_namespaced_custom_object(
            GROUP, VERSION, "ml", PLURAL, "s1", {"spec": {"x": 2}}
        )
    )
    assert status == 500
    assert message.startswith(
        'Internal error occurred: failed calling webhook "study.stagescreen.dev": '
        f'failed to call webhook: Post "{url}?timeout=10s": '
    )
    assert (
        refusal(
            lambda: jane.create_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, study("s2"))
        )[0]
        == 500
    )
    jane.patch_namespaced_custom_object(
        GROUP, VERSION, "ml", PLURAL, "s1", {"metadata": {"labels": {"team": "a"}}}
    )
    operator = api(apiserver, tmp_path, OPERATOR)
    bookkeeping = {"metadata": {"finalizers": ["kopf.zalando.org/KopfFinalizerMarker"]}}
    operator.patch_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, "s1", bookkeeping)
    operator.patch_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, "s1", {"spec": {"x": 3}})
    operator.patch_namespaced_custom_object_status(
        GROUP, VERSION, "ml", PLURAL, "s1", {"status": {"phase": "Running"}}
    )
    operator.create_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, study("s3"))
    jane.delete_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, "s1")
    operator.patch_namespaced_custom_object(
        GROUP, VERSION, "ml", PLURAL, "s1", {"metadata": {"finalizers": None}}
    )
    names = [
        item["metadata"]["name"]
        for item in jane.list_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL)["items"]
    ]
    assert names == ["s3"]  # s1 released and gone, s2 refused


def test_without_match_conditions_a_dead_webhook_wedges_every_update(
    apiserver: Running, tmp_path: Path
) -> None:
    """What the chart's conditions prevent: kopf could not even remove its finalizer."""
    operator = api(apiserver, tmp_path, OPERATOR)
    operator.create_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, study())
    register(apiserver, tmp_path, f"http://127.0.0.1:{closed_port()}/study")
    status, _ = refusal(
        lambda: operator.patch_namespaced_custom_object(
            GROUP, VERSION, "ml", PLURAL, "s1", {"metadata": {"finalizers": ["kopf"]}}
        )
    )
    assert status == 500


def test_failure_policy_ignore_lets_a_failed_call_through_after_the_timeout(
    apiserver: Running, tmp_path: Path
) -> None:
    with webhook(delay=3) as slow:
        register(apiserver, tmp_path, slow.url, timeoutSeconds=1)
        jane = api(apiserver, tmp_path, "jane")
        started = time.monotonic()
        status, message = refusal(
            lambda: jane.create_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, study())
        )
        assert time.monotonic() - started < 2.5  # the API server waits timeoutSeconds, no more
        assert status == 500 and message.endswith("context deadline exceeded"), message
        admin = config.new_client_from_config(str(apiserver.write_kubeconfig(tmp_path / "a")))
        client.AdmissionregistrationV1Api(admin).patch_validating_webhook_configuration(
            "stagescreen",
            {"webhooks": [{**_webhooks(apiserver)[0], "failurePolicy": "Ignore"}]},
            _preload_content=False,
        )
        jane.create_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, study())


def _webhooks(running: Running) -> list[dict[str, Any]]:
    return running.server.admission._webhooks()


def test_a_match_condition_that_cannot_be_evaluated_fails_the_call(
    apiserver: Running, tmp_path: Path
) -> None:
    with webhook() as served:
        register(
            apiserver,
            tmp_path,
            served.url,
            matchConditions=[{"name": "broken", "expression": "object.nothing.here == 1"}],
        )
        jane = api(apiserver, tmp_path, "jane")
        status, message = refusal(
            lambda: jane.create_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, study())
        )
    assert status == 500 and "failed to evaluate match condition: broken" in message, message
    assert not served.reviews


def test_only_the_selected_namespaces_and_resources_reach_the_webhook(
    apiserver: Running, tmp_path: Path
) -> None:
    with webhook(lambda _: {"allowed": False}) as served:
        register(
            apiserver,
            tmp_path,
            served.url,
            namespaceSelector={
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["ml"]}
                ]
            },
        )
        jane = api(apiserver, tmp_path, "jane")
        jane.create_namespaced_custom_object(GROUP, VERSION, "other", PLURAL, study())
        jane.patch_namespaced_custom_object_status(
            GROUP, VERSION, "other", PLURAL, "s1", {"status": {"phase": "x"}}
        )
        status, message = refusal(
            lambda: jane.create_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, study())
        )
    assert (status, message) == (
        400,
        'admission webhook "study.stagescreen.dev" denied the request without explanation',
    )
    assert [review["namespace"] for review in served.reviews] == ["ml"]


def certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), made by the real openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is missing: apt-get install openssl", pytrace=False)
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_is_checked_against_the_ca_bundle(apiserver: Running, tmp_path: Path) -> None:
    served_cert, other = certificate(tmp_path, "webhook"), certificate(tmp_path, "other")
    jane = api(apiserver, tmp_path, "jane")
    with webhook(cert=served_cert) as served:
        bundle = base64.b64encode(other[0].read_bytes()).decode()
        register(
            apiserver, tmp_path, served.url, clientConfig={"url": served.url, "caBundle": bundle}
        )
        status, message = refusal(
            lambda: jane.create_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, study())
        )
        assert status == 500 and "certificate verify failed" in message, message
        assert not served.reviews
        right = base64.b64encode(served_cert[0].read_bytes()).decode()
        admin = config.new_client_from_config(str(apiserver.write_kubeconfig(tmp_path / "a")))
        hook = {**_webhooks(apiserver)[0], "clientConfig": {"url": served.url, "caBundle": right}}
        client.AdmissionregistrationV1Api(admin).patch_validating_webhook_configuration(
            "stagescreen", {"webhooks": [hook]}, _preload_content=False
        )
        jane.create_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, study())
        assert len(served.reviews) == 1
