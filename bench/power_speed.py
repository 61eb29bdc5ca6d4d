"""How long a power rehearsal of the paper's screens takes (issue 10 goal: 1,000 replicates
in under a minute on 2 cores).

Repeats examples/paper.yaml's fixed-design stages (the pilot screen, the D-fixed follow-up
with its interactions, the seeded screen: 272 runs a replicate) on the paper-calibrated model,
as `stagescreen simulate examples/paper.yaml --replicates 1000` does, and times the whole
`power.power_study` call: planning, drawing, every family's fits, the anchor picks.

    .venv/bin/python bench/power_speed.py [--replicates 1000] [--repeat 3]
        [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchdoc import machine, publish_section

from stagescreen.statistics import power, synthetic
from stagescreen.study.parse import load_study

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Power simulation (bench/power_speed.py)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    spec = load_study(ROOT / "examples" / "paper.yaml").spec
    model = synthetic.paper_model(spec)
    runs = len(power.rehearsal(spec, model).runs)
    seconds = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        report = power.power_study(spec, model, args.replicates)
        seconds.append(time.perf_counter() - start)
    stages = sorted({term.stage for term in report.terms}, key=[s.name for s in spec.stages].index)
    lines = [
        SECTION,
        "",
        f"examples/paper.yaml's fixed-design stages ({', '.join(stages)}: {runs} runs a replicate)",
        f"on the paper-calibrated model, {args.replicates:,} replicates; "
        f"{len(report.terms)} effect rows and {len(report.anchors)} anchor rules tallied.",
        f"Machine: {machine()}; {args.repeat} runs in one process.",
        "",
        "| replicates | median seconds | fastest | slowest |",
        "|---|---|---|---|",
        f"| {args.replicates:,} | {statistics.median(seconds):.2f} | {min(seconds):.2f} "
        f"| {max(seconds):.2f} |",
        "",
        "Goal (issue 10): 1,000 replicates of the paper's screen in under a minute on 2 cores.",
    ]
    publish_section(lines, args.write)


if __name__ == "__main__":
    main()
