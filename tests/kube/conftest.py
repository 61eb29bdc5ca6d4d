"""An API server (tests/kube/apiserver.py) on loopback, served from its own thread and event
loop, so blocking clients (the kubernetes client, kubectl, kopf's runner thread) can talk to
it from the test's thread."""

from __future__ import annotations

import os

# Before the operator's handlers are imported: a study is looked at every 2 s, and a failed
# handler is retried after 2 s (production: 15 s).
os.environ.setdefault("STAGESCREEN_RECONCILE_S", "2")
# ...and the operator serves its admission webhook (plain HTTP, as only tests may), so the
# validate handler is registered; each test's API server calls no webhook.
os.environ.setdefault("STAGESCREEN_WEBHOOK_PORT", "18443")
os.environ.setdefault("STAGESCREEN_WEBHOOK_INSECURE", "1")
os.environ.setdefault("STAGESCREEN_METRICS_PORT", "18090")  # served once per test process

from collections.abc import Iterator
from pathlib import Path

import pytest
from apiserver import Running, serve

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def apiserver() -> Iterator[Running]:
    """A fresh API server serving the built-in kinds and the ScreeningStudy CRD."""
    with serve(ROOT / "crds" / "screeningstudy.yaml") as running:
        yield running
