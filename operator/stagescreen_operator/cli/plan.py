"""`stagescreen plan`: what a study will cost, stage by stage, before anything runs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from stagescreen_operator.cli.app import app
from stagescreen_operator.cli.study_file import load_or_exit, table


def _hours(hours: float) -> str:
    return f"{hours:,.1f}" if hours >= 10 else f"{hours:.2f}"


def _clock(hours: float) -> str:
    """Wall-clock in the unit a person plans with: 4m, 2.9h, 11.5d."""
    if hours < 1:
        return f"{hours * 60:.0f}m"
    return f"{hours:.1f}h" if hours < 48 else f"{hours / 24:.1f}d"


@app.command()
def plan(
    study_file: Annotated[Path, typer.Argument(help="ScreeningStudy YAML file.")],
    overhead: Annotated[
        str,
        typer.Option(
            help="Start-up and evaluation time added to every run's training budget, e.g. 90s.",
        ),
    ] = "0s",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Price a study: runs, GPU-hours per pool and wall-clock per stage.

    Anchor stages count one condition per pick and greedy stages their run limit, so the
    totals are known before the first run. Wall-clock packs runs onto `limits.parallelism`
    slots; stages run one after another.
    """
    from stagescreen import stages
    from stagescreen.spec import parse_duration

    study = load_or_exit(study_file)
    spec = study.spec
    try:
        overhead_s = 0 if re.fullmatch(r"0+[smh]?", overhead.strip()) else parse_duration(overhead)
    except ValueError as error:
        typer.echo(f"error: --overhead {overhead!r}: {error}", err=True)
        raise typer.Exit(2) from None
    costs = stages.programme_cost(spec, overhead_s)
    pools = [pool.name for pool in spec.pools]
    total_gpu = stages.budget_hours(costs)
    total_wall = sum(cost.wall_hours for cost in costs)
    limit = spec.limits.max_gpu_hours
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
                    "wall_hours": cost.wall_hours,
                }
                for cost in costs
            ],
            "total": {
                "runs": sum(cost.runs for cost in costs),
                "gpu_hours": total_gpu,
                "wall_hours": total_wall,
            },
            "max_gpu_hours": limit,
        }
        typer.echo(json.dumps(document, indent=2))
        return
    rows = []
    for cost, stage in zip(costs, spec.stages, strict=True):
        budgets = ",".join(stages.format_budget(b) for b in stage.budgets)
        rows.append(
            [
                cost.stage,
                cost.kind,
                budgets,
                str(len(stage.seeds)),
                str(cost.runs),
                *(_hours(cost.gpu_hours.get(pool, 0.0)) for pool in pools),
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
            *(_hours(sum(c.gpu_hours.get(pool, 0.0) for c in costs)) for pool in pools),
            _clock(total_wall),
        ]
    )
    header = [
        "stage",
        "kind",
        "budgets",
        "seeds",
        "runs",
        *(f"{p} GPU-h" for p in pools),
        "wall-clock",
    ]
    typer.echo(
        f"Study {study.metadata.name!r}: {len(costs)} stages, parallelism "
        f"{spec.limits.parallelism}, overhead {overhead_s} s per run"
    )
    typer.echo(table(header, rows, left=3))
    if overhead_s == 0:
        typer.echo("GPU-hours count training budgets only; --overhead 90s adds start-up and eval.")
    if limit is not None and total_gpu > limit:
        typer.echo(
            f"warning: {total_gpu:,.1f} GPU-hours exceeds spec.limits.maxGpuHours ({limit:g}); "
            "the operator stops launching runs at the limit.",
            err=True,
        )
