"""Numbers and tables as the report prints them, from outcome values read defensively.

An outcome.json is read as it was stored, never re-validated: any value may be null (the
analysis could not compute it), missing (an older or partial record) or of an unexpected
type. The readers here turn each of those into "nothing" (None, an empty list or mapping),
and every formatter accepts anything and prints DASH for what is not a number, so one odd
value costs one cell of a table, never the report. Pure text: no figures, no storage.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stagescreen.ids import format_budget
from stagescreen.jsonvalues import json_number

DASH = "—"


# --------------------------------------------------------------------------------------------
# Reading outcome values: whatever is stored, a value of the expected shape or nothing


def finite(value: Any) -> float | None:
    """A finite number, or None for null, NaN, infinities, booleans and non-numbers."""
    if isinstance(value, bool):
        return None
    try:
        return json_number(value)
    except (TypeError, ValueError):
        return None


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def families(document: Any) -> list[Mapping[str, Any]]:
    """The families of a `families_to_dict` document (or of a pooled fit), never None."""
    return [f for f in as_list(as_mapping(document).get("families")) if isinstance(f, Mapping)]


def family_budget(by: Mapping[str, Any]) -> float | None:
    """The budget a family was fitted at: effects name it budget_s, pooled deltas budget."""
    return finite(by.get("budget_s", by.get("budget")))


# --------------------------------------------------------------------------------------------
# Number formatting: every formatter accepts anything and prints DASH for what is not a number


def fmt_effect(value: Any) -> str:
    """Effects on the metric scale: signed, four decimals (the paper's tables)."""
    number = finite(value)
    return DASH if number is None else f"{number:+.4f}"


def fmt_interval(low: Any, high: Any, digits: int = 4, signed: bool = True) -> str:
    a, b = finite(low), finite(high)
    if a is None or b is None:
        return DASH
    spec = f"{'+' if signed else ''}.{digits}f"
    return f"[{a:{spec}}, {b:{spec}}]"


def fmt_p(value: Any) -> str:
    """p and q: three significant figures, e-notation below 0.001 (1.98e-11, 0.00319)."""
    number = finite(value)
    if number is None:
        return DASH
    if number == 0:
        return "0"
    return f"{number:.2e}" if abs(number) < 1e-3 else f"{number:.3g}"


def fmt_mean(value: Any) -> str:
    """Metric means: six decimals, enough to separate anchors at long budgets (paper 5.9)."""
    number = finite(value)
    return DASH if number is None else f"{number:.6f}"


def fmt_fixed(value: Any, digits: int) -> str:
    number = finite(value)
    return DASH if number is None else f"{number:.{digits}f}"


def fmt_count(value: Any) -> str:
    number = finite(value)
    return DASH if number is None else str(int(number))


def fmt_budget(seconds: Any) -> str:
    """A budget as run ids spell it (`format_budget`: 120 -> 2m, 3600 -> 1h)."""
    number = finite(seconds)
    return DASH if number is None else format_budget(int(number))


def fmt_levels(levels: Any) -> str:
    """Coded levels as the paper writes them: A-,B+,C0."""
    if not isinstance(levels, Mapping) or not levels:
        return DASH
    signs = {-1: "-", 0: "0", 1: "+"}
    parts = []
    for code, level in levels.items():
        number = finite(level)
        mark = signs.get(int(number), f"={number:g}") if number is not None else "?"
        parts.append(f"{code}{mark}")
    return ",".join(parts)


def fmt_text(value: Any) -> str:
    """Free text in a table cell: pipes escaped and newlines flattened, so the row holds."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return str(value).replace("|", "\\|").replace("\n", " ") or DASH


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
