"""What judging a saturated screen against Lenth's simulated null costs (issue 18).

`families.lenth_reference(m)` simulates `LENTH_DRAWS` null screens of m effects once per m and
caches them: an analysis that fits saturated families pays the first call per number of
effects, and every later family of that size reads the cache. Times the first call (the cache
cleared before each repeat) and a cached call, and reports the memory the reference holds, for
the effect counts of a 2^(3), 2^(4), 2^(5) and 2^(6) saturated screen.

    .venv/bin/python bench/lenth_reference.py [--repeat 3] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchdoc import machine, publish_section

from stagescreen.statistics.families import LENTH_DRAWS, lenth_reference

SECTION = "## Lenth's simulated null (bench/lenth_reference.py)"
EFFECTS = (7, 15, 31, 63)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    rows = []
    for m in EFFECTS:
        first = []
        for _ in range(args.repeat):
            lenth_reference.cache_clear()
            start = time.perf_counter()
            reference = lenth_reference(m)
            first.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(1000):
            lenth_reference(m)
        cached_us = (time.perf_counter() - start) * 1e6 / 1000
        held_mb = (reference.t.nbytes + reference.largest.nbytes) / 2**20
        rows.append(
            f"| {m} | {statistics.median(first):.2f} | {min(first):.2f} | {max(first):.2f} "
            f"| {cached_us:.1f} | {held_mb:.0f} | {reference.critical(0.95):.3f} |"
        )
    lines = [
        SECTION,
        "",
        f"`families.lenth_reference(m)`: {LENTH_DRAWS:,} null screens of m effects, simulated "
        f"once per m and cached. First call with the cache cleared, {args.repeat} repeats; a "
        "cached call averaged over 1,000.",
        f"Machine: {machine()}.",
        "",
        "| effects | first call, median s | fastest | slowest | cached call, us | held, MB "
        "| 95% critical t |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    publish_section(lines, args.write)


if __name__ == "__main__":
    main()
