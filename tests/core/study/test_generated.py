"""The checked-in CRD and field reference are what the spec models generate, and Kubernetes
would accept the schema: structural, described, and without keywords it does not know."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from crdschema import openapi, pruned

from stagescreen.study.crd import crd, crd_yaml
from stagescreen.study.generated import generated, pools_schema
from stagescreen.study.spec import Pool

ROOT = Path(__file__).resolve().parents[3]

# Keywords of apiextensions.k8s.io/v1 JSONSchemaProps that the generator may emit.
KUBERNETES_KEYWORDS = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "nullable",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "anyOf",
    "format",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
}


def nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path; properties named, items as [], map values as {}."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("path", sorted(generated(ROOT)))
def test_every_generated_file_is_fresh(path: str) -> None:
    """The CRD, the chart's copy of it, docs/spec.md and the chart's pools schema are what
    `make generate` writes from the models today."""
    assert (ROOT / path).read_text() == generated(ROOT)[path], f"{path} is stale: make generate"


def test_make_generate_writes_every_generated_file() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "\ngenerate: install\n\t$(BIN)/python -m stagescreen.study.generated\n" in makefile
    assert set(generated(ROOT)) >= {
        "crds/screeningstudy.yaml",
        "charts/stagescreen/crds/screeningstudy.yaml",
        "docs/spec.md",
        "charts/stagescreen/values.schema.json",
        "docs/trainer.md",
    }


def test_the_chart_takes_cluster_pools_as_the_operator_reads_them() -> None:
    """The values schema's pools part is the Pool model's schema: what the operator parses."""
    schema = json.loads((ROOT / "charts" / "stagescreen" / "values.schema.json").read_text())
    assert schema["properties"]["pools"] == pools_schema()
    assert set(schema["properties"]["pools"]["items"]["properties"]) == {
        field.alias or name for name, field in Pool.model_fields.items()
    }


def test_every_property_has_a_description() -> None:
    undescribed = [
        f"{path}.{name}"
        for path, node in nodes(openapi())
        for name, sub in node.get("properties", {}).items()
        if not sub.get("description", "").strip()
    ]
    assert undescribed == []


def test_schema_is_structural() -> None:
    """Every node typed (or int-or-string / preserve-unknown), no $ref, anyOf only for
    int-or-string, and only keywords Kubernetes knows."""
    for path, node in nodes(openapi()):
        escape = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        assert "type" in node or escape, f"{path} has no type"
        assert set(node) <= KUBERNETES_KEYWORDS, f"{path}: {set(node) - KUBERNETES_KEYWORDS}"
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), path
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        if "properties" in node:
            assert node["type"] == "object", path
            assert set(node.get("required", [])) <= set(node["properties"]), path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path
    assert "$ref" not in crd_yaml()


def test_resource_names_columns_and_status_subresource() -> None:
    spec = crd()["spec"]
    version = spec["versions"][0]
    assert crd()["metadata"]["name"] == "screeningstudies.stagescreen.dev"
    assert (spec["group"], spec["scope"]) == ("stagescreen.dev", "Namespaced")
    assert spec["names"]["kind"] == "ScreeningStudy"
    assert spec["names"]["plural"] == "screeningstudies"
    assert spec["names"]["shortNames"] == ["sstudy"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert [(c["name"], c["jsonPath"]) for c in version["additionalPrinterColumns"]] == [
        ("Stage", ".status.currentStage"),
        ("Phase", ".status.phase"),
        ("Done/Total", ".status.progress"),
        ("Best", ".status.best.conditionId"),
        ("Metric", ".status.best.mean"),
        ("Age", ".metadata.creationTimestamp"),
    ]


def test_status_schema_carries_what_the_operator_reports() -> None:
    status = openapi()["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == [
        "Pending", "Running", "Analyzing", "Succeeded", "Degraded", "Failed",
    ]  # fmt: skip
    assert set(status) >= {
        "currentStage",
        "progress",
        "runs",
        "stages",
        "best",
        "gpuSeconds",
        "runSeconds",
        "waiting",
        "message",
        "reportUri",
        "conditions",
        "observedGeneration",
    }
    # The best condition has the outcome's field names (camelCase on the resource).
    assert set(status["best"]["properties"]) == {
        "conditionId", "stage", "role", "budgetS", "pool", "mean", "candidates", "ciLow",
        "ciHigh",
    }  # fmt: skip
    stage = status["stages"]["additionalProperties"]["properties"]
    assert set(stage) == {"phase", "runs", "summary", "best"}
    condition = status["conditions"]["items"]["properties"]
    assert set(condition) == {"type", "status", "reason", "message", "lastTransitionTime"}


def test_budgets_are_int_or_string_and_free_form_maps_keep_their_keys() -> None:
    stage = openapi()["properties"]["spec"]["properties"]["stages"]["items"]["properties"]
    assert stage["budgets"]["items"]["x-kubernetes-int-or-string"] is True
    trainer = openapi()["properties"]["spec"]["properties"]["trainer"]["properties"]
    assert trainer["hyperparameters"]["x-kubernetes-preserve-unknown-fields"] is True


@pytest.mark.parametrize("example", ["paper.yaml", "quickstart.yaml"])
def test_kubectl_apply_would_keep_every_field_of_the_examples(example: str) -> None:
    study = yaml.safe_load((ROOT / "examples" / example).read_text())
    spec_schema = openapi()["properties"]["spec"]
    assert pruned(study["spec"], spec_schema, "spec") == []
    assert set(study) <= set(openapi()["properties"])
