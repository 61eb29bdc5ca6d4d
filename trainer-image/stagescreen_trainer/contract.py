"""The trainer's side of the run contract, as data: every variable with its type, default,
meaning and accepted range, and the checks across variables.

    python -m stagescreen_trainer.contract > analysis/stagescreen/trainer_contract.json

The core never imports the trainer (it runs in another image); it reads this file to reject,
before anything runs, a study whose factor or fixed hyperparameter the trainer does not know,
has the wrong type or a value the trainer would refuse. A test keeps the committed file equal
to this output, as the CRD is kept equal to the spec model (`make crds` writes both).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from stagescreen_trainer.config import CHECKS, RANGES, VARIABLES

TYPES = {int: "integer", float: "number", str: "string"}


def contract() -> dict[str, Any]:
    variables = {}
    for name, spec in VARIABLES.items():
        entry: dict[str, Any] = {
            "type": TYPES[type(spec.default)],
            "default": spec.default,
            "kind": spec.metadata["kind"],
            "help": spec.metadata["help"],
        }
        if name in RANGES:
            unset = (None, False, ())  # `is`, not ==: a minimum of 0 is set
            rule = asdict(RANGES[name])
            entry["accepts"] = {
                key: list(value) if isinstance(value, tuple) else value
                for key, value in rule.items()
                if not any(value is empty for empty in unset) and value != ()
            }
        variables[name] = entry
    return {"schema_version": 1, "variables": variables, "checks": list(CHECKS)}


if __name__ == "__main__":
    print(json.dumps(contract(), indent=1, sort_keys=True))
