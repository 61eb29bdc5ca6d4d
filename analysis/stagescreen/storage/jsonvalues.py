"""JSON-safe values: JSON has no NaN or infinity, so what cannot be computed is `null`.

One rule for every document the project writes (outcomes, manifests, `--json` output), used by
the analysis when it builds them, by the models that carry them (`JsonFloat`, `Scalar`) and by
the store when it writes them.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator


def json_number(value: Any) -> float | None:
    """A JSON-safe number: NaN and infinities become None, numpy scalars plain floats."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def json_ready(value: Any) -> Any:
    """`value` with every non-finite float, at any depth, as None and numpy scalars as
    Python ones."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return json_number(value)
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


JsonFloat = Annotated[float | None, BeforeValidator(json_number)]
"""A number a model field holds: what cannot be computed (None, NaN, infinity) is None."""

Scalar = Annotated[int | float | str | None, BeforeValidator(json_ready)]
"""A grouping value (a budget, a pool, a condition id) as JSON holds it: numpy scalars as
Python ones, a non-finite float as None."""
