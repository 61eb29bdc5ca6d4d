"""The `stagescreen` command line: one small module per command, all on one Typer app.

Command modules register themselves on `app` when imported, one `import x as x` line each below;
each imports the heavy parts of the core inside its function so `--help` stays fast.
"""

from __future__ import annotations

import typer

from stagescreen_operator.cli import cluster as cluster
from stagescreen_operator.cli import design as design
from stagescreen_operator.cli import effects as effects
from stagescreen_operator.cli import manifests as manifests
from stagescreen_operator.cli import plan as plan
from stagescreen_operator.cli import report as report
from stagescreen_operator.cli import run as run
from stagescreen_operator.cli import simulate as simulate
from stagescreen_operator.cli import status as status
from stagescreen_operator.cli import validate as validate
from stagescreen_operator.cli import version as version
from stagescreen_operator.cli.app import app


def main() -> None:
    """Console-script entry point: a storage problem no command caught is one `error:` line
    (which store, what failed, what to set), never a traceback."""
    from stagescreen.keys import StoreError

    try:
        app()
    except StoreError as error:
        typer.echo(f"error: {error}", err=True)
        raise SystemExit(2) from None
