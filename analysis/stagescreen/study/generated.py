"""Every file of the repository that is generated from the models, and `make generate`, which
writes them all.

    python -m stagescreen.study.generated [ROOT]   # make generate; ROOT: the current folder

The spec models (stagescreen.study.spec) are the one text of every field; from them come the CRD
(`crds/`, and the chart's copy, which Helm installs), the field reference `docs/spec.md`, and
the `pools` part of the chart's values schema (the cluster's pools are `Pool`s, read by the
operator with the same model). The trainer's variables (stagescreen_contract) give the table
of docs/trainer.md. A test compares each file to what `generated` returns, so none can go
stale unnoticed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from stagescreen.study.crd import crd_yaml, inline_refs, markdown_reference
from stagescreen.study.spec import Pool
from stagescreen_contract.variables import VARIABLES

VALUES_SCHEMA = "charts/stagescreen/values.schema.json"
TRAINER_PAGE = "docs/trainer.md"
TABLE_HEADER = "| variable | default | meaning |\n|---|---|---|\n"


def pools_schema() -> dict[str, Any]:
    """The JSON Schema of the chart's `pools` value: a list of `Pool`s, as values.yaml writes
    them (camelCase), every reference inlined (Helm reads a single draft-07 document). What
    the operator would refuse at start-up, Helm refuses at install: map keys are checked
    (`propertyNames`), and so are the tolerations' rules across fields."""
    raw = Pool.model_json_schema(by_alias=True)
    items = _keys_checked(inline_refs(raw, raw.get("$defs", {}), frozenset({"title"})))
    items["properties"]["tolerations"]["items"]["allOf"] = TOLERATION_RULES
    return {"type": "array", "items": items}


# The API server's rules across a toleration's fields (the model's Toleration validator).
TOLERATION_RULES = [
    {  # operator Exists takes no value
        "if": {"properties": {"operator": {"const": "Exists"}}, "required": ["operator"]},
        "then": {"properties": {"value": {"enum": [None, ""]}}},
    },
    {  # no key: operator must be Exists
        "if": {"not": {"required": ["key"]}},
        "then": {"properties": {"operator": {"const": "Exists"}}, "required": ["operator"]},
    },
    {  # tolerationSeconds only with NoExecute
        "if": {"required": ["tolerationSeconds"]},
        "then": {"properties": {"effect": {"const": "NoExecute"}}, "required": ["effect"]},
    },
]


def _keys_checked(node: Any) -> Any:
    """Draft-07 `patternProperties` only checks the keys that match; the model refuses the
    others, so the schema does too (`propertyNames`)."""
    if isinstance(node, list):
        return [_keys_checked(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _keys_checked(value) for key, value in node.items()}
    if "patternProperties" in out:
        ((pattern, values),) = out.pop("patternProperties").items()
        out["propertyNames"] = {**out.get("propertyNames", {}), "pattern": pattern}
        out["additionalProperties"] = values
    return out


def values_schema(committed: str) -> str:
    """The chart's values schema with its `pools` part generated; the rest (the chart's own
    settings) is written by hand and kept as it is."""
    schema = json.loads(committed)
    schema["properties"]["pools"] = pools_schema()
    return json.dumps(schema, indent=2) + "\n"


def variables_table() -> str:
    """The trainer's variables as docs/trainer.md lists them: name, default, meaning."""
    rows = [
        f"| `{name}` | `{variable.default!r}` | {variable.metadata['help']} |\n"
        for name, variable in VARIABLES.items()
    ]
    return TABLE_HEADER + "".join(rows)


def trainer_page(committed: str) -> str:
    """docs/trainer.md with its table of variables generated; the prose is written by hand."""
    start = committed.index(TABLE_HEADER)
    end = start + len(TABLE_HEADER)
    while committed.startswith("| `", end):
        end = committed.index("\n", end) + 1
    return committed[:start] + variables_table() + committed[end:]


def generated(root: Path) -> dict[str, str]:
    """Each generated file's path under `root` and the text it must hold."""
    crd = crd_yaml()
    return {
        "crds/screeningstudy.yaml": crd,
        "charts/stagescreen/crds/screeningstudy.yaml": crd,
        "docs/spec.md": markdown_reference(),
        VALUES_SCHEMA: values_schema((root / VALUES_SCHEMA).read_text()),
        TRAINER_PAGE: trainer_page((root / TRAINER_PAGE).read_text()),
    }


def main(argv: list[str] | None = None) -> None:
    """Write every generated file under ROOT (default: the current folder)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        sys.exit("usage: python -m stagescreen.study.generated [ROOT]")
    root = Path(args[0] if args else ".")
    for path, text in generated(root).items():
        (root / path).write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
