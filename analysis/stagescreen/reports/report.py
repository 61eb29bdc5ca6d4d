"""Study and stage reports: markdown with the paper's figures, rendered from stored outcomes.

`render_report` is pure: it takes the study spec, each stage's validated `StageOutcome` and
`results.parquet` (as a DataFrame) and the `Manifest`, and returns text and PNG bytes;
`read_study_data` and `write_report` are its storage edge. The report never refits a model;
every number comes from the outcome the analysis wrote, so the report and the resource status
cannot disagree. A stage with nothing stored yet is reported as "not run yet", one with runs
but no outcome as "analysis not run yet", one whose stored outcome does not validate as
"outcome unreadable" with the reason.

The parts live apart: number formatting in `stagescreen.reports.formatting`, the shared tables of a
stage's outcome in `stagescreen.reports.sections` and the kind's in its module in
`stagescreen.kinds`, the figures in `stagescreen.reports.figures` (a kind names those it draws from
`FIGURES`). This module composes them: the decision first (`stagescreen.reports.decision`:
what the study found, what to run next, how far to trust it), then the study summary (spec,
design, stages), the deciding stage's best, one section per stage, and the run manifest as
the paper's Table 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.figure import Figure
from pydantic import JsonValue

from stagescreen.kinds import kind_of
from stagescreen.outcomes.manifest import Manifest, RunCounts
from stagescreen.outcomes.model import StageOutcome
from stagescreen.outcomes.status import deciding_outcome
from stagescreen.reports.decision import Decision, decide, decision_section
from stagescreen.reports.figures import (
    anchor_figure,
    effects_figure,
    png_bytes,
    search_figure,
    variance_figure,
    watermark,
)
from stagescreen.reports.formatting import (
    DASH,
    fmt_budget,
    fmt_count,
    fmt_fixed,
    fmt_levels,
    fmt_text,
    md_table,
)
from stagescreen.reports.provenance import provenance_section
from stagescreen.reports.sections import best_section, outcome_sections
from stagescreen.storage.keys import MANIFEST, OUTCOME, REPORT, RESULTS, StudyKeys
from stagescreen.storage.publish import read_record
from stagescreen.study.parse import load_study

if TYPE_CHECKING:
    from stagescreen.storage.store import Store
    from stagescreen.study.spec import Factor, Stage, Study


# --------------------------------------------------------------------------------------------
# Inputs and output


@dataclass(frozen=True)
class StageData:
    """One stage of the spec with what storage holds for it (None: nothing stored yet);
    `unreadable` says why a stored outcome.json did not validate."""

    stage: Stage
    outcome: StageOutcome | None = None
    results: pd.DataFrame | None = None
    unreadable: str | None = None

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def ran(self) -> bool:
        return self.outcome is not None or self.results is not None or bool(self.unreadable)


@dataclass(frozen=True)
class StudyData:
    """Everything a report is rendered from; stages in spec order."""

    study: Study
    stages: tuple[StageData, ...]
    manifest: Manifest | None = None
    manifest_unreadable: str | None = None


@dataclass(frozen=True)
class Report:
    """Rendered files keyed by their path relative to the study folder.

    "report.md" and "main-effects.png" sit in the study folder; each stage has
    "stages/<stage>/report.md" and its figures beside it. Links inside the markdown are
    relative, so the same files read correctly in the store or copied into any directory.
    """

    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def markdown(self) -> str:
        return self.files[REPORT].decode("utf-8")


# --------------------------------------------------------------------------------------------
# Markdown sections


def _factor_row(factor: Factor) -> list[str]:
    """A factor's line of the factors table: a categorical factor shows its two levels, no
    centre, and which way its effect reads (b minus a, +1 minus -1 as for every factor)."""
    if factor.levels is not None:
        low, high = factor.levels
        return [
            fmt_text(factor.code),
            f"`{factor.name}`",
            fmt_text(low),
            fmt_text(high),
            DASH,
            f"categorical: effect = {high} minus {low}",
        ]
    return [
        fmt_text(factor.code),
        f"`{factor.name}`",
        fmt_text(factor.low),
        fmt_text(factor.high),
        fmt_text(factor.centre_value),
        factor.scale,
    ]


def _study_summary(study: Study) -> str:
    spec = study.spec
    lines = [
        f"Metric: `{spec.metric.name}` ({spec.metric.goal}). "
        f"{len(spec.stages)} stages on pools {', '.join(p.name for p in spec.pools) or DASH}.",
        "",
        "### Factors",
        "",
        md_table(
            ["code", "name", "low", "high", "centre", "scale"],
            [_factor_row(f) for f in spec.factors],
        ),
        "",
        "### Design",
        "",
    ]
    try:
        design = spec.build_design()
    except (ValueError, KeyError) as error:
        lines.append(f"The design could not be built: {error}")
    else:
        relation = ", ".join(design.defining_relation())
        lines += [
            md_table(
                ["design", "runs", "generators", "defining relation", "resolution"],
                [
                    [
                        design.describe(),
                        str(len(design.condition_ids)),
                        ", ".join(design.generators) or DASH,
                        f"I = {relation}" if relation else DASH,
                        design.resolution_numeral or DASH,
                    ]
                ],
            )
        ]
    lines += [
        "",
        "### Stages",
        "",
        md_table(
            ["stage", "kind", "budgets", "seeds", "pools"],
            [
                [
                    f"`{s.name}`",
                    s.kind,
                    ", ".join(fmt_budget(b) for b in s.budgets),
                    ", ".join(str(seed) for seed in s.seeds),
                    ", ".join(s.pools) or (spec.pools[0].name if spec.pools else DASH),
                ]
                for s in spec.stages
            ],
        ),
    ]
    return "\n".join(lines)


def _selection_text(stage: Stage) -> list[str]:
    lines = []
    for rule in stage.select:
        source = f" from `{rule.from_}`" if rule.from_ else ""
        at = "" if rule.at == "longest" else f" at {fmt_budget(rule.at)}"
        among = f" among {', '.join(rule.among)}" if rule.among else ""
        centre = f", centring {', '.join(rule.factors)}" if rule.factors else ""
        levels = f" {fmt_levels(rule.levels)}" if rule.levels else ""
        role = f" as **{rule.role}**" if rule.role else ""
        lines.append(f"- {rule.rule} k={rule.k}{source}{at}{among}{centre}{levels}{role}")
    return lines


def _stage_plan(stage: Stage) -> str:
    parts = [
        f"Kind **{stage.kind}**",
        f"budgets {', '.join(fmt_budget(b) for b in stage.budgets)}",
        f"seeds {', '.join(str(s) for s in stage.seeds)}",
    ]
    if stage.pools:
        parts.append(f"pools {', '.join(stage.pools)}")
    if stage.fix:
        parts.append(f"fixed {fmt_levels(stage.fix)}")
    parts += kind_of(stage).plan_details(stage)
    lines = ["; ".join(parts) + "."]
    if stage.select:
        lines += ["", "Anchors selected by:", "", *_selection_text(stage)]
    return "\n".join(lines)


def _stage_section(
    data: StageData, study: Study, figures: Sequence[tuple[str, str]], link_prefix: str, level: int
) -> str:
    """One stage: plan, run counts and every table its outcome holds; figures linked."""
    h = "#" * level
    stage, outcome = data.stage, data.outcome
    parts = [f"{h} Stage `{stage.name}`", "", _stage_plan(stage), ""]
    if not data.ran:
        parts.append(f"**Not run yet**: nothing stored under `stages/{stage.name}/`.")
        return "\n".join(parts)
    if data.unreadable:
        parts += [f"**Outcome unreadable**: `{OUTCOME}` {data.unreadable}", ""]
    elif outcome is None:
        n = 0 if data.results is None else len(data.results)
        parts += [f"**Analysis not run yet**: {n} run(s) in `{RESULTS}`, no `{OUTCOME}`.", ""]
    else:
        for title, body in outcome_sections(kind_of(stage), outcome, study.spec.metric.goal):
            parts += [f"{h}# {title}", "", body, ""]
    if figures:
        parts += [f"{h}# Figures", ""]
        parts += [f"![{caption}]({link_prefix}{name})\n" for name, caption in figures]
    return "\n".join(parts).rstrip() + "\n"


def _counts(counts: RunCounts) -> list[str]:
    """A manifest row's run cells, adding up: planned = succeeded + diverged + failed +
    pending (not ended yet), then its GPU-hours."""
    return [
        fmt_count(counts.planned),
        fmt_count(counts.succeeded),
        fmt_count(counts.diverged),
        fmt_count(counts.failed),
        fmt_count(counts.pending),
        fmt_fixed(counts.gpu_seconds / 3600, 1),
    ]


def _manifest_section(manifest: Manifest | None, unreadable: str | None = None) -> str:
    if unreadable:
        return f"**Manifest unreadable**: `{MANIFEST}` {unreadable}"
    if manifest is None:
        return f"Not written yet: no `{MANIFEST}`."
    rows = [
        [
            f"`{fmt_text(line.stage)}`",
            fmt_text(line.kind),
            fmt_text(line.pool),
            ", ".join(fmt_budget(b) for b in line.budgets_s) or DASH,
            *_counts(line),
        ]
        for line in manifest.stages
    ]
    rows.append(["**total**", "", "", "", *(f"**{cell}**" for cell in _counts(manifest.total))])
    header = ["stage", "kind", "pool", "budgets", "planned", "succeeded", "diverged", "failed"]
    text = md_table([*header, "pending", "GPU-hours"], rows)
    text += (
        "\n\npending: planned runs not ended yet, with or without a record (the manifest counts"
        " runs from `results.parquet` alone; each stage's Runs table splits them into missing"
        " and pending)."
    )
    if manifest.pools:
        text += "\n\n" + md_table(
            ["pool", "runs", "GPU-hours"],
            [
                [fmt_text(name), fmt_count(use.runs), fmt_fixed(use.gpu_seconds / 3600, 1)]
                for name, use in manifest.pools.items()
            ],
        )
    return text


def _answer(data: StudyData) -> str:
    """The study's headline: the deciding stage's best on each pool, with its evidence
    (`status.deciding_outcome` decides which stage answers; this only words it)."""
    outcomes = {stage.name: stage.outcome for stage in data.stages if stage.outcome is not None}
    chosen = deciding_outcome(data.study.spec, outcomes)
    if chosen is None:
        return "No stage has a best condition yet."
    return f"From stage `{chosen.stage}`:\n\n" + best_section(chosen)


def _reversals(data: StudyData) -> list[str]:
    """A line under the answer when a later stage reversed an order its anchors were promoted
    on (`StageOutcome.reversals`), else nothing."""
    found = [(s.name, r) for s in data.stages if s.outcome for r in s.outcome.reversals]
    if not found:
        return []
    listed = "; ".join(
        f"`{r.ahead}` loses to `{r.behind}` in `{stage}` at {fmt_budget(r.budget_s)}"
        for stage, r in found
    )
    return [f"**Rank reversals: {len(found)}** ({listed}; each stage's Rank stability).", ""]


# --------------------------------------------------------------------------------------------
# Rendering


Drawn = tuple[Figure, str] | None
"""A stage figure with its caption, or None when the stage's data cannot support it."""


