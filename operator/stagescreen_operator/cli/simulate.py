"""`stagescreen simulate`: the whole programme on planted effects, before any GPU is spent.

Answers "with these seeds and budgets, would the screen find effects of this size?" and
exercises every stage's analysis and promotion rule; all of it is labelled synthetic.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stagescreen_operator.cli.app import app
from stagescreen_operator.cli.study_file import load_or_exit

if TYPE_CHECKING:
    from stagescreen.outcome import StageOutcome


@app.command()
def simulate(
    study_file: Annotated[Path, typer.Argument(help="ScreeningStudy YAML file.")],
    effects: Annotated[
        str | None,
        typer.Option(
            help=(
                "Planted high-minus-low effects at the reference budget, e.g. "
                "'A=0.1,D=0.18,A:B=0.02'. Default: paper-like sizes (a few large, one null)."
            ),
        ),
    ] = None,
    noise: Annotated[
        float, typer.Option(min=0, help="Run-to-run noise sd of the metric (>= 0).")
    ] = 0.004,
    seed_sd: Annotated[float, typer.Option(help="Noise sd shared by runs of one seed.")] = 0.002,
    relaxation: Annotated[
        float, typer.Option(help="Effects shrink as (reference/budget)^relaxation.")
    ] = 0.8,
    reference: Annotated[
        str | None,
        typer.Option(
            help="Budget at which the planted effects hold, e.g. 2m. Default: the shortest."
        ),
    ] = None,
    out: Annotated[
        str,
        typer.Option(
            help="Where to write (a directory or s3://bucket/prefix); never the study's storage."
        ),
    ] = "./simulated",
) -> None:
    """Simulate every stage on planted effects and write outcomes as a real study would.

    Writes spec.yaml, stages/<stage>/results.parquet and outcome.json, and manifest.json
    under OUT/<study>/; `stagescreen report OUT/<study>` renders them.
    """
    import pandas as pd

    from stagescreen import publish, synthetic
    from stagescreen.spec import parse_duration
    from stagescreen.store import StoreError, open_store

    study = load_or_exit(study_file)
    spec = study.spec
    try:
        planted = (
            synthetic.parse_effects(effects, spec.codes)
            if effects
            else synthetic.default_effects(spec)
        )
        reference_s = (
            parse_duration(reference)
            if reference
            else min(budget for stage in spec.stages for budget in stage.budgets)
        )
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    model = synthetic.ResponseModel(
        effects={t: v for t, v in planted.items() if ":" not in t},
        interactions={t: v for t, v in planted.items() if ":" in t},
        reference_s=reference_s,
        relaxation=relaxation,
        seed_sd=seed_sd,
        noise_sd=noise,
    )
    try:
        store = open_store(out)
        publish.publish_spec(store, study)
    except StoreError as error:
        typer.echo(f"error: --out {out!r}: {error}", err=True)
        raise typer.Exit(2) from None
    planted_text = ", ".join(f"{t}={v:+g}" for t, v in planted.items())
    typer.echo(f"SYNTHETIC study {study.metadata.name!r}: planted effects {planted_text}")
    results = pd.DataFrame()
    for stage in spec.stages:
        results = synthetic.simulate_stage(spec, stage.name, results, model)
        record = publish.publish_stage(store, study, stage.name, results)
        typer.echo(_summary(record))
    typer.echo(_verdict(record))
    typer.echo(f"wrote {store.uri(study.metadata.name)}/")


def _verdict(last: StageOutcome) -> str:
    """The study's answer as the last stage gives it: which recipe deserves the long runs."""
    best = last.best
    if best is None:
        return f"SYNTHETIC outcome: stage {last.stage!r} has no succeeded runs"
    levels = ",".join(
        f"{code}{'+' if v > 0 else '-' if v < 0 else '0'}" for code, v in best.levels.items()
    )
    recipe = ", ".join(f"{name}={value}" for name, value in best.hyperparameters.items())
    interval = (
        f" [{best.ci_low:.4f}, {best.ci_high:.4f}]"
        if best.ci_low is not None and best.ci_high is not None
        else ""
    )
    return (
        f"SYNTHETIC outcome: best {best.condition_id} ({levels}: {recipe}) "
        f"{last.metric} {best.mean:.4f}{interval} at {best.budget_s} s in stage {last.stage!r}"
    )


def _summary(record: StageOutcome) -> str:
    """One line per stage: runs, what it retained, its best condition and what it promoted."""
    return f"{record.stage:<14} {record.kind:<12} {record.runs.succeeded:>4} runs  " + (
        record.summary()
    )
