"""Reading a study: YAML text or a parsed mapping to a validated `Study`, or every problem.

Problems are named by field path with the bad value and what would be accepted; a section
that fails to parse is salvaged (its failing fields dropped) so the cross-section checks of
the rest still run and one pass lists everything.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from stagescreen.study.bounds import (
    MAX_FILE_BYTES,
    MAX_PROBLEMS,
    MAX_VALUES,
    TooLarge,
    count_values,
    largest_part,
)
from stagescreen.study.checks import cross_problems, runs_problems
from stagescreen.study.spec import (
    LENIENT,
    STORED,
    DesignSpec,
    Factor,
    Pool,
    Problem,
    SpecError,
    Stage,
    Study,
    Trainer,
    _Problems,
)


def parse_study(data: Any, *, trains: bool = True, stored: bool = False) -> Study:
    """A validated Study from already-parsed YAML/JSON (e.g. the body kopf hands over).

    `trains=False` leaves out only the trainer-contract checks (factor names are variables the
    trainer reads, levels it accepts): for a study replayed on a table of measured runs, whose
    factors are the table's columns, and for a stored study read to report on, not to run.
    `stored=True` reads a spec StageScreen wrote itself (a study folder's spec.yaml), whose
    budgets are whole seconds where a person must write a unit (`spec.STORED`).

    The one way a Study is made: each section validates itself in the model, then the
    checks across sections (`study.checks`, which consults the stage kinds) run here, so the
    model module depends on nothing that depends on it. A size over its bound
    (`study.bounds`) is refused before anything it sizes is built, and then nothing else is
    checked, so any spec is answered quickly; the runs of the whole study are counted last,
    from a spec whose every part is known to be sound.
    """
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        raise SpecError([Problem("(document)", f"expected a ScreeningStudy mapping (got {kind})")])
    try:
        study = Study.model_validate(data, context=STORED if stored else None)
    except ValidationError as error:
        if error.error_count() > MAX_PROBLEMS:
            raise SpecError([_too_many_problems(data, error.error_count())]) from None
        items = error.errors()
        problems = _problems_from(items)
        if not _too_large(items):
            problems += _cross_problems_of_parts(data.get("spec"), problems, trains)
        raise SpecError(_shortened(problems)) from None
    spec = study.spec
    cross = cross_problems(
        spec.factors, spec.stages, spec.pools, spec.design, spec.trainer, trains=trains
    ) or runs_problems(spec)
    if cross:
        found = [Problem(_path(("spec", *_split(sub))), message) for sub, message in cross]
        raise SpecError(_shortened(found))
    return study


def parse_resource(body: Mapping[str, Any]) -> Study:
    """A validated Study from a ScreeningStudy object as the API server or kopf hands it over:
    the status and what the server adds to the object are not the study's to validate."""
    return parse_study({key: body.get(key) for key in ("apiVersion", "kind", "metadata", "spec")})


SHOWN = 1000
"""Characters of a problem's path or message kept, and (`SHOWN_VALUE`) of a bad value it
echoes: a value shown in full (a 1 MiB string) would make the answer as large as the spec."""
SHOWN_VALUE = 80


def _short(text: str, keep: int = SHOWN) -> str:
    """`text`, or its start and end around what was left out."""
    if len(text) <= keep:
        return text
    tail = keep // 5
    return f"{text[: keep - tail]}...({len(text) - keep} characters)...{text[-tail:]}"


def _shortened(problems: list[Problem]) -> list[Problem]:
    """The first `MAX_PROBLEMS` problems, each shortened, and how many more there were."""
    kept = [Problem(_short(p.path), _short(p.message)) for p in problems[:MAX_PROBLEMS]]
    left = len(problems) - len(kept)
    return kept + ([Problem("(document)", f"and {left} more problems")] if left else [])


def _too_many_problems(data: Mapping[str, Any], count: int) -> Problem:
    """One problem for a spec with more problems than are listed, at its largest part: the
    list of them (one per key of a 100,000-key map) would cost more than the spec is worth."""
    path, entries = largest_part(data, MAX_PROBLEMS)
    return Problem(
        _path(path) or "(document)",
        f"at most {MAX_PROBLEMS} problems per spec are listed (got {count}); this part alone "
        f"holds {entries} entries",
    )


def _too_large(items: list[ErrorDetails]) -> bool:
    """Whether a size over its bound is among the errors: the parts are then not salvaged
    and checked across, which would be the work the bound is there to avoid."""
    return any(isinstance((item.get("ctx") or {}).get("error"), TooLarge) for item in items)


def _cross_problems_of_parts(spec: Any, known: list[Problem], trains: bool) -> list[Problem]:
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
        cross = cross_problems(**parts, trains=trains)
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


def load_study(path_or_text: str | Path, *, trains: bool = True, stored: bool = False) -> Study:
    """Read and validate a study from a file path, or from YAML text (any str with a newline).

    Raises SpecError naming the file, the YAML line and column, or each bad field. A file
    over `MAX_FILE_BYTES` is refused before it is read, and one whose aliases expand to more
    than `MAX_VALUES` values before it is checked (YAML's "billion laughs"). `trains` and
    `stored` as in `parse_study`.
    """
    if isinstance(path_or_text, Path) or "\n" not in path_or_text:
        path = Path(path_or_text)
        try:
            if path.is_file() and path.stat().st_size > MAX_FILE_BYTES:
                raise SpecError([_too_long(str(path), path.stat().st_size)])
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError([Problem(str(path), "no such file")]) from None
        except IsADirectoryError:
            raise SpecError(
                [
                    Problem(
                        str(path),
                        "cannot read: it is a folder; give the study's YAML file, e.g. "
                        "examples/quickstart.yaml",
                    )
                ]
            ) from None
        except (PermissionError, UnicodeDecodeError) as error:
            raise SpecError([Problem(str(path), f"cannot read: {error}")]) from None
    else:
        text = path_or_text
        if len(text) > MAX_FILE_BYTES:
            raise SpecError([_too_long("(document)", len(text.encode("utf-8")))])
    try:
        documents = [doc for doc in yaml.load_all(text, Loader=_LOADER) if doc is not None]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
        detail = f"{error.problem} ({error.context})" if error.context else f"{error.problem}"
        raise SpecError([Problem(where, f"YAML syntax error: {detail}")]) from None
    except RecursionError:
        # PyYAML without libyaml composes nested collections by recursion (libyaml stops at
        # a depth of 1000 with a syntax error); no study nests this deep.
        raise SpecError([Problem("(document)", "YAML nested too deeply to read")]) from None
    if not documents:
        raise SpecError(
            [
                Problem(
                    "(document)",
                    "the file is empty: write a ScreeningStudy (see examples/quickstart.yaml)",
                )
            ]
        )
    if len(documents) != 1:
        raise SpecError(
            [Problem("(document)", f"expected one YAML document (got {len(documents)})")]
        )
    values = count_values(documents[0], MAX_VALUES)
    if values > MAX_VALUES:
        raise SpecError(
            [
                Problem(
                    "(document)",
                    f"at most {MAX_VALUES} values per spec once its aliases (*name) are "
                    f"expanded (got more than {MAX_VALUES})",
                )
            ]
        )
    return parse_study(documents[0], trains=trains, stored=stored)


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's reader where PyYAML has it (five times faster on a large file), else PyYAML's
own; both build the same values (the safe constructor)."""


def _too_long(where: str, size: int) -> Problem:
    return Problem(where, f"at most {MAX_FILE_BYTES} bytes per study file (got {size})")


def _path(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part and part != "[key]":  # pydantic's marker of a bad mapping key
            text += f".{part}" if text else part
    return text


def _problems_from(items: list[ErrorDetails]) -> list[Problem]:
    problems: list[Problem] = []
    for item in items:
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
    message = _in_words(item, loc) or str(item["msg"]).removeprefix("Value error, ")
    value = item.get("input")
    scalar = isinstance(value, str | int | float | bool) or value is None
    if scalar and f"(got {value!r})" not in message:
        message += f" (got {_short(repr(value), SHOWN_VALUE)})"
    return message


PATTERN_WORDS = {
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": (
        "lowercase letters, digits and '-', starting and ending with a letter or digit, "
        "e.g. my-study"
    ),
    r"^[A-HJ-Z]$": (
        "one capital letter other than I, e.g. A (I is reserved: it is the identity in "
        "defining relations such as I = ABCDE)"
    ),
    r"^[A-Z][A-Z0-9_]*$": (
        "capital letters, digits and '_', starting with a letter, e.g. MATRIX_LR (the "
        "variable the trainer reads)"
    ),
    r"^[a-z]([a-z0-9_-]*[a-z0-9])?$": (
        "lowercase letters, digits, '_' and '-', starting with a letter and ending with a "
        "letter or digit, e.g. best-narrow"
    ),
    r"^\S+$": "an image reference without spaces, e.g. ghcr.io/org/trainer:1.0",
}
"""What each pattern a field must match means, in words with an example: a message quotes
these, never the regular expression (a test checks every pattern of the model is here)."""

NAME_EXAMPLES = {"stages": "screen", "pools": "a100", "metadata": "my-study"}
"""The example a name's message gives, by what it names (a stage, a pool, the study)."""

LIST_EXAMPLES = {
    "factors": "- {name: MATRIX_LR, code: A, low: 0.02, high: 0.04}",
    "stages": "- {name: screen, kind: screen, budgets: [5m], seeds: 2}",
    "pools": "- {name: cpu, gpus: 0}",
    "budgets": "[5m, 10m]",
    "seeds": "[1, 2, 3] or a count such as 3",
    "generators": "[E=ABCD]",
}
"""An entry to write in a list that must not be empty, by the list's field name."""


def _in_words(item: Any, loc: tuple[int | str, ...]) -> str | None:
    """Pydantic's message for a generic check, said as what the value must be (with an
    example where one helps); None for a message the model wrote itself."""
    kind = item["type"]
    ctx = item.get("ctx") or {}
    field = next((part for part in reversed(loc) if isinstance(part, str)), "")
    if kind == "string_pattern_mismatch":
        words = PATTERN_WORDS.get(ctx.get("pattern", ""), "a value in the form docs/spec.md gives")
        names = [part for part in loc if isinstance(part, str)]
        owner = names[-2] if len(names) > 1 and names[-1] == "name" else ""
        if words.endswith("e.g. my-study") and owner in NAME_EXAMPLES:
            words = words.removesuffix("my-study") + NAME_EXAMPLES[owner]
        return f"expected {words}"
    if kind == "string_too_short":
        return f"needs at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"at most {ctx.get('max_length')} characters"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        if isinstance(item.get("input"), str):
            return f"needs at least {least} characters"
        example = LIST_EXAMPLES.get(str(field))
        entries = "one entry" if least == 1 else f"{least} entries"
        return f"needs at least {entries}" + (f", e.g. {example}" if example else "")
    if kind == "too_long":
        most = ctx.get("max_length")
        unit = "characters" if isinstance(item.get("input"), str) else "entries"
        return f"at most {most} {unit}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected', 'one of the documented values')}"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("more than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}"
    types = {
        "int_parsing": "a whole number, e.g. 2",
        "int_type": "a whole number, e.g. 2",
        "int_from_float": "a whole number, e.g. 2",
        "float_parsing": "a number, e.g. 0.5",
        "float_type": "a number, e.g. 0.5",
        "finite_number": "a finite number, e.g. 0.5",
        "bool_parsing": "true or false",
        "bool_type": "true or false",
        "string_type": "text, e.g. a name in quotes",
        "list_type": "a list, e.g. [a, b]",
        "dict_type": "a mapping of keys to values, e.g. {key: value}",
        "model_type": "a mapping of fields, e.g. {name: value}",
        "model_attributes_type": "a mapping of fields, e.g. {name: value}",
    }
    if kind in types:
        return f"expected {types[kind]}"
    return None


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
