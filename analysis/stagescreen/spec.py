"""The ScreeningStudy resource: what a researcher declares, read top to bottom.

One YAML file is both a Kubernetes object (`kubectl apply -f study.yaml`) and the input of
`stagescreen run study.yaml`. These pydantic models are the single source of every field's
documentation: the CRD schema (`stagescreen.crd`), `kubectl explain`, `docs/spec.md` and the
command line all render the descriptions written here.

Validation collects every problem at once and names each by its field path, the bad value
and what would be accepted (`spec.factors[2].high: must differ from low (both 0.03)`), so a
researcher fixes a file in one pass instead of one error per run.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from stagescreen import trainer_contract

API_VERSION = "stagescreen.dev/v1alpha1"
KIND = "ScreeningStudy"

# "I" is the identity word of a defining relation (I = ABCDE), so it never names a factor.
FACTOR_LETTERS = "ABCDEFGHJKLMNOPQRSTUVWXYZ"

StageKind = Literal[
    "screen", "confirm", "followup", "bridge", "long-horizon", "random", "greedy", "halving"
]
SelectionRule = Literal[
    "best", "worst", "bridge", "control", "greedy-winner", "random-winner", "halving-winner"
]

WINNER_RULES: dict[str, str] = {
    "greedy-winner": "greedy",
    "random-winner": "random",
    "halving-winner": "halving",
}
"""Rules that pick the one incumbent of a baseline stage, and the kind of stage each reads."""


# --------------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a study, at one field path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(ValueError):
    """A study that cannot be used; `.problems` lists every reason, one per field path."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class _Problems(ValueError):
    """Several problems found by one model check, each relative to that model's path.

    Pydantic keeps a validator's ValueError in the error context, so the conversion to
    `Problem`s can expand it into one problem per sub-path.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.items = problems
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))


LENIENT = {"lenient": True}
"""Validation context that skips a model's own consistency checks (shapes still count), so a
spec whose stages or factors broke one of them can still go through the cross-section checks
and every problem shows in one pass."""


def _lenient(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("lenient"))


def _raise_if(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise _Problems(problems)


# --------------------------------------------------------------------------------------------
# Scalar types shared by several fields

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int) -> int:
    """Seconds in a budget written as `120s`, `10m`, `24h`, `1h30m`, or a plain number."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration such as 120s, 10m or 24h (got {text!r})")
    if isinstance(text, int | float):
        seconds: float = text
    elif isinstance(text, str):
        compact = text.strip().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", compact):
            seconds = float(compact)
        elif compact and re.fullmatch(rf"(?:{_DURATION_PART.pattern})+", compact):
            seconds = sum(
                float(number) * _UNIT_SECONDS[unit]
                for number, unit in _DURATION_PART.findall(compact)
            )
        else:
            raise ValueError(
                "expected a duration such as 120s, 10m, 24h, 1h30m or a number of seconds "
                f"(got {text!r})"
            )
    else:
        raise ValueError(f"expected a duration such as 120s, 10m or 24h (got {text!r})")
    if seconds <= 0 or seconds != int(seconds):
        raise ValueError(f"a budget must be a positive whole number of seconds (got {text!r})")
    return int(seconds)


def _number(value: Any) -> Any:
    """Keep YAML ints as ints, and read strings such as `3e-4` that YAML 1.1 leaves as text."""
    if isinstance(value, bool):
        raise ValueError("Input should be a valid number")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[-+]?\d+", text):
            return int(text)
        try:
            return float(text)
        except ValueError:
            pass
    raise ValueError("Input should be a valid number")


def _seeds(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError("a seed count must be at least 1")
        return list(range(1, value + 1))
    if value == []:
        raise ValueError("needs at least one seed, e.g. [1], or a count such as 3")
    return value


def _at(value: Any) -> Any:
    return value if value == "longest" else parse_duration(value)


_INT_OR_STRING = {
    "x-kubernetes-int-or-string": True,
    "anyOf": [{"type": "integer"}, {"type": "string"}],
}


def _quantity(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


# The JSON schemas below are what the CRD shows: Kubernetes knows int-or-string, but has no
# way to say "a list or a count", so seeds are left free-form there and checked here.
Number = Annotated[int | float, BeforeValidator(_number), WithJsonSchema({"type": "number"})]
Budget = Annotated[int, BeforeValidator(parse_duration), WithJsonSchema(_INT_OR_STRING)]
CodedLevel = Annotated[int, Field(ge=-1, le=1)]
Seeds = Annotated[
    list[int],
    BeforeValidator(_seeds),
    WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True}),
]
At = Annotated[int | Literal["longest"], BeforeValidator(_at), WithJsonSchema(_INT_OR_STRING)]
Quantity = Annotated[str, BeforeValidator(_quantity)]
DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)]
Code = Annotated[str, Field(pattern=r"^[A-HJ-Z]$")]
FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


