"""The test API server behaves as the real one where the operator depends on it."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from apiserver import Running
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "stagescreen.dev", "v1alpha1", "screeningstudies"


def api(running: Running, tmp_path: Path) -> client.ApiClient:
    return config.new_client_from_config(str(running.write_kubeconfig(tmp_path / "kubeconfig")))


def study(name: str = "s1") -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScreeningStudy",
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {"x": 1},
        "status": {"phase": "Fake"},
    }


def raw(answer) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(answer.data)


def test_create_fills_server_fields_drops_status_and_refuses_a_live_name(
    apiserver: Running, tmp_path: Path
) -> None:
    custom = client.CustomObjectsApi(api(apiserver, tmp_path))
    made = custom.create_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, study())
    meta = made["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert (meta["generation"], meta["namespace"]) == (1, "ns")
    assert "status" not in made  # the status subresource is written separately
    with pytest.raises(ApiException) as again:
        custom.create_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, study())
    assert again.value.status == 409 and json.loads(again.value.body)["reason"] == "AlreadyExists"


def test_generate_name_gives_a_fresh_name(apiserver: Running, tmp_path: Path) -> None:
    core = client.CoreV1Api(api(apiserver, tmp_path))
    body = {
        "metadata": {"generateName": "s1."},
        "reason": "R",
        "message": "m",
        "involvedObject": {"name": "s1", "namespace": "ns"},
    }
    first = core.create_namespaced_event("ns", body, _preload_content=False)
    second = core.create_namespaced_event("ns", body, _preload_content=False)
    names = {raw(first)["metadata"]["name"], raw(second)["metadata"]["name"]}
    assert first.status == 201 and len(names) == 2 and all(n.startswith("s1.") for n in names)


def test_status_and_spec_are_written_only_through_their_own_endpoints(
    apiserver: Running, tmp_path: Path
) -> None:
    custom = client.CustomObjectsApi(api(apiserver, tmp_path))
    custom.create_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, study())
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "ns", PLURAL, "s1", {"spec": {"x": 2}, "status": {"phase": "No"}}
    )
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "ns", PLURAL, "s1", {"spec": {"x": 3}, "status": {"phase": "Yes"}}
    )
    got = custom.get_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, "s1")
    assert got["spec"] == {"x": 2} and got["status"] == {"phase": "Yes"}
    assert got["metadata"]["generation"] == 2  # one spec change; the status write kept it


def test_patches_honour_their_content_type_and_preconditions(
    apiserver: Running, tmp_path: Path
) -> None:
    client_ = api(apiserver, tmp_path)
    custom = client.CustomObjectsApi(client_)
    made = custom.create_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, study())
    path = f"/apis/{GROUP}/{VERSION}/namespaces/ns/{PLURAL}/s1"

    def patch(body: object, kind: str) -> int:
        request = urllib.request.Request(
            apiserver.url + path, json.dumps(body).encode(), {"Content-Type": kind}, method="PATCH"
        )
        try:
            with urllib.request.urlopen(request) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return error.code

    assert patch({"spec": {"x": 5}}, "application/strategic-merge-patch+json") == 415
    assert (
        patch([{"op": "test", "path": "/spec/x", "value": 9}], "application/json-patch+json") == 422
    )
    assert (
        patch([{"op": "replace", "path": "/spec/x", "value": 7}], "application/json-patch+json")
        == 200
    )
    stale = {"metadata": {"resourceVersion": made["metadata"]["resourceVersion"]}, "spec": {"x": 8}}
    assert patch(stale, "application/merge-patch+json") == 409
    got = custom.get_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, "s1")
    assert got["spec"] == {"x": 7}


def test_lists_and_watches_select_by_label_and_resume_from_a_version(
    apiserver: Running, tmp_path: Path
) -> None:
    client_ = api(apiserver, tmp_path)
    custom = client.CustomObjectsApi(client_)
    custom.create_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, study("s1"))
    other = study("s2")
    other["metadata"]["labels"] = {"team": "b"}
    custom.create_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, other)
    listed = custom.list_namespaced_custom_object(
        GROUP, VERSION, "ns", PLURAL, label_selector="team=a"
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == ["s1"]
    assert listed["kind"] == "ScreeningStudyList"
    since = listed["metadata"]["resourceVersion"]
    seen: list[tuple[str, str]] = []

    def follow() -> None:
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            "ns",
            PLURAL,
            label_selector="team=a",
            resource_version=since,
            timeout_seconds=2,
        )
        seen.extend((e["type"], e["object"]["metadata"]["name"]) for e in stream)

    thread = threading.Thread(target=follow)
    thread.start()
    custom.patch_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, "s2", {"spec": {"x": 2}})
    custom.patch_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, "s1", {"spec": {"x": 2}})
    custom.patch_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, "s1", {"spec": {"x": 2}})
    thread.join(10)
    # Nothing replayed from before `since`, the other team's object unseen, the no-op unsent.
    assert seen == [("MODIFIED", "s1")]


def test_deleting_an_owner_deletes_what_it_owns(apiserver: Running, tmp_path: Path) -> None:
    client_ = api(apiserver, tmp_path)
    custom, batch = client.CustomObjectsApi(client_), client.BatchV1Api(client_)
    owner = custom.create_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, study())
    job = {
        "metadata": {
            "name": "j1",
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "ScreeningStudy",
                    "name": "s1",
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
        "spec": {"template": {"spec": {"containers": []}}},
    }
    batch.create_namespaced_job("ns", job)
    custom.delete_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, "s1")
    assert batch.list_namespaced_job("ns").items == []


def test_injected_faults_fail_writes_without_changing_anything(
    apiserver: Running, tmp_path: Path
) -> None:
    custom = client.CustomObjectsApi(api(apiserver, tmp_path))
    apiserver.server.inject("create", PLURAL, 500)
    with pytest.raises(ApiException) as failed:
        custom.create_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, study())
    assert failed.value.status == 500
    assert custom.list_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL)["items"] == []
    custom.create_namespaced_custom_object(GROUP, VERSION, "ns", PLURAL, study())


def job(name: str = "j1", **pod: object) -> dict:
    container = {"name": "c", "image": "busybox", "resources": pod.pop("resources", {})}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": pod.pop("labels", {"app": "x"})},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [container], **pod},
            }
        },
    }


@pytest.mark.parametrize(
    ("broken", "field"),
    [
        (job(labels={"role": "best-"}), "metadata.labels"),
        (job(name="x" * 64), "metadata.name"),
        (
            job(tolerations=[{"key": "gpu", "operator": "Exists", "value": "yes"}]),
            "spec.template.spec.tolerations[0].operator",
        ),
        (
            job(tolerations=[{"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 5}]),
            "spec.template.spec.tolerations[0].effect",
        ),
        (
            job(resources={"requests": {"memory": "64GB"}}),
            "spec.template.spec.containers[0].resources.requests[memory]",
        ),
        (
            job(resources={"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}),
            "spec.template.spec.containers[0].resources.requests",
        ),
        (job(nodeSelector={"pool": "a b"}), "spec.template.spec.nodeSelector"),
        (job(priorityClassName="High_Priority"), "spec.template.spec.priorityClassName"),
        (job(imagePullSecrets=[{"name": "Reg Creds"}]), "spec.template.spec.imagePullSecrets[0]"),
        (job(terminationGracePeriodSeconds=-1), "spec.template.spec.terminationGracePeriodSeconds"),
        (
            job(volumes=[{"name": "shm", "emptyDir": {"sizeLimit": "8GB"}}]),
            "spec.template.spec.volumes[0].emptyDir.sizeLimit",
        ),
    ],
)
def test_a_job_the_api_server_would_refuse_is_422_naming_the_field(
    apiserver: Running, tmp_path: Path, broken: dict, field: str
) -> None:
    batch = client.BatchV1Api(api(apiserver, tmp_path))
    with pytest.raises(ApiException) as refused:
        batch.create_namespaced_job("ns", broken)
    answer = json.loads(refused.value.body)
    assert refused.value.status == 422 and answer["reason"] == "Invalid"
    assert field in answer["message"], answer["message"]
    assert apiserver.server.created("jobs") == []  # nothing was stored


def test_a_valid_job_is_created(apiserver: Running, tmp_path: Path) -> None:
    batch = client.BatchV1Api(api(apiserver, tmp_path))
    resources = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    batch.create_namespaced_job("ns", job(resources=resources, nodeSelector={"pool": "a100"}))
    assert apiserver.server.created("jobs") == ["j1"]


def test_a_list_comes_in_pages_when_asked_and_its_bytes_are_counted(
    apiserver: Running, tmp_path: Path
) -> None:
    client_api = api(apiserver, tmp_path)
    client_api.user_agent = "pager"
    batch = client.BatchV1Api(client_api)
    for index in range(5):
        batch.create_namespaced_job("ns", job(f"j{index}"))
    names, token, pages = [], None, 0
    while True:
        page = raw(
            batch.list_namespaced_job("ns", limit=2, _continue=token, _preload_content=False)
        )
        names += [item["metadata"]["name"] for item in page["items"]]
        pages += 1
        token = page["metadata"].get("continue")
        if not token:
            break
    assert (names, pages) == ([f"j{index}" for index in range(5)], 3)
    assert apiserver.server.sent["pager", "jobs"][1] == 3  # bytes, answers
