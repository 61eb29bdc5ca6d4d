"""Shared fixtures. Each block is self-contained; add new fixtures below the existing ones."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from seaweed import S3Endpoint, SeaweedError, run_seaweedfs

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
def s3_bucket(seaweedfs: S3Endpoint) -> Iterator[str]:
    """A fresh, empty bucket with a unique name, removed with its objects after the test."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    client = seaweedfs.client()
    client.create_bucket(Bucket=name)
    yield name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)
