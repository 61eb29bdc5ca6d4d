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

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kmock
import pytest
import yaml
from apiserver import ApiServer

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@dataclass
class Running:
    """A live API server: its URL, its handler and the loop it runs on."""

    server: ApiServer
    url: str
    loop: asyncio.AbstractEventLoop

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump(self.server.kubeconfig(self.url)))
        return path


@pytest.fixture
def apiserver() -> Iterator[Running]:
    """A fresh API server serving the built-in kinds and the ScreeningStudy CRD."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        async with ApiServer() as server, kmock.Server(server) as http:
            server.add_crd(yaml.safe_load((ROOT / "crds" / "screeningstudy.yaml").read_text()))
            box.update(server=server, url=str(http.url).rstrip("/"))
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the API server did not start"
    yield Running(box["server"], box["url"], loop)
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
