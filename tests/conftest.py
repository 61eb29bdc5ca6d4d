"""Shared fixtures, and the layer of each test read from the fixtures it uses.

A test that uses a real component (SeaweedFS, the test API server, the trainer, helm,
promtool, hadolint, an image built with buildah) is `integration`; one whose fixtures train,
run a study or an operator, or build an image, is `slow`. Nobody marks these by hand: the
tables below do, so `make test-fast` (`-m "not integration and not slow"`) never runs a test
that starts a server or a trainer. A test that builds the trainer image (minutes) is also
`images`: `make test` leaves it to `make images-test`. Add a fixture that starts such a
component to the tables when you write it. (A fixture parameter that fetches a server with
`request.getfixturevalue` is invisible here: it marks its own `pytest.param`, as
tests/core/storage/test_store.py does.)
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from binaries import Tool, tool
from buildah import Image, build
from seaweed import S3Bucket, S3Endpoint, SeaweedError, run_seaweedfs

# --- S3: one real SeaweedFS server per session (tests/seaweed.py) ---------------------------


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


# --- Real binaries: helm, kubectl and promtool from `make tools`, hadolint from the dev extras --


TOOLS = Path(__file__).resolve().parents[1] / ".tools"


@pytest.fixture(scope="session")
def helm() -> Tool:
    return tool(TOOLS / "helm", "make tools")


@pytest.fixture(scope="session")
def kubectl() -> Tool:
    return tool(TOOLS / "kubectl", "make tools")


@pytest.fixture(scope="session")
def promtool() -> Tool:
    return tool(TOOLS / "promtool", "make tools")


@pytest.fixture(scope="session")
def hadolint() -> Tool:
    return tool(Path(sys.executable).parent / "hadolint", "make install")


# --- Images: built with buildah by images/build.sh (tests/buildah.py) ---------------------------


@pytest.fixture(scope="session")
def operator_image() -> Image:
    """The operator image (the operator and its analysis Jobs), built once per session."""
    return build("operator")


@pytest.fixture(scope="session")
def trainer_image() -> Image:
    """The trainer image with torch's CPU build (PyPI's CUDA build is gigabytes)."""
    return build("trainer-cpu")


# --- Layers -----------------------------------------------------------------------------------

INTEGRATION_FIXTURES = frozenset(
    {
        "seaweedfs",  # a real SeaweedFS S3 server (tests/seaweed.py)
        "s3_bucket",
        "apiserver",  # the realistic test API server (tests/operator/kube/apiserver.py)
        "quickstart",  # the real trainer's prepared corpus: its users run the trainer
        "helm",  # real binaries from `make tools` and the dev dependencies
        "kubectl",
        "promtool",
        "hadolint",
        "operator_image",  # images built with buildah (tests/buildah.py)
        "trainer_image",
    }
)
SLOW_FIXTURES = frozenset(
    {
        "quickstart",  # prepares a corpus (seconds), then its users train
        "uninterrupted",  # a whole study trained on this CPU
        "reference",  # a reference trainer run
        "cluster",  # kopf running for real with a node agent
        "clean_clone",  # the docs' runnable blocks, run as written (tests/test_docs.py)
        "simulated_paper",  # examples/paper.yaml simulated and reported (half a minute)
        "operator_image",  # a minute or two to build
        "trainer_image",
    }
)
IMAGES_FIXTURES = frozenset(
    {
        "trainer_image",  # three minutes to build: `make images-test` runs it, `make test` not
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test integration and/or slow from every fixture it uses, directly or not."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & INTEGRATION_FIXTURES:
            item.add_marker(pytest.mark.integration)
        if used & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if used & IMAGES_FIXTURES:
            item.add_marker(pytest.mark.images)
