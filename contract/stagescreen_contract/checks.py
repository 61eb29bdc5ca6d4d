"""What the trainer refuses, as one implementation: the trainer validates its configuration
with it before any work, and the core checks a study with it before anything runs (a typo
such as DEPHT would otherwise train the default depth in every run, and a TOTAL_BATCH_SIZE
that is not a multiple of DEVICE_BATCH_SIZE x SEQ_LEN would fail each run minutes after it
was scheduled).

A value of the wrong type is said as `NAME takes an integer (got ...)`; every other message
starts `NAME=value:` and says what would be accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stagescreen_contract.variables import RANGES, TYPE_NAMES, VARIABLES, VE_GATE_CHANNELS, type_of


def value_problem(name: str, value: Any) -> str | None:
    """Why the trainer would refuse `name=value` on its own (type or range), or None.

    A number written as a string is read as the trainer reads its environment (YAML takes
    `1.0e11` for a string; the trainer parses it as a number).
    """
    kind = type_of(name)
    article = "an" if kind is int else "a"
    wrong_type = f"{name} takes {article} {TYPE_NAMES[kind]} (got {value!r})"
    if kind is not str and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return wrong_type
    if isinstance(value, bool) or (kind is not str and not isinstance(value, int | float)):
        return wrong_type
    if kind is int and float(value) != int(value):
        return wrong_type
    if kind is str and not isinstance(value, str):
        return wrong_type
    rule = RANGES.get(name)
    if rule is not None and not rule.accepts(value):
        return f"{name}={value!r}: {rule.accepted}"
    return None


@dataclass(frozen=True)
class CrossCheck:
    """A rule across variables: `blames` is the variable a failure is reported on (the one to
    change), `failure` says why the values fail it, or returns None when they pass. Its
    answer depends on the variables in `reads` alone, so a study's check tries only the
    combinations of the factors among them (not all 2^k or 3^k of every factor)."""

    name: str
    blames: str
    failure: Callable[[Mapping[str, Any]], str | None]
    reads: tuple[str, ...]

    def problem(self, values: Mapping[str, Any]) -> str | None:
        """The message, `NAME=value: why`, when `values` (every variable) fail this check."""
        why = self.failure(values)
        return None if why is None else f"{self.blames}={values[self.blames]}: {why}"


def _batch_multiple(values: Mapping[str, Any]) -> str | None:
    """Gradient accumulation needs a whole number of micro-batches per step."""
    total, device, seq = values["TOTAL_BATCH_SIZE"], values["DEVICE_BATCH_SIZE"], values["SEQ_LEN"]
    unit = device * seq
    if unit <= total and total % unit == 0:
        return None
    return f"must be a positive multiple of DEVICE_BATCH_SIZE*SEQ_LEN = {device}*{seq} = {unit}"


def _schedule_fits(values: Mapping[str, Any]) -> str | None:
    """Warm-up and warm-down share the budget; together they cannot exceed it."""
    limit = 1.0
    first, second = values["WARMUP_RATIO"], values["WARMDOWN_RATIO"]
    if first + second <= limit:
        return None
    return f"WARMUP_RATIO + WARMDOWN_RATIO = {first + second:g} must be <= {limit:g}"


def model_width(values: Mapping[str, Any]) -> int:
    """Model width: DEPTH*ASPECT_RATIO rounded up to a whole number of heads."""
    base = values["DEPTH"] * values["ASPECT_RATIO"]
    head: int = values["HEAD_DIM"]
    return int(-(-base // head) * head)


def _wide_enough(values: Mapping[str, Any]) -> str | None:
    """The value-embedding gate reads VE_GATE_CHANNELS channels of the residual stream."""
    wide = model_width(values)
    if wide >= VE_GATE_CHANNELS:
        return None
    return (
        f"width DEPTH*ASPECT_RATIO rounded up to HEAD_DIM = {wide} must be at least "
        f"{VE_GATE_CHANNELS} (the value-embedding gate reads that many channels)"
    )


CROSS_CHECKS = (
    CrossCheck(
        "batch multiple",
        "TOTAL_BATCH_SIZE",
        _batch_multiple,
        ("TOTAL_BATCH_SIZE", "DEVICE_BATCH_SIZE", "SEQ_LEN"),
    ),
    CrossCheck(
        "schedule fits", "WARMDOWN_RATIO", _schedule_fits, ("WARMUP_RATIO", "WARMDOWN_RATIO")
    ),
    CrossCheck("wide enough", "ASPECT_RATIO", _wide_enough, ("DEPTH", "ASPECT_RATIO", "HEAD_DIM")),
)


def defaults() -> dict[str, Any]:
    """Every variable at its default: what a run gets for a variable nobody sets."""
    return {name: variable.default for name, variable in VARIABLES.items()}
