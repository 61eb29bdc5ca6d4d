"""Loading a study file for a command: valid, or exit 2 with every problem by field path."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stagescreen_operator.cli.app import fail

if TYPE_CHECKING:
    from stagescreen.study.spec import SpecError, Study

StudyFile = Annotated[
    Path,
    typer.Argument(
        metavar="STUDY_FILE", help="ScreeningStudy YAML file, e.g. examples/quickstart.yaml."
    ),
]
"""The study-file argument every command that reads one takes."""


def report_problems(path: Path, error: SpecError) -> None:
    """One `error: FILE: FIELD: message` line per problem on stderr, as `validate` lists them."""
    for problem in error.problems:
        where = "" if problem.path == str(path) else f"{problem.path}: "
        typer.echo(f"error: {path}: {where}{problem.message}", err=True)


def load_or_exit(path: Path, *, trains: bool = True) -> Study:
    """The study in `path`; on any problem print them all (as `validate` does) and exit 2.
    `trains=False` leaves out the trainer-contract checks (`parse.parse_study`)."""
    from stagescreen.study.parse import load_study
    from stagescreen.study.spec import SpecError

    try:
        return load_study(path, trains=trains)
    except SpecError as error:
        report_problems(path, error)
        raise fail(f"{path}: not a valid study; fix the lines above (see docs/spec.md)") from None
