"""How long the analysis side takes for a paper-sized programme (issue goal: < 10 s).

Builds the paper's 613-run mix (Table 1) on planted effects: examples/paper.yaml's ten stages
(584 runs) plus the two small packages it leaves out, the 2- and 10-minute extreme-condition
replications (20 runs) and the centre-point bridge probes (9 runs). Then times, in one process,
planning every stage, fitting every stage's outcome (effects, ANOVA, rankings, promotion),
the manifest, and rendering the report with its figures into a local store.

    .venv/bin/python bench/analysis_speed.py [--repeat 3] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
from benchdoc import machine, publish_section

from stagescreen.outcomes.manifest import manifest
from stagescreen.planning.planner import plan_stage
from stagescreen.reports import report
from stagescreen.statistics import synthetic
from stagescreen.storage import publish
from stagescreen.storage.store import open_store
from stagescreen.study.parse import load_study
from stagescreen.study.spec import Stage

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Analysis speed (bench/analysis_speed.py)"


def paper_programme():
    """examples/paper.yaml plus the two packages of Table 1 it does not list as stages."""
    study = load_study(ROOT / "examples" / "paper.yaml")
    extra = [
        Stage.model_validate(
            {
                "name": "extreme-2m",
                "kind": "confirm",
                "budgets": ["2m"],
                "seeds": 2,
                "select": [
                    {"from": "screen", "rule": "best", "k": 2, "at": "2m"},
                    {"from": "screen", "rule": "worst", "k": 2, "at": "2m"},
                ],
            }
        ),
        Stage.model_validate(
            {
                "name": "extreme-10m",
                "kind": "confirm",
                "budgets": ["10m"],
                "seeds": 2,
                "select": [
                    {"from": "screen", "rule": "best", "k": 4, "at": "10m"},
                    {"from": "screen", "rule": "worst", "k": 2, "at": "10m"},
                ],
            }
        ),
        Stage.model_validate(
            {
                "name": "centre-probes",
                "kind": "bridge",
                "budgets": ["2m", "5m", "10m"],
                "seeds": 3,
                "select": [{"from": "screen", "rule": "bridge", "factors": ["B"]}],
            }
        ),
    ]
    spec = study.spec.model_copy(
        update={"stages": [*study.spec.stages[:1], *extra, *study.spec.stages[1:]]}
    )
    return study.model_copy(update={"spec": spec})


TABLE_1_RUNS = 613


def simulate(study):
    """Results of every stage; the climbs' unspent runs become extra random draws.

    Greedy climbs stop once a full pass finds no better neighbour (12 runs here, where the
    paper's climbs spent 50 and 20), so a last random batch brings the total to Table 1's 613.
    """
    spec = study.spec
    model = synthetic.ResponseModel(
        effects=synthetic.default_effects(spec), interactions={"A:B": 0.02}
    )
    results = pd.DataFrame()
    for stage in spec.stages:
        results = synthetic.simulate_stage(spec, stage.name, results, model)
    short = TABLE_1_RUNS - len(results)
    if short > 0:
        topup = Stage.model_validate(
            {
                "name": "random-topup",
                "kind": "random",
                "budgets": ["10m"],
                "batches": 1,
                "drawsPerBatch": short,
                "drawSeed": 1,
            }
        )
        spec = spec.model_copy(update={"stages": [*spec.stages, topup]})
        study = study.model_copy(update={"spec": spec})
        results = synthetic.simulate_stage(spec, topup.name, results, model)
    return study, results


def analyse(study, results: pd.DataFrame, root: Path) -> dict[str, float]:
    """The timed part: plan, outcome per stage, manifest, report with figures."""
    spec = study.spec
    name = study.metadata.name
    store = open_store(str(root))
    timings = {}
    start = time.perf_counter()
    for stage in spec.stages:
        plan_stage(spec, stage, results)
    timings["plan"] = time.perf_counter() - start
    start = time.perf_counter()
    publish.publish_spec(store, study)
    for stage in spec.stages:
        publish.publish_stage(store, study, stage.name, results)
    timings["outcomes"] = time.perf_counter() - start
    start = time.perf_counter()
    report.write_report(store, name)
    timings["report"] = time.perf_counter() - start
    timings["total"] = sum(timings.values())
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    study, results = simulate(paper_programme())
    runs = len(results)
    rows = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(analyse(study, results, Path(tmp)))
    medians = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    summary = manifest(study.spec, results, study.metadata.name).total
    lines = [
        SECTION,
        "",
        f"Synthetic paper programme: {runs} runs in {len(study.spec.stages)} stages "
        f"({summary.succeeded} succeeded), planted paper-like effects.",
        f"Machine: {machine()}; median of {args.repeat} runs in one process.",
        "",
        "| step | seconds |",
        "|---|---|",
        *(f"| {key} | {value:.2f} |" for key, value in medians.items()),
        "",
        "Goal (issue 2): the whole analysis of a 613-run programme in under 10 s.",
    ]
    publish_section(lines, args.write)


if __name__ == "__main__":
    main()
