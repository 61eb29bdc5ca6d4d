"""The one way the command line and its logs print a table: rich, as plain aligned text.

Text columns align left, numbers right; no borders, colours, emoji codes or markup (a term
`A:B:C` is not the emoji `:B:`, an id `[x]` not a style), so the output reads the same on
a terminal, in a log file and in a test. Every table a command prints goes through here.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table


def text_table(header: Sequence[str], rows: Iterable[Sequence[str]], *, left: int = 1) -> str:
    """The rows under `header`, the first `left` columns left-aligned and the rest right,
    two spaces between columns and no trailing spaces."""
    table = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False, header_style="")
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index < left else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=10_000, color_system=None, highlight=False, emoji=False, markup=False
    )
    console.print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())
