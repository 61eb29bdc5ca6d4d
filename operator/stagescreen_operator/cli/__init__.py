"""The `stagescreen` command line: one small module per command, all on one Typer app.

Command modules register themselves on `app` when imported, one import line each below;
each imports the heavy parts of the core inside its function so `--help` stays fast.
"""

from __future__ import annotations

from stagescreen_operator.cli import design as design
from stagescreen_operator.cli import effects  # noqa: F401
from stagescreen_operator.cli import validate  # noqa: F401
from stagescreen_operator.cli import version  # noqa: F401
from stagescreen_operator.cli.app import app


def main() -> None:
    """Console-script entry point."""
    app()
