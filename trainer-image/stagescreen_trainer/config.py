"""Run configuration: every hyperparameter and run setting, read from the environment or flags.

The variables themselves (names, types, defaults, meanings, ranges) and the checks across them
are the run contract, declared once in `stagescreen_contract` and shared with the core, which
checks a study with the same code. Here they are read from the environment and flags (flags
win), and the values derived from them are computed in named steps.

Validation happens before any work and names the variable, the value and what is accepted,
because a screening study launches hundreds of Jobs and a typo must fail in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from stagescreen_contract.checks import CROSS_CHECKS, model_width, value_problem
from stagescreen_contract.variables import VARIABLES, RunVariables, type_of


class ConfigError(ValueError):
    """A variable has a value the trainer cannot run with."""


@dataclass(frozen=True)
class TrainConfig(RunVariables):
    """One training run: the contract's variables and the values derived from them."""

    # --- derived values, computed in named steps ---
    @property
    def width(self) -> int:
        """Model width: DEPTH*ASPECT_RATIO rounded up to a whole number of heads."""
        return model_width(vars(self))

    @property
    def n_heads(self) -> int:
        return self.width // self.HEAD_DIM

    @property
    def grad_accum_steps(self) -> int:
        return self.TOTAL_BATCH_SIZE // (self.DEVICE_BATCH_SIZE * self.SEQ_LEN)

    @property
    def eval_batch_size(self) -> int:
        return self.EVAL_BATCH_SIZE or self.DEVICE_BATCH_SIZE

    @property
    def checkpoint_uri(self) -> str:
        return self.CHECKPOINT_URI or self.RESULT_URI.rstrip("/") + "/ckpt"

    @property
    def coded_levels(self) -> dict[str, int | float]:
        return coded_levels_of(self.CODED_LEVELS) or {}

    def hyperparameters(self) -> dict[str, Any]:
        """The decoded hyperparameters, as recorded (and as a study may vary them)."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if f.metadata["kind"] == "hyper"
        }

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed: everything that shapes the run."""
        keep = {"hyper"}
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["kind"] in keep}
        out.update(TIME_BUDGET=self.TIME_BUDGET, MAX_STEPS=self.MAX_STEPS, RUN_SEED=self.RUN_SEED)
        out.update(DTYPE=self.DTYPE)
        return out


def _convert(name: str, raw: str, kind: type) -> Any:
    text = raw.strip()
    try:
        if kind is int:
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind is float:
            return float(text)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name}={raw!r}: expected {expected}") from None
    return text


def load_config(
    environ: Mapping[str, str] | None = None, argv: Sequence[str] | None = None
) -> TrainConfig:
    """Build the config from the environment, flags overriding it, then validate it."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in VARIABLES:
        if name in environ:
            values[name] = _convert(name, environ[name], type_of(name))
    if argv:
        parsed = build_parser().parse_args(list(argv))
        for name, raw in vars(parsed).items():
            if raw is not None:
                values[name] = _convert(name, raw, type_of(name))
    config = TrainConfig(**values)
    validate(config)
    return config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stagescreen_trainer",
        description=(
            "Time-budgeted GPT micro-pretraining run. Every option is also an environment "
            "variable of the same name (flags win); defaults are the paper's reference recipe."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, f in VARIABLES.items():
        parser.add_argument(
            f"--{name}",
            f"--{name.lower().replace('_', '-')}",
            dest=name,
            metavar=type_of(name).__name__.upper(),
            help=f"{f.metadata['help']} [env {name}, default {f.default!r}]",
        )
    return parser


def _require(ok: bool, name: str, value: Any, accepted: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r}: {accepted}")


def validate(c: TrainConfig) -> None:
    """Reject a config before any work; each message names the variable and what is accepted."""
    values = {name: getattr(c, name) for name in VARIABLES}
    for name, value in values.items():
        if why := value_problem(name, value):
            raise ConfigError(why)
    for check in CROSS_CHECKS:
        if why := check.problem(values):
            raise ConfigError(why)
    for name in ("DATA_URI", "TOKENIZER_URI", "RESULT_URI"):
        _require(bool(getattr(c, name)), name, getattr(c, name), "is required (path or s3://)")
    _require(
        coded_levels_of(c.CODED_LEVELS) is not None,
        "CODED_LEVELS",
        c.CODED_LEVELS,
        'must be a JSON object of numbers, e.g. {"A": 1}',
    )


def coded_levels_of(text: str) -> dict[str, int | float] | None:
    """CODED_LEVELS read as the record holds it, or None when it is not a JSON object of
    numbers (a rejected run still records its identity, without the levels)."""
    try:
        levels = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(levels, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in levels.values()
    ):
        return None
    return levels
