"""`stagescreen validate`: check study files before anything is scheduled or paid for."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from stagescreen_operator.cli.app import app

_ROMAN = {3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII", 9: "IX", 10: "X"}


@app.command()
def validate(
    files: Annotated[
        list[Path], typer.Argument(help="ScreeningStudy YAML files, e.g. examples/paper.yaml.")
    ],
) -> None:
    """Check ScreeningStudy files; list every problem with its field path.

    Exits 0 when every file is a valid study, 2 otherwise (one line per problem, on stderr).
    """
    from stagescreen.spec import SpecError, load_study

    failed = False
    for path in files:
        try:
            study = load_study(path)
        except SpecError as error:
            failed = True
            for problem in error.problems:
                where = "" if problem.path == str(path) else f"{problem.path}: "
                typer.echo(f"{path}: {where}{problem.message}", err=True)
            continue
        spec = study.spec
        typer.echo(
            f"{path}: valid ScreeningStudy {study.name!r} ({len(spec.factors)} factors, "
            f"{describe_design(spec.build_design())}, {len(spec.stages)} stages)"
        )
    if failed:
        raise typer.Exit(2)


def describe_design(design: Any) -> str:
    """`2^(5-1) resolution V` or `2^3 full factorial`, as textbooks name designs."""
    k, p = len(design.factors), len(design.generators)
    if p == 0:
        return f"2^{k} full factorial"
    resolution = design.resolution
    return f"2^({k}-{p}) resolution {_ROMAN.get(resolution, str(resolution))}"
