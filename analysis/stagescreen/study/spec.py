"""The ScreeningStudy resource: what a researcher declares, read top to bottom.

One YAML file is both a Kubernetes object (`kubectl apply -f study.yaml`) and the input of
`stagescreen run study.yaml`. These pydantic models are the single source of every field's
documentation: the CRD schema (`stagescreen.study.crd`), `kubectl explain`, `docs/spec.md` and the
command line all render the descriptions written here.

Validation collects every problem at once and names each by its field path, the bad value
and what would be accepted (`spec.factors[2].high: must differ from low (both 0.03)`), so a
researcher fixes a file in one pass instead of one error per run.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from stagescreen import design as designs
from stagescreen.study.bounds import (
    MAX_BUDGET_S,
    MAX_BUDGETS,
    MAX_FACTORS,
    MAX_HYPERPARAMETERS,
    MAX_NAME,
    MAX_POOLS,
    MAX_SEEDS,
    MAX_SELECTIONS,
    MAX_STAGES,
    TooLarge,
)
from stagescreen.study.kube_rules import (
    DnsLabel,
    DnsSubdomain,
    EnvName,
    LabelValue,
    Namespace,
    PositiveQuantity,
    QualifiedName,
    Quantity,
    SecretKey,
    quantity_value,
)

API_VERSION = "stagescreen.dev/v1alpha1"
GROUP, VERSION = API_VERSION.split("/")
KIND = "ScreeningStudy"

# "I" is the identity word of a defining relation (I = ABCDE), so it never names a factor.
FACTOR_LETTERS = "ABCDEFGHJKLMNOPQRSTUVWXYZ"

SelectionRule = Literal[
    "best",
    "worst",
    "bridge",
    "predicted",
    "control",
    "greedy-winner",
    "random-winner",
    "halving-winner",
]

WINNER_RULES: dict[str, str] = {
    "greedy-winner": "greedy",
    "random-winner": "random",
    "halving-winner": "halving",
}
"""Rules that pick the one incumbent of a baseline stage, and the kind of stage each reads."""

RANKING_RULES = ("best", "worst", "bridge", "predicted")
"""Rules whose picks are ranked conditions of the source stage (k of them)."""

MODEL_RULES = ("predicted",)
"""Rules that read the source's fitted effects, so their source must be a screen or
follow-up (a kind that `fits_effects`)."""


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


STORED = {"stored": True}
"""Validation context of a spec StageScreen wrote itself (a study folder's spec.yaml): its
budgets are whole seconds, as the model holds them, where a person must write a unit."""


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


def _raise_if(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise _Problems(problems)


# --------------------------------------------------------------------------------------------
# Scalar types shared by several fields

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_CHARS = 32
"""A duration longer than this is no budget anyone writes; refused before it is read."""


def parse_duration(text: str | int) -> int:
    """Seconds in a budget written as `120s`, `10m`, `24h`, `1h30m`, or a plain number."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration such as 120s, 10m or 24h (got {text!r})")
    if isinstance(text, int | float):
        seconds: float = text
    elif isinstance(text, str):
        compact = text.strip().replace(" ", "")
        if len(compact) > _DURATION_CHARS:
            raise ValueError(
                f"a duration is at most {_DURATION_CHARS} characters, e.g. 1h30m "
                f"(got {len(compact)})"
            )
        if re.fullmatch(r"\d+(?:\.\d+)?", compact):
            seconds = float(compact)
        elif compact and re.fullmatch(rf"(?:{_DURATION_PART.pattern})+", compact):
            seconds = sum(
                float(number) * _UNIT_SECONDS[unit]
                for number, unit in _DURATION_PART.findall(compact)
            )
        else:
            raise ValueError(f"expected a duration such as 120s, 10m, 24h or 1h30m (got {text!r})")
    else:
        raise ValueError(f"expected a duration such as 120s, 10m or 24h (got {text!r})")
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValueError(f"a budget must be a finite number of seconds (got {text!r})")
    if seconds <= 0 or seconds != int(seconds):
        raise ValueError(f"a budget must be a positive whole number of seconds (got {text!r})")
    return int(seconds)