def _effects(data: StageData, study: Study) -> Drawn:
    metric = study.spec.metric.name
    if data.outcome is None:
        return None
    figure = effects_figure(
        [(data.name, data.outcome.effects)],
        metric=metric,
        study=study,
        retained={data.name: (data.outcome.retained_at, data.outcome.retained)},
    )
    return None if figure is None else (figure, f"Main effects on {metric} by budget ({data.name})")


def _variance_shares(data: StageData, study: Study) -> Drawn:
    metric = study.spec.metric.name
    figure = variance_figure(data.outcome.variance_shares if data.outcome else None, metric=metric)
    return None if figure is None else (figure, f"Variance shares of {metric} ({data.name})")


def _search(data: StageData, study: Study) -> Drawn:
    metric, goal = study.spec.metric.name, study.spec.metric.goal
    figure = search_figure(
        data.outcome, data.results, seeds=len(data.stage.seeds), metric=metric, goal=goal
    )
    return None if figure is None else (figure, f"Incumbent {metric} against cost ({data.name})")


def _anchors(data: StageData, study: Study) -> Drawn:
    metric, goal = study.spec.metric.name, study.spec.metric.goal
    figure = anchor_figure(
        data.results,
        data.outcome.ranking if data.outcome else None,
        metric=metric,
        goal=goal,
        pools=data.stage.pools,
        title=f"{metric} per anchor in {data.name}",
    )
    caption = f"Anchor seed runs with means and 95% intervals ({data.name})"
    return None if figure is None else (figure, caption)


