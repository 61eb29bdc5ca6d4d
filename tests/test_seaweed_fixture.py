"""The test S3 server is real: loopback only, signatures checked, usable from a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import botocore.exceptions
import pytest
from seaweed import S3Bucket, S3Endpoint, SeaweedError, find_weed


def test_weed_is_taken_from_the_virtualenv_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weed = tmp_path / "bin" / "weed"
    weed.parent.mkdir()
    weed.write_text("#!/bin/sh\n")
    weed.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    assert find_weed() == weed


def test_missing_weed_fails_loudly_naming_make_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SeaweedError, match="run `make install`"):
        find_weed()


def test_endpoint_is_on_loopback(seaweedfs: S3Endpoint) -> None:
    assert urlparse(seaweedfs.url).hostname == "127.0.0.1"


def test_bucket_starts_empty_and_round_trips_an_object(s3_bucket: S3Bucket) -> None:
    assert s3_bucket.stored_keys() == []
    s3_bucket.put("a/b.txt", b"payload")
    assert s3_bucket.read("a/b.txt") == b"payload"
    assert s3_bucket.stored_keys("a/") == ["a/b.txt"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"secret_key": "not-the-secret"}, "SignatureDoesNotMatch"),
        ({"access_key": "nobody"}, "InvalidAccessKeyId"),
    ],
)
def test_wrong_credentials_are_rejected(
    s3_bucket: S3Bucket, change: dict[str, str], code: str
) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        replace(s3_bucket.endpoint, **change).client().list_objects_v2(Bucket=s3_bucket.name)
    assert raised.value.response["Error"]["Code"] == code


def test_subprocess_reaches_it_through_environment(s3_bucket: S3Bucket) -> None:
    s3_bucket.put("k", b"from the parent")
    script = (
        "import sys, boto3; "
        "print(boto3.client('s3').get_object(Bucket=sys.argv[1], Key='k')['Body'].read().decode())"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-c", script, s3_bucket.name],
        env=env | s3_bucket.endpoint.env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == "from the parent"
