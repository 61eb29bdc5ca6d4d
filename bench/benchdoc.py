"""Writing one benchmark's section of docs/benchmarks.md, leaving the other sections intact."""

from __future__ import annotations

from pathlib import Path


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