_YAML_RESOLVER = yaml.resolver.Resolver()
_YAML_NUMBERS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
"""How YAML (1.1, PyYAML's) types a plain scalar: a string it would read as a number had
to be quoted to stay text."""


def _number(value: Any) -> Any:
    """Keep YAML ints as ints, and read strings such as `3e-4` that YAML 1.1 leaves as text;
    infinities and NaN are no level (they break every decode and check after). A number in
    quotes (`low: '1'`), text only because it was quoted, is refused as categorical levels
    that are not text are: which of the two was meant is the writer's to say."""
    if isinstance(value, bool):
        raise ValueError("expected a number, e.g. 0.02")
    if isinstance(value, str):
        text = value.strip()
        if _YAML_RESOLVER.resolve(yaml.ScalarNode, text, (True, False)) in _YAML_NUMBERS:
            raise ValueError(
                f"a number is written without quotes: write {text}, or use levels: [a, b] "
                "for a categorical factor"
            )
        with contextlib.suppress(ValueError):
            value = float(text)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("expected a finite number, e.g. 0.02 (not inf or nan)")
        return value
    raise ValueError("expected a number, e.g. 0.02")


def _unit_required(value: Any, info: ValidationInfo) -> None:
    """A budget a person writes names its unit: a bare 2 read as seconds silently runs a
    study 60 times shorter than one who meant minutes expects."""
    bare = (isinstance(value, int | float) and not isinstance(value, bool)) or (
        isinstance(value, str) and re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", value) is not None
    )
    if bare and not _stored(info):
        number = str(value).strip()
        raise ValueError(f"a budget needs a unit: write {number}s or {number}m (got {value!r})")


def _budget(value: Any, info: ValidationInfo) -> int:
    """A budget in seconds, at most `MAX_BUDGET_S`; written with a unit (`_unit_required`)."""
    _unit_required(value, info)
    seconds = parse_duration(value)
    if seconds > MAX_BUDGET_S:
        raise TooLarge(seconds, MAX_BUDGET_S, "seconds per budget (7 days)", unit="seconds")
    return seconds


def _seeds(value: Any) -> Any:
    """A count n is seeds 1..n; the bound is checked before a count is expanded."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError("a seed count must be at least 1")
        if value > MAX_SEEDS:
            raise TooLarge(value, MAX_SEEDS, "seeds per stage")
        return list(range(1, value + 1))
    if value == []:
        raise ValueError("needs at least one seed, e.g. [1], or a count such as 3")
    if not isinstance(value, list):
        raise ValueError("expected a count (e.g. 3) or a list of seeds (e.g. [1, 2, 3])")
    if isinstance(value, list) and len(value) > MAX_SEEDS:
        raise TooLarge(len(value), MAX_SEEDS, "seeds per stage")
    return value


def _at_most(bound: int, what: str) -> BeforeValidator:
    """Refuses a list or map of more than `bound` entries before any entry is validated (a
    list field's `max_length` states the same bound in the CRD, as maxItems)."""

    def check(value: Any) -> Any:
        if isinstance(value, Sized) and not isinstance(value, str | bytes) and len(value) > bound:
            raise TooLarge(len(value), bound, what)
        return value

    return BeforeValidator(check)


def _at(value: Any, info: ValidationInfo) -> Any:
    if value == "longest":
        return value
    _unit_required(value, info)
    return parse_duration(value)


_INT_OR_STRING = {
    "x-kubernetes-int-or-string": True,
    "anyOf": [{"type": "integer"}, {"type": "string"}],
}


# The JSON schemas below are what the CRD shows: Kubernetes knows int-or-string, but has no
# way to say "a list or a count", so seeds are left free-form there and checked here.
Number = Annotated[int | float, BeforeValidator(_number), WithJsonSchema({"type": "number"})]
Budget = Annotated[int, BeforeValidator(_budget), WithJsonSchema(_INT_OR_STRING)]
CodedLevel = Annotated[int, Field(ge=-1, le=1)]
Seeds = Annotated[
    list[int],
    BeforeValidator(_seeds),
    WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True}),
]
At = Annotated[int | Literal["longest"], BeforeValidator(_at), WithJsonSchema(_INT_OR_STRING)]
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
        frozen=True,
    )


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------------------------
# Factors and design


