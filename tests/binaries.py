"""The real binaries tests run (helm, kubectl, promtool, hadolint), as fixtures hand them over."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Tool:
    """A real binary a test runs; calling it runs it and captures its output."""

    path: Path

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.path), *args], capture_output=True, text=True, timeout=120, check=False
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done


def tool(path: Path, install: str) -> Tool:
    """The binary at `path`, or the test fails saying which command installs it."""
    if not path.exists():
        pytest.fail(f"{path.name} is missing: run `{install}`", pytrace=False)
    return Tool(path)
