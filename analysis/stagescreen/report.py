"""Study and stage reports: markdown and the paper's figures, rendered from stored outcomes.

Everything here except `read_study_data` and `write_report` is pure: it takes the study spec,
each stage's `outcome.json` (as a dict) and `results.parquet` (as a DataFrame) and the
`manifest.json`, and returns text and PNG bytes. The report never refits a model; every number
comes from the outcome the analysis wrote, so the report and the resource status cannot
disagree. Outcomes are read defensively: any value may be null (uncomputable) and prints as
an em dash, and a stage with nothing stored yet is reported as "not run yet".

Figures follow the paper: main effects against budget with 95% intervals (fig. 1), Type-II
ANOVA eta^2 shares (fig. 2), anchor seed runs with mean and 95% interval per budget (fig. 3)
and the same per pool and budget for the long-horizon anchors (fig. 4); the run manifest is
its Table 1. Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas and a
fixed style, never through pyplot's global state, so rendering is deterministic and safe to
call from several threads.
"""

from __future__ import annotations

import contextlib
import io
import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from stagescreen.jsonvalues import json_number
from stagescreen.keys import MANIFEST, OUTCOME, REPORT, RESULTS, StudyKeys
from stagescreen.stages import format_budget, succeeded

if TYPE_CHECKING:
    from stagescreen.spec import Stage, Study
    from stagescreen.store import Store

DASH = "—"
DPI = 110
# Fixed rc settings applied while a figure is built and saved; nothing leaks to the caller.
STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "savefig.dpi": DPI,
    "svg.hashsalt": "stagescreen",
}
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
MARKERS = ("o", "s", "^", "D", "v", "P")
EFFECT_KINDS = ("screen", "followup")
ANCHOR_KINDS = ("confirm", "bridge", "long-horizon")
RANKING_TOP, RANKING_BOTTOM = 5, 2
MISSING_SHOWN = 10


# --------------------------------------------------------------------------------------------
# Inputs and output


@dataclass(frozen=True)
class StageData:
    """One stage of the spec with what storage holds for it (None: nothing stored yet)."""

    stage: Stage
    outcome: Mapping[str, Any] | None = None
    results: pd.DataFrame | None = None

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def ran(self) -> bool:
        return self.outcome is not None or self.results is not None


@dataclass(frozen=True)
class StudyData:
    """Everything a report is rendered from; stages in spec order."""

    study: Study
    stages: tuple[StageData, ...]
    manifest: Mapping[str, Any] | None = None


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
# Number formatting: every formatter accepts anything and prints DASH for what is not a number


