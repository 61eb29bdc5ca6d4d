"""The `stagescreen` command line: one small module per command, all on one Typer app.

Each command is a plain function in its own module, registered on `app` here, in one list;
each imports the heavy parts of the core inside its function so `--help` stays fast.
"""

from __future__ import annotations

import inspect

import typer

from stagescreen_operator.cli import (
    design,
    effects,
    in_cluster,
    manifests,
    plan,
    report,
    run,
    simulate,
    status,
    validate,
    version,
)
from stagescreen_operator.cli.app import WordedCommand, app

# The commands in the order `--help` lists them: a study's life, then the tools that work on
# any factors or table, then the cluster side.
COMMANDS = (
    validate.validate,
    plan.plan,
    simulate.simulate,
    run.run,
    status.status,
    report.report,
    design.design,
    effects.effects,
    manifests.manifests,
    in_cluster.operator,
    in_cluster.analyse,
    version.version,
)
for command in COMMANDS:
    # The first paragraph of its docstring, whole: Click would cut the command list's line
    # at the terminal's width with "...".
    app.command(
        cls=WordedCommand,
        short_help=inspect.cleandoc(command.__doc__ or "").partition("\n\n")[0],
    )(command)

__all__ = ["COMMANDS", "app", "main"]


def main() -> None:
    """Console-script entry point: a storage problem no command caught is one `error:` line
    (which store, what failed, what to set), never a traceback; anything else no command
    caught is a bug, said as one line that asks for a report (STAGESCREEN_TRACEBACK=1 shows
    the traceback to put in it)."""
    import os

    from stagescreen.storage.keys import StoreError

    try:
        app()
    except StoreError as error:
        typer.echo(f"error: {error}", err=True)
        raise SystemExit(2) from None
    except Exception as error:
        if os.environ.get("STAGESCREEN_TRACEBACK"):
            raise
        typer.echo(
            f"error: {type(error).__name__}: {error} (this is a bug, please report it with "
            "the command you ran; STAGESCREEN_TRACEBACK=1 shows where it happened)",
            err=True,
        )
        raise SystemExit(1) from None
