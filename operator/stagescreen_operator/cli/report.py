"""`stagescreen report`: render a stored study's report.md and figures, beside its data."""

from __future__ import annotations

import difflib
import enum
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlparse

import typer

from stagescreen_operator.cli.app import fail
from stagescreen_operator.cli.outputs import output_store

if TYPE_CHECKING:
    from stagescreen.storage.store import Store
    from stagescreen.study.parse import Study

StudyFolder = Annotated[
    str,
    typer.Argument(
        metavar="DIR_OR_S3_URI",
        help=(
            "A study's folder in storage: runs/demo/quickstart (what `make demo` writes), "
            "runs/quickstart (after `stagescreen run`), sim/paper (after `simulate --out "
            "sim/`) or s3://bucket/prefix/paper."
        ),
    ),
]
"""The argument of the commands that read a stored study (`report`, `status`)."""


def split_study_uri(uri: str) -> tuple[str, str]:
    """("./runs", "quickstart") for "./runs/quickstart"; ("s3://b/p", "paper") for "s3://b/p/paper".

    The last path segment names the study, the rest is the store root the study lives under
    (the spec's storage prefix). Raises ValueError when the URI names no study segment.
    """
    if not uri.strip():
        raise ValueError("is empty; expected a study directory such as ./runs/quickstart")
    text = uri.strip().rstrip("/")
    parsed = urlparse(text)
    if parsed.scheme in ("s3", "file"):
        root, _, study = parsed.path.rpartition("/")
        if parsed.scheme == "s3" and not root and not study:
            raise ValueError("names a bucket but no study; expected s3://bucket[/prefix]/STUDY")
        if not study:
            raise ValueError(f"names no study; expected {parsed.scheme}://.../STUDY")
        return f"{parsed.scheme}://{parsed.netloc}{root or ''}", study
    path = Path(text)
    if not text or path.name in ("", ".", ".."):
        raise ValueError("names no study; expected a study directory such as ./runs/quickstart")
    return str(path.parent), path.name


def open_study(uri: str) -> tuple[Store, Study]:
    """The store a study folder lives in and the study its spec.yaml holds, as `status` and
    `simulate --noise-from` read one. Raises ValueError for a URI that names no study or a
    folder without a spec (the message says which), StoreError when the store cannot be read.

    The study is named after its folder, as `report` reads it: a study copied to a folder of
    another name (`cp -r runs/quickstart part2`) keeps its records under that folder, not
    under its spec's metadata.name.
    """
    import yaml

    from stagescreen.storage.keys import StudyKeys
    from stagescreen.storage.store import open_store
    from stagescreen.study.parse import parse_study

    root, name = split_study_uri(uri)
    store = open_store(root)
    keys = StudyKeys(name)
    if not store.exists(keys.spec()):
        raise ValueError(no_study(uri, store.uri(keys.spec())))
    # Read to report on, never run: the trainer-contract checks are left out (a replayed
    # study's factors are a table's columns).
    study = parse_study(yaml.safe_load(store.get_text(keys.spec())), trains=False, stored=True)
    return store, study.model_copy(
        update={"metadata": study.metadata.model_copy(update={"name": name})}
    )


def no_study(uri: str, spec: str) -> str:
    """Why a URI with no spec.yaml (at `spec`, its full address) is not a study, and what to
    give instead: a study's YAML file is not the folder a run wrote, a local folder may not
    exist, and a folder that does may be near the one meant (`did_you_mean`)."""
    from stagescreen.storage.keys import SPEC

    given = Path(uri.strip())
    expected = f"expected {SPEC} at {spec} (give the study's folder, e.g. "
    if "://" in uri:
        return expected + "s3://bucket/prefix/paper)"
    if given.suffix in (".yaml", ".yml") and given.is_file():
        return (
            "this is a study's YAML file; give the folder `stagescreen run` or `simulate` "
            "wrote for it, e.g. runs/demo/quickstart" + did_you_mean(str(given.with_suffix("")))
        )
    if not given.exists():
        return "the folder does not exist" + did_you_mean(uri)
    return expected + "./runs/quickstart)" + did_you_mean(uri)


