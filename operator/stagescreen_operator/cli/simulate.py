"""`stagescreen simulate`: the whole programme on planted effects, before any GPU is spent.

Answers "with these seeds and budgets, would the screen find effects of this size?" twice
over: once as one simulated study written as a real one would be, and with `--replicates N`
as a power table (`stagescreen.statistics.power`) over N repetitions of the study. All of it is
labelled synthetic. With `--table` the same path answers each run from a table of measured
runs instead (`stagescreen.statistics.replay`), labelled REPLAY.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stagescreen_operator.cli.app import fail
from stagescreen_operator.cli.outputs import output_store
from stagescreen_operator.cli.study_file import StudyFile, load_or_exit
from stagescreen_operator.tables import text_table

if TYPE_CHECKING:
    from collections.abc import Mapping

    from stagescreen.outcomes.model import StageOutcome
    from stagescreen.statistics.power import PowerReport
    from stagescreen.statistics.synthetic import ResponseModel, RunSource
    from stagescreen.storage.store import Store
    from stagescreen.study.spec import Study, StudySpec

SINGLE_STUDY_OUT = "./simulated"


def simulate(
    study_file: StudyFile,
    effects: Annotated[
        str | None,
        typer.Option(
            metavar="TERM=EFFECT,...",
            help=(
                "Planted high-minus-low effects at the reference budget, e.g. "
                "'A=0.1,D=0.18,A:B=0.02'; they replace every default term and shrink with "
                "budget by --relaxation. Default: the paper's effects as measured at 2, 5 and "
                "10 minutes, on the factors it measured, by name (DEPTH, ASPECT_RATIO, "
                "MATRIX_LR, TOTAL_BATCH_SIZE and DEPTH:ASPECT_RATIO; WARMDOWN_RATIO null), "
                "linear in log-budget between, held flat outside, stretched so the study's "
                "shortest budget plays 2 min; other factors get none (a study with none of "
                "these factors needs --effects)."
            ),
        ),
    ] = None,
    noise: Annotated[
        str | None,
        typer.Option(
            metavar="SD|BUDGET=SD,...",
            help=(
                "Run-to-run noise sd: one number for every budget, or BUDGET=SD points such "
                "as '5m=0.032,10m=0.0086' (log-linear in log-budget between, held flat "
                "outside). Default: the paper's seeded-screen residuals, 0.032 at 5 min and "
                "0.0086 at 10 min, stretched so the study's shortest budget plays 2 min."
            ),
        ),
    ] = None,
    noise_from: Annotated[
        str | None,
        typer.Option(
            metavar="DIR_OR_S3_URI",
            help=(
                "Take the run noise sd per budget from a finished study instead: its folder "
                "in storage, as `report` and `status` take it (runs/quickstart, sim/paper, "
                "s3://bucket/prefix/paper). Each budget's residual sd, pooled over the "
                "analysed stages and pools that measured it (their noise floors), at that "
                "study's own budgets; log-linear between, held flat outside. Not with --noise."
            ),
        ),
    ] = None,
    seed_sd: Annotated[
        float | None,
        typer.Option(
            metavar="SD", min=0, help="Noise sd shared by runs of one seed. Default: 0.002."
        ),
    ] = None,
    seed_condition_sd: Annotated[
        float | None,
        typer.Option(
            metavar="SD",
            min=0,
            help="Noise sd shared by the runs of one seed and one condition. Default: 0.",
        ),
    ] = None,
    spread: Annotated[
        float | None,
        typer.Option(
            metavar="SLOPE",
            help=(
                "Heteroscedastic cells: log-sd slope per sd of a condition's planted signal; "
                "0 gives every cell the same sd. Default: 0.68 (the paper's worst cell is "
                "5-8x noisier than its best), worse conditions noisier."
            ),
        ),
    ] = None,
    divergence: Annotated[
        float | None,
        typer.Option(
            metavar="PROBABILITY",
            min=0,
            max=1,
            help="Probability that a run diverges (no metric). Default: 0.005.",
        ),
    ] = None,
    relaxation: Annotated[
        float | None,
        typer.Option(
            metavar="EXPONENT",
            help=(
                "Effects shrink as (reference/budget)^relaxation instead of following the "
                "paper's table; the default effects then hold at the reference. Default with "
                "--effects: 1.38, fitted to the paper's 2/5/10-minute effects."
            ),
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Budget at which the planted effects hold, e.g. 2m. Default: the shortest.",
        ),
    ] = None,
    replicates: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=0,
            help=(
                "Repeat the study N times and print its power table instead of writing one "
                "simulated study (nothing is written unless --out is given)."
            ),
        ),
    ] = 0,
    table: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help=(
                "Replay the study on a table of measured runs (.csv or .parquet) instead of "
                "planted effects: a column per factor (its values or codes -1/0/+1), the metric, "
                "optional budget and seed (or replicate) columns; each run takes a measured "
                "value of its condition. Not with --replicates or the model options."
            ),
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=0,
            help=(
                "Base seed of the replicates: replicate r uses (seed, r). With --table and no "
                "seed column: the seed of the order replicates are drawn in."
            ),
        ),
    ] = 0,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="With --replicates: print the power report as JSON."),
    ] = False,
    out: Annotated[
        str | None,
        typer.Option(
            metavar="DIR_OR_S3_URI",
            help=(
                "Where to write (a directory or s3://bucket/prefix); never the study's "
                f"storage. Default: {SINGLE_STUDY_OUT}; with --replicates only "
                "<study>/power.json, and only when given."
            ),
        ),
    ] = None,
) -> None:
    """Simulate a study on planted effects, or its power (--replicates).

    Without --replicates: writes spec.yaml, stages/<stage>/results.parquet and outcome.json,
    and manifest.json under OUT/<study>/; `stagescreen report OUT/<study>` renders them.

    With --replicates N: repeats the screen and follow-up stages N times and prints, per
    stage, budget and term: PLANTED, the true effect at that budget; POWER, the fraction of
    replicates in which the effect is detected (95% interval excludes zero and BH q <= 0.05
    within its budget, the rule that retains a factor; for a planted zero, the false-positive
    rate); SIGN ERR, the fraction of replicates detecting it with the wrong sign; COVERAGE,
    the fraction whose 95% interval holds the planted effect (well below 0.95 means the
    intervals are too narrow, e.g. under heteroscedastic cells); MEAN EST, the average
    estimate. Then, per anchor rule picking from a screen or follow-up: MATCH, the fraction
    of replicates whose pick, ranked as the study ranks (for best and bridge, conditions that
    lost runs last), is the true optimum (the best noise-free mean at the budget it ranks
    at). 1,000 replicates of examples/paper.yaml take a few seconds.

    The model defaults are calibrated to the paper (docs/analysis.md, "Rehearsing a study");
    each option below overrides one of them. Everything printed is SYNTHETIC.

    With --table FILE: every run takes a measured value of its condition from the table
    (docs/analysis.md, "Replaying measured tables"), written as above and printed as REPLAY.
    """
    from stagescreen.statistics import synthetic
    from stagescreen.study.spec import parse_duration

    if table is not None:
        model_options = {
            "--effects": effects,
            "--noise": noise,
            "--noise-from": noise_from,
            "--seed-sd": seed_sd,
            "--seed-condition-sd": seed_condition_sd,
            "--spread": spread,
            "--divergence": divergence,
            "--relaxation": relaxation,
            "--reference": reference,
            "--replicates": replicates or None,
            "--json": json_output or None,
        }
        given = [name for name, value in model_options.items() if value is not None]
        if given:
            raise fail(
                f"--table replays measured values; it takes no model or power option "
                f"(got {', '.join(given)})"
            )
        _replay(load_or_exit(study_file, trains=False), table, seed, out or SINGLE_STUDY_OUT)
        return
    if noise is not None and noise_from is not None:
        raise fail("give --noise or --noise-from, not both")
    study = load_or_exit(study_file)
    spec = study.spec
    try:
        planted = synthetic.parse_effects(effects, spec.codes) if effects else None
        if reference and re.fullmatch(r"\d+(?:\.\d+)?", reference.strip()):
            raise ValueError(
                f"--reference: a budget needs a unit: write {reference}s or {reference}m"
            )
        reference_s = parse_duration(reference) if reference else None
        model = synthetic.paper_model(spec, planted, reference_s, relaxation)
    except ValueError as error:
        raise fail(f"{error}") from None
    if planted is None:
        _say_what_is_not_planted(spec, err=json_output)
    try:
        model = _overridden(model, noise, seed_sd, seed_condition_sd, spread, divergence)
    except ValueError as error:
        raise fail(f"--noise {noise!r}: {error}") from None
    if noise_from is not None:
        model = replace(model, noise_points=_measured_noise(noise_from))
    if replicates:
        _power(study.metadata.name, spec, model, replicates, seed, json_output, out, noise_from)
    else:
        _one_study(study, model, out or SINGLE_STUDY_OUT, noise_from)


def _say_what_is_not_planted(spec: StudySpec, err: bool) -> None:
    """The paper's default effects belong to the factors it measured, by name: refuse a study
    with none of them, and name the factors that get no effect in one with some."""
    from stagescreen.statistics import synthetic

    missing = synthetic.unplanted(spec)
    if not missing:
        return
    paper = ", ".join(synthetic.PAPER_FACTORS)
    example = ",".join(f"{code}=0.05" for code in spec.codes[:2])
    if len(missing) == len(spec.factors):
        raise fail(
            f"give --effects: the default effects are the paper's, measured on {paper}, and "
            f"this study has none of those factors (it has {', '.join(missing)}); plant the "
            f"effect sizes you expect by factor code, e.g. --effects '{example}'"
        )
    codes = {factor.name: factor.code for factor in spec.factors}
    named = ", ".join(f"{name} ({codes[name]})" for name in missing)
    typer.echo(
        f"SYNTHETIC note: no effect planted on {named}: the paper measured no such factor "
        f"(its defaults cover {paper}); to plant one, give every term with --effects",
        err=err,
    )


def _overridden(
    model: ResponseModel,
    noise: str | None,
    seed_sd: float | None,
    seed_condition_sd: float | None,
    spread: float | None,
    divergence: float | None,
) -> ResponseModel:
    """The calibrated model with each option the user gave in place of its default."""
    from stagescreen.statistics import synthetic

    if noise is not None:
        parsed = synthetic.parse_noise(noise)
        if isinstance(parsed, dict):
            model = replace(model, noise_points=parsed)
        else:
            model = replace(model, noise_sd=parsed, noise_points={})
    return replace(
        model,
        seed_sd=model.seed_sd if seed_sd is None else seed_sd,
        seed_condition_sd=(
            model.seed_condition_sd if seed_condition_sd is None else seed_condition_sd
        ),
        spread=model.spread if spread is None else spread,
        divergence=model.divergence if divergence is None else divergence,
    )


def _measured_noise(uri: str) -> dict[int, float]:
    """The run noise sd per budget a finished study measured (`noise.pooled_noise` over its
    stage outcomes' noise floors), read as `report` and `status` read a stored study."""
    from stagescreen.statistics.noise import pooled_noise
    from stagescreen.storage.keys import StoreError
    from stagescreen.storage.publish import read_outcomes
    from stagescreen_operator.cli.report import open_study

    try:
        store, study = open_study(uri)
        stages = [stage.name for stage in study.spec.stages]
        outcomes, _ = read_outcomes(store, study, stages)
    except (ValueError, StoreError) as error:
        raise fail(f"--noise-from {uri!r}: {error}") from None
    if not outcomes:
        raise fail(f"--noise-from {uri!r}: no analysed stage (no stage has a readable outcome)")
    points = pooled_noise(floor for outcome in outcomes.values() for floor in outcome.noise_floor)
    if not points:
        raise fail(
            f"--noise-from {uri!r}: no run noise measured at any budget (stages analysed: "
            f"{', '.join(outcomes)}; none records a noise floor with residual df, e.g. "
            "outcomes written before noise floors were recorded, or unreplicated fits)"
        )
    return points


def _describe(model: ResponseModel, noise_from: str | None = None) -> str:
    """The model in one line, so a printed result says what it was drawn from."""
    from stagescreen.planning.ids import format_budget

    if model.noise_points:
        noise = ", ".join(
            f"{sd:.3g} at {format_budget(b)}" for b, sd in sorted(model.noise_points.items())
        )
        noise += " (held flat outside)"
        if noise_from is not None:
            noise = f"measured in {noise_from}: {noise}"
    else:
        noise = f"{model.noise_sd:g} at every budget"
    if model.effect_points:
        at = ", ".join(format_budget(b) for b in sorted(model.effect_points))
        effects = f"effects per budget at {at} (linear in log-budget between, flat outside)"
    else:
        effects = f"relaxation {model.relaxation:.2f} from {format_budget(model.reference_s)}"
    return (
        f"SYNTHETIC model: run noise sd {noise}; cell spread {model.spread:.2f}; seed sd "
        f"{model.seed_sd:g}; seed x condition sd {model.seed_condition_sd:g}; divergence "
        f"{model.divergence:g}; {effects}"
    )


def _planted_text(model: ResponseModel) -> str:
    """The planted terms: at each calibration budget when the model has them, else the sizes
    at the reference budget."""
    from stagescreen.planning.ids import format_budget

    def terms(planted: Mapping[str, float]) -> str:
        # a term planted at zero has no direction: "E=0", never "E=+0" or "E=-0"
        return ", ".join(f"{t}={v:+.4g}" if v else f"{t}=0" for t, v in planted.items())

    if model.effect_points:
        return "; ".join(
            f"at {format_budget(b)} {terms(model.effect_points[b])}"
            for b in sorted(model.effect_points)
        )
    return terms({**model.effects, **model.interactions})


def _one_study(study: Study, model: ResponseModel, out: str, noise_from: str | None) -> None:
    """Simulate every stage once and write it as a real study would be written."""
    header = [
        f"SYNTHETIC study {study.metadata.name!r}: planted effects {_planted_text(model)}",
        _describe(model, noise_from),
    ]
    _write_study(study, model, out, "SYNTHETIC", header)


def _replay(study: Study, path: Path, seed: int, out: str) -> None:
    """Answer every stage's runs from the table and write it as a real study would be."""
    from stagescreen.planning.ids import format_budget
    from stagescreen.statistics import replay
    from stagescreen_operator.cli.effects import read_table

    frame = read_table(str(path), "--table")
    try:
        table = replay.table_for(study.spec, frame, path.name, seed)
    except replay.ReplayError as error:
        raise fail(f"--table {str(path)!r}: {error}") from None
    read = ", ".join(f"{name} as {how}" for name, how in table.read_as.items())
    budgets = (
        "every budget from the whole table (no budget column)"
        if table.budgets is None
        else f"budgets {', '.join(map(format_budget, table.budgets))}"
    )
    draws = (
        "the run with seed s takes seed s's value"
        if table.seeded
        else f"replicates drawn without reuse (seed {seed})"
    )
    header = [
        f"REPLAY study {study.metadata.name!r}: measured values from {path} "
        f"({len(table.rows)} rows), no model was trained",
        f"REPLAY table: factors read {read}; {budgets}; {draws}",
    ]
    try:
        _write_study(study, table, out, "REPLAY", header)
    except replay.ReplayError as error:
        raise fail(f"--table {str(path)!r}: {error}") from None


def _write_study(study: Study, source: RunSource, out: str, word: str, header: list[str]) -> None:
    """Every stage answered by `source` (planted model or measured table), written as a real
    study would be; every printed line starts with `word`. All stages are answered before
    anything is written, so a table that cannot answer a run leaves no half-written study."""
    import pandas as pd

    from stagescreen.statistics import synthetic
    from stagescreen.storage import publish
    from stagescreen.storage.keys import StoreError

    spec = study.spec
    results = pd.DataFrame()
    so_far = {}
    for stage in spec.stages:
        results = synthetic.simulate_stage(spec, stage.name, results, source)
        so_far[stage.name] = results
    store = output_store(
        "--out", out, refuse=lambda store: _refuse_study_storage(study, store, out)
    )
    try:
        publish.publish_spec(store, study)
        for line in header:
            typer.echo(line)
        records = {}
        for name, stage_results in so_far.items():
            records[name] = publish.publish_stage(store, study, name, stage_results)
            typer.echo(_summary(records[name], word))
    except StoreError as error:
        raise fail(f"--out {out!r}: {error}") from None
    typer.echo(_verdict(spec, records, word))
    typer.echo(f"{word} study written to {store.uri(study.metadata.name)}/")


def _power(
    name: str,
    spec: StudySpec,
    model: ResponseModel,
    replicates: int,
    seed: int,
    json_output: bool,
    out: str | None,
    noise_from: str | None,
) -> None:
    """Repeat the study, print the power tables (or JSON), write power.json if asked."""
    from rich.console import Console
    from rich.progress import Progress

    from stagescreen.statistics import power
    from stagescreen.storage.keys import StoreError

    store = None if out is None else output_store("--out", out)
    progress_console = Console(stderr=True)
    if progress_console.is_terminal:
        with Progress(console=progress_console, transient=True) as bar:
            task = bar.add_task("SYNTHETIC replicates", total=replicates)
            report = power.power_study(
                spec, model, replicates, seed, lambda done: bar.update(task, completed=done)
            )
    else:
        report = power.power_study(spec, model, replicates, seed)
    document = {"study": name, "model": asdict(model), "noise_from": noise_from}
    document |= report.model_dump()
    if json_output:
        typer.echo(json.dumps(document, indent=2))
    else:
        _print_power(name, model, report, noise_from)
    if store is not None:
        try:
            store.put_json(f"{name}/power.json", document)
        except StoreError as error:
            raise fail(f"--out {out!r}: {error}") from None
        typer.echo(f"SYNTHETIC power report written to {store.uri(name)}/power.json")


def _rate(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


def _print_power(
    name: str, model: ResponseModel, report: PowerReport, noise_from: str | None
) -> None:
    """Two tables, every line of them starting with SYNTHETIC so no row reads as real."""
    from stagescreen.planning.ids import format_budget
    from stagescreen.reports.formatting import fmt_effect

    typer.echo(
        f"SYNTHETIC power of study {name!r}: {report.replicates} replicates (seed "
        f"{report.seed}), detection = 95% interval excludes 0 and BH q <= {report.fdr:g}"
    )
    at = "" if model.effect_points else f" at {format_budget(model.reference_s)}"
    typer.echo(f"SYNTHETIC planted{at}: {_planted_text(model)}")
    typer.echo(_describe(model, noise_from))
    pools = any(term.pool for term in report.terms)
    if report.terms:
        labels = ["SYNTHETIC", "stage", "budget", *(["pool"] if pools else []), "term"]
        numbers = ["planted", "power", "sign err", "coverage", "mean est", "fitted"]
        rows = [
            [
                "SYNTHETIC",
                term.stage,
                format_budget(term.budget_s),
                *([term.pool or ""] if pools else []),
                term.term,
                fmt_effect(term.planted),
                _rate(term.power),
                _rate(term.sign_errors),
                _rate(term.coverage),
                "-" if term.mean_estimate is None else fmt_effect(term.mean_estimate),
                str(term.fitted),
            ]
            for term in report.terms
        ]
        typer.echo(text_table([*labels, *numbers], rows, left=len(labels)))
    if report.anchors:
        labels = ["SYNTHETIC", "stage", "rule", "role", "from", "at", "true optimum"]
        rows = [
            [
                "SYNTHETIC",
                anchor.stage,
                anchor.rule,
                anchor.role,
                anchor.source,
                format_budget(anchor.at_s),
                ", ".join(anchor.optimum),
                _rate(anchor.match),
            ]
            for anchor in report.anchors
        ]
        typer.echo(text_table([*labels, "match"], rows, left=len(labels)))
    for note in report.notes:
        typer.echo(f"SYNTHETIC note: {note}")


def _refuse_study_storage(study: Study, store: Store, out: str) -> None:
    """Synthetic records must never land where the study's real runs live: a report or a
    status read from there would present planted effects as measurements. Compared by where
    the study's spec would be written, so the stores decide what a path or URI means."""
    from stagescreen.storage.keys import StudyKeys
    from stagescreen.storage.store import open_store

    own = study.spec.storage.root()
    spec_key = StudyKeys(study.metadata.name).spec()
    if store.uri(spec_key) == open_store(own).uri(spec_key):
        raise fail(
            f"--out {out!r} is the study's own storage ({own}); simulated results "
            "would mix with real runs. Write them elsewhere, e.g. --out ./simulated"
        )


def _verdict(spec: StudySpec, records: dict[str, StageOutcome], word: str) -> str:
    """The study's answer, from the stage that decides it (`status.deciding_outcome`)."""
    from stagescreen.outcomes.status import deciding_outcome
    from stagescreen.planning.ids import format_budget

    chosen = deciding_outcome(spec, records)
    if chosen is None or chosen.best is None:
        return f"{word} outcome: no stage has a best condition"
    best = chosen.best
    levels = ",".join(
        f"{code}{'+' if v > 0 else '-' if v < 0 else '0'}" for code, v in best.levels.items()
    )
    recipe = ", ".join(f"{name}={value}" for name, value in best.hyperparameters.items())
    low, high = best.decision_interval
    interval = f" [{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""
    if interval and (best.candidates or 1) > 1:
        interval += f" as the best of {best.candidates}"
    return (
        f"{word} outcome: best {best.condition_id} ({levels}: {recipe}) "
        f"{chosen.metric} {best.mean:.4f}{interval} at {format_budget(best.budget_s)} in stage "
        f"{chosen.stage!r}"
    )


def _summary(record: StageOutcome, word: str) -> str:
    """One line per stage: runs, what it retained, its best condition and what it promoted."""
    from stagescreen.outcomes.status import stage_summary

    return (
        f"{word} {record.stage:<14} {record.kind:<12} {record.runs.succeeded:>4} runs  "
        + stage_summary(record)
    )
