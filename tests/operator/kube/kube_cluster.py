"""A cluster for end-to-end tests of the operator: the test API server, a node agent running
every Job's container as a local process (the real trainer, the real analysis command),
results in a real SeaweedFS S3, and kopf running the operator's handlers for real
(`operator()`). The `cluster` fixture (conftest.py) starts one per test."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from agent import NodeAgent
from apiserver import Running
from kopf.testing import KopfRunner
from kubernetes import client
from seaweed import S3Bucket

from stagescreen.storage.keys import StudyKeys
from stagescreen.storage.store import open_store
from stagescreen_operator.kube.handlers import operator_registry
from stagescreen_operator.kube.settings import Settings

GROUP, VERSION, PLURAL = "stagescreen.dev", "v1alpha1", "screeningstudies"
ROOT = Path(__file__).resolve().parents[3]
NAMESPACE = "ml"
TESTS, NODE = "stagescreen-tests", "node-agent"  # user agents: whose request is whose
WAIT_S = 300  # a study of 8 tiny runs and 2 analyses takes about 30 s on 2 cores

STUDY = """
apiVersion: stagescreen.dev/v1alpha1
kind: ScreeningStudy
metadata: {{name: tiny, namespace: ml}}
spec:
  factors:
    - {{name: DEPTH, code: A, low: 1, high: 2, scale: integer}}
    - {{name: MATRIX_LR, code: B, low: 0.02, high: 0.06}}
  design: {{type: full}}
  stages:
    - {{name: screen, kind: screen, budgets: [30s], seeds: [1]}}
    - name: confirm
      kind: confirm
      budgets: [30s]
      seeds: [1, 2]
      select:
        - {{from: screen, rule: best, role: best}}
        - {{from: screen, rule: worst, role: worst}}
  pools: [{{name: cpu, gpus: 0, nodeSelector: {{pool: cpu}}}}]
  storage:
    s3: {{endpoint: "{endpoint}", bucket: {bucket}, prefix: studies, region: us-east-1,
          secretRef: {{name: s3}}}}
  trainer:
    hyperparameters: {{ASPECT_RATIO: 32, HEAD_DIM: 32, SEQ_LEN: 64, DEVICE_BATCH_SIZE: 8,
                      TOTAL_BATCH_SIZE: 512, EVAL_TOKENS: 2048, MAX_STEPS: 40,
                      EXCLUDE_STEPS: 1, PEAK_FLOPS: 1.0e+11}}
  limits: {{parallelism: 4, maxFailedRuns: 1}}
"""


@dataclass
class Cluster:
    """A running cluster of the test: API server, node agent, operator, S3."""

    api: client.ApiClient
    server: Running
    agent: NodeAgent
    s3: S3Bucket

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def apply(self, template: str) -> None:
        """Create the study of `template` (STUDY, FAILING) on this cluster's S3 bucket."""
        text = study_text(template, self.s3)
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, yaml.safe_load(text)
        )

    def study(self, name: str = "tiny") -> dict[str, Any]:
        return dict(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        )

    def wait(self, name: str, phases: set[str], timeout: float = WAIT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.study(name).get("status") or {}
            if status.get("phase") in phases:
                return status
            assert not self.agent.errors, self.agent.errors
            time.sleep(0.5)
        raise AssertionError(
            f"study {name} not {phases} after {timeout} s: {self.study(name).get('status')}"
        )

    def jobs(self) -> list[dict[str, Any]]:
        answer = client.BatchV1Api(self.api).list_namespaced_job(NAMESPACE, _preload_content=False)
        return list(json.loads(answer.data)["items"])

    def operator_calls(self) -> set[tuple[str, str, str]]:
        """(API group, resource, verb) of every call the operator (kopf and ours) and its
        analysis Jobs made: everything but the tests' and the node agent's own requests."""
        verbs = {"list": "list", "watch": "watch", "fetch": "get", "create": "create",
                 "update": "patch", "delete": "delete"}  # fmt: skip
        calls = set()
        for request in list(self.server.server):
            if request.resource is None or request.resource.plural is None or not request.action:
                continue  # discovery (/api, /apis): open to every authenticated client
            if request.headers.get("User-Agent") in (TESTS, NODE):
                continue
            resource = request.resource.plural
            if request.subresource:
                resource += f"/{request.subresource}"
            calls.add((request.resource.group, resource, verbs[request.action.value.lower()]))
        return calls

    def job_creations(self) -> list[str]:
        """Names of every Job the API server created (a refused duplicate is not one)."""
        return self.server.server.created("jobs")


def study_text(template: str, s3: S3Bucket) -> str:
    """A study template (STUDY, FAILING) on the test's bucket."""
    return template.format(endpoint=s3.endpoint.url, bucket=s3.name)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# A study is looked at every 2 s, and a failed handler retried after 2 s (production: 15 s);
# the operator serves its admission webhook (plain HTTP, as only tests may), so the validate
# handler is registered; each test's API server calls no webhook. Ports are free ones, so
# test processes side by side do not collide.
SETTINGS = Settings(
    reconcile_s=2, webhook_port=free_port(), webhook_insecure=True, metrics_port=free_port()
)


def operator(**changes: Any) -> KopfRunner:
    """The operator, as `stagescreen operator` runs it, with the test settings changed."""
    registry = operator_registry(replace(SETTINGS, **changes))
    return KopfRunner(["run", "--standalone", "-A"], registry=registry, timeout=60)


def runs_ended(cluster: Cluster) -> dict[str, dict[str, Any]]:
    store = open_store(cluster.s3.uri("studies"))
    keys = StudyKeys("tiny")
    found = [
        store.get_json(k) for k in store.list(keys.runs_prefix()) if k.endswith("/result.json")
    ]
    return {record["run_id"]: record for record in found}


def wait_for(check: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def text_of(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
