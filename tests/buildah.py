"""The project's images, built by images/build.sh (buildah, chroot isolation, a debootstrap
base) and run as a kubelet would run them: the image's own entry point and user, the host's
folders mounted where the Job mounts its volumes, the network of the host (so a test's API
server and S3 on loopback are reachable)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The base (a minute), then pip and apt in the build (minutes); within pytest's 600 s per test,
# which counts a session fixture's setup in the first test using it.
BUILD_TIMEOUT_S = 570


def buildah(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        ["buildah", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"buildah {' '.join(args)}: {done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class Image:
    """An image in buildah's local storage."""

    name: str

    def config(self) -> dict[str, Any]:
        """The image's OCI config: Entrypoint, Cmd, User, Env."""
        inspected = json.loads(buildah("inspect", "--type", "image", self.name))
        config: dict[str, Any] = inspected["OCIv1"]["config"]
        return config

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        volumes: Sequence[str] = (),
        entrypoint: Sequence[str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run the image's entry point (or `entrypoint`) with `args` in a fresh container,
        removed afterwards. `volumes`: `host:container[:ro]` bind mounts."""
        if entrypoint is None:
            entrypoint = self.config()["Entrypoint"]
        container = buildah("from", "--quiet", "--pull-never", self.name).strip()
        try:
            command = [
                "buildah", "run", "--isolation", "chroot",
                *(f"--volume={volume}" for volume in volumes),
                *(f"--env={name}={value}" for name, value in (env or {}).items()),
                container, "--", *entrypoint, *args,
            ]  # fmt: skip
            return subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        finally:
            buildah("rm", container)


def build(target: str) -> Image:
    """Build `target` with images/build.sh (the base once per machine), or fail saying why."""
    if shutil.which("buildah") is None or shutil.which("debootstrap") is None:
        pytest.fail("buildah or debootstrap is missing: run `make tools`", pytrace=False)
    done = subprocess.run(
        [str(ROOT / "images" / "build.sh"), target],
        env={**os.environ, "PYTHON": sys.executable},  # whose pip finds the CPU torch
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"images/build.sh {target} failed:\n{done.stderr[-4000:]}", pytrace=False)
    return Image(done.stdout.split()[-1])  # buildah bud --quiet prints the image's id
