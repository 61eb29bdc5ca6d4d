"""Writing one benchmark's section of docs/benchmarks.md, leaving the other sections intact."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path


def machine() -> str:
    """Where a figure was measured, as every section says it: `x86_64, 2 cores, Python 3.11.7`."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def publish_section(lines: Sequence[str], write: Path | None) -> None:
    """A section from its lines (the first its `## ` heading): printed, and written into
    `write`'s section when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        replace_section(write, text)


def replace_section(path: Path, text: str) -> None:
    """`text` begins with its own `## ` heading: it replaces the section under that heading
    (up to the next `## `), or is appended when the file has none."""
    heading = text.splitlines()[0]
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    head, found, tail = old.partition(heading)
    if not found:
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    rest = tail.split("\n## ", 1)
    path.write_text(head + text + ("\n## " + rest[1] if len(rest) > 1 else ""))
