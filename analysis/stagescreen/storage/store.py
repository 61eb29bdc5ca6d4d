"""Result store: one key space over a local directory or an S3 bucket.

The keys are those of docs/architecture.md, "Storage".

Everything a study produces (spec, per-run results and curves, stage outcomes, reports, the
manifest) lives under the same relative keys in both backends, so the operator, the analysis
Jobs, the local executor and `stagescreen report` read each other's output without knowing
where it is kept. Each object is written atomically: a reader sees the old bytes or the new
ones, never a torn file, which matters because the reconcile loop decides what to launch from
what it finds here. A store's prefix is part of the store, so keys never carry it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse
from urllib.request import url2pathname

import boto3
import botocore.exceptions
import pandas as pd

from stagescreen.storage.jsonvalues import json_ready
from stagescreen.storage.keys import (
    TEMP_PREFIX,
    MissingKey,
    StoreError,
    UnreadableObject,
    check_key,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class Store(Protocol):
    """Objects under relative keys; backends implement the five byte operations and `uri`."""

    def uri(self, key: str) -> str:
        """The full address of `key` (file:// or s3://), for reports and resource status."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write one object atomically, replacing any previous one."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """Read one object; raises MissingKey naming its URI when there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]:
        """Every key starting with `prefix`, sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove one object; removing an absent one is not an error."""
        ...

    def put_text(self, key: str, text: str) -> None:
        self.put_bytes(key, text.encode("utf-8"))

    def get_text(self, key: str) -> str:
        return self.get_bytes(key).decode("utf-8")

    def put_json(self, key: str, value: Any) -> None:
        """Sorted keys and a trailing newline keep diffs and checksums stable across writers."""
        text = json.dumps(json_ready(value), sort_keys=True, indent=2, allow_nan=False)
        self.put_text(key, text + "\n")

    def get_json(self, key: str) -> Any:
        """Raises UnreadableObject naming the object when it is not JSON."""
        data = self.get_bytes(key)
        try:
            return json.loads(data)
        except ValueError as error:
            raise UnreadableObject(self.uri(key), f"not JSON ({error})") from None

    def put_frame(self, key: str, frame: pd.DataFrame) -> None:
        """Parquet, serialised in memory first so a failure leaves the old object untouched."""
        buffer = io.BytesIO()
        frame.to_parquet(buffer, engine="pyarrow")
        self.put_bytes(key, buffer.getvalue())

    def get_frame(self, key: str) -> pd.DataFrame:
        """Raises UnreadableObject naming the object when it is not Parquet."""
        data = self.get_bytes(key)
        try:
            return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
        except (ValueError, OSError):
            raise UnreadableObject(self.uri(key), "not a Parquet table") from None


class LocalStore(Store):
    """Keys as files under `root`; a write lands in a temporary sibling, then `os.replace`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
        except OSError as error:
            raise StoreError(_unwritable(path, error)) from None
        try:
            with os.fdopen(descriptor, "wb") as sink:
                sink.write(data)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(temporary, path)
        except BaseException as error:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            if isinstance(error, OSError):  # a folder in the way, a full disk
                raise StoreError(_unwritable(path, error)) from None
            raise

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise MissingKey(key, path.as_uri()) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        check_key(prefix, prefix=True)
        # Walk only the deepest folder the prefix names; the rest of the tree cannot match.
        folder = self.root / prefix.rpartition("/")[0]
        if not folder.is_dir():
            return []
        keys: list[str] = []
        for directory, _, files in os.walk(folder):
            for name in files:
                if name.startswith(TEMP_PREFIX):
                    continue
                key = Path(directory, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def _unwritable(path: Path, error: OSError) -> str:
    """Why `path` cannot be written, in the words a user fixes it with: a file where a folder
    must be, a folder that cannot be created, or no permission."""
    if path.is_dir():
        return f"{path} is a folder where a file is to be written; move it away"
    reason = error.strerror or type(error).__name__
    in_the_way = _file_in_the_way(path.parent)
    return in_the_way or f"cannot write {path}: {reason}; give a folder you can write to"


def _file_in_the_way(path: Path) -> str | None:
    for parent in (path, *path.parents):
        if parent.is_file():
            return f"{parent} is a file, not a folder; give a folder (it is created if missing)"
        if parent.is_dir():
            return None
    return None


def ready_to_write(store: Store) -> str | None:
    """Create a local store's folder if missing, or say why nothing can be written under it
    (a file where the folder would be, a folder that cannot be created or written); checked
    before a command works for minutes towards a write that would fail. An S3 store answers
    at its first write."""
    if not isinstance(store, LocalStore):
        return None
    in_the_way = _file_in_the_way(store.root)
    if in_the_way:
        return in_the_way
    try:
        store.root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        return f"cannot create the folder {store.root}: {reason}; give a folder you can write to"
    if not os.access(store.root, os.W_OK | os.X_OK):
        return f"cannot write in {store.root} (permission denied); give a folder you can write to"
    return None


class S3Store(Store):
    """Keys as objects under `prefix` in `bucket`; a single PUT is already atomic in S3."""

    def __init__(self, bucket: str, prefix: str, client: S3Client) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.client = client

    def __repr__(self) -> str:
        return f"S3Store({self.uri('')!r})"

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        if key:
            check_key(key)
        return f"s3://{self.bucket}/{self._name(key)}"

    def put_bytes(self, key: str, data: bytes) -> None:
        name = self._name(check_key(key))
        with self._errors():
            self.client.put_object(Bucket=self.bucket, Key=name, Body=data)

    def get_bytes(self, key: str) -> bytes:
        name = self._name(check_key(key))
        with self._errors(key):
            response = self.client.get_object(Bucket=self.bucket, Key=name)
            return response["Body"].read()  # the body streams: a dropped connection is here

    def exists(self, key: str) -> bool:
        name = self._name(check_key(key))
        try:
            with self._errors(key):
                self.client.head_object(Bucket=self.bucket, Key=name)
        except MissingKey:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        check_key(prefix, prefix=True)
        start = len(self._name(""))
        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []
        with self._errors():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._name(prefix)):
                keys.extend(item["Key"][start:] for item in page.get("Contents", []))
        return sorted(keys)

    def delete(self, key: str) -> None:
        name = self._name(check_key(key))
        with self._errors():
            self.client.delete_object(Bucket=self.bucket, Key=name)

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """botocore's errors as one StoreError line naming the bucket, the endpoint and what
        to set; a missing `key` as MissingKey. Most S3 failures here are configuration."""
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        endpoint = self.client.meta.endpoint_url
        try:
            yield
        except botocore.exceptions.ClientError as error:
            if key is not None and _code(error) in ("NoSuchKey", "404"):
                raise MissingKey(key, self.uri(key)) from None
            message = error.response.get("Error", {}).get("Message", str(error))
            raise StoreError(f"S3 {_code(error)} for {where} at {endpoint}: {message}") from None
        except botocore.exceptions.NoCredentialsError:
            raise StoreError(
                f"no S3 credentials for {where} at {endpoint}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (on a cluster, the spec's storage.s3.secretRef)"
            ) from None
        except botocore.exceptions.EndpointConnectionError:
            raise StoreError(
                f"cannot reach the S3 endpoint {endpoint} for {where}: check AWS_ENDPOINT_URL, "
                "--endpoint-url or the spec's storage.s3.endpoint"
            ) from None
        except botocore.exceptions.BotoCoreError as error:
            raise StoreError(f"S3 {where} at {endpoint}: {error}") from None


def _code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def open_store(
    uri: str,
    *,
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    region: str | None = None,
) -> Store:
    """A store for "/dir", "file:///dir" or "s3://bucket/prefix".

    S3 options left out come from boto3's usual sources (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_REGION, profiles), so a Job configured by environment needs none.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"store URI {uri!r} names no bucket; accepted: s3://bucket/prefix")
        return S3Store(
            parsed.netloc,
            parsed.path,
            s3_client(endpoint_url, access_key, secret_key, region),
        )
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StoreError(f"store URI {uri!r} names host {parsed.netloc!r}; use file:///dir")
        return LocalStore(Path(url2pathname(parsed.path)))
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", uri) or not uri:
        raise StoreError(
            f"store URI {uri!r} is not supported; accepted: a directory path, file:///dir "
            "or s3://bucket/prefix"
        )
    return LocalStore(Path(uri))


def s3_client(
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    region: str | None = None,
) -> S3Client:
    """A boto3 S3 client; options left as None fall back to boto3's environment and profiles.

    botocore already addresses custom endpoints path-style (`http://host:8333/bucket/key`),
    which in-cluster names like `seaweedfs.storage` need, so no addressing config is set here.
    """
    if access_key is None and secret_key is not None:
        raise StoreError("S3 secret_key given without access_key; pass both or neither")
    if secret_key is None and access_key is not None:
        raise StoreError("S3 access_key given without secret_key; pass both or neither")
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
    )