class _Model(BaseModel):
    """Shared config: camelCase in YAML, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
    )


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------------------------
# Factors and design


class Factor(_Model):
    """A hyperparameter varied at two coded levels, low (-1) and high (+1), plus a centre (0)."""

    name: str = Field(
        pattern=r"^[A-Z][A-Z0-9_]*$",
        description="Hyperparameter the trainer reads, e.g. DEPTH or MATRIX_LR.",
    )
    code: Code | None = Field(
        default=None,
        description=(
            "One-letter code used in designs and generators (A, B, ...; I is reserved for the "
            "identity). Defaults to the next letter by position."
        ),
    )
    low: Number = Field(description="Value at coded level -1.")
    high: Number = Field(description="Value at coded level +1; must differ from low.")
    centre: Number | None = Field(
        default=None,
        description=(
            "Value at coded level 0, used by bridge points. Defaults to the midpoint of low "
            "and high (geometric for log scale, rounded for whole-number factors)."
        ),
    )
    scale: Literal["integer", "float", "log"] = Field(
        default="float",
        description=(
            "integer: whole-number values; float: linear between levels; log: linear in "
            "log space, positive values only, whole numbers when low and high are."
        ),
    )

    @model_validator(mode="after")
    def _levels_fit_scale(self, info: ValidationInfo) -> Factor:
        if _lenient(info):
            return self
        problems: list[tuple[str, str]] = []
        levels = {"low": self.low, "high": self.high, "centre": self.centre}
        for field, value in levels.items():
            if value is None:
                continue
            if self.scale == "integer" and value != int(value):
                problems.append((field, f"an integer factor needs a whole number (got {value})"))
            if self.scale == "log" and value <= 0:
                problems.append((field, f"a log-scale factor needs a positive value (got {value})"))
        if self.low == self.high:
            problems.append(("high", f"must differ from low (both {_fmt(self.high)})"))
        elif self.centre is not None and not min(self.low, self.high) < self.centre < max(
            self.low, self.high
        ):
            problems.append(
                (
                    "centre",
                    f"must lie strictly between low and high ({_fmt(self.low)} and "
                    f"{_fmt(self.high)}; got {_fmt(self.centre)})",
                )
            )
        _raise_if(problems)
        if self.scale == "integer":
            self.low, self.high = int(self.low), int(self.high)
            self.centre = None if self.centre is None else int(self.centre)
        return self

    @property
    def whole(self) -> bool:
        """Whether decoded values are whole numbers (integer scale, or log between two ints)."""
        return self.scale == "integer" or (
            self.scale == "log" and isinstance(self.low, int) and isinstance(self.high, int)
        )

    @property
    def centre_value(self) -> int | float:
        """The level-0 value: declared centre, else the (geometric for log) midpoint."""
        if self.centre is not None:
            return self.centre
        if self.scale == "log":
            middle = math.sqrt(self.low * self.high)
        else:
            middle = (self.low + self.high) / 2
        return math.floor(middle + 0.5) if self.whole else middle

    def decode(self, level: float) -> int | float:
        """Real value at a coded level in [-1, +1]; the project's one decoder of levels.

        -1, 0 and +1 give low, `centre_value` and high exactly. A level in between moves
        linearly (in log space for log scale) from the centre towards high (level > 0) or low
        (level < 0), so a centre off the midpoint still decodes exactly at 0: ASPECT_RATIO
        48/64/72 gives 68 at +0.5, not the 66 of one line from low to high. Whole-number
        factors round to the nearest integer, halves up: an integer 6..9 has centre 8.
        """
        if not -1 <= level <= 1:
            raise ValueError(f"coded level must lie in [-1, +1] (got {level})")
        if level in (-1, 0, 1):
            value = {-1: self.low, 0: self.centre_value, 1: self.high}[int(level)]
        else:
            end = self.high if level > 0 else self.low
            if self.scale == "log":
                centre_log = math.log(self.centre_value)
                value = math.exp(centre_log + abs(level) * (math.log(end) - centre_log))
            else:
                value = self.centre_value + abs(level) * (end - self.centre_value)
        return math.floor(value + 0.5) if self.whole else value


class DesignSpec(_Model):
    """Which two-level factorial the screen and seeded screens run."""

    type: Literal["full", "fractional"] = Field(
        default="full",
        description=(
            "full: every 2^k combination; fractional: a regular 2^(k-p) fraction given by "
            "generators or by a requested resolution."
        ),
    )
    generators: list[str] = Field(
        default_factory=list,
        description=(
            "For type fractional: one generator per generated factor, e.g. E=ABCD (the paper's "
            "2^(5-1), resolution V). Letters are factor codes."
        ),
    )
    resolution: int | None = Field(
        default=None,
        ge=3,
        description=(
            "For type fractional without generators: the smallest fraction of at least this "
            "resolution (III and up), with minimum-aberration generators."
        ),
    )

    @model_validator(mode="after")
    def _one_way_to_fraction(self) -> DesignSpec:
        problems: list[tuple[str, str]] = []
        if self.type == "full":
            if self.generators:
                problems.append(("generators", f"only for type fractional (got {self.generators})"))
            if self.resolution is not None:
                problems.append(("resolution", f"only for type fractional (got {self.resolution})"))
        elif bool(self.generators) == (self.resolution is not None):
            problems.append(
                ("type", "fractional needs exactly one of generators (e.g. [E=ABCD]) or resolution")
            )
        _raise_if(problems)
        return self


class Metric(_Model):
    """The response every analysis ranks and estimates effects on."""

    name: str = Field(default="val_bpb", description="Column of the run record to analyse.")
    goal: Literal["minimize", "maximize"] = Field(
        default="minimize", description="Whether lower (minimize) or higher values are better."
    )


# --------------------------------------------------------------------------------------------
# Stages


class Selection(_Model):
    """Where a stage's anchors come from: conditions chosen from an earlier stage's results."""

    from_: str | None = Field(
        default=None,
        alias="from",
        description="Earlier stage whose results are ranked. Not used by rule control.",
    )
    rule: SelectionRule = Field(
        description=(
            "best / worst: the k conditions with the best / worst mean at budget `at`; "
            "bridge: the k best, with `factors` moved to their centre level; control: the "
            "predeclared coded `levels`; greedy-winner / random-winner / halving-winner: the "
            "incumbent of a greedy / random / halving stage."
        )
    )
    k: int = Field(default=1, ge=1, description="How many conditions this rule picks.")
    at: At = Field(
        default="longest",
        description="Budget whose means rank the conditions: longest, or a budget such as 10m.",
    )
    among: list[str] = Field(
        default_factory=list,
        description=(
            "Rank only the source stage's anchors with these roles (e.g. [bridge] picks the "
            "best bridge point). Empty: all its conditions."
        ),
    )
    factors: list[Code] = Field(
        default_factory=list,
        description="For rule bridge: codes of the factors moved to their centre level.",
    )
    levels: dict[Code, CodedLevel] = Field(
        default_factory=dict,
        description=(
            "For rule control: the predeclared condition, a coded level (-1, 0, +1) for "
            "every factor, e.g. {A: 1, B: -1, C: -1, D: 1, E: 1}."
        ),
    )
    role: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_-]*$",
        description=(
            "Name of the chosen anchors in reports and status (default: the rule); with k > 1 "
            "they are numbered role-1, role-2, ..."
        ),
    )

    @model_validator(mode="after")
    def _fields_fit_rule(self, info: ValidationInfo) -> Selection:
        if _lenient(info):
            return self
        problems: list[tuple[str, str]] = []
        if self.rule == "control":
            if not self.levels:
                problems.append(("levels", "rule control needs the coded level of every factor"))
            if self.from_ is not None:
                problems.append(
                    ("from", f"rule control takes no source stage (got {self.from_!r})")
                )
        else:
            if self.from_ is None:
                problems.append(("from", f"rule {self.rule} needs the stage it selects from"))
            if self.levels:
                problems.append(("levels", f"only for rule control (rule is {self.rule})"))
        if self.rule == "bridge" and not self.factors:
            problems.append(("factors", "rule bridge needs the codes of the factors to centre"))
        if self.rule != "bridge" and self.factors:
            problems.append(("factors", f"only for rule bridge (rule is {self.rule})"))
        _raise_if(problems)
        return self


# Fields a stage may set (to other than their default) only when its kind uses them.
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "select": ("confirm", "bridge", "long-horizon"),
    "fix": ("followup",),
    "interactions": ("followup",),
    "batches": ("random",),
    "draws_per_batch": ("random",),
    "draw_seed": ("random", "halving"),
    "max_runs": ("greedy",),
    "start": ("greedy",),
    "eta": ("halving",),
    "initial": ("halving",),
}


class Stage(_Model):
    """One step of the programme: which conditions run, at which budgets, seeds and pools."""

    name: DnsLabel = Field(
        description="Stage name (lowercase, digits, '-'); used in run ids and storage keys."
    )
    kind: StageKind = Field(
        description=(
            "screen: the spec's design; followup: full factorial on the factors left free by "
            "`fix`; confirm / bridge / long-horizon: anchors from `select`; random: "
            "matched-cost random draws from the full 2^k space; greedy: one-factor-at-a-time "
            "hill climbing; halving: successive halving over the full 2^k space, one rung "
            "per budget."
        )
    )
    budgets: list[Budget] = Field(
        min_length=1,
        description=(
            "Training wall-clock budgets, shortest first, e.g. [120s, 5m, 10m]; every "
            "condition runs at each (halving: the rungs, each running the survivors of the "
            "one before)."
        ),
    )
    seeds: Seeds = Field(
        default_factory=lambda: [1],
        description="RUN_SEED values, e.g. [1, 2, 3], or a count n meaning seeds 1..n.",
    )
    pools: list[str] = Field(
        default_factory=list,
        description=(
            "GPU pools to run on; every run repeats on each pool listed. Empty: the first "
            "pool of spec.pools."
        ),
    )
    select: list[Selection] = Field(
        default_factory=list,
        description="For confirm, bridge and long-horizon stages: the rules that pick anchors.",
    )
    fix: dict[Code, CodedLevel] = Field(
        default_factory=dict,
        description="For followup: factors held at a coded level, e.g. {D: -1}.",
    )
    interactions: bool = Field(
        default=False,
        description="For followup: also estimate the two-factor interactions of the free factors.",
    )
    batches: int = Field(default=5, ge=1, description="For random: independent search batches.")
    draws_per_batch: int = Field(
        default=16, ge=1, description="For random: conditions drawn per batch (with replacement)."
    )
    draw_seed: int = Field(
        default=0, description="For random and halving: seed of the condition draws."
    )
    max_runs: int | None = Field(
        default=None, ge=1, description="For greedy: runs per budget before the climb stops."
    )
    start: dict[Code, CodedLevel] = Field(
        default_factory=dict,
        description="For greedy: coded starting levels; factors not named start at -1.",
    )
    eta: int = Field(
        default=3,
        ge=2,
        description=(
            "For halving: each rung keeps the best 1/eta of its configurations (rounded up, "
            "at least one) for the next budget."
        ),
    )
    initial: int | None = Field(
        default=None,
        ge=1,
        description=(
            "For halving: configurations run at the first budget, drawn without replacement "
            "from the full 2^k space (seeded by drawSeed). Empty: all 2^k."
        ),
    )

    @model_validator(mode="after")
    def _fields_fit_kind(self, info: ValidationInfo) -> Stage:
        if _lenient(info):
            return self
        problems: list[tuple[str, str]] = []
        for later, (earlier, current) in enumerate(itertools.pairwise(self.budgets), 1):
            if current <= earlier:
                problems.append(
                    (
                        f"budgets[{later}]",
                        f"budgets must increase within a stage (got {current} s after {earlier} s)",
                    )
                )
        for index, seed in enumerate(self.seeds):
            if seed < 0:
                problems.append((f"seeds[{index}]", f"seeds are RUN_SEED values >= 0 (got {seed})"))
            elif seed in self.seeds[:index]:
                problems.append((f"seeds[{index}]", f"duplicate seed {seed}"))
        for field, kinds in _KIND_FIELDS.items():
            default = Stage.model_fields[field].get_default(call_default_factory=True)
            if getattr(self, field) != default and self.kind not in kinds:
                alias = to_camel(field)
                problems.append(
                    (alias, f"only for kind {' or '.join(kinds)} (stage kind is {self.kind})")
                )
        if self.kind in _KIND_FIELDS["select"] and not self.select:
            problems.append(("select", f"a {self.kind} stage needs at least one selection rule"))
        if self.kind == "followup" and not self.fix:
            problems.append(("fix", "a followup stage needs the factors it holds, e.g. {D: -1}"))
        if self.kind == "greedy" and self.max_runs is None:
            problems.append(("maxRuns", "a greedy stage needs its run limit per budget"))
        if self.kind == "halving" and len(self.budgets) < 2:
            problems.append(
                ("budgets", "a halving stage needs at least two budgets, one per rung (got 1)")
            )
        _raise_if(problems)
        return self


# --------------------------------------------------------------------------------------------
# Pools, storage, trainer, limits


class Toleration(_Model):
    """A Kubernetes toleration, so runs may land on tainted GPU nodes."""

    key: str | None = Field(default=None, description="Taint key; empty with Exists matches all.")
    operator: Literal["Equal", "Exists"] = Field(
        default="Equal", description="Equal matches key and value; Exists matches the key."
    )
    value: str | None = Field(default=None, description="Taint value for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty tolerates all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, description="For NoExecute: how long a run may stay after the taint."
    )


class Pool(_Model):
    """A set of identical accelerators; runs on different pools are analysed separately."""

    name: DnsLabel = Field(description="Pool name, e.g. a100; stages refer to it.")
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Node labels a run's Pod requires, e.g. "
            "{nvidia.com/gpu.product: NVIDIA-A100-SXM4-40GB}."
        ),
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Taints a run's Pod tolerates."
    )
    gpus: int = Field(default=1, ge=0, description="GPUs per run; 0 runs on CPU.")
    gpu_resource: str = Field(
        default="nvidia.com/gpu", description="Extended resource name the GPUs are requested as."
    )
    peak_tflops: float | None = Field(
        default=None,
        gt=0,
        description="Peak dense bf16 TFLOP/s per GPU, for model FLOPs utilisation (MFU).",
    )
    queue_name: DnsLabel | None = Field(
        default=None,
        description=(
            "Kueue LocalQueue the pool's Jobs are submitted to (label "
            "kueue.x-k8s.io/queue-name; created suspended for Kueue to admit); empty: none."
        ),
    )


class SecretRef(_Model):
    """A Kubernetes Secret holding the S3 credentials."""

    name: str = Field(description="Secret name, in the study's namespace.")
    access_key_key: str = Field(
        default="AWS_ACCESS_KEY_ID", description="Key of the access key id in the Secret."
    )
    secret_key_key: str = Field(
        default="AWS_SECRET_ACCESS_KEY", description="Key of the secret access key in the Secret."
    )


class S3Storage(_Model):
    """An S3-compatible bucket (AWS, MinIO, SeaweedFS, ...)."""

    endpoint: str | None = Field(
        default=None, description="Endpoint URL, e.g. http://seaweedfs:8333; empty: AWS."
    )
    bucket: str = Field(min_length=3, description="Bucket name.")
    prefix: str = Field(default="", description="Key prefix under which each study is stored.")
    region: str | None = Field(default=None, description="Region, e.g. us-east-1.")
    secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret with credentials; empty: the environment's AWS_* variables.",
    )


class LocalStorage(_Model):
    """A directory on the machine running `stagescreen run`."""

    path: str = Field(min_length=1, description="Directory, relative to the working directory.")


class Storage(_Model):
    """Where run records, curves, checkpoints and stage outcomes are kept; exactly one kind."""

    s3: S3Storage | None = Field(default=None, description="An S3-compatible bucket.")
    local: LocalStorage | None = Field(
        default=None, description="A local directory (only for `stagescreen run`)."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Storage:
        if (self.s3 is None) == (self.local is None):
            given = "both" if self.s3 else "neither"
            raise _Problems([("", f"set exactly one of s3 or local (got {given})")])
        return self

    def root(self) -> str:
        """The store every study lives under (its keys start with the study's name), in the
        form `stagescreen.store.open_store` takes."""
        if self.s3 is not None:
            return f"s3://{self.s3.bucket}/{self.s3.prefix.strip('/')}".rstrip("/")
        assert self.local is not None
        return self.local.path

    def uri(self, study: str) -> str:
        """Where this study's keys live, in the form `stagescreen.store.open_store` takes."""
        if self.s3 is not None:
            return f"{self.root()}/{study}"
        return str(Path(self.root()) / study)


class Resources(_Model):
    """Kubernetes resource requests and limits for each training Pod (besides the GPUs)."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="Minimum resources, e.g. {cpu: '8', memory: 64Gi}."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="Maximum resources, e.g. {memory: 96Gi}."
    )


class Trainer(_Model):
    """The training program every run executes, and what stays fixed across conditions."""

    image: str = Field(
        default="stagescreen-trainer:dev",
        description="Trainer container image (Dockerfile.trainer); unused by local runs.",
    )
    hyperparameters: FreeForm = Field(
        default_factory=dict,
        description=(
            "Hyperparameters fixed for every run, by trainer name, e.g. {HEAD_DIM: 128, "
            "SEQ_LEN: 2048}; factors must not appear here."
        ),
    )
    data_uri: str | None = Field(
        default=None, description="Training and validation shards (DATA_URI), local path or s3://."
    )
    tokenizer_uri: str | None = Field(
        default=None, description="Tokenizer artifacts (TOKENIZER_URI), local path or s3://."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for every run."
    )
    resources: Resources = Field(
        default_factory=Resources, description="CPU and memory for each training Pod."
    )

    @model_validator(mode="after")
    def _hyperparameters_are_variables(self) -> Trainer:
        problems = []
        for name, value in self.hyperparameters.items():
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                problems.append(
                    (f"hyperparameters.{name}", "names are trainer variables such as SEQ_LEN")
                )
            elif not isinstance(value, str | int | float | bool):
                problems.append(
                    (
                        f"hyperparameters.{name}",
                        f"must be a string, number or boolean (got {type(value).__name__})",
                    )
                )
        _raise_if(problems)
        return self


class Limits(_Model):
    """Guards on what the study may spend."""

    parallelism: int = Field(default=1, ge=1, description="Runs executing at the same time.")
    max_failed_runs: int = Field(
        default=3, ge=0, description="Failed runs tolerated before the study fails."
    )
    max_gpu_hours: float | None = Field(
        default=None, gt=0, description="GPU-hours after which no new run starts; empty: no cap."
    )


# --------------------------------------------------------------------------------------------
# The spec and the resource


class StudySpec(_Model):
    """What to screen, how, and where."""

    factors: list[Factor] = Field(
        min_length=1, max_length=len(FACTOR_LETTERS), description="The hyperparameters screened."
    )
    design: DesignSpec = Field(
        default_factory=DesignSpec, description="The two-level design of screen stages."
    )
    metric: Metric = Field(default_factory=Metric, description="The response analysed.")
    stages: list[Stage] = Field(
        min_length=1,
        description="The programme, in order; a stage may select anchors from earlier ones.",
    )
    pools: list[Pool] = Field(
        min_length=1, description="Accelerator pools the stages run on; the first is the default."
    )
    storage: Storage = Field(
        default_factory=lambda: Storage(local=LocalStorage(path="./runs")),
        description="Where results are stored. Default: the local directory ./runs.",
    )
    trainer: Trainer = Field(default_factory=Trainer, description="The training program.")
    limits: Limits = Field(default_factory=Limits, description="Spending guards.")

    @model_validator(mode="after")
    def _cross_checks(self) -> StudySpec:
        _raise_if(_cross_problems(self.factors, self.stages, self.pools, self.design, self.trainer))
        return self

    @property
    def codes(self) -> list[str]:
        """Factor codes in spec order."""
        return [factor.code or "" for factor in self.factors]

    def factor(self, code_or_name: str) -> Factor:
        """The factor with this code (A) or hyperparameter name (DEPTH)."""
        for factor in self.factors:
            if code_or_name in (factor.code, factor.name):
                return factor
        raise KeyError(f"no factor {code_or_name!r} (codes: {', '.join(self.codes)})")

    def stage(self, name: str) -> Stage:
        """The stage with this name."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage {name!r} (stages: {', '.join(s.name for s in self.stages)})")

    def build_design(self) -> Any:
        """The screen design as a `stagescreen.design.Design`."""
        return _screen_design(self.design, self.codes)