FIGURES: dict[str, Callable[[StageData, Study], Drawn]] = {
    "effects.png": _effects,
    "variance-shares.png": _variance_shares,
    "search.png": _search,
    "anchors.png": _anchors,
}
"""Every stage figure by file name; a kind names those it draws (`StageKind.figures`)."""


def _stage_figures(data: StageData, study: Study) -> dict[str, tuple[Figure, str]]:
    """Figure file name -> (figure, caption) for one stage: those its kind draws, and only
    what its data supports."""
    out = {}
    for name in kind_of(data.stage).figures:
        drawn = FIGURES[name](data, study)
        if drawn is not None:
            out[name] = drawn
    return out


SYNTHETIC_BANNER = (
    "> **SYNTHETIC**: these results were simulated on planted effects by `stagescreen "
    "simulate`; no model was trained. They show what the design can detect, not what a "
    "recipe does."
)


@dataclass(frozen=True)
class Rehearsal:
    """How a study that trained nothing is marked: the word on every figure and caption, and
    the banner atop every report."""

    word: str
    banner: str


def _synthetic(data: StageData) -> bool:
    """Whether a stage's results came from `stagescreen simulate`'s planted model."""
    results = data.results
    if results is not None and "synthetic" in results and bool(results["synthetic"].any()):
        return True
    return data.outcome is not None and data.outcome.synthetic


