"""The operator at scale: a 992-run study at parallelism 64 against the test API server.

    .venv/bin/python bench/operator_scale.py [--seeds 31] [--parallelism 64] [--unrelated 0 10000]

The operator runs as `stagescreen operator` in a process of its own (its memory is what is
measured), against tests/operator/kube's API server (kmock made realistic) and a SeaweedFS S3. No
trainer runs here: an instant node completes each run's Job by writing the run record a
trainer would (a synthetic val_bpb from the run's coded levels), so what is measured is the
operator, not training; analysis Jobs run the real `stagescreen analyse`. Measured: seconds
from apply to the first wave of Jobs (goal < 10 s), API writes the operator makes per run over
the study's life (goal <= 3), its peak memory, the bytes of lists and watch events the API
server sent it, the size of the study's status, and the wall time of the whole study.
`--unrelated` runs the study once per count given, with that many Jobs of other teams in ten
other namespaces: the operator selects its own Jobs on the server, so neither its memory nor
what it is sent should grow with them.

Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "operator" / "kube"), str(ROOT / "tests")]

from apiserver import Running, serve  # noqa: E402
from kubernetes import client, config  # noqa: E402
from seaweed import S3Endpoint, run_seaweedfs  # noqa: E402

from stagescreen.storage.store import open_store  # noqa: E402
from stagescreen_contract.record import RunRecord  # noqa: E402
from stagescreen_contract.status import RunStatus  # noqa: E402

GROUP, VERSION, PLURAL, NAMESPACE = "stagescreen.dev", "v1alpha1", "screeningstudies", "ml"
NODE = "stagescreen-bench-node"
FACTORS = [
    {"name": "DEPTH", "code": "A", "low": 4, "high": 8, "scale": "integer"},
    {"name": "ASPECT_RATIO", "code": "B", "low": 32, "high": 64, "scale": "integer"},
    {"name": "MATRIX_LR", "code": "C", "low": 0.02, "high": 0.06},
    {"name": "EMBEDDING_LR", "code": "D", "low": 0.2, "high": 0.6},
    {"name": "UNEMBEDDING_LR", "code": "E", "low": 0.002, "high": 0.006},
]


def study(bucket: str, endpoint: str, seeds: int, parallelism: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScreeningStudy",
        "metadata": {"name": "scale", "namespace": NAMESPACE},
        "spec": {
            "factors": FACTORS,
            "design": {"type": "full"},
            "stages": [{"name": "screen", "kind": "screen", "budgets": ["5m"], "seeds": seeds}],
            "pools": [{"name": "a100", "gpus": 1}],
            "storage": {
                "s3": {
                    "endpoint": endpoint,
                    "bucket": bucket,
                    "region": "us-east-1",
                    "secretRef": {"name": "s3"},
                }
            },
            "trainer": {"dataUri": "s3://data/shards", "tokenizerUri": "s3://data/tok"},
            "limits": {"parallelism": parallelism, "maxFailedRuns": 10},
        },
    }


class InstantNode:
    """Completes each run Job at once with a synthetic record; runs analysis Jobs for real."""

    def __init__(self, api: client.ApiClient, s3: S3Endpoint, bucket: str, env: dict[str, str]):
        self.batch = client.BatchV1Api(api)
        self.store = open_store(
            f"s3://{bucket}",
            endpoint_url=s3.url,
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            region=s3.region,
        )
        self.env, self.done, self.stop = env, set[str](), threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.errors: list[str] = []

    def loop(self) -> None:
        while not self.stop.is_set():
            try:
                # raw JSON (_preload_content=False), not the client's models
                answer: Any = self.batch.list_namespaced_job(NAMESPACE, _preload_content=False)
                for job in json.loads(answer.data)["items"]:
                    if job["metadata"]["name"] not in self.done:
                        self.complete(job)
            except Exception as error:
                self.errors.append(repr(error))
            time.sleep(0.2)

    def complete(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env") or []}
        if container["name"] == "trainer":
            levels = json.loads(env["CODED_LEVELS"])
            value = 3.0 + 0.1 * levels["A"] - 0.05 * levels["B"] + random.gauss(0, 0.01)
            record = RunRecord(
                study=env["STUDY"],
                stage=env["STAGE"],
                run_id=env["RUN_ID"],
                condition_id=env["CONDITION_ID"],
                coded_levels=levels,
                budget_s=float(env["TIME_BUDGET"]),
                seed=int(env["RUN_SEED"]),
                pool=env["POOL"],
                status=RunStatus.SUCCEEDED,
                val_bpb=value,
                wall_s=float(env["TIME_BUDGET"]) + 5,
            )
            key = env["RESULT_URI"].split("/", 3)[3] + "/result.json"
            self.store.put_json(key, record.model_dump(mode="json"))
        else:
            command = [str(Path(sys.executable).parent / "stagescreen"), *container["args"]]
            subprocess.run(command, env={**os.environ, **self.env}, check=True, capture_output=True)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.batch.patch_namespaced_job_status(
            name,
            NAMESPACE,
            {
                "status": {
                    "startTime": now,
                    "completionTime": now,
                    "succeeded": 1,
                    "conditions": [{"type": "Complete", "status": "True"}],
                }
            },
        )
        self.done.add(name)


def unrelated_jobs(api: client.ApiClient, count: int) -> None:
    """`count` suspended Jobs of other teams in ten other namespaces (no label of ours)."""
    batch = client.BatchV1Api(api)

    def create(index: int) -> None:
        job: Any = {  # the client sends a dict as it is
            "metadata": {"name": f"train-{index}", "labels": {"team": "other"}},
            "spec": {
                "suspend": True,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "registry.example.com/x:1"}],
                    }
                },
            },
        }
        batch.create_namespaced_job(f"other-{index % 10}", job, _preload_content=False)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=31, help="seeds per condition (x32 runs)")
    parser.add_argument("--parallelism", type=int, default=64)
    parser.add_argument(
        "--unrelated", type=int, nargs="+", default=[0], help="other teams' Jobs, per run"
    )
    args = parser.parse_args()
    print(
        f"| runs | parallelism | unrelated Jobs | phase | apply to first "
        f"{min(args.parallelism, 32 * args.seeds)} Jobs | API writes per run | operator peak "
        "RSS | sent to the operator | per Job list or watch event | largest status | study wall "
        "time |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for unrelated in args.unrelated:
        measure(args.seeds, args.parallelism, unrelated)


def measure(seeds: int, parallelism: int, unrelated: int) -> None:
    """One study from apply to its end; prints its table row and its writes by kind."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        s3 = stack.enter_context(run_seaweedfs(Path(tmp) / "s3"))
        running: Running = stack.enter_context(serve(ROOT / "crds" / "screeningstudy.yaml"))
        bucket = f"scale-{uuid.uuid4().hex[:8]}"
        s3.client().create_bucket(Bucket=bucket)
        kubeconfig = running.write_kubeconfig(Path(tmp) / "kubeconfig")
        api = config.new_client_from_config(str(kubeconfig))
        api.user_agent = NODE
        secret: Any = {  # the client sends a dict as it is
            "metadata": {"name": "s3"},
            "data": {
                k: base64.b64encode(v.encode()).decode()
                for k, v in {
                    "AWS_ACCESS_KEY_ID": s3.access_key,
                    "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                }.items()
            },
        }
        client.CoreV1Api(api).create_namespaced_secret(NAMESPACE, secret)
        unrelated_jobs(api, unrelated)
        env = {**s3.env(), "KUBECONFIG": str(kubeconfig), "STAGESCREEN_RECONCILE_S": "5"}
        node = InstantNode(api, s3, bucket, env)
        node.thread.start()
        operator = subprocess.Popen(
            [str(Path(sys.executable).parent / "stagescreen"), "operator"],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(3)  # the operator logs in and starts watching
            body = study(bucket, s3.url, seeds, parallelism)
            custom = client.CustomObjectsApi(api)
            applied = time.monotonic()
            custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
            first_wave = None
            largest = 0  # the status's size at its largest, while the study runs
            runs = 32 * seeds
            while True:
                created = len([n for n in running.server.created("jobs") if n.startswith("scale-")])
                if first_wave is None and created >= min(parallelism, runs):
                    first_wave = time.monotonic() - applied
                scale: Any = custom.get_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, PLURAL, "scale"
                )
                status = scale.get("status") or {}
                largest = max(largest, len(json.dumps(status)))
                if status.get("phase") in ("Succeeded", "Failed", "Degraded"):
                    break
                if time.monotonic() - applied > 1800:
                    raise SystemExit(f"not finished after 30 min: {status.get('progress')}")
                time.sleep(0.2)
            wall = time.monotonic() - applied
            peak_kb = _peak_kb(operator.pid)
        finally:
            operator.terminate()
            try:
                operator.wait(120)
            except subprocess.TimeoutExpired:
                operator.kill()
            node.stop.set()
        writes = [
            request
            for request in list(running.server)
            if request.method in ("POST", "PATCH", "PUT", "DELETE")
            and request.headers.get("User-Agent") != NODE
        ]
        by_kind: dict[str, int] = {}
        for request in writes:
            plural = request.resource.plural if request.resource else "?"
            suffix = "/status" if request.subresource == "status" else ""
            kind = f"{request.method.value} {plural}{suffix}"
            by_kind[kind] = by_kind.get(kind, 0) + 1
        sent = {key: total for key, total in running.server.sent.items() if key[0] != NODE}
        jobs = [total for (_, plural), total in sent.items() if plural == "jobs"]
        total = sum(size for size, _ in sent.values())
        per_answer = sum(size for size, _ in jobs) / max(1, sum(count for _, count in jobs))
        print(
            f"| {runs} | {parallelism} | {unrelated} | {status['phase']} | {first_wave:.1f} s | "
            f"{len(writes) / runs:.2f} ({len(writes)} in all) | {peak_kb / 1024:.0f} MiB | "
            f"{total / 1024:.0f} KiB | {per_answer / 1024:.1f} KiB | "
            f"{largest / 1024:.1f} KiB | {wall:.0f} s |"
        )
        print("Writes by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items())))
        if node.errors:
            print(f"node errors: {node.errors[:3]}")


def _peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    main()
