"""The one Typer application every command module registers itself on."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import ValidationError
from typer.core import TyperArgument, TyperCommand, TyperOption


def _argument_type(argument: TyperArgument, ctx: object) -> str | None:
    """An argument shows its metavar alone: typer would add its annotation's type beside it
    (`FILE <list[Path]>`), which reads as Python rather than as what to type."""
    return None if argument.metavar else TyperArgument.display_type(argument, ctx)  # type: ignore[arg-type]


TyperArgument.display_type_rich = _argument_type  # type: ignore[method-assign,assignment]


def _range_words(option: TyperOption) -> str | None:
    """An option's bounds in words in its help (`[at least 1]`, `[0 to 1]`): typer would
    show `[x>=1]`."""
    if option.min is None and option.max is None:
        return None
    if option.max is None:
        return f"at least {option.min}"
    if option.min is None:
        return f"at most {option.max}"
    return f"{option.min} to {option.max}"


TyperOption._get_number_range_help_str = _range_words  # type: ignore[method-assign,assignment]


def value_words(error: ValidationError) -> str:
    """What an option's value must be, in words with an example, from the pydantic error
    typer's type and bounds check raised ("Input should be a valid integer, unable to parse
    string as an integer" reads as Python, not as what to type)."""
    first = error.errors()[0]
    kind, got = first["type"], first.get("input")
    bounds = {key: f"{value:g}" for key, value in first.get("ctx", {}).items()}
    words = {
        "int_parsing": "must be a whole number, e.g. 2",
        "int_from_float": "must be a whole number, e.g. 2",
        "float_parsing": "must be a number, e.g. 0.05",
        "greater_than_equal": f"must be at least {bounds.get('ge')}",
        "greater_than": f"must be more than {bounds.get('gt')}",
        "less_than_equal": f"must be at most {bounds.get('le')}",
        "less_than": f"must be less than {bounds.get('lt')}",
    }.get(kind)
    return f"{got!r} {words}" if words else str(first["msg"])


class WordedCommand(TyperCommand):
    """A command whose option values are checked in words (`value_words`); every command
    registers with this class."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except typer.BadParameter as error:
            if isinstance(error.__cause__, ValidationError):
                error.message = value_words(error.__cause__)
            raise


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
