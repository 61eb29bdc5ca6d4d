"""`stagescreen status`: where a study stands, from its store alone."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from stagescreen_operator.cli.app import app
from stagescreen_operator.cli.report import split_study_uri
from stagescreen_operator.cli.study_file import table


@app.command()
def status(
    uri: Annotated[
        str,
        typer.Argument(
            metavar="DIR_OR_S3_URI",
            help="A study's folder in storage: ./runs/quickstart or s3://bucket/prefix/paper.",
        ),
    ],
) -> None:
    """Stage table (runs ended, failed, waiting of those planned), the best condition of each
    analysed stage, compute spent, and the runs started but not ended (running, or stopped
    with a checkpoint to resume from).

    Example: stagescreen status runs/demo/quickstart
    """
    import yaml

    from stagescreen.spec import parse_study
    from stagescreen.store import OUTCOME, SPEC, StoreError, StudyKeys, open_store
    from stagescreen_operator.controller import decide
    from stagescreen_operator.local.executor import observe_store

    try:
        root, name = split_study_uri(uri)
        store = open_store(root)
        keys = StudyKeys(name)
        if not store.exists(keys.spec()):
            typer.echo(f"error: no study at {uri!r} (expected {SPEC} there)", err=True)
            raise typer.Exit(2)
        study = parse_study(yaml.safe_load(store.get_text(keys.spec())))
    except (ValueError, StoreError) as error:
        typer.echo(f"error: DIR_OR_S3_URI {uri!r}: {error}", err=True)
        raise typer.Exit(2) from None
    spec = study.spec
    observed = observe_store(store, study)
    records = observed.records
    outcomes = {stage: store.get_json(keys.stage(stage, OUTCOME)) for stage in observed.analysed}
    decision = decide(spec, observed)
    typer.echo(
        f"study {name}: {decision.phase}" + (f" ({decision.reason})" if decision.reason else "")
    )
    typer.echo(
        table(
            ["stage", "kind", "planned", "ended", "failed", "waiting", "best"],
            _rows(spec, decision, outcomes),
        )
    )
    hours = sum(float(r.get("wall_s") or 0.0) for r in records.values()) / 3600
    gpus = {pool.name: pool.gpus for pool in spec.pools}
    gpu_hours = (
        sum(
            float(r.get("wall_s") or 0.0) * gpus.get(str(r.get("pool")), 1)
            for r in records.values()
        )
        / 3600
    )
    typer.echo(f"compute: {hours:.2f} run-hours, {gpu_hours:.2f} GPU-hours")
    unfinished = sorted(observed.interrupted)
    typer.echo("started, not ended: " + (", ".join(unfinished) if unfinished else "none"))
    for line in decision.waiting:
        typer.echo(f"waiting: {line}")


def _rows(spec: Any, decision: Any, outcomes: dict[str, Any]) -> list[list[str]]:
    from stagescreen.records import stage_counts

    rows = []
    for stage in spec.stages:
        counts = stage_counts(decision.results, stage.name)
        if not counts.planned:
            rows.append([stage.name, stage.kind, "-", "-", "-", "-", "not planned yet"])
            continue
        best = (outcomes.get(stage.name) or {}).get("best") or {}
        shown = (
            f"{best['condition_id']} {best['mean']:.4f} at {best['budget_s']} s"
            if best.get("condition_id")
            else "-"
        )
        numbers = (counts.planned, counts.ended, counts.failed, counts.planned - counts.ended)
        rows.append([stage.name, stage.kind, *(str(n) for n in numbers), shown])
    return rows
