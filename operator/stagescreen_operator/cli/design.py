"""`stagescreen design`: print a two-level design, its defining relation and alias chains."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from stagescreen_operator.cli.app import fail
from stagescreen_operator.tables import text_table

if TYPE_CHECKING:
    from stagescreen.design import Design, Order

_OPTION_OF = {
    "factors": "--factors",
    "generators": "--generators",
    "resolution": "--resolution",
    "runs": "--resolution",
    "alias_order": "--alias-order",
}


def _fail(option: str, message: str) -> NoReturn:
    raise fail(f"{option}: {message}")


def _split_factors(text: str) -> list[str]:
    """'A,B,C' or 'ABC' (every factor code is one letter)."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) == 1 and parts[0].isalpha():
        return list(parts[0])
    return parts


def _split_generators(values: list[str]) -> list[str]:
    return [part for value in values for part in re.split(r"[,\s]+", value) if part]


def _table(design: Design) -> str:
    rows = [
        [cid, *(f"{int(level):+d}" for level in row)]
        for cid, row in zip(design.condition_ids, design.matrix, strict=True)
    ]
    return text_table(["condition", *design.factors], rows)


def _report(design: Design, chains: list[list[str]], alias_order: int) -> str:
    lines = [f"{design.describe()}, {len(design.matrix)} runs, {design.order} order"]
    if design.generators:
        lines.append(f"generators: {', '.join(design.generators)}")
    lines += ["", _table(design), ""]
    if design.resolution is None:
        lines += ["defining relation: none (full factorial)", "resolution: full (no aliasing)"]
        return "\n".join(lines)
    lines.append(f"defining relation: I = {' = '.join(design.defining_relation())}")
    lines.append(f"resolution: {design.resolution_numeral} ({design.resolution})")
    lines.append(f"aliases up to order {alias_order}:")
    aliased = [chain for chain in chains if len(chain) > 1]
    lines += [f"  {' = '.join(chain)}" for chain in aliased] or ["  none"]
    clear = [chain[0] for chain in chains if len(chain) == 1]
    if clear:
        lines.append(f"aliased with nothing up to order {alias_order}: {', '.join(clear)}")
    return "\n".join(lines)


def design(
    factors: Annotated[
        str,
        typer.Option(
            "--factors", metavar="CODES", help="Factor code letters in order, e.g. A,B,C,D,E."
        ),
    ],
    generators: Annotated[
        list[str] | None,
        typer.Option(
            "--generators",
            "-g",
            metavar="GENERATOR",
            help="Generators of a regular fraction, e.g. E=ABCD or E=-ABCD; comma-separated "
            "or repeated. Omit both this and --resolution for the full factorial.",
        ),
    ] = None,
    resolution: Annotated[
        int | None,
        typer.Option(
            "--resolution",
            metavar="N",
            help="Choose the smallest minimum-aberration fraction of at least this resolution "
            "(3 = III, 4 = IV, ...; up to 11 factors), e.g. 4.",
        ),
    ] = None,
    yates: Annotated[
        bool,
        typer.Option(
            "--yates",
            help="Number the runs in Yates order (first factor fastest) instead of the "
            "paper's order (first factor slowest).",
        ),
    ] = False,
    alias_order: Annotated[
        int,
        typer.Option(
            "--alias-order",
            metavar="N",
            help="List each alias chain once, among effects of up to this many factors (2: "
            "main effects and two-factor interactions; the number of factors: all).",
        ),
    ] = 2,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print {"runs", "defining_relation", "resolution", "aliases"} as JSON: runs '
            'as {"condition_id": "c01", "A": -1, ...}, aliases as a list of chains.',
        ),
    ] = False,
) -> None:
    """Print a two-level design: runs, defining relation, aliases.

    Runs are numbered c01, c02, ... with the first factor varying slowest (the paper's order:
    with E=ABCD, c07 is A-,B+,C+,D-,E+); --yates numbers them first factor fastest.

    \b
    Examples:
      stagescreen design --factors A,B,C,D,E --generators E=ABCD
      stagescreen design --factors A,B,C,D,E,F,G --resolution 4 --json
      stagescreen design --factors A,B,C --yates
    """
    from stagescreen.design import (
        DesignError,
        by_resolution,
        fractional_factorial,
        full_factorial,
    )

    names = _split_factors(factors)
    if "I" in names:
        _fail(
            "--factors",
            "I is reserved: it is the identity in defining relations (I = ABCD); use another "
            "letter, e.g. J",
        )
    words = _split_generators(generators or [])
    if words and resolution is not None:
        _fail(
            "--generators",
            f"got both --generators {','.join(words)} and --resolution {resolution}; "
            "give one of them (or neither for the full factorial)",
        )
    order: Order = "yates" if yates else "paper"
    try:
        if resolution is not None:
            chosen = by_resolution(names, resolution, order=order)
        elif words:
            chosen = fractional_factorial(names, words, order=order)
        else:
            chosen = full_factorial(names, order=order)
        chains = chosen.alias_chains(alias_order)
    except DesignError as error:
        _fail(_OPTION_OF.get(error.subject, "--" + error.subject), str(error))
    if as_json:
        runs = zip(chosen.condition_ids, chosen.runs(), strict=True)
        payload = {
            "runs": [{"condition_id": cid, **levels} for cid, levels in runs],
            "defining_relation": list(chosen.defining_relation()),
            "resolution": chosen.resolution,
            "aliases": chains,
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        typer.echo(_report(chosen, chains, alias_order))
