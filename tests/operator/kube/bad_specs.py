"""Broken ScreeningStudy files, each with the field path its rejection must name: the
webhook refuses them at `kubectl apply`, the operator's create handler marks them Failed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import yaml

Spec = dict[str, Any]


def base(endpoint: str = "http://s3:8333", bucket: str = "bucket") -> Spec:
    """The operator tests' valid two-stage study."""
    from kube_cluster import STUDY

    return dict(yaml.safe_load(STUDY.format(endpoint=endpoint, bucket=bucket)))


def spec(d: Spec) -> Any:
    """The spec part of a study, to edit in place."""
    return d["spec"]


def windows(d: Spec, **fields: Any) -> Spec:
    """Factor B as the categorical window pattern, L vs SSSL, with `fields` added."""
    spec(d)["factors"][1] = {"name": "WINDOW_PATTERN", "code": "B", "levels": ["L", "SSSL"]}
    spec(d)["factors"][1].update(fields)
    return d


BROKEN: dict[str, tuple[Callable[[Spec], Any], str]] = {
    "no factors": (lambda d: spec(d).pop("factors"), "spec.factors"),
    "factor low equals high": (
        lambda d: spec(d)["factors"][1].update(high=0.02),
        "spec.factors[1]",
    ),
    "unknown factor name": (
        lambda d: spec(d)["factors"][0].update(name="DEPHT"),
        "spec.factors[0].name",
    ),
    "unknown hyperparameter": (
        lambda d: spec(d)["trainer"]["hyperparameters"].update(HEAD_DIMM=32),
        "HEAD_DIMM",
    ),
    "factor also fixed": (lambda d: spec(d)["trainer"]["hyperparameters"].update(DEPTH=2), "DEPTH"),
    "categorical levels and low": (lambda d: windows(d, low=1), "spec.factors[1].low"),
    "one categorical level": (lambda d: windows(d, levels=["L"]), "spec.factors[1].levels"),
    "equal categorical levels": (
        lambda d: windows(d, levels=["L", "L"]),
        "spec.factors[1].levels",
    ),
    "categorical centre": (lambda d: windows(d, centre=1), "spec.factors[1].centre"),
    "categorical factor on a number": (
        lambda d: (
            spec(d)["factors"].insert(0, {"name": "DEPTH", "code": "A", "levels": ["1", "2"]})
            or spec(d)["factors"].pop(1)
        ),
        "spec.factors[0].levels: factor DEPTH (levels 1, 2) is categorical but DEPTH takes",
    ),
    "bridge on a categorical factor": (
        lambda d: spec(windows(d))["stages"][1]["select"].append(
            {"from": "screen", "rule": "bridge", "factors": ["B"]}
        ),
        "spec.stages[1].select[2].factors: factor WINDOW_PATTERN (levels L, SSSL) is categorical",
    ),
    "wrong type level": (lambda d: spec(d)["factors"][0].update(low="one"), "spec.factors[0].low"),
    "bad generator": (
        lambda d: spec(d).update(design={"type": "fractional", "generators": ["B=AZ"]}),
        "spec.design",
    ),
    "unknown design type": (lambda d: spec(d).update(design={"type": "latin"}), "spec.design"),
    "negative budget": (
        lambda d: spec(d)["stages"][0].update(budgets=["-5s"]),
        "spec.stages[0].budgets",
    ),
    "budget unit": (
        lambda d: spec(d)["stages"][0].update(budgets=["10x"]),
        "spec.stages[0].budgets",
    ),
    "budgets out of order": (
        lambda d: spec(d)["stages"][0].update(budgets=["30s", "10s"]),
        "spec.stages[0].budgets",
    ),
    "no seeds": (lambda d: spec(d)["stages"][0].update(seeds=[]), "spec.stages[0].seeds"),
    "unknown pool": (lambda d: spec(d)["stages"][0].update(pools=["h100"]), "spec.stages[0].pools"),
    "select from unknown stage": (
        lambda d: spec(d)["stages"][1]["select"][0].update({"from": "scren"}),
        "spec.stages[1].select[0]",
    ),
    "select from a later stage": (
        lambda d: spec(d)["stages"][0].update(select=[{"from": "confirm", "rule": "best"}]),
        "spec.stages[0]",
    ),
    "confirm without select": (lambda d: spec(d)["stages"][1].pop("select"), "spec.stages[1]"),
    "unknown stage kind": (
        lambda d: spec(d)["stages"][0].update(kind="sweep"),
        "spec.stages[0].kind",
    ),
    "duplicate stage names": (lambda d: spec(d)["stages"][1].update(name="screen"), "spec.stages"),
    "no stages": (lambda d: spec(d).update(stages=[]), "spec.stages"),
    "parallelism zero": (
        lambda d: spec(d)["limits"].update(parallelism=0),
        "spec.limits.parallelism",
    ),
    "negative maxFailedRuns": (
        lambda d: spec(d)["limits"].update(maxFailedRuns=-1),
        "spec.limits.maxFailedRuns",
    ),
    "zero maxGpuHours": (
        lambda d: spec(d)["limits"].update(maxGpuHours=0),
        "spec.limits.maxGpuHours",
    ),
    "both storages": (lambda d: spec(d)["storage"].update(local={"path": "x"}), "spec.storage"),
    "no storage kind": (lambda d: spec(d).update(storage={}), "spec.storage"),
    "local storage": (
        lambda d: spec(d).update(storage={"local": {"path": "/data"}}),
        "spec.storage: a cluster study needs storage.s3",
    ),
    "negative gpus": (lambda d: spec(d)["pools"][0].update(gpus=-1), "spec.pools[0].gpus"),
    "pool name not a DNS label": (
        lambda d: spec(d)["pools"][0].update(name="CPU_pool"),
        "spec.pools[0].name",
    ),
    # A pool's pod settings, by the rules the API server applies to each pod field.
    "image pull secret not a DNS subdomain": (
        lambda d: spec(d)["pools"][0].update(imagePullSecrets=["Registry_Creds"]),
        "spec.pools[0].imagePullSecrets[0]",
    ),
    "image pull secrets not a list": (
        lambda d: spec(d)["pools"][0].update(imagePullSecrets="regcred"),
        "spec.pools[0].imagePullSecrets",
    ),
    "priority class not a DNS subdomain": (
        lambda d: spec(d)["pools"][0].update(priorityClassName="High Priority"),
        "spec.pools[0].priorityClassName",
    ),
    "runtime class not a DNS subdomain": (
        lambda d: spec(d)["pools"][0].update(runtimeClassName="NVIDIA"),
        "spec.pools[0].runtimeClassName",
    ),
    "service account not a DNS subdomain": (
        lambda d: spec(d)["pools"][0].update(serviceAccountName="s3_reader"),
        "spec.pools[0].serviceAccountName",
    ),
    "affinity with an unknown part": (
        lambda d: spec(d)["pools"][0].update(affinity={"nodeAfinity": {}}),
        "spec.pools[0].affinity.nodeAfinity",
    ),
    "negative grace period": (
        lambda d: spec(d)["pools"][0].update(terminationGracePeriodSeconds=-1),
        "spec.pools[0].terminationGracePeriodSeconds",
    ),
    "grace period over an hour": (
        lambda d: spec(d)["pools"][0].update(terminationGracePeriodSeconds=7200),
        "spec.pools[0].terminationGracePeriodSeconds",
    ),
    "shm size in GB": (
        lambda d: spec(d)["pools"][0].update(shmSizeLimit="8GB"),
        "spec.pools[0].shmSizeLimit",
    ),
    "shm size zero": (
        lambda d: spec(d)["pools"][0].update(shmSizeLimit=0),
        "spec.pools[0].shmSizeLimit",
    ),
    "duplicate factor codes": (lambda d: spec(d)["factors"][1].update(code="A"), "spec.factors"),
    "unknown factor scale": (
        lambda d: spec(d)["factors"][1].update(scale="cubic"),
        "spec.factors[1].scale",
    ),
    "lowercase hyperparameter": (
        lambda d: spec(d)["trainer"]["hyperparameters"].update(lr=0.1),
        "spec.trainer.hyperparameters",
    ),
    "batch not a multiple": (
        lambda d: spec(d)["trainer"]["hyperparameters"].update(TOTAL_BATCH_SIZE=500),
        "TOTAL_BATCH_SIZE",
    ),
    "hyperparameter out of range": (
        lambda d: spec(d)["trainer"]["hyperparameters"].update(SEQ_LEN=0),
        "SEQ_LEN",
    ),
    "metric goal": (
        lambda d: spec(d).update(metric={"name": "val_bpb", "goal": "up"}),
        "spec.metric",
    ),
    "unknown spec field": (lambda d: spec(d).update(paralelism=2), "spec.paralelism"),
    "study name uppercase": (lambda d: d["metadata"].update(name="Tiny"), "metadata.name"),
    "wrong apiVersion": (lambda d: d.update(apiVersion="stagescreen.dev/v1"), "apiVersion"),
    # What Kubernetes itself would refuse in a Job (422): refused by the model first.
    "role ends with a dash (not a label value)": (
        lambda d: spec(d)["stages"][1]["select"][0].update(role="best-"),
        "spec.stages[1].select[0].role",
    ),
    "role longer than a label value": (
        lambda d: spec(d)["stages"][1]["select"][0].update(role="b" * 70),
        "spec.stages[1].select[0].role",
    ),
    "toleration Exists with a value": (
        lambda d: spec(d)["pools"][0].update(
            tolerations=[{"key": "gpu", "operator": "Exists", "value": "yes"}]
        ),
        "spec.pools[0].tolerations[0].value",
    ),
    "tolerationSeconds without NoExecute": (
        lambda d: spec(d)["pools"][0].update(
            tolerations=[{"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 60}]
        ),
        "spec.pools[0].tolerations[0].tolerationSeconds",
    ),
    "toleration without key not Exists": (
        lambda d: spec(d)["pools"][0].update(tolerations=[{"value": "x"}]),
        "spec.pools[0].tolerations[0].operator",
    ),
    "toleration key not a qualified name": (
        lambda d: spec(d)["pools"][0].update(tolerations=[{"key": "gpu type", "value": "a"}]),
        "spec.pools[0].tolerations[0].key",
    ),
    "memory in GB": (
        lambda d: spec(d)["trainer"].update(resources={"requests": {"memory": "64GB"}}),
        "spec.trainer.resources.requests.memory",
    ),
    "cpu as a float": (
        lambda d: spec(d)["trainer"].update(resources={"requests": {"cpu": 0.5}}),
        "spec.trainer.resources.requests.cpu",
    ),
    "negative memory": (
        lambda d: spec(d)["trainer"].update(resources={"limits": {"memory": "-1Gi"}}),
        "spec.trainer.resources.limits.memory",
    ),
    "request above its limit": (
        lambda d: spec(d)["trainer"].update(
            resources={"requests": {"memory": "96Gi"}, "limits": {"memory": "64Gi"}}
        ),
        "spec.trainer.resources.requests.memory",
    ),
    "resource name with a space": (
        lambda d: spec(d)["trainer"].update(resources={"limits": {"gpu memory": "1"}}),
        "spec.trainer.resources.limits",
    ),
    "nodeSelector value not a label value": (
        lambda d: spec(d)["pools"][0].update(nodeSelector={"pool": "cpu pool"}),
        "spec.pools[0].nodeSelector",
    ),
    "nodeSelector key not a qualified name": (
        lambda d: spec(d)["pools"][0].update(nodeSelector={"-pool": "cpu"}),
        "spec.pools[0].nodeSelector",
    ),
    "gpu resource not a qualified name": (
        lambda d: spec(d)["pools"][0].update(gpuResource="nvidia.com/GPU s"),
        "spec.pools[0].gpuResource",
    ),
    "secret name not a DNS subdomain": (
        lambda d: spec(d)["storage"]["s3"]["secretRef"].update(name="S3_Creds"),
        "spec.storage.s3.secretRef.name",
    ),
    "environment variable name": (
        lambda d: spec(d)["trainer"].update(env={"1ST": "x"}),
        "spec.trainer.env",
    ),
    "image with a space": (
        lambda d: spec(d)["trainer"].update(image="stagescreen trainer:dev"),
        "spec.trainer.image",
    ),
    "study name longer than 40": (lambda d: d["metadata"].update(name="s" * 41), "metadata.name"),
    "select rule unknown": (
        lambda d: spec(d)["stages"][1]["select"][0].update(rule="median"),
        "spec.stages[1].select[0].rule",
    ),
    # Sizes over their bounds (stagescreen.study.bounds), each refused before it is built.
    "too many factors": (
        lambda d: spec(d)["factors"].extend(
            {"name": f"X{i}", "low": 1, "high": 2} for i in range(15)
        ),
        "spec.factors: at most 16 factors per study (got 17)",
    ),
    "design too large": (
        lambda d: spec(d)["factors"].extend(
            {"name": f"X{i}", "low": 1, "high": 2} for i in range(11)
        ),
        "spec.design.type: at most 4096 conditions per design (got 8192",
    ),
    "a million seeds": (
        lambda d: spec(d)["stages"][0].update(seeds=1_000_000),
        "spec.stages[0].seeds: at most 1000 seeds per stage (got 1000000)",
    ),
    "too many seeds listed": (
        lambda d: spec(d)["stages"][0].update(seeds=list(range(1, 1002))),
        "spec.stages[0].seeds: at most 1000 seeds per stage (got 1001)",
    ),
    "too many budgets": (
        lambda d: spec(d)["stages"][0].update(budgets=list(range(10, 180, 10))),
        "spec.stages[0].budgets: at most 16 budgets per stage (got 17)",
    ),
    "budget over a week": (
        lambda d: spec(d)["stages"][0].update(budgets=["100000h"]),
        "spec.stages[0].budgets[0]: at most 604800 seconds per budget",
    ),
    "too many stages": (
        lambda d: spec(d)["stages"].extend(
            {"name": f"s{i}", "kind": "screen", "budgets": ["30s"]} for i in range(31)
        ),
        "spec.stages: at most 32 stages per study (got 33)",
    ),
    "too many pools": (
        lambda d: spec(d)["pools"].extend({"name": f"p{i}", "gpus": 0} for i in range(32)),
        "spec.pools: at most 32 pools per study (got 33)",
    ),
    "stage on too many pools": (
        lambda d: spec(d)["stages"][0].update(pools=["cpu"] * 33),
        "spec.stages[0].pools: at most 32 pools per stage (got 33)",
    ),
    "too many selection rules": (
        lambda d: spec(d)["stages"][1].update(select=[{"from": "screen", "rule": "best"}] * 33),
        "spec.stages[1].select: at most 32 selection rules per stage (got 33)",
    ),
    "too many fixed hyperparameters": (
        lambda d: spec(d)["trainer"]["hyperparameters"].update({f"H{i}": 1 for i in range(60)}),
        "spec.trainer.hyperparameters: at most 64 fixed hyperparameters",
    ),
    "negative draw seed": (
        lambda d: spec(d)["stages"].append(
            {"name": "rnd", "kind": "random", "budgets": ["30s"], "drawSeed": -1}
        ),
        "spec.stages[2].drawSeed",
    ),
    "too many runs": (
        lambda d: spec(d)["stages"][0].update(
            seeds=1000, budgets=[f"{s}s" for s in range(10, 70, 10)]
        ),
        "spec.stages: at most 10000 runs per study (got 24004",
    ),
}


def broken(name: str, study: Spec | None = None) -> Spec:
    """The base study with one mistake."""
    edit, _ = BROKEN[name]
    spoiled = copy.deepcopy(study or base())
    edit(spoiled)
    return spoiled
