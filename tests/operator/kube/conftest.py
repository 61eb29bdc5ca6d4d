"""An API server (tests/operator/kube/apiserver.py) on loopback, served from its own thread and
event loop, so blocking clients (the kubernetes client, kubectl, kopf's runner thread) can talk to
it from the test's thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apiserver import Running, serve

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def apiserver() -> Iterator[Running]:
    """A fresh API server serving the built-in kinds and the ScreeningStudy CRD."""
    with serve(ROOT / "crds" / "screeningstudy.yaml") as running:
        yield running