def did_you_mean(uri: str) -> str:
    """A hint such as "; did you mean runs/demo/quickstart?" for a local folder that holds
    no study: the studies inside it when it is their parent, study folders of a name close to
    its own beside it, and those of its name a few levels below its parent or the working
    directory (`make demo` writes runs/demo/quickstart, a plain `run` runs/quickstart).
    Empty when there are none, or for s3:// URIs."""
    try:
        root, name = split_study_uri(uri)
    except ValueError:
        return ""
    if "://" in uri:
        return ""
    given = Path(uri.strip().rstrip("/"))
    found = _study_folders(given, 1)
    beside = _study_folders(Path(root), 1)
    close = difflib.get_close_matches(name, [study.name for study in beside], cutoff=0.8)
    found += [study for study in beside if study.name in close]
    for base in dict.fromkeys([Path(root), Path()]):
        found += [study for study in _study_folders(base, 3) if study.name == name]
    unique: dict[Path, Path] = {}
    for study in found:
        unique.setdefault(study.resolve(), study)
    unique.pop(given.resolve(), None)
    if not unique:
        return ""
    return "; did you mean " + " or ".join(map(str, list(unique.values())[:3])) + "?"


def _study_folders(base: Path, depth: int) -> list[Path]:
    """Folders holding a spec.yaml at most `depth` levels below `base`, shallowest first;
    hidden folders (.venv, .git) and folders that cannot be read are skipped. None below
    the filesystem root: a search from there would walk the whole machine."""
    if base.resolve() == base.resolve().parent:
        return []
    found, level = [], [base]
    for _ in range(depth):
        below = [folder for parent in level for folder in _subfolders(parent)]
        found += [folder for folder in below if _holds_spec(folder)]
        level = below
    return found


def _subfolders(folder: Path) -> list[Path]:
    """The visible folders directly in `folder`, by name; none when it cannot be read."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return []
    below = []
    for entry in entries:
        try:
            if entry.is_dir() and not entry.name.startswith("."):
                below.append(Path(folder, entry.name))
        except OSError:
            continue
    return below


def _holds_spec(folder: Path) -> bool:
    from stagescreen.storage.keys import SPEC

    try:
        return (folder / SPEC).is_file()
    except OSError:
        return False


class ReportFormat(enum.StrEnum):
    """What `report` produces: the markdown report and its figures, or the decision as JSON."""

    md = "md"
    json = "json"


def _report_format(value: str) -> ReportFormat:
    """`--format` in words (typer's own enum check opens with pydantic's "Value error,")."""
    try:
        return ReportFormat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r}: give md (report.md and its figures) or json (the decision, printed)"
        ) from None


def report(
    uri: StudyFolder,
    out: Annotated[
        str | None,
        typer.Option(
            metavar="DIR_OR_S3_URI",
            help="Write here (a directory or s3:// URI) instead of beside the study's data.",
        ),
    ] = None,
    output: Annotated[
        ReportFormat,
        typer.Option(
            "--format",
            parser=_report_format,
            metavar="[md|json]",
            help=(
                "md: write report.md and the figures. json: write nothing and print the "
                "report's decision (what the study found, what to run next, how far to trust "
                "it) and each stage's run counts as JSON, for tools."
            ),
        ),
    ] = ReportFormat.md,
) -> None:
    """Write a stored study's report.md and figures beside its data.

    The figures (main effects by budget, variance shares, anchor seeds) cover every stage
    that has run; stages not run yet are listed as such. The report opens with the
    decision: what the study found, what to run next, how far to trust it.

    S3 endpoint and credentials come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY and AWS_REGION.

    Example: stagescreen report runs/demo/quickstart --format json
    """
    import json

    from stagescreen.reports.report import decision_json, read_study_data, write_report
    from stagescreen.storage.keys import MissingKey, StoreError, StudyKeys, UnreadableObject
    from stagescreen.storage.store import open_store
    from stagescreen.study.spec import SpecError

    try:
        root, study = split_study_uri(uri)
        store = open_store(root)
        keys = StudyKeys(study)
    except (ValueError, StoreError) as error:
        raise fail(f"DIR_OR_S3_URI {uri!r}: {error}") from None
    target = None if out is None else output_store("--out", out)
    try:
        if not store.exists(keys.spec()):
            raise fail(f"no study at {uri!r}: {no_study(uri, store.uri(keys.spec()))}")
        if output is ReportFormat.json:
            if out is not None:
                raise fail("--out writes report.md; --format json prints to stdout: give one")
            typer.echo(json.dumps(decision_json(read_study_data(store, study)), indent=2))
            return
        written = write_report(store, study, target)
    except SpecError as error:
        problems = "\n".join(f"  {problem}" for problem in error.problems)
        raise fail(f"{store.uri(keys.spec())} is not a valid study:\n{problems}") from None
    except (MissingKey, UnreadableObject) as error:
        raise fail(str(error)) from None
    except StoreError as error:
        raise fail(str(error), 1) from None
    typer.echo(f"report: {written[0]}")
    for figure in written[1:]:
        typer.echo(f"  {figure}")
