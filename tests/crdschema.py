"""The CRD's OpenAPI schema as tests read it: the schema itself, and what the API server would
prune from a document under it (shared by the generated-files and the status tests)."""

from __future__ import annotations

from typing import Any

from stagescreen.study.crd import crd


def openapi() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def pruned(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Fields the API server would silently drop from `value` under `schema`."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        if isinstance(schema.get("additionalProperties"), dict):
            extra = schema["additionalProperties"]
            return [p for key, sub in value.items() for p in pruned(sub, extra, f"{path}.{key}")]
        known = schema.get("properties", {})
        return [
            p
            for key, sub in value.items()
            for p in (
                pruned(sub, known[key], f"{path}.{key}") if key in known else [f"{path}.{key}"]
            )
        ]
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [p for i, sub in enumerate(value) for p in pruned(sub, schema["items"], path)]
    return []
