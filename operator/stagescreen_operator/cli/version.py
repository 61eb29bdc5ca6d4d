"""`stagescreen version`: which build is this."""

from __future__ import annotations

import typer

from stagescreen import __version__


def version() -> None:
    """Print the StageScreen version."""
    typer.echo(__version__)
