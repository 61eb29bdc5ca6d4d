"""Shared fixtures. Each block is self-contained; add new fixtures below the existing ones."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from seaweed import S3Bucket, S3Endpoint, SeaweedError, run_seaweedfs

# --- S3: one real SeaweedFS server per session (tests/seaweed.py) ---------------------------
# Tests using these fixtures are integration tests: mark them `@pytest.mark.integration`.


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A `weed mini` S3 server on 127.0.0.1; `env()` points a subprocess's boto3 at it."""
    with contextlib.ExitStack() as stack:
        try:
            endpoint = stack.enter_context(run_seaweedfs(tmp_path_factory.mktemp("seaweedfs")))
        except SeaweedError as error:
            pytest.fail(str(error), pytrace=False)
        yield endpoint


@pytest.fixture
def s3_bucket(seaweedfs: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Bucket]:
    """A fresh, empty bucket with a unique name, removed with its objects after the test.

    The environment names the server and its identity (`S3Endpoint.env`) for the test's
    length, as it would for a user: `open_store`, the command line and subprocesses started
    with the test's environment reach the bucket without being told where it is.
    """
    bucket = S3Bucket(seaweedfs, f"test-{uuid.uuid4().hex[:16]}")
    client = seaweedfs.client()
    client.create_bucket(Bucket=bucket.name)
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    yield bucket
    for key in bucket.stored_keys():
        client.delete_object(Bucket=bucket.name, Key=key)
    client.delete_bucket(Bucket=bucket.name)
