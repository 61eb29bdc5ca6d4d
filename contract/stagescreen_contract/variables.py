"""The trainer's variables: every hyperparameter and run setting, its type, default, meaning
and accepted range, declared once.

The run contract (docs/architecture.md) says every hyperparameter is an environment variable
named exactly like the factor in a study spec (DEPTH, MATRIX_LR, ...), each also a trainer
flag. The trainer builds its configuration, `--help` and the record's `hyperparameters` block
from `RunVariables`; the core checks a study's factors and fixed hyperparameters against the
same table (stagescreen_contract.checks), so what a study may set is what a run accepts.
Defaults are the paper's frozen reference recipe (the public autoresearch `train.py`): depth
8, aspect 64, head 128, 2048 context, 2^19-token steps, 5-minute budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal

Kind = Literal["hyper", "run", "identity"]

# The value-embedding gate reads this many channels of the residual stream, so the model
# must be at least this wide (the trainer's model reads it from here).
VE_GATE_CHANNELS = 32
# Vocabulary of the corpus StageScreen prepares when a study names none (`stagescreen run`,
# `stagescreen manifests` and the operator all prepare or point at this one).
CORPUS_VOCAB = 1024
# The smallest vocabulary a corpus can be prepared with: the 256 bytes and 4 special tokens.
CORPUS_VOCAB_MIN = 260
# Set per run by the executors from the stage and the storage, never by the study.
SET_PER_RUN = frozenset(
    {"TIME_BUDGET", "RUN_SEED", "DATA_URI", "TOKENIZER_URI", "RESULT_URI", "CHECKPOINT_URI"}
)
# Names of the value types, as messages spell them.
TYPE_NAMES = {int: "integer", float: "number", str: "string"}


def _var(default: Any, help: str, kind: Kind = "hyper") -> Any:
    return field(default=default, metadata={"help": help, "kind": kind})


@dataclass(frozen=True)
class RunVariables:
    """Every variable of one training run. Field names are the environment variable names;
    each field's metadata holds its meaning (`help`) and its `kind`: `hyper` (a study may
    vary or fix it), `run` (how the run is executed) or `identity` (recorded, set by
    StageScreen)."""

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


VARIABLES = {f.name: f for f in fields(RunVariables)}


def type_of(name: str) -> type:
    """The Python type a variable takes: that of its default."""
    return type(VARIABLES[name].default)


@dataclass(frozen=True)
class Range:
    """What a variable accepts beyond its type; the trainer refuses a run outside it and the
    core refuses a study that would give a run a value outside it."""

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
