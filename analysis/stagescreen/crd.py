"""The ScreeningStudy CRD and the field reference, both rendered from `stagescreen.spec`.

Kubernetes accepts only *structural* OpenAPI v3 schemas: every node typed, no `$ref`, no
`anyOf` except the int-or-string escape hatch, no `const`, `propertyNames` or JSON Schema
2020 style `exclusiveMinimum`. Pydantic writes JSON Schema 2020-12, so `openapi_schema`
inlines references and translates the rest; descriptions come from the models, so
`kubectl explain screeningstudy.spec.stages` says what the docstrings and Field texts say.

    python -m stagescreen.crd              # the CRD as YAML (make crds)
    python -m stagescreen.crd --markdown   # docs/spec.md
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from stagescreen.kinds import KINDS
from stagescreen.spec import API_VERSION, KIND, Study, StudySpec
from stagescreen.status import StudyStatus

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "screeningstudies"
HEADER = "# Generated from stagescreen/spec.py by `make crds`; edit the models, not this file.\n"
_DROPPED = {"title", "examples", "propertyNames", "$defs"}


class _WithFactoryDefaults(GenerateJsonSchema):
    """Also show defaults made by default_factory (seeds [1], pools [], ...) in the docs."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            plain = {key: value for key, value in schema.items() if key != "default_factory"}
            plain["default"] = factory()  # type: ignore[call-arg]
            return super().default_schema(plain)  # type: ignore[arg-type]
        return super().default_schema(schema)


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A structural OpenAPI v3 schema of `model`, keeping `default` for the docs."""
    raw = model.model_json_schema(by_alias=True, schema_generator=_WithFactoryDefaults)
    return _translate(_inline(raw, raw.get("$defs", {})))


def _study_spec_schema() -> dict[str, Any]:
    """The spec's schema with the registered stage kinds as the enum of `stages[].kind`: the
    model accepts any name and `crosschecks` checks it against `kinds.KINDS`, so the table,
    not the model, knows the names."""
    schema = openapi_schema(StudySpec)
    schema["properties"]["stages"]["items"]["properties"]["kind"]["enum"] = list(KINDS)
    return schema


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        # The field's own description says more than the model's docstring, so it wins.
        return {**target, **{k: _inline(v, defs) for k, v in node.items() if k != "$ref"}}
    return {key: _inline(value, defs) for key, value in node.items() if key != "$defs"}


def _translate(node: Any) -> Any:
    if isinstance(node, list):
        return [_translate(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: value for key, value in node.items() if key not in _DROPPED}
    options = node.get("anyOf", [])
    if any(option == {"type": "null"} for option in options):
        (present,) = [option for option in options if option != {"type": "null"}]
        rest = {key: value for key, value in node.items() if key != "anyOf"}
        node = {**present, **rest, "nullable": True}
        node = {key: value for key, value in node.items() if key not in _DROPPED}
        if node.get("default", 0) is None:
            del node["default"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(
        node["exclusiveMinimum"], bool
    ):
        node["minimum"] = node["exclusiveMinimum"]
        node["exclusiveMinimum"] = True
    if "patternProperties" in node:
        # Key patterns (factor codes) are checked by the model; Kubernetes has no such keyword.
        (node["additionalProperties"],) = node.pop("patternProperties").values()
    extra = node.get("additionalProperties")
    if extra is False:
        del node["additionalProperties"]
    elif extra is True or extra == {}:
        del node["additionalProperties"]
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "properties" in node:
        node["properties"] = {name: _translate(sub) for name, sub in node["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _translate(node[key])
    first = [key for key in ("type", "description") if key in node]
    return {key: node[key] for key in [*first, *sorted(set(node) - set(first))]}


def _for_kubernetes(node: Any) -> Any:
    """Move defaults into descriptions: server-side defaulting would rewrite users' objects."""
    if isinstance(node, list):
        return [_for_kubernetes(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _for_kubernetes(value) for key, value in node.items()}
    if "default" in node:
        default = node.pop("default")
        if _worth_showing(default):
            node["description"] = f"{node.get('description', '')} Default: {_show(default)}."
    return node


def _worth_showing(default: Any) -> bool:
    return default not in (None, "", [], {}) and not isinstance(default, dict)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition of ScreeningStudy (apiextensions.k8s.io/v1)."""
    fields = Study.model_fields
    spec = _for_kubernetes(_study_spec_schema())
    spec["description"] = fields["spec"].description
    status = _for_kubernetes(openapi_schema(StudyStatus))
    status["description"] = fields["status"].description
    schema = {
        "type": "object",
        "description": Study.__doc__,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": fields["api_version"].description},
            "kind": {"type": "string", "description": fields["kind"].description},
            "metadata": {"type": "object", "description": fields["metadata"].description},
            "spec": spec,
            "status": status,
        },
    }
    columns = [
        ("Stage", "string", ".status.currentStage", "Stage running or analysed now."),
        ("Phase", "string", ".status.phase", "Where the study is."),
        ("Done/Total", "string", ".status.progress", "Runs done over runs planned."),
        (
            "Best",
            "string",
            ".status.best.conditionId",
            "Best condition of the last analysed stage.",
        ),
        ("Metric", "number", ".status.best.mean", "Its mean metric."),
        ("Age", "date", ".metadata.creationTimestamp", "Time since the study was created."),
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["sstudy"],
                "categories": ["stagescreen"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": name, "type": kind, "jsonPath": path, "description": text}
                        for name, kind, path, text in columns
                    ],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """No &anchors: a CRD is read by people and by `kubectl explain`, not deduplicated."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def crd_yaml() -> str:
    """The CRD as the YAML checked in at crds/screeningstudy.yaml."""
    body = yaml.dump(crd(), Dumper=_PlainDumper, sort_keys=False, width=100)
    return HEADER + body


# --------------------------------------------------------------------------------------------
# Field reference (docs/spec.md)


def markdown_reference() -> str:
    """docs/spec.md: every field of the resource, section by section, from the same text."""
    lines = [
        "# ScreeningStudy field reference",
        "",
        "<!-- Generated by `python -m stagescreen.crd --markdown > docs/spec.md`; "
        "edit analysis/stagescreen/spec.py, not this file. -->",
        "",
        f"`apiVersion: {API_VERSION}`, `kind: {KIND}`, `metadata.name` names the study. "
        "Budgets are written `120s`, `10m`, `24h`, `1h30m` or as seconds. "
        "Examples: `examples/quickstart.yaml`, `examples/paper.yaml`.",
    ]
    spec = _study_spec_schema()
    spec["description"] = Study.model_fields["spec"].description
    status = openapi_schema(StudyStatus)
    status["description"] = (
        "Written by the operator; `kubectl get sstudy` shows the phase, stage and progress."
    )
    for path, node in [*_objects("spec", spec), *_objects("status", status)]:
        lines += ["", f"## `{path}`", "", node.get("description", ""), ""]
        lines += ["| Field | Type | Default | Description |", "|---|---|---|---|"]
        required = set(node.get("required", []))
        for name, sub in node["properties"].items():
            default = "required" if name in required else _default_cell(sub)
            text = sub.get("description", "").replace("|", "\\|")
            lines.append(f"| `{name}` | {_type(sub)} | {default} | {text} |")
    return "\n".join(lines) + "\n"


def _objects(path: str, node: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every object node with properties, parents first, with its YAML path."""
    found = [(path, node)] if "properties" in node else []
    children: list[tuple[str, dict[str, Any]]] = []
    for name, sub in node.get("properties", {}).items():
        children.append((f"{path}.{name}", sub))
    if isinstance(node.get("items"), dict):
        children.append((f"{path}[]", node["items"]))
    if isinstance(node.get("additionalProperties"), dict):
        children.append((f"{path}.<name>", node["additionalProperties"]))
    for child_path, child in children:
        found += _objects(child_path, child)
    return found


def _type(node: dict[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{value}`" for value in node["enum"])
    if node.get("x-kubernetes-int-or-string"):
        return "duration"
    kind = node.get("type")
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_type(node['additionalProperties'])}"
    if kind == "object" and "properties" not in node:
        return "map"
    return str(kind or "list or count")


def _default_cell(node: dict[str, Any]) -> str:
    default = node.get("default")
    return f"`{_show(default)}`" if _worth_showing(default) else ""


def main(argv: list[str] | None = None) -> None:
    """Print the CRD YAML, or the Markdown field reference with --markdown."""
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--markdown"]):
        sys.exit("usage: python -m stagescreen.crd [--markdown]")
    sys.stdout.write(markdown_reference() if args else crd_yaml())


if __name__ == "__main__":
    main()
