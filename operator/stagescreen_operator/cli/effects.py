"""`stagescreen effects`: factor effects per budget from any results table (CSV or parquet)."""

from __future__ import annotations

import io
import json
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated

import typer

from stagescreen_operator.cli.app import fail
from stagescreen_operator.tables import text_table

if TYPE_CHECKING:
    import pandas as pd

    from stagescreen.statistics.families import Effect, Family

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def _names(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def read_table(location: str, label: str = "RESULTS") -> pd.DataFrame:
    """A table of runs from CSV (lines starting with '#' are comments) or parquet, in a local
    file or at an s3://bucket/key URI: the one reader of a user's table (`effects RESULTS`,
    `simulate --table`). Each problem (a folder, no such file, another file type, a file that
    does not parse, no rows) exits 2 with one `error:` line naming `label`, the argument or
    option that gave the location, and what to give instead. Rows are indexed by their line in
    a CSV file (index name "line"), by their number from 1 in a parquet file ("row"), so a
    message can name a row where the user looks."""
    import pandas as pd

    from stagescreen.storage.keys import MissingKey, StoreError
    from stagescreen.storage.store import open_store

    where = f"{label} {location!r}"
    wanted = "give a .csv or .parquet file"
    local = not location.startswith("s3://")
    if local and Path(location).is_dir():
        raise fail(f"{where} is a folder: {wanted}")
    suffix = PurePosixPath(location).suffix.lower()
    if not suffix:
        raise fail(f"{where} has no extension: {wanted}")
    if suffix not in TABLE_SUFFIXES:
        raise fail(
            f"{where}: unknown file type {suffix or '(none)'!r}: {wanted} "
            f"(accepted: {', '.join(TABLE_SUFFIXES)})"
        )
    try:
        if not local:
            root, _, key = location.rpartition("/")
            data = open_store(root).get_bytes(key)
        elif Path(location).is_file():
            data = Path(location).read_bytes()
        else:
            raise fail(f"{where}: no such file; check the path")
    except MissingKey:
        raise fail(f"{where}: no such object; check the bucket and key") from None
    except StoreError as error:
        raise fail(f"{where}: {error}") from None
    except OSError as error:
        raise fail(f"{where}: cannot be read: {error.strerror or error}") from None
    try:
        if suffix == ".csv":
            lines = data.decode("utf-8-sig").splitlines(keepends=True)
            text = "".join(line for line in lines if not line.lstrip().startswith("#"))
            table = pd.read_csv(io.StringIO(text), skipinitialspace=True)
            # The file line of each row, so an excluded row is named where the user looks.
            numbered = [
                number
                for number, line in enumerate(lines, 1)
                if line.strip() and not line.lstrip().startswith("#")
            ]
            if len(numbered) == len(table) + 1:
                table.index = pd.Index(numbered[1:], name="line")
        else:
            table = pd.read_parquet(io.BytesIO(data))
            table.index = pd.RangeIndex(1, len(table) + 1, name="row")
    except (ValueError, OSError) as error:
        # pandas' EmptyDataError/ParserError, pyarrow's ArrowInvalid and UnicodeDecodeError are
        # all ValueErrors; a user should see which file and why, not a traceback.
        kind = "a CSV table with a header line" if suffix == ".csv" else "a parquet file"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise fail(f"{where}: cannot be read as {kind}: {reason}") from None
    if table.empty:
        raise fail(f"{where}: no rows (only a header)")
    return table


def _p(value: float | None) -> str:
    """p and q as the report prints them (`formatting.fmt_p`), a plain '-' for none."""
    from stagescreen.reports.formatting import fmt_p

    return "-" if value is None else fmt_p(value)


def _row(effect: Effect, fdr: float, digits: int) -> list[str]:
    """Effects and intervals as the report prints them (`formatting.fmt_effect`), at the
    table's precision; a plain '-' for none."""
    from stagescreen.reports.formatting import fmt_effect, fmt_interval

    interval = (
        "-"
        if effect.ci_low is None or effect.ci_high is None
        else fmt_interval(effect.ci_low, effect.ci_high, digits)
    )
    mark = "*" if effect.q is not None and effect.q <= fdr else ""
    return [
        effect.term,
        "-" if effect.effect is None else fmt_effect(effect.effect, digits),
        interval,
        _p(effect.p),
        _p(effect.q),
        mark,
    ]


def format_families(families: list[Family], fdr: float, unit: str = "row") -> str:
    """One aligned table per family, rows with q <= fdr marked '*', then what was left out,
    each excluded run named by `unit` ("line" for a CSV's file lines) and its number."""
    from stagescreen.reports.formatting import decimals

    blocks = []
    # One precision for every effect printed, from their standard errors (the report's rule).
    digits = decimals(e.se for family in families for e in family.effects)
    for family in families:
        title = " ".join(f"{k}={v}" for k, v in family.by.items()) or "all rows"
        df = "-" if family.df_resid is None else str(family.df_resid)
        lines = [f"{title}  n={family.n}  residual df={df}"]
        rows = [_row(effect, fdr, digits) for effect in family.effects]
        lines.append(text_table(["term", "effect", "95% CI", "p", "q", ""], rows))
        if family.missing:
            lines.append(f"missing runs ({len(family.missing)}): {', '.join(family.missing)}")
        for run in family.excluded:
            labels = " ".join(f"{k}={v}" for k, v in run.labels.items())
            lines.append(
                f"excluded {unit} {run.row}: {run.reason}" + (f" ({labels})" if labels else "")
            )
        lines += [f"note: {note}" for note in family.notes]
        blocks.append("\n".join(lines))
    scope = (
        "across all families"
        if families and families[0].q_scope == "combined"
        else "within each family"
    )
    blocks.append(f"* q <= {fdr:g} (Benjamini-Hochberg, fdr_bh, {scope})")
    return "\n\n".join(blocks)


def effects(
    results: Annotated[
        str,
        typer.Argument(
            metavar="RESULTS",
            help="Results table: .csv ('#' lines are comments) or .parquet; a path or s3://bucket/key.",
        ),
    ],
    response: Annotated[str, typer.Option(metavar="COLUMN", help="Response column, e.g. val_bpb.")],
    factors: Annotated[
        str,
        typer.Option(metavar="COLUMNS", help="Factor columns, comma-separated, e.g. A,B,C,D,E."),
    ],
    by: Annotated[
        str | None,
        typer.Option(
            metavar="COLUMNS", help="Fit one family per value of these columns, e.g. budget_s."
        ),
    ] = None,
    block: Annotated[
        str | None,
        typer.Option(metavar="COLUMN", help="Block column fitted as a fixed effect, e.g. seed."),
    ] = None,
    interactions: Annotated[
        bool, typer.Option(help="Add every two-factor interaction (refused if aliased).")
    ] = False,
    order: Annotated[
        int | None,
        typer.Option(metavar="N", help="Add every interaction up to this order (2 = two-factor)."),
    ] = None,
    terms: Annotated[
        str | None, typer.Option(metavar="TERMS", help="Extra interaction terms, e.g. A:B,C:E.")
    ] = None,
    fdr: Annotated[
        float, typer.Option(metavar="Q", help="Mark effects with BH q at or below this level.")
    ] = 0.05,
    lenth: Annotated[
        bool,
        typer.Option(
            help="Saturated designs: intervals and p from Lenth's PSE and its simulated null."
        ),
    ] = False,
    combined_fdr: Annotated[bool, typer.Option(help="BH q across all families together.")] = False,
    generators: Annotated[
        str | None,
        typer.Option(
            metavar="GENERATORS|full",
            help=(
                "The design the table should hold, to name the runs it lacks: generators "
                "such as E=ABCD, or 'full' for the full factorial of --factors."
            ),
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the families as JSON.")] = False,
) -> None:
    """Estimate a results table's effects with intervals, p and BH q.

    Effects are high minus low (2*beta under -1/+1 coding).

    Rows whose status is not 'succeeded' or whose response is missing are left out and listed
    by their line in a CSV file (by row number, from 1, in a parquet file).
    Two-valued factor columns holding real levels (e.g. 6/8) are coded -1/+1.

    \b
    Examples:
      stagescreen effects results.csv --response val_bpb --factors A,B,C,D,E \\
          --by budget_s --block seed
      stagescreen effects results.parquet --response val_bpb --factors A,B,C,E \\
          --by budget_s --interactions --json
      stagescreen effects runs.csv --response y --factors A,B,C,D --order 4 --lenth
      stagescreen effects screen.csv --response val_bpb --factors A,B,C,D,E \\
          --generators E=ABCD        # also lists the design's runs the table lacks
    """
    from stagescreen.design import DesignError, fractional_factorial
    from stagescreen.statistics.coding import EffectsError
    from stagescreen.statistics.families import EffectFamilies, fit_effects

    if not 0 < fdr < 1:
        raise fail(f"--fdr must lie strictly between 0 and 1, got {fdr}")
    if order is not None and order < 1:
        raise fail(f"--order must be 1 or more, got {order}")
    table = read_table(results)
    factor_names = _names(factors)
    if not factor_names:
        raise fail(f"--factors names no column; columns: {list(table.columns)}")
    for option, names in (
        ("--factors", factor_names),
        ("--by", _names(by)),
        ("--block", _names(block)),
    ):
        absent = [name for name in names if name not in table.columns]
        if absent:
            raise fail(f"{option}: no column {absent[0]!r}; columns: {list(table.columns)}")
    if response not in table.columns:
        raise fail(f"--response: no column {response!r}; columns: {list(table.columns)}")
    expected = None
    if generators is not None:
        words = [] if generators.strip().lower() == "full" else _names(generators)
        try:
            expected = fractional_factorial(factor_names, words)
        except DesignError as error:
            raise fail(f"--generators {generators!r}: {error}") from None
    try:
        families = fit_effects(
            table,
            response,
            factor_names,
            by=_names(by),
            block=block,
            order=max(order or 1, 2 if interactions else 1),
            terms=_names(terms),
            lenth=lenth,
            combined_fdr=combined_fdr,
            design=expected,
        )
    except EffectsError as error:
        raise fail(str(error)) from None
    if as_json:
        typer.echo(
            json.dumps(
                EffectFamilies(families=families).model_dump(mode="json"), indent=2, allow_nan=False
            )
        )
    else:
        typer.echo(format_families(families, fdr, table.index.name or "row"))
