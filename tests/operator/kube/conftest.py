"""An API server (tests/operator/kube/apiserver.py) on loopback, served from its own thread and
event loop, so blocking clients (the kubernetes client, kubectl, kopf's runner thread) can talk to
it from the test's thread."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from agent import NodeAgent
from apiserver import Running, serve
from kube_cluster import NAMESPACE, NODE, STUDY, TESTS, Cluster, study_text
from kubernetes import client, config
from seaweed import S3Bucket

from stagescreen.storage.store import open_store
from stagescreen.study.parse import parse_study
from stagescreen_operator.corpus import corpus_for

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def apiserver() -> Iterator[Running]:
    """A fresh API server serving the built-in kinds and the ScreeningStudy CRD."""
    with serve(ROOT / "crds" / "screeningstudy.yaml") as running:
        yield running


@pytest.fixture
def cluster(
    apiserver: Running,
    s3_bucket: S3Bucket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Cluster]:
    """A cluster with the tiny study's Secret and corpus in place, its node agent running;
    no operator yet (a test starts one with `operator()`)."""
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    api = config.new_client_from_config(str(kubeconfig))
    api.user_agent = TESTS
    node = config.new_client_from_config(str(kubeconfig))
    node.user_agent = NODE
    core = client.CoreV1Api(api)
    credentials = {
        "AWS_ACCESS_KEY_ID": s3_bucket.endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_bucket.endpoint.secret_key,
    }
    core.create_namespaced_secret(
        NAMESPACE,
        {
            "metadata": {"name": "s3"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in credentials.items()},
        },
    )
    study = parse_study(yaml.safe_load(study_text(STUDY, s3_bucket)))
    store = open_store(study.spec.storage.root())
    corpus_for(study, store, 1024, say=lambda line: None)  # what `stagescreen run` leaves there
    agent = NodeAgent(
        node,
        kubeconfig,
        tmp_path / "pods",
    ).start()
    try:
        yield Cluster(api, apiserver, agent, s3_bucket)
    finally:
        agent.stop()