def _finite(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return json_number(value)
    except (TypeError, ValueError):
        return None


def fmt_effect(value: Any) -> str:
    """Effects on the metric scale: signed, four decimals (the paper's tables)."""
    number = _finite(value)
    return DASH if number is None else f"{number:+.4f}"


def fmt_interval(low: Any, high: Any, digits: int = 4, signed: bool = True) -> str:
    a, b = _finite(low), _finite(high)
    if a is None or b is None:
        return DASH
    spec = f"{'+' if signed else ''}.{digits}f"
    return f"[{a:{spec}}, {b:{spec}}]"


def fmt_p(value: Any) -> str:
    """p and q: three significant figures, e-notation below 0.001 (1.98e-11, 0.00319)."""
    number = _finite(value)
    if number is None:
        return DASH
    if number == 0:
        return "0"
    return f"{number:.2e}" if abs(number) < 1e-3 else f"{number:.3g}"


def fmt_mean(value: Any) -> str:
    """Metric means: six decimals, enough to separate anchors at long budgets (paper 5.9)."""
    number = _finite(value)
    return DASH if number is None else f"{number:.6f}"


def fmt_fixed(value: Any, digits: int) -> str:
    number = _finite(value)
    return DASH if number is None else f"{number:.{digits}f}"


def fmt_count(value: Any) -> str:
    number = _finite(value)
    return DASH if number is None else str(int(number))


def fmt_budget(seconds: Any) -> str:
    """A budget as run ids spell it (`stages.format_budget`: 120 -> 2m, 3600 -> 1h)."""
    number = _finite(seconds)
    return DASH if number is None else format_budget(int(number))


def fmt_levels(levels: Any) -> str:
    """Coded levels as the paper writes them: A-,B+,C0."""
    if not isinstance(levels, Mapping) or not levels:
        return DASH
    signs = {-1: "-", 0: "0", 1: "+"}
    parts = []
    for code, level in levels.items():
        number = _finite(level)
        mark = signs.get(int(number), f"={number:g}") if number is not None else "?"
        parts.append(f"{code}{mark}")
    return ",".join(parts)


def fmt_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return str(value).replace("|", "\\|").replace("\n", " ") or DASH


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _families(document: Any) -> list[Mapping[str, Any]]:
    """The families of a `families_to_dict` document (or of a pooled fit), never None."""
    return [f for f in _list(_dict(document).get("families")) if isinstance(f, Mapping)]


def _group_label(by: Mapping[str, Any]) -> str:
    parts = []
    for key, value in by.items():
        if key in ("budget_s", "budget"):
            parts.append(f"budget {fmt_budget(value)}")
        elif key == "reference":
            parts.append(f"vs {fmt_budget(value)}")
        else:
            parts.append(f"{key} {fmt_text(value)}")
    return ", ".join(parts) or "all runs"


def _budget_of(by: Mapping[str, Any]) -> float | None:
    return _finite(by.get("budget_s", by.get("budget")))


# --------------------------------------------------------------------------------------------
# Figures


def _styled() -> contextlib.AbstractContextManager[None]:
    """The fixed style, applied only while a figure is built or saved."""
    return matplotlib.rc_context(cast(Any, STYLE))


def png_bytes(figure: Figure) -> bytes:
    """PNG of a figure; no software or date metadata, so equal figures give equal bytes."""
    buffer = io.BytesIO()
    with _styled():
        FigureCanvasAgg(figure)
        figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _factor_label(study: Study | None, code: str) -> str:
    if study is None:
        return code
    try:
        return f"{code} {study.spec.factor(code).name}"
    except KeyError:
        return code


def _factor_colour(study: Study | None, code: str, fallback: int) -> str:
    """One factor, one colour in every figure: by its place among the study's factors, so a
    stage that fixes a factor does not shift every other factor's colour."""
    codes = list(study.spec.codes) if study is not None else []
    index = codes.index(code) if code in codes else fallback
    return COLOURS[index % len(COLOURS)]


def search_figure(
    outcome: Mapping[str, Any] | None,
    results: pd.DataFrame | None,
    *,
    seeds: int = 1,
    metric: str = "val_bpb",
    goal: str = "minimize",
) -> Figure | None:
    """The baselines' incumbent against cost (paper 5.4-5.5): the best value found so far
    after each run of a random batch, or after each step of a greedy climb, against the
    training hours spent, so a baseline's efficiency reads off one picture."""
    better = min if goal == "minimize" else max
    lines: list[tuple[str, list[float], list[float]]] = []
    for climb in _list(_dict(_dict(outcome).get("greedy")).get("climbs")):
        climb = _dict(climb)
        hours = (_finite(climb.get("budget_s")) or 0.0) * seeds / 3600
        xs: list[float] = []
        ys: list[float] = []
        incumbent: float | None = None
        for step in _list(climb.get("steps")):
            value = _finite(_dict(step).get("mean"))
            if value is not None and _dict(step).get("accepted"):
                incumbent = value if incumbent is None else better(incumbent, value)
            if incumbent is not None:
                xs.append(hours * (len(xs) + 1))
                ys.append(incumbent)
        label = f"greedy {fmt_budget(climb.get('budget_s'))} {fmt_text(climb.get('pool'))}"
        lines.append((label, xs, ys))
    if _dict(_dict(outcome).get("random")).get("batches") and results is not None:
        for batch, group in succeeded(results, metric).groupby("batch", sort=True):
            values = pd.to_numeric(group[metric], errors="coerce").to_numpy(float)
            cost = np.cumsum(group["budget_s"].to_numpy(float)) / 3600
            best = (np.fmin if goal == "minimize" else np.fmax).accumulate(values)
            lines.append((f"random batch {int(batch)}", list(cost), list(best)))
    lines = [line for line in lines if line[1]]
    if not lines:
        return None
    with _styled():
        figure = Figure(figsize=(6.4, 4.0), dpi=DPI, layout="constrained")
        axes = figure.add_subplot()
        for i, (label, xs, ys) in enumerate(lines):
            axes.step(
                xs, ys, where="post", color=COLOURS[i % len(COLOURS)], marker=".", label=label
            )
        axes.set_xlabel("training hours spent")
        axes.set_ylabel(f"best {metric} so far")
        axes.set_title(f"Incumbent {metric} against cost")
        axes.legend(loc="best")
    return figure


def effects_figure(
    series: Sequence[tuple[str, Mapping[str, Any] | None]],
    *,
    metric: str = "val_bpb",
    study: Study | None = None,
) -> Figure | None:
    """Paper fig. 1: each main effect against budget, 95% interval bars, a zero line.

    `series` pairs a label (a stage name, with the pool when a stage has several) with an
    effects document; series share the budget axis and are told apart by marker. Only main
    effects (terms without ':') are drawn. None when there is no effect to draw.
    """
    points: list[tuple[str, str, float, float, float | None, float | None]] = []
    labels = []
    for label, document in series:
        for family in _families(document):
            budget = _budget_of(_dict(family.get("by")))
            if budget is None:
                continue
            pool = _dict(family.get("by")).get("pool")
            name = label if pool is None else f"{label} ({pool})"
            for effect in _list(family.get("effects")):
                term = str(_dict(effect).get("term", ""))
                value = _finite(_dict(effect).get("effect"))
                if not term or ":" in term or value is None:
                    continue
                low, high = _finite(effect.get("ci_low")), _finite(effect.get("ci_high"))
                points.append((name, term, budget, value, low, high))
                if name not in labels:
                    labels.append(name)
    if not points:
        return None
    terms = sorted({p[1] for p in points}, key=lambda t: (len(t), t))
    budgets = sorted({p[2] for p in points})
    with _styled():
        figure = Figure(
            figsize=(max(5.5, 1.6 * len(budgets) + 3), 4.2), dpi=DPI, layout="constrained"
        )
        axes = figure.add_subplot()
        slots = len(terms) * len(labels)
        step = min(0.7 / max(slots, 1), 0.12)
        for t, term in enumerate(terms):
            for s, name in enumerate(labels):
                rows = sorted(
                    (p for p in points if p[0] == name and p[1] == term), key=lambda p: p[2]
                )
                if not rows:
                    continue
                offset = (t * len(labels) + s - (slots - 1) / 2) * step
                x = np.array([budgets.index(p[2]) + offset for p in rows])
                y = np.array([p[3] for p in rows])
                lower = np.array([p[3] - p[4] if p[4] is not None else np.nan for p in rows])
                upper = np.array([p[5] - p[3] if p[5] is not None else np.nan for p in rows])
                bars = axes.errorbar(
                    x,
                    y,
                    yerr=np.clip(np.vstack([lower, upper]), 0.0, None),
                    color=_factor_colour(study, term, t),
                    marker=MARKERS[s % len(MARKERS)],
                    markersize=5,
                    capsize=3,
                    linewidth=1.2,
                    label=_factor_label(study, term) if s == 0 else None,
                )
                bars.lines[0].set_gid(f"effect:{name}:{term}")
        axes.axhline(0.0, color="black", linewidth=0.8)
        axes.set_xticks(range(len(budgets)), [fmt_budget(b) for b in budgets])
        axes.set_xlim(-0.6, len(budgets) - 0.4)
        axes.set_xlabel("training budget")
        axes.set_ylabel(f"main effect on {metric} (high − low)")
        axes.set_title(f"Main effects on {metric} by budget, 95% intervals")
        handles, names = axes.get_legend_handles_labels()
        if len(labels) > 1:
            for s, name in enumerate(labels):
                handles.append(
                    Line2D([], [], color="grey", marker=MARKERS[s % len(MARKERS)], linestyle="")
                )
                names.append(name)
        figure.legend(handles, names, loc="outside right center")
    return figure


def variance_figure(shares: Any, *, metric: str = "val_bpb") -> Figure | None:
    """Paper fig. 2: Type-II ANOVA eta^2 per term, largest first, residual last."""
    rows: list[tuple[str, float]] = []
    for row in _list(shares):
        value = _finite(_dict(row).get("eta_sq"))
        if value is not None:
            rows.append((str(_dict(row).get("term")), value))
    if not rows:
        return None
    rows.sort(key=lambda r: (r[0] == "residual", -r[1]))
    with _styled():
        figure = Figure(figsize=(6.0, 0.45 * len(rows) + 1.4), dpi=DPI, layout="constrained")
        axes = figure.add_subplot()
        positions = np.arange(len(rows))[::-1]
        bars = axes.barh(
            positions,
            [value for _, value in rows],
            color=["#9e9e9e" if term == "residual" else COLOURS[0] for term, _ in rows],
        )
        axes.bar_label(bars, labels=[f"{value:.4f}" for _, value in rows], padding=3)
        axes.set_yticks(positions, [term for term, _ in rows])
        axes.set_xlim(0, max(1.0, max(value for _, value in rows) * 1.15))
        axes.set_xlabel("share of total sum of squares (η²)")
        axes.set_title(f"Where the variance in {metric} comes from (Type-II ANOVA)")
        axes.grid(axis="y", visible=False)
    return figure


def _anchor_label(row: Mapping[str, Any]) -> str:
    role, condition = row.get("role"), row.get("condition_id")
    role = None if role is None or (isinstance(role, float) and math.isnan(role)) else role
    if role and condition:
        return f"{role}\n({condition})"
    return str(role or condition or DASH)


def anchor_figure(
    results: pd.DataFrame | None,
    ranking: Any = None,
    *,
    metric: str = "val_bpb",
    goal: str = "minimize",
    pools: Sequence[str] = (),
    title: str | None = None,
) -> Figure | None:
    """Paper figs. 3 and 4: each seed run as a point, the mean and its 95% interval in black.

    One panel per (pool, budget): pools are rows, budgets columns. Anchors keep one order in
    every panel, best first by their mean in the first pool at the longest budget, so a
    pool-sensitive ordering shows as a change in shape. Means and intervals come from the
    outcome's ranking when it has the cell, else from the runs themselves.
    """
    if results is None or metric not in results.columns or "budget_s" not in results.columns:
        return None
    runs = succeeded(results, metric).copy()
    if runs.empty:
        return None
    runs["_pool"] = runs["pool"].fillna("").astype(str) if "pool" in runs.columns else ""
    runs["_label"] = [
        _anchor_label({k: row.get(k) for k in ("role", "condition_id")})
        for row in runs.to_dict("records")
    ]
    runs["_y"] = pd.to_numeric(runs[metric]).astype(float)
    present = list(dict.fromkeys(runs["_pool"]))
    pool_order = [p for p in pools if p in present] + [p for p in present if p not in pools]
    budgets = sorted(runs["budget_s"].unique().tolist())
    cells = {
        (str(_dict(r).get("pool") or ""), _finite(_dict(r).get("budget_s")), _anchor_label(r)): r
        for r in _list(ranking)
        if isinstance(r, Mapping)
    }
    first = runs[(runs["_pool"] == pool_order[0]) & (runs["budget_s"] == budgets[-1])]
    means = first.groupby("_label")["_y"].mean()
    sign = -1.0 if goal == "maximize" else 1.0
    order = sorted(
        runs["_label"].unique(),
        key=lambda lab: (lab not in means, sign * means.get(lab, 0.0), lab),
    )
    colour = {label: COLOURS[i % len(COLOURS)] for i, label in enumerate(order)}
    rows, cols = len(pool_order), len(budgets)
    with _styled():
        figure = Figure(
            figsize=(max(4.2, 0.9 * len(order) + 1.5) * cols, 3.6 * rows + 0.6),
            dpi=DPI,
            layout="constrained",
        )
        grid = figure.subplots(rows, cols, squeeze=False)
        for r, pool in enumerate(pool_order):
            for c, budget in enumerate(budgets):
                axes = grid[r][c]
                panel = runs[(runs["_pool"] == pool) & (runs["budget_s"] == budget)]
                for i, label in enumerate(order):
                    values = np.sort(panel.loc[panel["_label"] == label, "_y"].to_numpy())
                    if values.size == 0:
                        continue
                    # Seeds spread evenly beside the mean marker: deterministic, no overlap.
                    spread = np.linspace(-0.12, 0.12, values.size) if values.size > 1 else [0.0]
                    axes.scatter(
                        i - 0.18 + np.asarray(spread),
                        values,
                        s=18,
                        color=colour[label],
                        alpha=0.8,
                        zorder=2,
                        gid=f"seeds:{label}",
                    )
                    mean, low, high = _cell_interval(cells, pool, budget, label, values)
                    # An interval that misses its mean (inconsistent input) draws as none.
                    bars = axes.errorbar(
                        [i + 0.12],
                        [mean],
                        yerr=None
                        if low is None or high is None
                        else [[max(mean - low, 0.0)], [max(high - mean, 0.0)]],
                        color="black",
                        marker="o",
                        markersize=6,
                        capsize=4,
                        zorder=3,
                    )
                    bars.lines[0].set_gid(f"mean:{label}")
                axes.set_xticks(range(len(order)), order, fontsize=8)
                axes.set_xlim(-0.6, len(order) - 0.4)
                where = f"{pool}, " if pool else ""
                axes.set_title(f"{where}{fmt_budget(budget)}")
                if c == 0:
                    axes.set_ylabel(metric)
        width = figure.get_figwidth()
        heading = title or f"{metric} per anchor"
        key = "points: seed runs; black: mean and 95% interval"
        figure.suptitle("\n".join([*textwrap.wrap(heading, int(width * 11)), key]), fontsize=10)
    return figure


def _cell_interval(
    cells: Mapping[tuple[str, float | None, str], Mapping[str, Any]],
    pool: str,
    budget: Any,
    label: str,
    values: np.ndarray,
) -> tuple[float, float | None, float | None]:
    cell = cells.get((pool, _finite(budget), label))
    if cell is not None and _finite(cell.get("mean")) is not None:
        return (
            float(cell["mean"]),
            _finite(cell.get("ci_low")),
            _finite(cell.get("ci_high")),
        )
    from stagescreen.effects import mean_interval

    return mean_interval(values)


# --------------------------------------------------------------------------------------------
# Markdown sections


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
            [
                [
                    fmt_text(f.code),
                    f"`{f.name}`",
                    fmt_text(f.low),
                    fmt_text(f.high),
                    fmt_text(f.centre_value),
                    f.scale,
                ]
                for f in spec.factors
            ],
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
    if stage.kind == "random":
        parts.append(f"{stage.batches} batches of {stage.draws_per_batch} draws")
    if stage.kind == "greedy" and stage.max_runs:
        parts.append(f"at most {stage.max_runs} runs per budget")
    lines = ["; ".join(parts) + "."]
    if stage.select:
        lines += ["", "Anchors selected by:", "", *_selection_text(stage)]
    return "\n".join(lines)


def _runs_section(outcome: Mapping[str, Any]) -> str:
    runs = _dict(outcome.get("runs"))
    missing = [str(m) for m in _list(runs.get("missing"))]
    table = md_table(
        ["planned", "succeeded", "failed", "missing"],
        [
            [
                fmt_count(runs.get("planned")),
                fmt_count(runs.get("succeeded")),
                fmt_count(runs.get("failed")),
                str(len(missing)),
            ]
        ],
    )
    if missing:
        shown = ", ".join(f"`{m}`" for m in missing[:MISSING_SHOWN])
        more = f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
        table += f"\n\nMissing runs: {shown}{more}."
    return table


def _effects_tables(document: Any, retained: Sequence[str], *, judged: float | None) -> str:
    """Each family's effects; the `retained` column only in the families retention reads
    (those at budget `judged`, the longest), so a tick is never shown where no decision was
    taken."""
    blocks = []
    for family in _families(document):
        by = _dict(family.get("by"))
        df = family.get("df_resid")
        header = (
            f"**{_group_label(by)}** (n = {fmt_count(family.get('n'))}, "
            f"residual df = {fmt_count(df)})"
        )
        mark = judged is not None and _budget_of(by) == judged
        columns = ["term", "effect", "95% CI", "p", "q"] + (["retained"] if mark else [])
        rows = []
        for effect in _list(family.get("effects")):
            effect = _dict(effect)
            row = [
                f"`{fmt_text(effect.get('term'))}`",
                fmt_effect(effect.get("effect")),
                fmt_interval(effect.get("ci_low"), effect.get("ci_high")),
                fmt_p(effect.get("p")),
                fmt_p(effect.get("q")),
            ]
            if mark:
                row.append("✓" if effect.get("term") in retained else "")
            rows.append(row)
        block = [header, "", md_table(columns, rows)]
        missing = [str(m) for m in _list(family.get("missing"))]
        if missing:
            block.append(f"\nMissing from this fit: {', '.join(missing)}.")
        excluded = _list(family.get("excluded"))
        if excluded:
            block.append(f"\n{len(excluded)} run(s) excluded (failed status or no value).")
        for note in _list(family.get("notes")):
            block.append(f"\nNote: {fmt_text(note)}")
        blocks.append("\n".join(block))
    return "\n\n".join(blocks)


def _retained_section(retained: Sequence[str], judged: float | None) -> str:
    at = f" at {fmt_budget(judged)}" if judged is not None else ""
    rule = f"interval excludes zero and q ≤ 0.05{at}"
    if not retained:
        return f"No factor retained: no main effect has its {rule}."
    return ", ".join(f"`{r}`" for r in retained) + f" ({rule})."


def _judged_budget(document: Any) -> float | None:
    budgets = [b for family in _families(document) if (b := _budget_of(_dict(family.get("by"))))]
    return max(budgets) if budgets else None


def _relaxation_section(rows: Any) -> str:
    entries = [_dict(r) for r in _list(rows)]
    if not entries:
        return ""
    budgets = sorted({b for r in entries if (b := _finite(r.get("budget"))) is not None})
    groups: dict[tuple[str, str], dict[float, Mapping[str, Any]]] = {}
    for r in entries:
        budget = _finite(r.get("budget"))
        if budget is None:
            continue
        group = ", ".join(
            f"{k} {fmt_text(v)}"
            for k, v in r.items()
            if k not in ("term", "budget", "effect", "ratio", "reason")
        )
        groups.setdefault((group, str(r.get("term"))), {})[budget] = r
    has_group = any(group for group, _ in groups)
    header = (["group"] if has_group else []) + ["term"] + [fmt_budget(b) for b in budgets]
    table = []
    for (group, term), cells in groups.items():
        row = ([group or DASH] if has_group else []) + [f"`{term}`"]
        for budget in budgets:
            cell = cells.get(budget)
            if cell is None:
                row.append(DASH)
                continue
            ratio = _finite(cell.get("ratio"))
            suffix = "" if ratio is None else f" (×{ratio:.2f})"
            row.append(fmt_effect(cell.get("effect")) + suffix)
        table.append(row)
    return (
        "Effect at each budget and its ratio to the effect at the shortest budget:\n\n"
        + md_table(header, table)
        + "\n\nA ratio is given only for an effect whose interval at the shortest budget "
        "excludes zero."
    )


def _variance_section(shares: Any) -> str:
    rows = [_dict(r) for r in _list(shares)]
    return md_table(
        ["term", "df", "sum of squares", "η²"],
        [
            [
                fmt_text(r.get("term")),
                fmt_fixed(r.get("df"), 0),
                fmt_fixed(r.get("sum_sq"), 6),
                fmt_fixed(r.get("eta_sq"), 4),
            ]
            for r in rows
        ],
    )


def _ranking_section(ranking: Any) -> str:
    groups: dict[tuple[Any, Any], list[Mapping[str, Any]]] = {}
    for entry in _list(ranking):
        entry = _dict(entry)
        groups.setdefault((_finite(entry.get("budget_s")), entry.get("pool")), []).append(entry)
    blocks = []
    for (budget, pool), entries in sorted(
        groups.items(), key=lambda item: (item[0][0] or 0, str(item[0][1] or ""))
    ):
        entries.sort(key=lambda e: _finite(e.get("rank")) or math.inf)
        shown = entries
        cut = len(entries) > RANKING_TOP + RANKING_BOTTOM
        if cut:
            shown = entries[:RANKING_TOP] + entries[-RANKING_BOTTOM:]
        rows = [
            [
                fmt_count(e.get("rank")),
                f"`{fmt_text(e.get('condition_id'))}`",
                fmt_text(e.get("role")),
                fmt_count(e.get("n")),
                _failures(e),
                fmt_mean(e.get("mean")) + (" †" if e.get("adjusted") else ""),
                fmt_mean(e.get("sd")),
                fmt_interval(e.get("ci_low"), e.get("ci_high"), digits=6, signed=False),
            ]
            for e in shown
        ]
        if cut:
            rows.insert(RANKING_TOP, ["…"] * 8)
        title = f"budget {fmt_budget(budget)}" + (f", pool {pool}" if pool else "")
        note = f" (top {RANKING_TOP} and bottom {RANKING_BOTTOM} of {len(entries)})" if cut else ""
        header = ["rank", "condition", "role", "n", "failed", "mean", "sd", "95% CI"]
        blocks.append(f"**{title}**{note}\n\n" + md_table(header, rows))
    legend = (
        "A condition that failed or diverged on any run ranks behind every condition with a "
        "smaller failure share, then by mean."
    )
    if any(_dict(e).get("adjusted") for e in _list(ranking)):
        legend += " † seed-adjusted mean: some conditions lost seeds, so means are compared "
        legend += "as if every condition had run every seed."
    return "\n\n".join([*blocks, legend])


def _failures(entry: Mapping[str, Any]) -> str:
    """`failed/runs` for a condition or anchor with failures, blank when it has none."""
    failed, runs = _finite(entry.get("failed")), _finite(entry.get("runs"))
    if not failed:
        return ""
    return f"{fmt_count(failed)}/{fmt_count(runs)}"


def _win_section(wins: Any, goal: str) -> str:
    better = "<" if goal != "maximize" else ">"
    rows = []
    for entry in _list(wins):
        entry = _dict(entry)
        rows.append(
            [
                fmt_budget(entry.get("budget_s")),
                fmt_text(entry.get("pool")),
                f"{fmt_text(entry.get('left'))} {better} {fmt_text(entry.get('right'))}",
                f"{fmt_count(entry.get('wins'))}/{fmt_count(entry.get('total'))}",
                fmt_count(entry.get("ties")),
            ]
        )
    return (
        md_table(["budget", "pool", "comparison", "wins", "ties"], rows)
        + "\n\nDescriptive cross-seed pairings (n_left × n_right), not independent trials."
    )


def _anchor_rows(entries: Any, *, promoted: bool) -> str:
    rows = []
    for entry in _list(entries):
        entry = _dict(entry)
        first = [fmt_text(entry.get("to_stage"))] if promoted else []
        rows.append(
            first
            + [
                fmt_text(entry.get("role")),
                f"`{fmt_text(entry.get('condition_id'))}`",
                fmt_text(entry.get("rule")),
            ]
            + ([] if promoted else [fmt_text(entry.get("source"))])
            + [fmt_levels(entry.get("levels")), _failures(entry)]
        )
    header = (["to stage"] if promoted else []) + ["role", "condition", "rule"]
    header += ([] if promoted else ["source"]) + ["levels", "failed at source"]
    text = md_table(header, rows)
    if any(_failures(_dict(e)) for e in _list(entries)):
        text += "\n\nAn anchor with failures at its source was promoted despite them."
    return text


def _greedy_section(greedy: Any) -> str:
    rows = []
    for climb in _list(_dict(greedy).get("climbs")):
        climb = _dict(climb)
        steps = [_dict(s) for s in _list(climb.get("steps"))]
        best_step = climb.get("best_step")
        at_best = next((s for s in steps if s.get("step") == best_step), {})
        rows.append(
            [
                fmt_budget(climb.get("budget_s")),
                fmt_text(climb.get("pool")),
                str(len(steps)),
                fmt_count(climb.get("accepted")),
                fmt_mean(climb.get("best")),
                fmt_count(best_step),
                f"`{fmt_text(at_best.get('condition_id'))}` {fmt_levels(at_best.get('levels'))}",
            ]
        )
    return md_table(["budget", "pool", "steps", "accepted", "best", "best step", "incumbent"], rows)


def _random_section(random: Any) -> str:
    random = _dict(random)
    rows = [
        [
            fmt_count(_dict(b).get("batch")),
            f"`{fmt_text(_dict(b).get('condition_id'))}`",
            fmt_levels(_dict(b).get("levels")),
            fmt_mean(_dict(b).get("best")),
        ]
        for b in _list(random.get("batches"))
    ]
    summary = (
        f"Batch best: mean {fmt_mean(random.get('mean_batch_best'))}, "
        f"median {fmt_mean(random.get('median_batch_best'))}, "
        f"min {fmt_mean(random.get('min_batch_best'))}, "
        f"max {fmt_mean(random.get('max_batch_best'))}."
    )
    return md_table(["batch", "winner", "levels", "best"], rows) + "\n\n" + summary


def _halving_section(halving: Any) -> str:
    halving = _dict(halving)
    rows = []
    winners = []
    for ladder in _list(halving.get("ladders")):
        ladder = _dict(ladder)
        for rung in _list(ladder.get("rungs")):
            rung = _dict(rung)
            survivors = [_dict(s) for s in _list(rung.get("survivors"))]
            went_on = ", ".join(
                f"`{fmt_text(s.get('condition_id'))}` {fmt_mean(s.get('mean'))}" for s in survivors
            )
            rows.append(
                [
                    fmt_budget(rung.get("budget_s")),
                    fmt_text(ladder.get("pool")),
                    fmt_count(rung.get("configurations")),
                    went_on or DASH,
                ]
            )
        winner = _dict(ladder.get("winner"))
        if winner:
            winners.append(
                f"Winner on {fmt_text(ladder.get('pool'))}: "
                f"`{fmt_text(winner.get('condition_id'))}` {fmt_levels(winner.get('levels'))}, "
                f"mean {fmt_mean(winner.get('mean'))} at {fmt_budget(winner.get('budget_s'))}."
            )
    header = ["budget", "pool", "configurations", "went on (mean at this budget)"]
    keep = f"Each rung keeps the best 1/{fmt_count(halving.get('eta'))}, rounded up."
    return "\n\n".join([md_table(header, rows), " ".join([keep, *winners])])


def _best_line(best: Any) -> str:
    """One best condition with its evidence: interval (not adjusted for the pick), failures,
    and the runner-up with the difference, its interval, the win count and, in words,
    whether the two are separated."""
    best = _dict(best)
    if not best:
        return DASH
    name = fmt_text(best.get("condition_id"))
    role = f" ({best['role']})" if best.get("role") else ""
    pool = f" on {best['pool']}" if best.get("pool") else ""
    budget = fmt_budget(best.get("budget_s"))
    hyper = _dict(best.get("hyperparameters"))
    settings = ", ".join(f"{k}={fmt_text(v)}" for k, v in hyper.items())
    text = (
        f"`{name}`{role} at {budget}{pool}: mean {fmt_mean(best.get('mean'))}"
        + (" (seed-adjusted)" if best.get("adjusted") else "")
        + ", 95% CI "
        f"{fmt_interval(best.get('ci_low'), best.get('ci_high'), digits=6, signed=False)} "
        "(not adjusted for having been picked as best)"
        f"; levels {fmt_levels(best.get('levels'))}" + (f"; {settings}" if settings else "")
    )
    if _finite(best.get("failed")):
        text += f". It failed or diverged on {_failures(best).replace('/', ' of ')} runs"
    runner = _dict(best.get("runner_up"))
    if not runner:
        return text + ". No other condition to compare with."
    other = fmt_text(runner.get("condition_id"))
    gap = (
        f"Runner-up `{other}` {fmt_mean(runner.get('mean'))}, "
        f"difference {fmt_effect(runner.get('difference'))}"
    )
    if runner.get("separated") is None:
        verdict = f"one run per condition: no interval, so `{name}` and `{other}` are not "
        verdict += f"distinguishable at {budget} from this stage"
    else:
        gap += f" (95% CI {fmt_interval(runner.get('ci_low'), runner.get('ci_high'))})"
        verdict = (
            f"`{name}` is ahead of `{other}` at {budget}"
            if runner.get("separated")
            else f"`{name}` and `{other}` are not distinguishable at {budget}"
        )
    wins = f"{fmt_count(runner.get('wins'))}/{fmt_count(runner.get('total'))}"
    return f"{text}. {gap}; `{name}` wins {wins} seed pairings: {verdict}."


def _best_section(outcome: Mapping[str, Any]) -> str:
    bests = _list(outcome.get("best_per_pool")) or [outcome.get("best")]
    lines = [f"- {_best_line(best)}" for best in bests if _dict(best)]
    return "\n".join(lines) or DASH


def _stage_section(
    data: StageData, study: Study, figures: Sequence[tuple[str, str]], link_prefix: str, level: int
) -> str:
    """One stage: plan, run counts and every table its outcome holds; figures linked."""
    h = "#" * level
    stage, outcome = data.stage, data.outcome
    goal = study.spec.metric.goal
    parts = [f"{h} Stage `{stage.name}`", "", _stage_plan(stage), ""]
    if not data.ran:
        parts.append(f"**Not run yet**: nothing stored under `stages/{stage.name}/`.")
        return "\n".join(parts)
    if outcome is None:
        n = 0 if data.results is None else len(data.results)
        parts += [f"**Analysis not run yet**: {n} run(s) in `{RESULTS}`, no `{OUTCOME}`.", ""]
    else:
        retained = [str(r) for r in _list(outcome.get("retained"))]
        sections: list[tuple[str, str]] = [("Runs", _runs_section(outcome))]
        if _families(outcome.get("effects")):
            judged = _judged_budget(outcome["effects"])
            sections.append(
                ("Main effects", _effects_tables(outcome["effects"], retained, judged=judged))
            )
            sections.append(("Retained factors", _retained_section(retained, judged)))
        if _families(outcome.get("interactions")):
            sections.append(
                ("Two-factor model", _effects_tables(outcome["interactions"], (), judged=None))
            )
        pooled = _dict(outcome.get("pooled"))
        if pooled.get("deltas"):
            sections.append(
                (
                    "Pooled model: change in each effect against the shortest budget",
                    _effects_tables({"families": pooled["deltas"]}, (), judged=None),
                )
            )
        if _list(outcome.get("relaxation")):
            sections.append(("Relaxation with budget", _relaxation_section(outcome["relaxation"])))
        if _list(outcome.get("variance_shares")):
            sections.append(("Variance shares", _variance_section(outcome["variance_shares"])))
        if _list(outcome.get("ranking")):
            sections.append(("Ranking", _ranking_section(outcome["ranking"])))
        if _list(outcome.get("win_counts")):
            sections.append(("Win counts", _win_section(outcome["win_counts"], goal)))
        if _list(outcome.get("anchors")):
            sections.append(("Anchors", _anchor_rows(outcome["anchors"], promoted=False)))
        if _list(outcome.get("promoted")):
            sections.append(("Promoted anchors", _anchor_rows(outcome["promoted"], promoted=True)))
        if _dict(outcome.get("greedy")).get("climbs"):
            sections.append(("Greedy climbs", _greedy_section(outcome["greedy"])))
        if _dict(outcome.get("random")).get("batches"):
            sections.append(("Random search", _random_section(outcome["random"])))
        if _dict(outcome.get("halving")).get("ladders"):
            sections.append(("Successive halving", _halving_section(outcome["halving"])))
        sections.append(("Best condition", _best_section(outcome)))
        for title, body in sections:
            parts += [f"{h}# {title}", "", body, ""]
    if figures:
        parts += [f"{h}# Figures", ""]
        parts += [f"![{caption}]({link_prefix}{name})\n" for name, caption in figures]
    return "\n".join(parts).rstrip() + "\n"


def _manifest_section(manifest: Mapping[str, Any] | None) -> str:
    if manifest is None:
        return f"Not written yet: no `{MANIFEST}`."
    rows = []
    for entry in _list(manifest.get("stages")):
        entry = _dict(entry)
        rows.append(
            [
                f"`{fmt_text(entry.get('stage'))}`",
                fmt_text(entry.get("kind")),
                fmt_text(entry.get("pool")),
                ", ".join(fmt_budget(b) for b in _list(entry.get("budgets_s"))) or DASH,
                fmt_count(entry.get("planned")),
                fmt_count(entry.get("succeeded")),
                fmt_count(entry.get("failed")),
                fmt_count(entry.get("diverged")),
                fmt_fixed(_hours(entry.get("gpu_seconds")), 1),
            ]
        )
    total = _dict(manifest.get("total"))
    rows.append(
        [
            "**total**",
            "",
            "",
            "",
            f"**{fmt_count(total.get('planned'))}**",
            f"**{fmt_count(total.get('succeeded'))}**",
            f"**{fmt_count(total.get('failed'))}**",
            "",
            f"**{fmt_fixed(_hours(total.get('gpu_seconds')), 1)}**",
        ]
    )
    header = ["stage", "kind", "pool", "budgets", "planned", "succeeded", "failed", "diverged"]
    text = md_table([*header, "GPU-hours"], rows)
    pools = _dict(manifest.get("pools"))
    if pools:
        text += "\n\n" + md_table(
            ["pool", "runs", "GPU-hours"],
            [
                [
                    fmt_text(name),
                    fmt_count(_dict(v).get("runs")),
                    fmt_fixed(_hours(_dict(v).get("gpu_seconds")), 1),
                ]
                for name, v in pools.items()
            ],
        )
    return text


def _hours(seconds: Any) -> float | None:
    number = _finite(seconds)
    return None if number is None else number / 3600


def _answer(data: StudyData) -> str:
    """The study's headline: the deciding stage's best on each pool, with its evidence
    (`outcome.deciding_outcome` decides which stage answers; this only words it)."""
    from pydantic import ValidationError

    from stagescreen.outcome import StageOutcome, deciding_outcome

    outcomes = {}
    for stage in data.stages:
        try:
            if stage.outcome is not None:
                outcomes[stage.name] = StageOutcome.model_validate(stage.outcome)
        except ValidationError:
            continue
    chosen = deciding_outcome(data.study.spec, outcomes)
    if chosen is None:
        return "No stage has a best condition yet."
    return f"From stage `{chosen.stage}`:\n\n" + _best_section(chosen.to_json())


# --------------------------------------------------------------------------------------------
# Rendering


def _stage_figures(data: StageData, study: Study) -> dict[str, tuple[Figure, str]]:
    """Figure file name -> (figure, caption) for one stage; only what its data supports."""
    metric, goal = study.spec.metric.name, study.spec.metric.goal
    out: dict[str, tuple[Figure, str]] = {}
    outcome = _dict(data.outcome)
    if data.stage.kind in EFFECT_KINDS:
        figure = effects_figure([(data.name, outcome.get("effects"))], metric=metric, study=study)
        if figure is not None:
            out["effects.png"] = (figure, f"Main effects on {metric} by budget ({data.name})")
    figure = variance_figure(outcome.get("variance_shares"), metric=metric)
    if figure is not None:
        out["variance-shares.png"] = (figure, f"Variance shares of {metric} ({data.name})")
    if data.stage.kind in ("random", "greedy"):
        figure = search_figure(
            outcome, data.results, seeds=len(data.stage.seeds), metric=metric, goal=goal
        )
        if figure is not None:
            out["search.png"] = (figure, f"Incumbent {metric} against cost ({data.name})")
    if data.stage.kind in ANCHOR_KINDS:
        figure = anchor_figure(
            data.results,
            outcome.get("ranking"),
            metric=metric,
            goal=goal,
            pools=data.stage.pools,
            title=f"{metric} per anchor in {data.name}",
        )
        if figure is not None:
            out["anchors.png"] = (
                figure,
                f"Anchor seed runs with means and 95% intervals ({data.name})",
            )
    return out


SYNTHETIC_BANNER = (
    "> **SYNTHETIC**: these results were simulated on planted effects by `stagescreen "
    "simulate`; no model was trained. They show what the design can detect, not what a "
    "recipe does."
)


def _synthetic(data: StageData) -> bool:
    """Whether a stage's results came from `stagescreen simulate` rather than real runs."""
    results = data.results
    if results is not None and "synthetic" in results and bool(results["synthetic"].any()):
        return True
    return bool(_dict(data.outcome).get("synthetic"))


def _mark_synthetic(figure: Figure) -> Figure:
    """A watermark no crop removes: a synthetic figure must never pass for a measured one."""
    figure.text(
        0.5,
        0.5,
        "SYNTHETIC",
        fontsize=44,
        color="#d62728",
        alpha=0.18,
        rotation=25,
        ha="center",
        va="center",
        gid="synthetic",
    )
    return figure


def render_report(data: StudyData) -> Report:
    """Every file of a study's report: the study report.md, each stage's report.md, figures."""
    study = data.study
    metric = study.spec.metric.name
    files: dict[str, bytes] = {}
    stage_figures: dict[str, list[tuple[str, str]]] = {}
    synthetic = any(_synthetic(stage) for stage in data.stages)
    for stage in data.stages:
        captions = []
        for name, (figure, caption) in _stage_figures(stage, study).items():
            if synthetic:
                figure, caption = _mark_synthetic(figure), f"SYNTHETIC: {caption}"
            files[f"stages/{stage.name}/{name}"] = png_bytes(figure)
            captions.append((name, caption))
        stage_figures[stage.name] = captions
        body = _stage_section(stage, study, captions, "", level=1)
        banner = f"{SYNTHETIC_BANNER}\n\n" if synthetic else ""
        files[f"stages/{stage.name}/{REPORT}"] = (
            f"<!-- study {study.name}; generated by stagescreen report -->\n{banner}{body}"
        ).encode()
    screens = [
        (s.name, _dict(s.outcome).get("effects"))
        for s in data.stages
        if s.stage.kind == "screen" and s.outcome is not None
    ]
    main = effects_figure(screens, metric=metric, study=study)
    if main is not None and synthetic:
        main = _mark_synthetic(main)
    parts = [f"# Study `{study.name}`", ""]
    if synthetic:
        parts += [SYNTHETIC_BANNER, ""]
    parts += ["## Summary", "", _study_summary(study), ""]
    parts += ["## Best condition", "", _answer(data), ""]
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
    parts += ["## Run manifest", "", _manifest_section(data.manifest), ""]
    files[REPORT] = ("\n".join(parts).rstrip() + "\n").encode()
    return Report(files)


# --------------------------------------------------------------------------------------------
# Storage edge


def read_study_data(store: Store, study: str) -> StudyData:
    """Spec, stage outcomes and results, and manifest of `study`; absent pieces become None.

    Raises MissingKey when the study has no spec.yaml.
    """
    from stagescreen.studyfile import load_study

    keys = StudyKeys(study)
    spec = load_study(store.get_text(keys.spec()))
    stages = []
    for stage in spec.spec.stages:
        outcome_key, results_key = keys.stage(stage.name, OUTCOME), keys.stage(stage.name, RESULTS)
        stages.append(
            StageData(
                stage,
                store.get_json(outcome_key) if store.exists(outcome_key) else None,
                store.get_frame(results_key) if store.exists(results_key) else None,
            )
        )
    manifest = store.get_json(keys.manifest()) if store.exists(keys.manifest()) else None
    return StudyData(spec, tuple(stages), manifest)


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


__all__ = [
    "Report",
    "StageData",
    "StudyData",
    "anchor_figure",
    "effects_figure",
    "png_bytes",
    "read_study_data",
    "render_report",
    "search_figure",
    "variance_figure",
    "write_report",
]
