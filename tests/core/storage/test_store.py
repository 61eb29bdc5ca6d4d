"""The result store behaves the same on a local directory and on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from seaweed import S3Bucket, S3Endpoint

from stagescreen.storage.keys import TEMP_PREFIX, InvalidKey, MissingKey, StoreError, StudyKeys
from stagescreen.storage.store import LocalStore, S3Store, Store, open_store, ready_to_write


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    return S3Store(bucket.name, "studies/v1", bucket.client())


FRAME = pd.DataFrame(
    {
        "run_id": ["r1", "r2", "r3"],
        "condition_id": ["c07", "c10", "c14"],
        "budget_s": [120, 300, 600],
        "val_bpb": [1.01, float("nan"), 0.97],
        "A": [-1, 1, 1],
    }
)

ROUNDTRIPS: list[tuple[str, str, str, Any]] = [
    ("bytes", "put_bytes", "get_bytes", b"\x00\xffbinary\n"),
    ("empty bytes", "put_bytes", "get_bytes", b""),
    ("text", "put_text", "get_text", "val_bpb \u2248 0.97\nsecond line"),
    ("json", "put_json", "get_json", {"best": {"condition": "c07", "interval": [0.9, 1.1]}}),
]


@pytest.mark.parametrize(
    ("put", "get", "value"), [case[1:] for case in ROUNDTRIPS], ids=[c[0] for c in ROUNDTRIPS]
)
def test_value_reads_back_as_written(store: Store, put: str, get: str, value: Any) -> None:
    getattr(store, put)("demo/runs/r1/object", value)
    assert getattr(store, get)("demo/runs/r1/object") == value


def test_frame_reads_back_with_dtypes_and_nan(store: Store) -> None:
    store.put_frame("demo/stages/screen/results.parquet", FRAME)
    pd.testing.assert_frame_equal(store.get_frame("demo/stages/screen/results.parquet"), FRAME)


def test_json_is_sorted_indented_and_has_no_nan(store: Store) -> None:
    store.put_json("o.json", {"q": float("nan"), "n": np.int64(3), "e": (np.float64(0.5),)})
    assert store.get_text("o.json") == '{\n  "e": [\n    0.5\n  ],\n  "n": 3,\n  "q": null\n}\n'


def test_overwrite_replaces_the_object(store: Store) -> None:
    store.put_text("demo/spec.yaml", "first")
    store.put_text("demo/spec.yaml", "second")
    assert store.get_text("demo/spec.yaml") == "second"
    assert store.list("demo/") == ["demo/spec.yaml"]


def test_list_returns_keys_under_prefix_sorted(store: Store) -> None:
    for key in ["d/runs/r2/result.json", "d/runs/r10/log.txt", "d/runs/r1/ckpt/a.pt", "d/x", "e"]:
        store.put_bytes(key, b"-")
    assert store.list("d/runs/") == [
        "d/runs/r1/ckpt/a.pt",
        "d/runs/r10/log.txt",
        "d/runs/r2/result.json",
    ]
    # A prefix is a string prefix, as in S3: "r1" also matches "r10".
    assert store.list("d/runs/r1") == ["d/runs/r1/ckpt/a.pt", "d/runs/r10/log.txt"]
    assert store.list("d/runs/r1/") == ["d/runs/r1/ckpt/a.pt"]
    assert store.list() == [
        "d/runs/r1/ckpt/a.pt",
        "d/runs/r10/log.txt",
        "d/runs/r2/result.json",
        "d/x",
        "e",
    ]
    assert store.list("nothing/here/") == []


def test_exists_and_delete(store: Store) -> None:
    assert not store.exists("d/manifest.json")
    store.put_json("d/manifest.json", {})
    assert store.exists("d/manifest.json")
    assert not store.exists("d")
    store.delete("d/manifest.json")
    assert not store.exists("d/manifest.json")
    store.delete("d/manifest.json")


@pytest.mark.parametrize("read", ["get_bytes", "get_text", "get_json", "get_frame"])
def test_missing_key_error_names_the_full_uri(store: Store, read: str) -> None:
    with pytest.raises(MissingKey) as raised:
        getattr(store, read)("demo/runs/r9/result.json")
    assert raised.value.key == "demo/runs/r9/result.json"
    assert str(raised.value) == f"no object at {store.uri('demo/runs/r9/result.json')}"
    assert isinstance(raised.value, KeyError)


BAD_KEYS = [
    ("", "is empty"),
    ("/etc/passwd", "starts with '/'"),
    ("../outside", "'..'"),
    ("a/../../b", "'..'"),
    ("a//b", "empty"),
    ("a/./b", "'.'"),
    ("dir/", "empty"),
    ("a\\b", "backslash"),
    (f"a/{TEMP_PREFIX}x", "reserved"),
]


@pytest.mark.parametrize(("key", "problem"), BAD_KEYS)
@pytest.mark.parametrize("operation", ["put", "get", "exists"])
def test_bad_keys_are_refused_naming_the_key(
    store: Store, key: str, problem: str, operation: str
) -> None:
    calls: dict[str, Callable[[], object]] = {
        "put": lambda: store.put_bytes(key, b"x"),
        "get": lambda: store.get_bytes(key),
        "exists": lambda: store.exists(key),
    }
    with pytest.raises(InvalidKey, match=problem) as raised:
        calls[operation]()
    assert repr(key) in str(raised.value)


@pytest.mark.parametrize("prefix", ["/abs", "../up/", "a//"])
def test_bad_list_prefixes_are_refused(store: Store, prefix: str) -> None:
    with pytest.raises(InvalidKey, match="prefix"):
        store.list(prefix)


def test_failed_write_leaves_the_old_object(store: Store) -> None:
    store.put_frame("d/results.parquet", FRAME)
    unwritable = pd.DataFrame({"mixed": [1, "two", object()]})
    with pytest.raises(Exception, match=r"object|Conversion|convert"):
        store.put_frame("d/results.parquet", unwritable)
    pd.testing.assert_frame_equal(store.get_frame("d/results.parquet"), FRAME)


# --- local directory specifics ----------------------------------------------------------------


def test_local_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for n in range(3):
        store.put_json("d/runs/r1/result.json", {"n": n})
    assert sorted(p.name for p in (tmp_path / "d/runs/r1").iterdir()) == ["result.json"]


def test_local_write_that_fails_at_replace_cleans_up(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("d/ckpt/step1.pt", b"weights")
    # "d/ckpt" is a folder, so the final rename onto it fails after the bytes were written.
    with pytest.raises(StoreError, match="is a folder where a file is to be written"):
        store.put_bytes("d/ckpt", b"not a folder")
    assert os.listdir(tmp_path / "d") == ["ckpt"]
    assert store.get_bytes("d/ckpt/step1.pt") == b"weights"


def test_local_write_under_a_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file")
    store = LocalStore(tmp_path / "out")
    named = f"{tmp_path / 'out'} is a file, not a folder"
    assert (ready_to_write(store) or "").startswith(named)
    with pytest.raises(StoreError, match="is a file, not a folder"):
        store.put_text("study/spec.yaml", "x")
    assert ready_to_write(LocalStore(tmp_path / "new" / "folder")) is None
    assert (tmp_path / "new" / "folder").is_dir()


def test_local_list_skips_partial_writes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("d/a", b"1")
    (tmp_path / "d" / f"{TEMP_PREFIX}abc").write_bytes(b"half")
    assert store.list("d/") == ["d/a"]


def test_local_uri_is_a_file_uri(tmp_path: Path) -> None:
    assert LocalStore(tmp_path).uri("s/spec.yaml") == f"file://{tmp_path.resolve()}/s/spec.yaml"


# --- opening by URI ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["{dir}", "file://{dir}", "file://localhost{dir}"])
def test_local_uris_open_the_same_directory(tmp_path: Path, form: str) -> None:
    LocalStore(tmp_path).put_text("s/spec.yaml", "kind: ScreeningStudy\n")
    opened = open_store(form.format(dir=tmp_path))
    assert isinstance(opened, LocalStore)
    assert opened.get_text("s/spec.yaml") == "kind: ScreeningStudy\n"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("gs://bucket/x", "not supported; accepted: a directory path, file:///dir or s3://"),
        ("s3:///prefix", "names no bucket"),
        ("file://otherhost/dir", "names host 'otherhost'"),
        ("", "not supported"),
    ],
)
def test_unusable_uris_are_refused_saying_what_is_accepted(uri: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        open_store(uri)


def test_s3_uri_with_explicit_options(s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = s3_bucket.endpoint
    for name in endpoint.env():
        monkeypatch.delenv(name)  # everything comes from the options
    store = open_store(
        s3_bucket.uri("team/studies"),
        endpoint_url=endpoint.url,
        access_key=endpoint.access_key,
        secret_key=endpoint.secret_key,
        region=endpoint.region,
    )
    store.put_text("demo/spec.yaml", "spec")
    assert s3_bucket.read("team/studies/demo/spec.yaml") == b"spec"
    assert store.uri("demo/spec.yaml") == s3_bucket.uri("team/studies/demo/spec.yaml")
    assert store.list("demo/") == ["demo/spec.yaml"]


def test_s3_uri_takes_endpoint_and_credentials_from_environment(s3_bucket: S3Bucket) -> None:
    store = open_store(s3_bucket.uri())
    store.put_bytes("k", b"v")
    assert s3_bucket.read("k") == b"v"


def test_s3_explicit_options_override_the_environment(s3_bucket: S3Bucket) -> None:
    store = open_store(
        s3_bucket.uri(), access_key=s3_bucket.endpoint.access_key, secret_key="wrong-secret"
    )
    with pytest.raises(StoreError, match="SignatureDoesNotMatch"):
        store.put_bytes("k", b"v")


@pytest.mark.parametrize(
    ("given", "missing"), [("access_key", "secret_key"), ("secret_key", "access_key")]
)
def test_half_a_credential_pair_is_refused(given: str, missing: str) -> None:
    with pytest.raises(StoreError, match=f"{given} given without {missing}"):
        open_store("s3://bucket/p", **{given: "x"})


def test_s3_missing_bucket_names_bucket_and_endpoint(seaweedfs: S3Endpoint) -> None:
    store = S3Store("no-such-bucket-here", "p", seaweedfs.client())
    with pytest.raises(StoreError, match=f"s3://no-such-bucket-here/p at {seaweedfs.url}"):
        store.list("")


# --- key layout -------------------------------------------------------------------------------

LAYOUT = [
    (lambda k: k.spec(), "paper/spec.yaml"),
    (lambda k: k.manifest(), "paper/manifest.json"),
    (lambda k: k.runs_prefix(), "paper/runs/"),
    (lambda k: k.run_prefix("screen-c07-120s-s1"), "paper/runs/screen-c07-120s-s1/"),
    (lambda k: k.run("r1", "result.json"), "paper/runs/r1/result.json"),
    (lambda k: k.run("r1", "curve.parquet"), "paper/runs/r1/curve.parquet"),
    (lambda k: k.run("r1", "log.txt"), "paper/runs/r1/log.txt"),
    (lambda k: k.run("r1", "ckpt/"), "paper/runs/r1/ckpt/"),
    (lambda k: k.stage_prefix("screen"), "paper/stages/screen/"),
    (lambda k: k.stage("screen", "results.parquet"), "paper/stages/screen/results.parquet"),
    (lambda k: k.stage("bridge", "outcome.json"), "paper/stages/bridge/outcome.json"),
    (lambda k: k.stage("bridge", "report.md"), "paper/stages/bridge/report.md"),
    (lambda k: k.stage("bridge", "effects.png"), "paper/stages/bridge/effects.png"),
]


@pytest.mark.parametrize(("build", "key"), LAYOUT, ids=[key for _, key in LAYOUT])
def test_study_keys_follow_the_design_layout(build: Callable[[StudyKeys], str], key: str) -> None:
    assert build(StudyKeys("paper")) == key


@pytest.mark.parametrize(
    "build",
    [
        lambda: StudyKeys("a/b"),
        lambda: StudyKeys(".."),
        lambda: StudyKeys("s").run("r/1", "result.json"),
        lambda: StudyKeys("s").run("r1", "../x"),
        lambda: StudyKeys("s").stage("", "outcome.json"),
    ],
)
def test_study_keys_refuse_parts_that_escape_their_folder(build: Callable[[], str]) -> None:
    with pytest.raises(InvalidKey):
        build()


def test_s3_without_credentials_or_server_is_one_line_saying_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3
    from botocore.config import Config

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    fresh = boto3.session.Session()  # the default session may hold credentials found earlier
    anonymous = fresh.client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1")
    with pytest.raises(
        StoreError,
        match=r"no S3 credentials for s3://b/p at http://127.0.0.1:9: set AWS_ACCESS_KEY_ID",
    ):
        S3Store("b", "p", anonymous).get_bytes("k")
    unreachable = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2),
    )
    with pytest.raises(
        StoreError,
        match=r"cannot reach the S3 endpoint http://127.0.0.1:9 for s3://b/p: check AWS_",
    ):
        S3Store("b", "p", unreachable).list()