class Factor(_Model):
    """A hyperparameter at coded levels -1/+1: numeric (low, high, centre 0) or categorical."""

    name: str = Field(
        pattern=r"^[A-Z][A-Z0-9_]*$",
        max_length=MAX_NAME,
        description="Hyperparameter the trainer reads, e.g. DEPTH or MATRIX_LR.",
    )
    code: Code | None = Field(
        default=None,
        description=(
            "One-letter code used in designs and generators (A, B, ...; I is reserved for the "
            "identity). Defaults to the next letter by position."
        ),
    )
    low: Number | None = Field(
        default=None, description="Value at coded level -1 (numeric factors; or give levels)."
    )
    high: Number | None = Field(
        default=None, description="Value at coded level +1; must differ from low."
    )
    levels: list[Annotated[str, Field(max_length=MAX_NAME)]] | None = Field(
        default=None,
        description=(
            "Categorical factor, instead of low/high: two distinct strings [a, b] passed to "
            "the trainer as written (e.g. [AdamW, Muon]); a is coded -1, b +1, so its effect "
            "reads b minus a. It has no centre: bridge points and level 0 refuse it."
        ),
    )
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
            "log space, positive values only, whole numbers when low and high are. Numeric "
            "factors only."
        ),
    )

    @field_validator("levels", mode="before")
    @classmethod
    def _levels_are_text(cls, levels: Any) -> Any:
        """YAML reads yes/no, on/off, true/false and numbers as other types than text: say
        how to write them as levels instead of "should be a valid string"."""
        if isinstance(levels, list) and any(not isinstance(level, str) for level in levels):
            raise ValueError(
                f"categorical levels are text, but YAML read {levels} as "
                f"{', '.join(sorted({type(level).__name__ for level in levels}))}: quote them, "
                'e.g. levels: ["yes", "no"] or ["1", "2"] (a numeric factor takes low and high)'
            )
        return levels

    @model_validator(mode="before")
    @classmethod
    def _whole_levels_as_int(cls, data: Any) -> Any:
        """An integer factor's levels written 6.0 are the int 6 (a fraction is refused after)."""
        if not isinstance(data, Mapping) or data.get("scale") != "integer":
            return data
        whole = {}
        for field in ("low", "high", "centre"):
            with contextlib.suppress(ValueError):
                value = _number(data.get(field))
                if isinstance(value, float) and value.is_integer():
                    whole[field] = int(value)
        return {**data, **whole}

    @model_validator(mode="after")
    def _levels_fit_scale(self, info: ValidationInfo) -> Factor:
        # The form (two levels, or low and high) counts even when lenient: every decode needs it.
        if self.levels is not None:
            shape = [p for p in self._categorical_problems() if p[0] == "levels"]
            _raise_if(shape if _lenient(info) else self._categorical_problems())
            return self
        if self.low is None or self.high is None:
            missing = (
                "low and high"
                if self.low is None and self.high is None
                else ("low" if self.low is None else "high")
            )
            raise _Problems(
                [
                    (
                        "low" if self.low is None else "high",
                        f"missing {missing}: a numeric factor gives low and high, a "
                        "categorical one levels: [a, b] instead",
                    )
                ]
            )
        if _lenient(info):
            return self
        problems: list[tuple[str, str]] = []
        values = {"low": self.low, "high": self.high, "centre": self.centre}
        for field, value in values.items():
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
        return self

    @model_serializer(mode="wrap")
    def _without_scale_when_categorical(
        self, handler: SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        """A categorical factor is written without the numeric default `scale: float`, so the
        spec a study stores reads back as valid (scale beside levels is refused)."""
        data: dict[str, Any] = handler(self)
        if self.levels is not None:
            data.pop("scale", None)
        return data

    def _categorical_problems(self) -> list[tuple[str, str]]:
        """Each mistake in a categorical factor, once, with the fix."""
        levels = self.levels or []
        problems: list[tuple[str, str]] = []
        given = [field for field in ("low", "high") if getattr(self, field) is not None]
        if given:
            problems.append(
                (
                    given[0],
                    f"give levels (categorical) or low/high (numeric), not both; remove "
                    f"{' and '.join(given)}",
                )
            )
        for field in ("centre", "scale"):
            if field in self.model_fields_set:
                problems.append(
                    (
                        field,
                        f"a categorical factor (levels {', '.join(levels)}) has no {field}; "
                        f"remove {field}",
                    )
                )
        if len(levels) != 2:
            problems.append(
                (
                    "levels",
                    f"a categorical factor takes exactly two levels (got {len(levels)}: "
                    f"{levels}); write levels: [a, b], e.g. [AdamW, Muon]",
                )
            )
        elif any(not level.strip() for level in levels):
            problems.append(("levels", f"each level needs a non-empty name (got {levels})"))
        elif levels[0] == levels[1]:
            problems.append(("levels", f"the two levels must differ (both {levels[0]!r})"))
        return problems

    @property
    def categorical(self) -> bool:
        """Whether the factor names two strings (`levels`) rather than two numbers."""
        return self.levels is not None

    def described(self) -> str:
        """`OPTIMIZER (levels AdamW, Muon)`: how messages name a categorical factor."""
        return f"{self.name} (levels {', '.join(self.levels or [])})"

    @property
    def whole(self) -> bool:
        """Whether decoded values are whole numbers (integer scale, or log between two ints)."""
        return self.scale == "integer" or (
            self.scale == "log" and isinstance(self.low, int) and isinstance(self.high, int)
        )

    def _numbers(self) -> tuple[int | float, int | float]:
        """low and high of a numeric factor; a categorical one has no numbers to move between."""
        if self.low is None or self.high is None:
            raise ValueError(f"factor {self.described()} is categorical: it has no centre")
        return self.low, self.high

    @property
    def centre_value(self) -> int | float:
        """The level-0 value: declared centre, else the (geometric for log) midpoint, as a
        person would write it: whole numbers rounded, others to three significant figures
        (0.02..0.04 on a log scale centres at 0.0283, not 0.0282842712474619). The trainer
        gets exactly the value reports print. A categorical factor has none (ValueError)."""
        low, high = self._numbers()
        if self.centre is not None:
            return self.centre
        middle = math.sqrt(low * high) if self.scale == "log" else (low + high) / 2
        return math.floor(middle + 0.5) if self.whole else float(f"{middle:.3g}")

    def decode(self, level: float) -> int | float | str:
        """Real value at a coded level in [-1, +1]; the project's one decoder of levels.

        A categorical factor gives its first level at -1 and its second at +1, as written,
        and nothing in between. For a numeric one, -1, 0 and +1 give low, `centre_value` and
        high exactly. A level in between moves
        linearly (in log space for log scale) from the centre towards high (level > 0) or low
        (level < 0), so a centre off the midpoint still decodes exactly at 0: ASPECT_RATIO
        48/64/72 gives 68 at +0.5, not the 66 of one line from low to high. Whole-number
        factors round to the nearest integer, halves up: an integer 6..9 has centre 8.
        """
        if not -1 <= level <= 1:
            raise ValueError(f"coded level must lie in [-1, +1] (got {level})")
        if self.levels is not None and level in (-1, 1):
            return self.levels[0] if level == -1 else self.levels[1]
        low, high = self._numbers()
        if level in (-1, 0, 1):
            value = {-1: low, 0: self.centre_value, 1: high}[int(level)]
        else:
            end = high if level > 0 else low
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
    generators: Annotated[list[str], _at_most(MAX_FACTORS, "generators")] = Field(
        default_factory=list,
        max_length=MAX_FACTORS,
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
            "bridge: the k best, with `factors` moved to their centre level; predicted: the k "
            "corners of the 2^k space the source's retained effects at `at` predict best, "
            "run or not (a screen or follow-up source; nothing retained: the best run "
            "conditions); control: the "
            "predeclared coded `levels`; greedy-winner / random-winner / halving-winner: the "
            "incumbent of a greedy / random / halving stage."
        )
    )
    k: int = Field(default=1, ge=1, description="How many conditions this rule picks.")
    at: At = Field(
        default="longest",
        description=(
            "Budget whose means rank the conditions: longest, or a budget with its unit "
            "such as 10m."
        ),
    )
    among: Annotated[list[str], _at_most(MAX_SELECTIONS, "roles")] = Field(
        default_factory=list,
        max_length=MAX_SELECTIONS,
        description=(
            "Rank only the source stage's anchors with these roles (e.g. [bridge] picks the "
            "best bridge point). Empty: all its conditions."
        ),
    )
    factors: Annotated[list[Code], _at_most(MAX_FACTORS, "factors")] = Field(
        default_factory=list,
        max_length=MAX_FACTORS,
        description="For rule bridge: codes of the factors moved to their centre level.",
    )
    levels: Annotated[dict[Code, CodedLevel], _at_most(MAX_FACTORS, "factors")] = Field(
        default_factory=dict,
        description=(
            "For rule control: the predeclared condition, a coded level (-1, 0, +1) for "
            "every factor, e.g. {A: 1, B: -1, C: -1, D: 1, E: 1}."
        ),
    )
    role: str | None = Field(
        default=None,
        pattern=r"^[a-z]([a-z0-9_-]*[a-z0-9])?$",
        max_length=40,
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

    @property
    def picks(self) -> int:
        """Conditions the rule picks: k for a ranking rule, one for a control or a winner."""
        return self.k if self.rule in RANKING_RULES else 1


class Stage(_Model):
    """One step of the programme: which conditions run, at which budgets, seeds and pools."""

    name: DnsLabel = Field(
        description="Stage name (lowercase, digits, '-'); used in run ids and storage keys."
    )
    # Any name `stagescreen.kinds.KINDS` registers: `study.checks` rejects the others and `crd`
    # writes the registered names as the CRD's enum, so a new kind needs no edit here.
    kind: str = Field(
        description=(
            "screen: the spec's design; followup: full factorial on the factors left free by "
            "`fix`; confirm / bridge / long-horizon: anchors from `select`; random: "
            "matched-cost random draws from the full 2^k space; greedy: one-factor-at-a-time "
            "hill climbing; halving: successive halving over the full 2^k space, one rung "
            "per budget."
        )
    )
    budgets: Annotated[list[Budget], _at_most(MAX_BUDGETS, "budgets per stage")] = Field(
        min_length=1,
        max_length=MAX_BUDGETS,
        description=(
            "Training wall-clock budgets, shortest first, e.g. [120s, 5m, 10m], each with "
            "its unit (s, m, h, d; a bare number is refused: write 2s or 2m); every "
            "condition runs at each (halving: the rungs, each running the survivors of the "
            f"one before). At most {MAX_BUDGETS}, each at most 7 days."
        ),
    )
    seeds: Seeds = Field(
        default_factory=lambda: [1],
        description=(
            "RUN_SEED values, e.g. [1, 2, 3], or a count n meaning seeds 1..n; at most "
            f"{MAX_SEEDS}."
        ),
    )
    pools: Annotated[list[str], _at_most(MAX_POOLS, "pools per stage")] = Field(
        default_factory=list,
        max_length=MAX_POOLS,
        description=(
            "GPU pools to run on; every run repeats on each pool listed. Empty: the first "
            "pool of spec.pools."
        ),
    )
    select: Annotated[list[Selection], _at_most(MAX_SELECTIONS, "selection rules per stage")] = (
        Field(
            default_factory=list,
            max_length=MAX_SELECTIONS,
            description=(
                "For confirm, bridge and long-horizon stages: the rules that pick anchors."
            ),
        )
    )
    fix: Annotated[dict[Code, CodedLevel], _at_most(MAX_FACTORS, "factors")] = Field(
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
        default=0, ge=0, description="For random and halving: seed of the condition draws."
    )
    max_runs: int | None = Field(
        default=None, ge=1, description="For greedy: runs per budget before the climb stops."
    )
    start: Annotated[dict[Code, CodedLevel], _at_most(MAX_FACTORS, "factors")] = Field(
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
    def _budgets_increase_and_seeds_differ(self, info: ValidationInfo) -> Stage:
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
        seen: set[int] = set()
        for index, seed in enumerate(self.seeds):
            if seed < 0:
                problems.append((f"seeds[{index}]", f"seeds are RUN_SEED values >= 0 (got {seed})"))
            elif seed in seen:
                problems.append((f"seeds[{index}]", f"duplicate seed {seed}"))
            seen.add(seed)
        _raise_if(problems)
        return self


# --------------------------------------------------------------------------------------------
# Pools, storage, trainer, limits


class Affinity(_Model):
    """Kubernetes scheduling affinity for a run's Pod, passed to it as written (the API server
    checks what is inside each part)."""

    node_affinity: FreeForm | None = Field(
        default=None, description="Node affinity, e.g. preferred GPU products or zones."
    )
    pod_affinity: FreeForm | None = Field(
        default=None, description="Pod affinity, e.g. runs near the S3 gateway."
    )
    pod_anti_affinity: FreeForm | None = Field(
        default=None, description="Pod anti-affinity, e.g. one run per node."
    )


class Toleration(_Model):
    """A Kubernetes toleration, so runs may land on tainted GPU nodes."""

    key: QualifiedName | None = Field(
        default=None, description="Taint key; empty with Exists matches all."
    )
    operator: Literal["Equal", "Exists"] = Field(
        default="Equal", description="Equal matches key and value; Exists matches the key."
    )
    value: LabelValue | None = Field(default=None, description="Taint value for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty tolerates all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, description="For NoExecute: how long a run may stay after the taint."
    )

    @model_validator(mode="after")
    def _as_the_api_server_checks(self) -> Toleration:
        problems = []
        if self.operator == "Exists" and self.value:
            problems.append(("value", f"must be empty with operator Exists (got {self.value!r})"))
        if not self.key and self.operator != "Exists":
            problems.append(
                ("operator", "must be Exists when key is empty (it matches all taints)")
            )
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            problems.append(
                (
                    "tolerationSeconds",
                    f"only with effect NoExecute (effect is {self.effect or 'empty'})",
                )
            )
        _raise_if(problems)
        return self


class Pool(_Model):
    """A set of identical accelerators; runs on different pools are analysed separately."""

    name: DnsLabel = Field(description="Pool name, e.g. a100; stages refer to it.")
    node_selector: dict[QualifiedName, LabelValue] = Field(
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
    gpu_resource: QualifiedName = Field(
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
    image_pull_secrets: list[DnsSubdomain] = Field(
        default_factory=list,
        description="Secrets (names, in the study's namespace) to pull the trainer image with.",
    )
    priority_class_name: DnsSubdomain | None = Field(
        default=None, description="PriorityClass of a run's Pod; empty: the cluster's default."
    )
    runtime_class_name: DnsSubdomain | None = Field(
        default=None,
        description=(
            "RuntimeClass of a run's Pod, e.g. nvidia where the GPU runtime is not the node's "
            "default (k3s, RKE2); empty: the node's default."
        ),
    )
    service_account_name: DnsSubdomain | None = Field(
        default=None,
        description=(
            "ServiceAccount a run's Pod runs as, e.g. one bound to a cloud role for S3 (IRSA, "
            "Workload Identity); its own automountServiceAccountToken then decides whether an "
            "API token is mounted. Empty: the namespace's default, with no API token mounted."
        ),
    )
    affinity: Affinity | None = Field(
        default=None, description="Scheduling affinity of a run's Pod, as Kubernetes writes it."
    )
    termination_grace_period_seconds: int = Field(
        default=120,
        ge=0,
        le=3600,
        description=(
            "Seconds a stopped run's Pod (preempted, evicted, drained) has after SIGTERM to "
            "finish its step or evaluation and upload its checkpoint before SIGKILL."
        ),
    )
    shm_size_limit: PositiveQuantity = Field(
        default="8Gi",
        description=(
            "Size limit of a run's memory-backed /dev/shm; what is written there counts "
            "against the Pod's memory limit."
        ),
    )


class SecretRef(_Model):
    """A Kubernetes Secret holding the S3 credentials."""

    name: DnsSubdomain = Field(description="Secret name, in the study's namespace.")
    access_key_key: SecretKey = Field(
        default="AWS_ACCESS_KEY_ID", description="Key of the access key id in the Secret."
    )
    secret_key_key: SecretKey = Field(
        default="AWS_SECRET_ACCESS_KEY", description="Key of the secret access key in the Secret."
    )


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _bucket_problem(bucket: str) -> str | None:
    """Why `bucket` is no S3 bucket name, in words, or None."""
    if not bucket:
        return "the s3:// URI names no bucket; write s3://BUCKET/prefix, e.g. s3://my-bucket/data"
    if not _BUCKET.fullmatch(bucket):
        return (
            f"bucket {bucket!r} is not a bucket name: 3 to 63 lowercase letters, digits, '.' "
            "and '-', starting and ending with a letter or digit, e.g. my-bucket"
        )
    return None


def _data_location(value: str) -> str:
    """A local folder or s3://bucket[/prefix], the two places the trainer reads from."""
    parsed = urlparse(value)
    if not value.strip():
        raise ValueError("expected a local folder or s3://bucket/prefix, e.g. s3://my-bucket/data")
    if parsed.scheme == "s3":
        problem = _bucket_problem(parsed.netloc)
        if problem:
            raise ValueError(f"{problem} (got {value!r})")
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", value):
        raise ValueError(
            f"the trainer reads a local folder or s3://bucket/prefix, not {parsed.scheme}:// "
            f"(got {value!r})"
        )
    return value


def _s3_bucket(value: str) -> str:
    problem = _bucket_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _endpoint(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(
            f"expected an http:// or https:// URL with a host, e.g. http://seaweedfs:8333 "
            f"(got {value!r})"
        )
    return value


DataLocation = Annotated[str, AfterValidator(_data_location)]


class S3Storage(_Model):
    """An S3-compatible bucket (AWS, MinIO, SeaweedFS, ...)."""

    endpoint: Annotated[str, AfterValidator(_endpoint)] | None = Field(
        default=None, description="Endpoint URL, e.g. http://seaweedfs:8333; empty: AWS."
    )
    bucket: Annotated[str, AfterValidator(_s3_bucket)] = Field(
        min_length=3, description="Bucket name."
    )
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
        form `stagescreen.storage.store.open_store` takes."""
        if self.s3 is not None:
            return f"s3://{self.s3.bucket}/{self.s3.prefix.strip('/')}".rstrip("/")
        assert self.local is not None
        return self.local.path

    def uri(self, study: str) -> str:
        """Where this study's keys live, in the form `storage.store.open_store` takes."""
        if self.s3 is not None:
            return f"{self.root()}/{study}"
        return str(Path(self.root()) / study)


class Resources(_Model):
    """Kubernetes resource requests and limits for each training Pod (besides the GPUs)."""

    requests: dict[QualifiedName, Quantity] = Field(
        default_factory=dict, description="Minimum resources, e.g. {cpu: 8, memory: 64Gi}."
    )
    limits: dict[QualifiedName, Quantity] = Field(
        default_factory=dict, description="Maximum resources, e.g. {memory: 96Gi}."
    )

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        _raise_if(
            [
                (
                    f"requests.{name}",
                    f"must not exceed its limit {self.limits[name]} (got {wanted})",
                )
                for name, wanted in self.requests.items()
                if name in self.limits
                and quantity_value(wanted) > quantity_value(self.limits[name])
            ]
        )
        return self


class Trainer(_Model):
    """The training program every run executes, and what stays fixed across conditions."""

    image: str = Field(
        default="stagescreen-trainer:dev",
        pattern=r"^\S+$",
        description="Trainer container image (Dockerfile.trainer); unused by local runs.",
    )
    hyperparameters: Annotated[FreeForm, _at_most(MAX_HYPERPARAMETERS, "fixed hyperparameters")] = (
        Field(
            default_factory=dict,
            description=(
                "Hyperparameters fixed for every run, by trainer name, e.g. {HEAD_DIM: 128, "
                "SEQ_LEN: 2048}; factors must not appear here."
            ),
        )
    )
    data_uri: DataLocation | None = Field(
        default=None,
        description=(
            "Training and validation shards (DATA_URI): a local path or s3://bucket/prefix."
        ),
    )
    tokenizer_uri: DataLocation | None = Field(
        default=None,
        description="Tokenizer artifacts (TOKENIZER_URI): a local path or s3://bucket/prefix.",
    )
    env: dict[EnvName, str] = Field(
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
        default=None,
        gt=0,
        description=(
            "GPU-hours after which no new run starts; empty: no cap. `stagescreen validate` "
            "refuses a study whose plan (`stagescreen plan`) needs more, naming the figure."
        ),
    )


# --------------------------------------------------------------------------------------------
# The spec and the resource


class StudySpec(_Model):
    """What to screen, how, and where."""

    factors: Annotated[list[Factor], _at_most(MAX_FACTORS, "factors per study")] = Field(
        min_length=1,
        max_length=MAX_FACTORS,
        description=f"The hyperparameters screened; at most {MAX_FACTORS}.",
    )
    design: DesignSpec = Field(
        default_factory=DesignSpec, description="The two-level design of screen stages."
    )
    metric: Metric = Field(default_factory=Metric, description="The response analysed.")
    stages: Annotated[list[Stage], _at_most(MAX_STAGES, "stages per study")] = Field(
        min_length=1,
        max_length=MAX_STAGES,
        description=(
            "The programme, in order; a stage may select anchors from earlier ones. At most "
            f"{MAX_STAGES}."
        ),
    )
    pools: Annotated[list[Pool], _at_most(MAX_POOLS, "pools per study")] = Field(
        min_length=1,
        max_length=MAX_POOLS,
        description="Accelerator pools the stages run on; the first is the default.",
    )
    storage: Storage = Field(
        default_factory=lambda: Storage(local=LocalStorage(path="./runs")),
        description="Where results are stored. Default: the local directory ./runs.",
    )
    trainer: Trainer = Field(default_factory=Trainer, description="The training program.")
    limits: Limits = Field(default_factory=Limits, description="Spending guards.")

    @model_validator(mode="before")
    @classmethod
    def _codes_by_position(cls, data: Any) -> Any:
        """A factor without a code gets the next free letter by position, before the factors
        are built (the models are frozen: a decision handed the spec cannot change it)."""
        factors = data.get("factors") if isinstance(data, Mapping) else None
        if (
            not isinstance(factors, list)
            or len(factors) > MAX_FACTORS  # refused by the field, before any letter runs out
            or not all(isinstance(f, Mapping) for f in factors)
        ):
            return data
        given = [f.get("code") if isinstance(f.get("code"), str) else None for f in factors]
        codes = default_codes(given)
        filled = [
            {**factor, "code": code} if factor.get("code") is None else factor
            for factor, code in zip(factors, codes, strict=True)
        ]
        return {**data, "factors": filled}

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

    def build_design(self) -> designs.Design:
        """The screen design."""
        return screen_design(self.design, self.codes)


def default_codes(given: Sequence[str | None]) -> list[str]:
    """Each factor's code: its own, else the next letter by position that none uses."""
    used = {code for code in given if code}
    codes = []
    for code in given:
        if not code:
            code = next(letter for letter in FACTOR_LETTERS if letter not in used)
            used.add(code)
        codes.append(code)
    return codes


def screen_design(spec: DesignSpec, codes: list[str]) -> designs.Design:
    if spec.type == "full":
        return designs.full_factorial(codes)
    if spec.generators:
        return designs.fractional_factorial(codes, spec.generators)
    assert spec.resolution is not None
    return designs.by_resolution(codes, spec.resolution)


class Metadata(BaseModel):
    """Kubernetes object metadata; fields the API server adds are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=40,
        description="Study name (lowercase, digits, '-'); prefixes Job names and storage keys.",
    )
    namespace: Namespace | None = Field(default=None, description="Kubernetes namespace.")
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
