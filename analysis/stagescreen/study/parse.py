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

from stagescreen.study.checks import cross_problems
from stagescreen.study.spec import (
    LENIENT,
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


def parse_study(data: Any) -> Study:
    """A validated Study from already-parsed YAML/JSON (e.g. the body kopf hands over).

    The one way a Study is made: each section validates itself in the model, then the
    checks across sections (`study.checks`, which consults the stage kinds) run here, so the
    model module depends on nothing that depends on it.
    """
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        raise SpecError([Problem("(document)", f"expected a ScreeningStudy mapping (got {kind})")])
    try:
        study = Study.model_validate(data)
    except ValidationError as error:
        problems = _problems_from(error)
        raise SpecError(problems + _cross_problems_of_parts(data.get("spec"), problems)) from None
    spec = study.spec
    cross = cross_problems(spec.factors, spec.stages, spec.pools, spec.design, spec.trainer)
    if cross:
        raise SpecError([Problem(_path(("spec", *_split(sub))), message) for sub, message in cross])
    return study


def parse_resource(body: Mapping[str, Any]) -> Study:
    """A validated Study from a ScreeningStudy object as the API server or kopf hands it over:
    the status and what the server adds to the object are not the study's to validate."""
    return parse_study({key: body.get(key) for key in ("apiVersion", "kind", "metadata", "spec")})


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
        cross = cross_problems(**parts)
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
        elif part and part != "[key]":  # pydantic's marker of a bad mapping key
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
