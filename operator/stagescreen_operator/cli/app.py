"""The one Typer application every command module registers itself on."""

from __future__ import annotations

import typer
from typer.core import TyperArgument


def _argument_type(argument: TyperArgument, ctx: object) -> str | None:
    """An argument shows its metavar alone: typer would add its annotation's type beside it
    (`FILE <list[Path]>`), which reads as Python rather than as what to type."""
    return None if argument.metavar else TyperArgument.display_type(argument, ctx)  # type: ignore[arg-type]


TyperArgument.display_type_rich = _argument_type  # type: ignore[method-assign,assignment]

app = typer.Typer(
    name="stagescreen",
    help=(
        "Staged factorial screening for budget-constrained micro-pretraining.\n\n"
        "Declare a study (factors, design, budgets, seeds, stages, pools) in a ScreeningStudy "
        "YAML file (examples/quickstart.yaml, examples/paper.yaml), check it with `validate`, "
        "price it with `plan`, rehearse its analysis on planted effects with `simulate`, and "
        "render a stored study with `report`. `design` and `effects` work on their own, on any "
        "factors and any results table."
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: <message>` on stderr and return the exit to raise: every command's
    errors start the same way, name what to fix, and exit 2 (1 for a failure outside the
    user's input, such as storage going away mid-write)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _print_version(asked: bool) -> None:
    if asked:
        from stagescreen import __version__

        typer.echo(f"stagescreen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the StageScreen version and exit.",
    ),
) -> None:
    """Keep `stagescreen` a command group; `--version` answers before any command."""
