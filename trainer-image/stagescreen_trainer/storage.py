"""Where the trainer reads and writes: a local folder or an `s3://bucket/prefix`.

The trainer imports nothing of the rest of StageScreen, so it carries this small client of its
own. boto3 takes its endpoint and credentials from the environment (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, ...), which is how a Job reaches SeaweedFS, MinIO or AWS alike. Writes are
atomic per object: a local write goes to a temporary file renamed into place, an S3 PUT is
atomic by itself, so a reader never sees half a checkpoint or half a record.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class MissingObject(FileNotFoundError):
    """The key does not exist under the location."""


@dataclass(frozen=True)
class Location:
    """A folder-like place: `root` is a local path or `s3://bucket/prefix`. `fetched` keeps
    every object this process read through `local_copy` (key -> local path), which the run's
    provenance hashes."""

    root: str
    fetched: dict[str, Path] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def _split(self, key: str) -> tuple[str, str]:
        bucket, _, prefix = self.root[len("s3://") :].partition("/")
        return bucket, "/".join(part for part in (prefix.strip("/"), key) if part)

    def _path(self, key: str) -> Path:
        root = self.root[len("file://") :] if self.root.startswith("file://") else self.root
        return Path(root) / key

    def uri(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{key}"

    def put_bytes(self, key: str, data: bytes) -> None:
        if self.is_s3:
            bucket, name = self._split(key)
            _s3().put_object(Bucket=bucket, Key=name, Body=data)
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)

    def get_bytes(self, key: str) -> bytes:
        if self.is_s3:
            bucket, name = self._split(key)
            client = _s3()
            try:
                return bytes(client.get_object(Bucket=bucket, Key=name)["Body"].read())
            except client.exceptions.NoSuchKey:
                raise MissingObject(self.uri(key)) from None
        path = self._path(key)
        if not path.is_file():
            raise MissingObject(self.uri(key))
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        if not self.is_s3:
            return self._path(key).is_file()
        from botocore.exceptions import ClientError

        bucket, name = self._split(key)
        try:
            _s3().head_object(Bucket=bucket, Key=name)
        except ClientError:
            return False
        return True

    def list(self, suffix: str = "") -> list[str]:
        """Names of the objects directly under the location, sorted."""
        if self.is_s3:
            bucket, prefix = self._split("")
            prefix = f"{prefix}/" if prefix else ""
            names: list[str] = []
            for page in (
                _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            ):
                for item in page.get("Contents", []):
                    name = item["Key"][len(prefix) :]
                    if "/" not in name and name.endswith(suffix):
                        names.append(name)
            return sorted(names)
        root = self._path("")
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if p.is_file() and p.name.endswith(suffix))

    def local_copy(self, key: str, cache: Path) -> Path:
        """A local path holding the object: itself when local, else a downloaded copy."""
        if not self.is_s3:
            path = self._path(key)
            if not path.is_file():
                raise MissingObject(self.uri(key))
            self.fetched[key] = path
            return path
        target = cache / key
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            data = self.get_bytes(key)
            tmp = target.with_suffix(target.suffix + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        self.fetched[key] = target
        return target


def _s3() -> Any:
    import boto3

    return boto3.client("s3")
