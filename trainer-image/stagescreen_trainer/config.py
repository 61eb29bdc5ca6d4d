"""Run configuration: every hyperparameter and run setting, read from the environment or flags.

The run contract (docs/architecture.md) says every hyperparameter is an environment variable
named exactly like the factor in a study spec (DEPTH, MATRIX_LR, ...), each also a CLI flag.
One table below declares each variable once: its type, default and meaning; `--help`,
parsing and the record's `hyperparameters` block all come from it. Defaults are the paper's
frozen reference recipe (the public autoresearch `train.py`): depth 8, aspect 64, head 128,
2048 context, 2^19-token steps, 5-minute budget.

Validation happens before any work and names the variable, the value and what is accepted,
because a screening study launches hundreds of Jobs and a typo must fail in seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from stagescreen_trainer.model import VE_GATE_CHANNELS


class ConfigError(ValueError):
    """A variable has a value the trainer cannot run with."""


def _var(default: Any, help: str, kind: str = "hyper") -> Any:
    return field(default=default, metadata={"help": help, "kind": kind})


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Field names are the environment variable names."""

    # --- model (paper 4.1) ---
    DEPTH: int = _var(8, "number of transformer blocks")
    ASPECT_RATIO: int = _var(64, "width = DEPTH*ASPECT_RATIO rounded up to a multiple of HEAD_DIM")
    HEAD_DIM: int = _var(128, "attention head dimension (even, for rotary embeddings)")
    WINDOW_PATTERN: str = _var(
        "SSSL", "per-layer attention windows, repeated: S = half context, L = full; last is L"
    )
    SEQ_LEN: int = _var(2048, "context length in tokens (training and evaluation)")
    # --- optimisation ---
    TOTAL_BATCH_SIZE: int = _var(524288, "tokens per optimiser step (gradient accumulation)")
    DEVICE_BATCH_SIZE: int = _var(128, "sequences per forward/backward pass")
    MATRIX_LR: float = _var(0.04, "Muon learning rate for the matrices inside the blocks")
    EMBEDDING_LR: float = _var(0.6, "AdamW learning rate for token and value embeddings")
    UNEMBEDDING_LR: float = _var(0.004, "AdamW learning rate for the output head")
    SCALAR_LR: float = _var(0.5, "AdamW learning rate for the per-layer residual scalars")
    WEIGHT_DECAY: float = _var(0.2, "cautious weight decay for Muon, decayed linearly to 0")
    ADAM_BETA1: float = _var(0.8, "AdamW beta1")
    ADAM_BETA2: float = _var(0.95, "AdamW beta2")
    WARMUP_RATIO: float = _var(0.0, "fraction of the budget spent warming the learning rate up")
    WARMDOWN_RATIO: float = _var(0.5, "fraction of the budget at the end decaying the lr linearly")
    FINAL_LR_FRAC: float = _var(0.0, "learning rate at the end of the warmdown, as a fraction")
    MUON_MOMENTUM_START: float = _var(0.85, "Muon momentum at step 0")
    MUON_MOMENTUM_END: float = _var(0.95, "Muon momentum after MUON_MOMENTUM_STEPS")
    MUON_MOMENTUM_STEPS: int = _var(300, "steps over which Muon momentum ramps up")
    # --- evaluation ---
    EVAL_TOKENS: int = _var(
        40 * 524288,
        "validation tokens scored for val_bpb, in one pass (the whole shard if smaller, with a "
        "warning in the record)",
    )
    EVAL_BATCH_SIZE: int = _var(0, "sequences per evaluation pass (0: DEVICE_BATCH_SIZE)")
    # --- budget and run ---
    TIME_BUDGET: float = _var(
        300.0, "seconds of training steps (start-up and eval excluded)", "run"
    )
    MAX_STEPS: int = _var(
        0, "stop after this many steps; progress is then step-based (0: off)", "run"
    )
    EXCLUDE_STEPS: int = _var(
        10, "first steps (compile/warm-up) timed apart, not charged to the budget", "run"
    )
    RUN_SEED: int = _var(42, "seed for initialisation and data order", "run")
    DATA_URI: str = _var("", "folder of parquet shards (last = validation): path or s3://", "run")
    TOKENIZER_URI: str = _var("", "folder with tokenizer.json and token_bytes.json", "run")
    RESULT_URI: str = _var("", "where result.json, curve.parquet and log.txt go", "run")
    CHECKPOINT_URI: str = _var("", "where checkpoints go (empty: RESULT_URI/ckpt)", "run")
    CHECKPOINT_EVERY: float = _var(
        600.0, "seconds of training between checkpoints (0: only on SIGTERM)", "run"
    )
    PROGRESS_EVERY: float = _var(10.0, "seconds between progress lines", "run")
    DIVERGE_LOSS: float = _var(
        0.0,
        "smoothed train loss above this (or any NaN/inf) ends as diverged (0: twice "
        "ln(vocab), the loss of a uniform guess doubled)",
        "run",
    )
    DEVICE: str = _var("auto", "auto, cpu, cuda or cuda:N", "run")
    COMPILE: str = _var("auto", "torch.compile the model: auto (on for CUDA), 1 or 0", "run")
    ATTENTION: str = _var(
        "auto",
        "short-window kernel: auto (flex when compiled on CUDA, else sdpa), sdpa (band mask) "
        "or flex (block mask); full windows always use causal sdpa",
        "run",
    )
    DTYPE: str = _var(
        "auto",
        "compute dtype under autocast: auto (bfloat16 on CUDA and on CPUs with bf16 matrix "
        "units, else float32), bfloat16 or float32",
        "run",
    )
    THREADS: int = _var(0, "CPU threads for torch (0: torch's default)", "run")
    PEAK_FLOPS: float = _var(0.0, "device peak FLOP/s for MFU (0: look up or measure)", "run")
    # --- pass-through identity, filled by the operator ---
    STUDY: str = _var("", "study name (recorded)", "identity")
    STAGE: str = _var("", "stage name (recorded)", "identity")
    RUN_ID: str = _var("", "run id (recorded)", "identity")
    CONDITION_ID: str = _var("", "condition id (recorded)", "identity")
    POOL: str = _var("", "GPU pool (recorded)", "identity")
    CODED_LEVELS: str = _var(
        "{}", 'JSON of coded factor levels, e.g. {"A": -1} (recorded)', "identity"
    )
    CODE_VERSION: str = _var("", "code version, e.g. a git sha (recorded)", "identity")

    # --- derived values, computed in named steps ---
    @property
    def width(self) -> int:
        """Model width: DEPTH*ASPECT_RATIO rounded up to a whole number of heads."""
        base = self.DEPTH * self.ASPECT_RATIO
        return -(-base // self.HEAD_DIM) * self.HEAD_DIM

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
    def coded_levels(self) -> dict[str, Any]:
        return dict(json.loads(self.CODED_LEVELS))

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


VARIABLES = {f.name: f for f in fields(TrainConfig)}


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


def _field_type(name: str) -> type:
    default = VARIABLES[name].default
    return type(default)


def load_config(
    environ: Mapping[str, str] | None = None, argv: Sequence[str] | None = None
) -> TrainConfig:
    """Build the config from the environment, flags overriding it, then validate it."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in VARIABLES:
        if name in environ:
            values[name] = _convert(name, environ[name], _field_type(name))
    if argv:
        parsed = build_parser().parse_args(list(argv))
        for name, raw in vars(parsed).items():
            if raw is not None:
                values[name] = _convert(name, raw, _field_type(name))
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
            metavar=_field_type(name).__name__.upper(),
            help=f"{f.metadata['help']} [env {name}, default {f.default!r}]",
        )
    return parser


@dataclass(frozen=True)
class Range:
    """What a variable accepts beyond its type. Declared once here: `validate` enforces it and
    the contract file (contract.py) carries it to the core, which checks a study with it."""

    accepted: str  # the end of the message, "must be a positive integer"
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # strictly greater than
    even: bool = False
    choices: tuple[str, ...] = ()
    pattern: str | None = None

    def accepts(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        if self.pattern is not None:
            return re.fullmatch(self.pattern, str(value)) is not None
        number = float(value)  # NaN fails every comparison below, as it should
        return (
            (self.minimum is None or number >= self.minimum)
            and (self.maximum is None or number <= self.maximum)
            and (self.above is None or number > self.above)
            and (not self.even or number % 2 == 0)
        )


POSITIVE = Range("must be a positive integer", minimum=1)
AT_LEAST_0 = Range("must be >= 0", minimum=0)
UNIT = Range("must lie in [0, 1]", minimum=0, maximum=1)
RANGES: dict[str, Range] = {
    "DEPTH": POSITIVE,
    "ASPECT_RATIO": POSITIVE,
    "HEAD_DIM": Range("must be a positive even integer (rotary embeddings)", minimum=2, even=True),
    "SEQ_LEN": Range("must be at least 2", minimum=2),
    "DEVICE_BATCH_SIZE": POSITIVE,
    "WINDOW_PATTERN": Range(
        "must be a non-empty string of S (half context) and L (full context), e.g. SSSL",
        pattern="[SLsl]+",
    ),
    "TOTAL_BATCH_SIZE": POSITIVE,
    **dict.fromkeys(
        ("MATRIX_LR", "EMBEDDING_LR", "UNEMBEDDING_LR", "SCALAR_LR", "WEIGHT_DECAY"),
        Range("must be a number >= 0", minimum=0),
    ),
    **dict.fromkeys(
        (
            "ADAM_BETA1",
            "ADAM_BETA2",
            "WARMUP_RATIO",
            "WARMDOWN_RATIO",
            "FINAL_LR_FRAC",
            "MUON_MOMENTUM_START",
            "MUON_MOMENTUM_END",
        ),
        UNIT,
    ),
    "MUON_MOMENTUM_STEPS": AT_LEAST_0,
    "EVAL_TOKENS": POSITIVE,
    "EVAL_BATCH_SIZE": Range("must be >= 0 (0: DEVICE_BATCH_SIZE)", minimum=0),
    "TIME_BUDGET": Range("must be > 0 seconds", above=0),
    "MAX_STEPS": Range("must be >= 0 (0 turns it off)", minimum=0),
    "EXCLUDE_STEPS": AT_LEAST_0,
    "CHECKPOINT_EVERY": AT_LEAST_0,
    "PROGRESS_EVERY": Range("must be > 0", above=0),
    "DIVERGE_LOSS": Range("must be >= 0 (0: automatic)", minimum=0),
    "THREADS": AT_LEAST_0,
    "PEAK_FLOPS": AT_LEAST_0,
    "DEVICE": Range("must be auto, cpu, cuda or cuda:N", pattern="auto|cpu|cuda(:[0-9]+)?"),
    "COMPILE": Range("must be auto, 0 or 1", choices=("auto", "0", "1")),
    "ATTENTION": Range("auto, sdpa or flex", choices=("auto", "sdpa", "flex")),
    "DTYPE": Range("auto, bfloat16 or float32", choices=("auto", "bfloat16", "float32")),
}

# Checks across variables, as data: the trainer runs them in `validate`, the core runs them on
# every combination of a study's factor levels (stagescreen.trainer_contract), so a study that
# would make a run fail is rejected before anything runs.
CHECKS: tuple[dict[str, Any], ...] = (
    {
        "check": "multiple_of_product",
        "variable": "TOTAL_BATCH_SIZE",
        "of": ["DEVICE_BATCH_SIZE", "SEQ_LEN"],
    },
    {"check": "sum_at_most", "variables": ["WARMUP_RATIO", "WARMDOWN_RATIO"], "limit": 1.0},
    {"check": "width_at_least", "variable": "ASPECT_RATIO", "minimum": VE_GATE_CHANNELS},
)


def check_problem(check: Mapping[str, Any], values: Mapping[str, Any]) -> tuple[str, str] | None:
    """(variable to blame, message) when `values` fail one cross-check, else None."""
    kind = check["check"]
    if kind == "multiple_of_product":
        total = values[check["variable"]]
        parts = [values[name] for name in check["of"]]
        unit = math.prod(parts)
        if unit <= total and total % unit == 0:
            return None
        spelled = "*".join(check["of"])
        numbers = "*".join(str(p) for p in parts)
        return check["variable"], f"must be a positive multiple of {spelled} = {numbers} = {unit}"
    if kind == "sum_at_most":
        first, second = check["variables"]
        if values[first] + values[second] <= check["limit"]:
            return None
        return second, (
            f"{first} + {second} must be <= {check['limit']:g} ({first}={values[first]})"
        )
    if kind == "width_at_least":
        base = values["DEPTH"] * values["ASPECT_RATIO"]
        width = -(-base // values["HEAD_DIM"]) * values["HEAD_DIM"]
        if width >= check["minimum"]:
            return None
        return check["variable"], (
            f"width DEPTH*ASPECT_RATIO rounded up to HEAD_DIM = {width} must be at least "
            f"{check['minimum']} (the value-embedding gate reads that many channels)"
        )
    raise ValueError(f"unknown check {kind!r}")


def _require(ok: bool, name: str, value: Any, accepted: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r}: {accepted}")


def validate(c: TrainConfig) -> None:
    """Reject a config before any work; each message names the variable and what is accepted."""
    for name, rule in RANGES.items():
        value = getattr(c, name)
        _require(rule.accepts(value), name, value, rule.accepted)
    values = {name: getattr(c, name) for name in VARIABLES}
    for check in CHECKS:
        problem = check_problem(check, values)
        if problem is not None:
            name, message = problem
            raise ConfigError(f"{name}={values[name]!r}: {message}")
    for name in ("DATA_URI", "TOKENIZER_URI", "RESULT_URI"):
        _require(bool(getattr(c, name)), name, getattr(c, name), "is required (path or s3://)")
    try:
        levels = json.loads(c.CODED_LEVELS)
    except json.JSONDecodeError:
        levels = None
    _require(
        isinstance(levels, dict),
        "CODED_LEVELS",
        c.CODED_LEVELS,
        'must be a JSON object, e.g. {"A": 1}',
    )