def _replayed_from(data: StageData) -> str | None:
    """The table a stage's results were replayed from (`simulate --table`), else None."""
    results = data.results
    if results is not None and "replay" in results and results["replay"].notna().any():
        return str(results["replay"].dropna().iloc[0])
    return data.outcome.replay if data.outcome is not None else None


def _rehearsal(stages: Sequence[StageData]) -> Rehearsal | None:
    """SYNTHETIC when any stage's results came from a planted model, REPLAY when from a
    table of measured runs; None for a study that trained."""
    if any(_synthetic(stage) for stage in stages):
        return Rehearsal("SYNTHETIC", SYNTHETIC_BANNER)
    table = next((t for t in map(_replayed_from, stages) if t), None)
    if table is None:
        return None
    return Rehearsal(
        "REPLAY",
        f"> **REPLAY**: measured values from `{table}`, no model was trained (`stagescreen "
        "simulate --table`). They show how the workflow would have decided on that table.",
    )


def study_decision(data: StudyData) -> Decision:
    """The study's decision (`decision.decide`) from what storage holds: the report's first
    section and `stagescreen report --format json`."""
    outcomes = {stage.name: stage.outcome for stage in data.stages if stage.outcome is not None}
    rehearsal = _rehearsal(data.stages)
    return decide(
        data.study.spec,
        data.study.name,
        outcomes,
        manifest=data.manifest,
        rehearsal=None if rehearsal is None else rehearsal.word,
    )


def _stage_state(stage: StageData) -> str:
    if stage.unreadable:
        return "outcome unreadable"
    if stage.outcome is not None:
        return "analysed"
    return "analysis not run yet" if stage.ran else "not run yet"


def decision_json(data: StudyData) -> dict[str, JsonValue]:
    """What `stagescreen report --format json` prints: the decision as a record and in the
    report's words, and each stage's state and run counts (planned = succeeded + diverged +
    failed + missing + pending)."""
    decision = study_decision(data)
    stages: list[JsonValue] = []
    for stage in data.stages:
        entry: dict[str, JsonValue] = {"stage": stage.name, "kind": stage.stage.kind}
        entry["state"] = _stage_state(stage)
        if stage.outcome is not None:
            runs = stage.outcome.runs
            entry["runs"] = {
                "planned": runs.planned,
                "succeeded": runs.succeeded,
                "diverged": runs.diverged,
                "failed": runs.failed,
                "missing": len(runs.missing),
                "pending": runs.pending,
            }
        stages.append(entry)
    return {
        "study": data.study.name,
        "decision": decision.model_dump(mode="json"),
        "text": decision_section(decision),
        "stages": stages,
    }


