"""`stagescreen validate`: check study files before anything is scheduled or paid for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stagescreen_operator.cli.study_file import report_problems

if TYPE_CHECKING:
    from stagescreen.design import Design
    from stagescreen.study.spec import SpecError


def validate(
    files: Annotated[
        list[Path],
        typer.Argument(metavar="FILE", help="ScreeningStudy YAML files, e.g. examples/paper.yaml."),
    ],
    replay: Annotated[
        bool,
        typer.Option(
            "--replay",
            help=(
                "The study is only replayed on a measured table (simulate --table): skip the "
                "checks that the trainer can run it (its factors are the table's columns)."
            ),
        ),
    ] = False,
) -> None:
    """Check ScreeningStudy files; name every problem's field path.

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
            study = load_study(path, trains=not replay)
        except SpecError as error:
            failed = True
            report_problems(path, error)
            if not replay:
                _suggest_replay(path, error)
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


def _suggest_replay(path: Path, error: SpecError) -> None:
    """Where some problems are the trainer's checks alone, one more line names `--replay`: a
    study only replayed on a table has table columns, not trainer variables, as factors."""
    from stagescreen.study.parse import load_study
    from stagescreen.study.spec import SpecError

    left = 0
    try:
        load_study(path, trains=False)
    except SpecError as replayed:
        left = len(replayed.problems)
    if len(error.problems) > left:
        typer.echo(
            f"error: {path}: a study only replayed on a measured table (simulate --table) "
            "skips the trainer's checks above: validate it with --replay",
            err=True,
        )


def describe_design(design: Design) -> str:
    """`2^(5-1) regular fraction of resolution V` or `2^3 full factorial`."""
    numeral = design.resolution_numeral
    return design.describe() + (f" of resolution {numeral}" if numeral else "")
