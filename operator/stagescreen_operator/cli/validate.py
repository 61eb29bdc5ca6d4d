"""`stagescreen validate`: check study files before anything is scheduled or paid for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stagescreen_operator.cli.study_file import report_problems

if TYPE_CHECKING:
    from stagescreen.design import Design


def validate(
    files: Annotated[
        list[Path],
        typer.Argument(metavar="FILE", help="ScreeningStudy YAML files, e.g. examples/paper.yaml."),
    ],
) -> None:
    """Check ScreeningStudy files; list every problem with its field path.

    Exits 0 when every file is a valid study, 2 otherwise (one line per problem, on stderr).
    A study whose plan (`stagescreen plan`, 5 s of overhead per run) needs more GPU-hours
    than its limits.maxGpuHours is refused: it would stop before its last stages.
    """
    from stagescreen.planning.cost import over_cap
    from stagescreen.study.checks import spec_warnings
    from stagescreen.study.parse import load_study
    from stagescreen.study.spec import SpecError

    failed = False
    for path in files:
        try:
            study = load_study(path)
        except SpecError as error:
            failed = True
            report_problems(path, error)
            continue
        spec = study.spec
        problem = over_cap(spec)
        if problem is not None:
            failed = True
            typer.echo(f"error: {path}: spec.limits.maxGpuHours: {problem}", err=True)
            continue
        for where, message in spec_warnings(spec):
            typer.echo(f"warning: {path}: spec.{where}: {message}", err=True)
        typer.echo(
            f"{path}: valid ScreeningStudy {study.name!r} ({len(spec.factors)} factors, "
            f"{describe_design(spec.build_design())}, {len(spec.stages)} stages)"
        )
    if failed:
        raise typer.Exit(2)


def describe_design(design: Design) -> str:
    """`2^(5-1) regular fraction of resolution V` or `2^3 full factorial`."""
    numeral = design.resolution_numeral
    return design.describe() + (f" of resolution {numeral}" if numeral else "")