def _screen_design(spec: DesignSpec, codes: list[str]) -> Any:
    from stagescreen import design

    if spec.type == "full":
        return design.full_factorial(codes)
    if spec.generators:
        return design.fractional_factorial(codes, spec.generators)
    assert spec.resolution is not None
    return design.by_resolution(codes, spec.resolution)


class Metadata(BaseModel):
    """Kubernetes object metadata; fields the API server adds are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=40,
        description="Study name (lowercase, digits, '-'); prefixes Job names and storage keys.",
    )
    namespace: str | None = Field(default=None, description="Kubernetes namespace.")
    labels: dict[str, str] = Field(default_factory=dict, description="Kubernetes labels.")


class Study(_Model):
    """A ScreeningStudy: staged factorial screening of a pretraining recipe."""

    api_version: Literal["stagescreen.dev/v1alpha1"] = Field(
        description="API group and version: stagescreen.dev/v1alpha1."
    )
    kind: Literal["ScreeningStudy"] = Field(description="Object kind: ScreeningStudy.")
    metadata: Metadata = Field(description="Kubernetes metadata; the name names the study.")
    spec: StudySpec = Field(description="The study: factors, design, stages, pools, storage.")
    status: dict[str, Any] | None = Field(
        default=None,
        exclude=True,
        description="Progress, written by the operator; `stagescreen run` ignores it.",
    )

    @property
    def name(self) -> str:
        """The study name."""
        return self.metadata.name


# --------------------------------------------------------------------------------------------
# Cross-field checks: each returns (path relative to spec, message) pairs


def _cross_problems(
    factors: list[Factor] | None,
    stages: list[Stage],
    pools: list[Pool] | None,
    design: DesignSpec | None,
    trainer: Trainer | None,
) -> list[tuple[str, str]]:
    """Checks across sections; factors, pools, design or trainer are None when they did not
    parse, and then the checks that need them are left out rather than guessed at."""
    pool_check = _check_pools(pools or [])
    pool_names = [pool.name for pool in pools or []]
    if factors is None:
        return [*pool_check, *_check_stages(stages, None, pool_names)]
    for factor in factors:
        if factor.code is None:
            used = {f.code for f in factors}
            factor.code = next(letter for letter in FACTOR_LETTERS if letter not in used)
    codes = [factor.code or "" for factor in factors]
    factor_problems = _check_factors(factors)
    # A design over duplicate codes would only repeat the factor problem in other words.
    design_problems = (
        _check_design(design, codes) if design is not None and not factor_problems else []
    )
    screen_runs = (
        len(_screen_design(design, codes).matrix)
        if design is not None and not factor_problems and not design_problems
        else None
    )
    return [
        *factor_problems,
        *design_problems,
        *pool_check,
        *_check_stages(stages, codes, pool_names, screen_runs),
        *(_check_trainer(trainer, factors) if trainer is not None else []),
        *(
            trainer_contract.problems(factors, stages, trainer)
            if trainer is not None and not factor_problems
            else []
        ),
    ]


def _check_factors(factors: list[Factor]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    first_name: dict[str, int] = {}
    first_code: dict[str, int] = {}
    for index, factor in enumerate(factors):
        if factor.name in first_name:
            other = first_name[factor.name]
            problems.append(
                (f"factors[{index}].name", f"duplicate of factors[{other}].name ({factor.name!r})")
            )
        first_name.setdefault(factor.name, index)
        code = factor.code or ""
        if code in first_code:
            other = first_code[code]
            problems.append(
                (
                    f"factors[{index}].code",
                    f"{code!r} is already the code of factors[{other}] "
                    f"({factors[other].name}); each factor needs its own letter",
                )
            )
        first_code.setdefault(code, index)
    return problems


def _check_design(design: DesignSpec, codes: list[str]) -> list[tuple[str, str]]:
    """Build-time problems of the screen design, at the field that causes each."""
    from stagescreen import design as designs

    if design.type == "full":
        return []
    if design.resolution is not None:
        try:
            designs.by_resolution(codes, design.resolution)
        except designs.DesignError as error:
            return [("design.resolution", str(error))]
        return []
    return [
        (
            "design.generators" if problem.index is None else f"design.generators[{problem.index}]",
            str(problem),
        )
        for problem in designs.generator_problems(codes, design.generators)
    ]


def _check_pools(pools: list[Pool]) -> list[tuple[str, str]]:
    seen: dict[str, int] = {}
    problems: list[tuple[str, str]] = []
    for index, pool in enumerate(pools):
        if pool.name in seen:
            problems.append(
                (f"pools[{index}].name", f"duplicate of pools[{seen[pool.name]}] ({pool.name!r})")
            )
        seen.setdefault(pool.name, index)
    return problems


def _check_codes(path: str, named: Iterable[str], codes: list[str] | None) -> list[tuple[str, str]]:
    if codes is None:
        return []
    unknown = [code for code in named if code not in codes]
    if not unknown:
        return []
    listing = ", ".join(dict.fromkeys(codes))
    return [(path, f"unknown factor code {', '.join(unknown)} (codes: {listing})")]


def _check_stages(
    stages: list[Stage],
    codes: list[str] | None,
    pool_names: list[str],
    screen_runs: int | None = None,
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    position: dict[str, int] = {}
    for index, stage in enumerate(stages):
        if stage.name in position:
            problems.append(
                (
                    f"stages[{index}].name",
                    f"duplicate of stages[{position[stage.name]}] ({stage.name!r})",
                )
            )
        position.setdefault(stage.name, index)
    for index, stage in enumerate(stages):
        base = f"stages[{index}]"
        for at, pool in enumerate(stage.pools):
            if pool not in pool_names:
                problems.append(
                    (
                        f"{base}.pools[{at}]",
                        f"no pool named {pool!r} (declared: {', '.join(pool_names)})",
                    )
                )
        problems += _check_codes(f"{base}.fix", stage.fix, codes)
        problems += _check_codes(f"{base}.start", stage.start, codes)
        if codes is not None and stage.fix and set(stage.fix) >= set(codes):
            problems.append((f"{base}.fix", "fixes every factor; leave at least one free"))
        if stage.kind == "halving" and codes is not None and stage.initial is not None:
            space = 2 ** len(codes)
            if stage.initial > space:
                problems.append(
                    (
                        f"{base}.initial",
                        f"more configurations than the full 2^{len(codes)} space holds "
                        f"({space}; got {stage.initial})",
                    )
                )
        for number, selection in enumerate(stage.select):
            problems += _check_selection(
                f"{base}.select[{number}]", selection, index, stages, position, codes
            )
            problems += _check_supply(
                f"{base}.select[{number}].k", selection, stages, position, codes, screen_runs
            )
    return problems


def _check_selection(
    path: str,
    selection: Selection,
    index: int,
    stages: list[Stage],
    position: dict[str, int],
    codes: list[str] | None,
) -> list[tuple[str, str]]:
    problems = _check_codes(f"{path}.factors", selection.factors, codes)
    problems += _check_codes(f"{path}.levels", selection.levels, codes)
    if selection.rule == "control" and codes is not None and not problems:
        missing = [code for code in codes if code not in selection.levels]
        if missing:
            problems.append(
                (
                    f"{path}.levels",
                    f"missing factor {', '.join(missing)}; a control gives every factor a level",
                )
            )
    opposite = {"best": "worst", "worst": "best"}.get(selection.rule)
    if opposite and selection.role and re.split(r"[-_ ]", selection.role)[0] == opposite:
        problems.append(
            (
                f"{path}.role",
                f"a {selection.rule} rule labelled {selection.role!r} would read as the "
                f"{opposite} condition in every report; name it {selection.rule} or neutrally",
            )
        )
    source_name = selection.from_
    if source_name is None:
        return problems
    if source_name not in position:
        names = ", ".join(stage.name for stage in stages)
        return [*problems, (f"{path}.from", f"no stage named {source_name!r} (stages: {names})")]
    source_index = position[source_name]
    if source_index >= index:
        where = (
            "is this stage" if source_index == index else f"comes later (stages[{source_index}])"
        )
        earlier = ", ".join(stage.name for stage in stages[:index]) or "none"
        return [
            *problems,
            (
                f"{path}.from",
                f"stage {source_name!r} {where}; a selection can only use earlier stages "
                f"({earlier})",
            ),
        ]
    source = stages[source_index]
    needs = WINNER_RULES.get(selection.rule)
    if needs and source.kind != needs:
        problems.append(
            (
                f"{path}.from",
                f"rule {selection.rule} needs a {needs} stage ({source_name!r} is {source.kind})",
            )
        )
    if selection.among:
        roles = _roles_of(source, stages)
        unknown = [role for role in selection.among if role not in roles]
        if unknown:
            offered = (
                f"its anchors' roles: {', '.join(sorted(roles))}"
                if roles
                else "its conditions have no roles (only anchor stages name roles)"
            )
            problems.append(
                (
                    f"{path}.among",
                    f"stage {source_name!r} has no anchors with role {', '.join(unknown)} "
                    f"({offered})",
                )
            )
    if selection.at != "longest" and selection.at not in source.budgets:
        budgets = ", ".join(f"{budget} s" for budget in source.budgets)
        problems.append(
            (
                f"{path}.at",
                f"{selection.at} s is not a budget of stage {source_name!r} (its budgets: "
                f"{budgets}, or longest)",
            )
        )
    return problems


def _check_supply(
    path: str,
    selection: Selection,
    stages: list[Stage],
    position: dict[str, int],
    codes: list[str] | None,
    screen_runs: int | None,
) -> list[tuple[str, str]]:
    """A rule cannot pick more conditions than its source ranks: `plan` would price k
    anchors and the stage would run fewer."""
    if selection.rule not in ("best", "worst", "bridge") or selection.from_ not in position:
        return []
    source = stages[position[selection.from_ or ""]]
    supply: int | None = None
    if source.kind == "screen":
        supply = screen_runs
    elif source.kind == "followup" and codes is not None:
        supply = 2 ** len([code for code in codes if code not in source.fix])
    elif source.kind == "random":
        supply = source.batches * source.draws_per_batch
    elif source.select:
        roles = selection.among
        if not set(roles) <= _roles_of(source, stages):
            return []  # the unknown role is reported on `among`
        supply = sum(
            1 if rule.rule == "control" or rule.rule in WINNER_RULES else rule.k
            for rule in source.select
            if not roles or (rule.role or rule.rule) in roles
        )
    if supply is None or selection.k <= supply:
        return []
    among = f" with roles {', '.join(selection.among)}" if selection.among else ""
    return [
        (
            path,
            f"k={selection.k} but stage {source.name!r} ranks at most {supply} conditions"
            f"{among}; lower k to {supply} or less",
        )
    ]


def _roles_of(stage: Stage, stages: list[Stage]) -> set[str]:
    """The roles a stage's anchors can carry: each rule's role (default its rule name), and
    for best/worst rules without one, the roles they inherit from their own source."""
    roles: set[str] = set()
    by_name = {other.name: other for other in stages}
    for selection in stage.select:
        if selection.role is None and selection.rule in ("best", "worst"):
            source = by_name.get(selection.from_ or "")
            if source is not None and source is not stage and source.select:
                roles |= _roles_of(source, stages)
        roles.add(selection.role or selection.rule)
    return roles


def _check_trainer(trainer: Trainer, factors: list[Factor]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for index, factor in enumerate(factors):
        if factor.name in trainer.hyperparameters:
            problems.append(
                (
                    f"trainer.hyperparameters.{factor.name}",
                    f"{factor.name} is a factor (factors[{index}]); remove it from the fixed "
                    "hyperparameters",
                )
            )
    return problems


# --------------------------------------------------------------------------------------------
# Loading


def parse_study(data: Any) -> Study:
    """A validated Study from already-parsed YAML/JSON (e.g. the body kopf hands over)."""
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        raise SpecError([Problem("(document)", f"expected a ScreeningStudy mapping (got {kind})")])
    try:
        return Study.model_validate(data)
    except ValidationError as error:
        problems = _problems_from(error)
    raise SpecError(problems + _cross_problems_of_parts(data.get("spec"), problems))


def _cross_problems_of_parts(spec: Any, known: list[Problem]) -> list[Problem]:
    """Cross-section checks of a spec whose other sections failed, so one pass shows all.

    They need every stage and pool to parse; checks on sections that did not are left out
    rather than guessed at, and nothing already reported is repeated.
    """
    if not isinstance(spec, Mapping):
        return []
    sections: dict[str, Any] = {
        "factors": list[Factor],
        "stages": list[Stage],
        "pools": list[Pool],
        "design": DesignSpec,
        "trainer": Trainer,
    }
    parts: dict[str, Any] = {}
    for field, shape in sections.items():
        value = spec.get(field)
        if value is None and field in ("design", "trainer"):
            value = {}
        parts[field] = _salvage(TypeAdapter(shape), value)
    if parts["stages"] is None or parts["pools"] is None:
        # Stage checks need every stage and pool; the sections that parsed are still checked.
        parts["stages"], parts["pools"] = [], None
    try:
        cross = _cross_problems(**parts)
    except (ValueError, KeyError, TypeError, AttributeError):
        # Leniently parsed parts may break what the checks assume; the problems already
        # found still stand and name the part to fix first.
        return []
    found = [Problem(_path(("spec", *_split(sub))), message) for sub, message in cross]
    # A field already reported keeps its first message: the trainer's view of a value the
    # spec itself rejects (a log-scale level of 0) would only repeat it in other words.
    # A field dropped to salvage its section (`levels.A`) must not reappear as missing from
    # its parent (`levels: missing factor A`): a problem at or above a reported path is left.
    reported = {problem.path for problem in known}
    return [
        problem
        for problem in found
        if not any(
            path == problem.path or path.startswith((f"{problem.path}.", f"{problem.path}["))
            for path in reported
        )
    ]


def _salvage(adapter: TypeAdapter[Any], value: Any) -> Any:
    """`value` parsed with the fields that fail dropped (None if that cannot parse), so a
    type error in one field does not hide the cross-section problems of the others."""
    value = copy.deepcopy(value)
    for _ in range(5):
        try:
            return adapter.validate_python(value, context=LENIENT)
        except ValidationError as error:
            dropped = False
            for item in error.errors():
                loc = tuple(item["loc"])
                if item["type"] == "missing" or len(loc) < 2:
                    continue
                container = value
                try:
                    for part in loc[:-1]:
                        container = container[part]
                    if isinstance(container, dict) and loc[-1] in container:
                        del container[loc[-1]]
                        dropped = True
                except (KeyError, IndexError, TypeError):
                    continue
            if not dropped:
                return None
    return None


def load_study(path_or_text: str | Path) -> Study:
    """Read and validate a study from a file path, or from YAML text (any str with a newline).

    Raises SpecError naming the file, the YAML line and column, or each bad field.
    """
    if isinstance(path_or_text, Path) or "\n" not in path_or_text:
        path = Path(path_or_text)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError([Problem(str(path), "no such file")]) from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
            raise SpecError([Problem(str(path), f"cannot read: {error}")]) from None
    else:
        text = path_or_text
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
        detail = f"{error.problem} ({error.context})" if error.context else f"{error.problem}"
        raise SpecError([Problem(where, f"YAML syntax error: {detail}")]) from None
    if len(documents) != 1:
        raise SpecError(
            [Problem("(document)", f"expected one YAML document (got {len(documents)})")]
        )
    return parse_study(documents[0])


def _path(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part:
            text += f".{part}" if text else part
    return text


def _problems_from(error: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for item in error.errors():
        loc = tuple(item["loc"])
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, _Problems):
            problems += [
                Problem(_path((*loc, *_split(sub))), message) for sub, message in cause.items
            ]
            continue
        problems.append(Problem(_path(loc) or "(document)", _message(item, loc)))
    return problems


def _split(sub: str) -> tuple[int | str, ...]:
    """`stages[2].select[0].from` -> ("stages", 2, "select", 0, "from")."""
    parts: list[int | str] = []
    for name, number in re.findall(r"([^.\[\]]+)|\[(\d+)\]", sub):
        parts.append(int(number) if number else name)
    return tuple(parts)


def _message(item: Any, loc: tuple[int | str, ...]) -> str:
    kind = item["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        accepted = _fields_at(loc[:-1])
        listing = f"; accepted: {', '.join(accepted)}" if accepted else ""
        return f"unknown field{listing}"
    message = str(item["msg"]).removeprefix("Value error, ")
    value = item.get("input")
    scalar = isinstance(value, str | int | float | bool) or value is None
    if scalar and f"(got {value!r})" not in message:
        message += f" (got {value!r})"
    return message


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The YAML field names of the model found at `loc`, for 'unknown field' messages."""
    current: Any = Study
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int) and get_origin(current) is list:
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            fields = {(f.alias or n): f for n, f in current.model_fields.items()}
            if part not in fields:
                return []
            current = fields[str(part)].annotation
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [field.alias or name for name, field in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            members = [arg for arg in get_args(annotation) if arg is not NoneType]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation
