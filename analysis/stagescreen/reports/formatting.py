"""Numbers and tables as the report prints them.

The report reads validated outcome models (`stagescreen.outcomes.model`), so a value is a number
or None (the analysis could not compute it); every formatter prints DASH for None and for
what is not finite, so one missing value costs one cell of a table, never the report. Pure
text: no figures, no storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from stagescreen.planning.ids import format_budget
from stagescreen.storage.jsonvalues import json_number

DASH = "—"


def fmt_effect(value: float | None) -> str:
    """Effects on the metric scale: signed, four decimals (the paper's tables)."""
    number = json_number(value)
    return DASH if number is None else f"{number:+.4f}"


def fmt_interval(
    low: float | None, high: float | None, digits: int = 4, signed: bool = True
) -> str:
    a, b = json_number(low), json_number(high)
    if a is None or b is None:
        return DASH
    spec = f"{'+' if signed else ''}.{digits}f"
    return f"[{a:{spec}}, {b:{spec}}]"


def fmt_p(value: float | None) -> str:
    """p and q: three significant figures, e-notation below 0.001 (1.98e-11, 0.00319)."""
    number = json_number(value)
    if number is None:
        return DASH
    if number == 0:
        return "0"
    return f"{number:.2e}" if abs(number) < 1e-3 else f"{number:.3g}"


def fmt_mean(value: float | None) -> str:
    """Metric means: six decimals, enough to separate anchors at long budgets (paper 5.9)."""
    number = json_number(value)
    return DASH if number is None else f"{number:.6f}"


def fmt_fixed(value: float | None, digits: int) -> str:
    number = json_number(value)
    return DASH if number is None else f"{number:.{digits}f}"


def fmt_count(value: int | None) -> str:
    return DASH if value is None else str(int(value))


def fmt_budget(seconds: float | None) -> str:
    """A budget as run ids spell it (`ids.format_budget`: 120 -> 2m, 3600 -> 1h)."""
    number = json_number(seconds)
    return DASH if number is None else format_budget(int(number))


def fmt_levels(levels: Mapping[str, int] | None) -> str:
    """Coded levels as the paper writes them: A-,B+,C0."""
    if not levels:
        return DASH
    signs = {-1: "-", 0: "0", 1: "+"}
    return ",".join(f"{code}{signs.get(level, f'={level:g}')}" for code, level in levels.items())


def fmt_text(value: object) -> str:
    """Free text in a table cell: pipes escaped and newlines flattened, so the row holds."""
    if value is None or (isinstance(value, float) and json_number(value) is None):
        return DASH
    return str(value).replace("|", "\\|").replace("\n", " ") or DASH


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