def render_report(data: StudyData) -> Report:
    """Every file of a study's report: the study report.md, each stage's report.md, figures."""
    study = data.study
    metric = study.spec.metric.name
    files: dict[str, bytes] = {}
    stage_figures: dict[str, list[tuple[str, str]]] = {}
    rehearsal = _rehearsal(data.stages)
    for stage in data.stages:
        captions = []
        for name, (figure, caption) in _stage_figures(stage, study).items():
            if rehearsal:
                figure, caption = watermark(figure, rehearsal.word), f"{rehearsal.word}: {caption}"
            files[f"stages/{stage.name}/{name}"] = png_bytes(figure)
            captions.append((name, caption))
        stage_figures[stage.name] = captions
        body = _stage_section(stage, study, captions, "", level=1)
        banner = f"{rehearsal.banner}\n\n" if rehearsal else ""
        files[f"stages/{stage.name}/{REPORT}"] = (
            f"<!-- study {study.name}; generated by stagescreen report -->\n{banner}{body}"
        ).encode()
    screens = [
        (s.name, s.outcome.effects)
        for s in data.stages
        if kind_of(s.stage).in_study_effects and s.outcome is not None
    ]
    judged = {s.name: (s.outcome.retained_at, s.outcome.retained) for s in data.stages if s.outcome}
    main = effects_figure(screens, metric=metric, study=study, retained=judged)
    if main is not None and rehearsal:
        main = watermark(main, rehearsal.word)
    parts = [f"# Study `{study.name}`", ""]
    if rehearsal:
        parts += [rehearsal.banner, ""]
    parts += ["## Decision", "", decision_section(study_decision(data)), ""]
    parts += ["## Summary", "", _study_summary(study), ""]
    parts += ["## Best condition", "", _answer(data), "", *_reversals(data)]
    if main is not None:
        files["main-effects.png"] = png_bytes(main)
        parts += [
            "## Main effects across budgets",
            "",
            f"![Main effects on {metric} by budget, all screen stages](main-effects.png)",
            "",
        ]
    parts += ["## Stages", ""]
    for stage in data.stages:
        parts.append(
            _stage_section(
                stage, study, stage_figures[stage.name], f"stages/{stage.name}/", level=3
            )
        )
    parts += ["## Provenance", "", provenance_section([s.results for s in data.stages]), ""]
    parts += ["## Run manifest", "", _manifest_section(data.manifest, data.manifest_unreadable), ""]
    files[REPORT] = ("\n".join(parts).rstrip() + "\n").encode()
    return Report(files)


# --------------------------------------------------------------------------------------------
# Storage edge


def read_study_data(store: Store, study: str) -> StudyData:
    """Spec, stage outcomes and results, and manifest of `study`; absent pieces become None.

    Raises MissingKey when the study has no spec.yaml.
    """
    keys = StudyKeys(study)
    spec = load_study(store.get_text(keys.spec()), trains=False, stored=True)
    stages = []
    for stage in spec.spec.stages:
        outcome, unreadable = read_record(store, keys.stage(stage.name, OUTCOME), StageOutcome)
        results_key = keys.stage(stage.name, RESULTS)
        results = store.get_frame(results_key) if store.exists(results_key) else None
        stages.append(StageData(stage, outcome, results, unreadable))
    manifest, unreadable = read_record(store, keys.manifest(), Manifest)
    return StudyData(spec, tuple(stages), manifest, unreadable)


def write_report(store: Store, study: str, out: Store | None = None) -> list[str]:
    """Render `study` from `store` and write it beside its data, or at the root of `out`.

    Returns the URIs written, report.md first.
    """
    report = render_report(read_study_data(store, study))
    target, prefix = (store, f"{study}/") if out is None else (out, "")
    written = []
    for name in sorted(report.files, key=lambda n: (n != REPORT, n)):
        target.put_bytes(prefix + name, report.files[name])
        written.append(target.uri(prefix + name))
    return written
