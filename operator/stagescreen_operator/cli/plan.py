"""`stagescreen plan`: what a study will cost, stage by stage, before anything runs."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated

import typer

from stagescreen_operator.cli.app import fail
from stagescreen_operator.cli.study_file import StudyFile, load_or_exit
from stagescreen_operator.tables import text_table

if TYPE_CHECKING:
    from pathlib import Path

    from stagescreen.planning.cost import StageCost
    from stagescreen.study.spec import StudySpec


def _hours(hours: float) -> str:
    return f"{hours:,.1f}" if hours >= 10 else f"{hours:.2f}"


def _clock(hours: float) -> str:
    """Wall-clock in the unit a person plans with: 4m, 2.9h, 11.5d."""
    if hours < 1:
        return f"{hours * 60:.0f}m"
    return f"{hours:.1f}h" if hours < 48 else f"{hours / 24:.1f}d"


def _pool_hours(cost: StageCost, pool: str, on_cpu: set[str]) -> float:
    """What a stage costs on a pool: GPU-hours, or run-hours on a CPU pool."""
    return (cost.run_hours if pool in on_cpu else cost.gpu_hours).get(pool, 0.0)


def plan(
    study_file: StudyFile,
    overhead: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Start-up, evaluation and checkpoint time added to every run's training "
            "budget, e.g. 90s. Default: the overhead measured on CPU runs (5 s); GPU runs that "
            "compile start slower.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Price a study: runs, GPU-hours per pool and wall-clock per stage.

    Pools with gpus: 0 are priced in CPU run-hours.

    Anchor stages count one condition per pick, greedy stages their run limit and halving
    stages every rung of their ladder, so the totals are known before the first run.
    Wall-clock packs runs onto `limits.parallelism` slots; stages run one after another.

    Example: stagescreen plan examples/quickstart.yaml --overhead 60s
    """
    from stagescreen.planning.cost import RUN_OVERHEAD_S, budget_hours, programme_cost
    from stagescreen.planning.ids import format_budget
    from stagescreen.study.spec import parse_duration

    study = load_or_exit(study_file)
    spec = study.spec
    try:
        if overhead is None:
            overhead_s = RUN_OVERHEAD_S
        elif re.fullmatch(r"0+[smh]?", overhead.strip()):
            overhead_s = 0
        else:
            overhead_s = parse_duration(overhead)
    except ValueError as error:
        raise fail(f"--overhead {overhead!r}: {error}") from None
    costs = programme_cost(spec, overhead_s)
    pools = [pool.name for pool in spec.pools]
    on_cpu = {pool.name for pool in spec.pools if pool.gpus == 0}
    total_gpu = budget_hours(costs)
    total_wall = sum(cost.wall_hours for cost in costs)
    if as_json:
        document = {
            "study": study.metadata.name,
            "overhead_s": overhead_s,
            "parallelism": spec.limits.parallelism,
            "stages": [
                {
                    "stage": cost.stage,
                    "kind": cost.kind,
                    "runs": cost.runs,
                    "gpu_hours": dict(cost.gpu_hours),
                    "run_hours": dict(cost.run_hours),
                    "wall_hours": cost.wall_hours,
                }
                for cost in costs
            ],
            "total": {
                "runs": sum(cost.runs for cost in costs),
                "gpu_hours": total_gpu,
                "run_hours": {
                    pool: sum(c.run_hours.get(pool, 0.0) for c in costs) for pool in pools
                },
                "wall_hours": total_wall,
            },
            "max_gpu_hours": spec.limits.max_gpu_hours,
        }
        typer.echo(json.dumps(document, indent=2))
        _refuse_over_cap(study_file, spec, overhead_s)
        return
    rows = []
    for cost, stage in zip(costs, spec.stages, strict=True):
        budgets = ",".join(format_budget(b) for b in stage.budgets)
        rows.append(
            [
                cost.stage,
                cost.kind,
                budgets,
                str(len(stage.seeds)),
                str(cost.runs),
                *(_hours(_pool_hours(cost, pool, on_cpu)) for pool in pools),
                _clock(cost.wall_hours),
            ]
        )
    rows.append(
        [
            "total",
            "",
            "",
            "",
            str(sum(cost.runs for cost in costs)),
            *(_hours(sum(_pool_hours(c, pool, on_cpu) for c in costs)) for pool in pools),
            _clock(total_wall),
        ]
    )
    header = [
        "stage",
        "kind",
        "budgets",
        "seeds",
        "runs",
        *(f"{p} CPU run-h" if p in on_cpu else f"{p} GPU-h" for p in pools),
        "wall-clock",
    ]
    typer.echo(
        f"Study {study.metadata.name!r}: {len(costs)} stages, parallelism "
        f"{spec.limits.parallelism}, overhead {overhead_s} s per run"
    )
    typer.echo(text_table(header, rows, left=3))
    if overhead_s == 0:
        typer.echo("Hours count training budgets only; --overhead 90s adds start-up and eval.")
    elif overhead is None:
        typer.echo(
            f"Overhead {overhead_s} s per run is what CPU runs measure (start-up, evaluation, "
            "checkpoint); GPU runs that compile their model need more: --overhead 60s."
        )
    if on_cpu:
        typer.echo("CPU run-hours: each run's duration on its share of the cores (gpus: 0 pools).")
    if any(stage.kind == "greedy" or stage.select for stage in spec.stages):
        typer.echo(
            "Runs are the most a stage can run: greedy stops once no move improves, and an "
            "anchor two rules pick (the same levels) runs once."
        )
    _refuse_over_cap(study_file, spec, overhead_s)


def _refuse_over_cap(study_file: Path, spec: StudySpec, overhead_s: int) -> None:
    """After the prices: a plan over `limits.maxGpuHours` exits 2 (as `validate` refuses it),
    with the figure and what to change."""
    from stagescreen.planning.cost import over_cap

    problem = over_cap(spec, overhead_s)
    if problem is not None:
        raise fail(f"{study_file}: spec.limits.maxGpuHours: {problem}")
