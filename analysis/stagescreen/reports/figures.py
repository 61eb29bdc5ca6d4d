"""The paper's figures, drawn from stored outcomes and results; PNG bytes out.

Main effects against budget with 95% intervals (fig. 1), Type-II ANOVA eta^2 shares (fig. 2),
anchor seed runs with mean and 95% interval per budget (fig. 3) and the same per pool and
budget for the long-horizon anchors (fig. 4), and, for the baselines, the incumbent against
cost (sections 5.4-5.5). Like the markdown, a figure never refits a model: its numbers are the
outcome's, so a figure and the table beside it cannot disagree.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas and a fixed style,
never through pyplot's global state, so rendering is deterministic and safe to call from
several threads.
"""

from __future__ import annotations

import contextlib
import io
import math
import textwrap
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from stagescreen.planning.ranking import succeeded
from stagescreen.reports.formatting import DASH, fmt_budget, fmt_text
from stagescreen.statistics.means import mean_interval

if TYPE_CHECKING:
    from stagescreen.outcomes.model import RankedCondition, StageOutcome
    from stagescreen.statistics.families import EffectFamilies
    from stagescreen.statistics.means import VarianceShare
    from stagescreen.study.spec import Study

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
RETAINED_LABEL = "filled: retained\n(at the budget judged)"
NOT_RETAINED_LABEL = "hollow: not retained"
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
MARKERS = ("o", "s", "^", "D", "v", "P")


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


def effects_figure(
    series: Sequence[tuple[str, EffectFamilies | None]],
    *,
    metric: str = "val_bpb",
    study: Study | None = None,
    retained: Mapping[str, tuple[int | None, Collection[str]]] | None = None,
) -> Figure | None:
    """Paper fig. 1: each main effect against budget, 95% interval bars, a zero line.

    `series` pairs a label (a stage name, with the pool when a stage has several) with an
    effects document; series share the budget axis and are told apart by marker. `retained`
    gives a series' retention (by its label): the budget it was judged at and the factors it
    retained; those points are filled, every other point hollow, as the report's table ticks
    `retained` only at the judged budget. Only main effects (terms without ':') are drawn.
    None when there is no effect to draw.
    """
    points: list[tuple[str, str, float, float, float | None, float | None]] = []
    labels = []
    kept: set[tuple[str, str, float]] = set()
    for label, document in series:
        judged, terms = (retained or {}).get(label, (None, ()))
        for family in document.families if document is not None else ():
            budget = family.budget
            if not isinstance(budget, int | float):
                continue
            pool = family.by.get("pool")
            name = label if pool is None else f"{label} ({pool})"
            for effect in family.effects:
                term, value = effect.term, effect.effect
                if not term or ":" in term or value is None:
                    continue
                points.append((name, term, budget, value, effect.ci_low, effect.ci_high))
                if budget == judged and term in terms:
                    kept.add((name, term, budget))
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
                colour = _factor_colour(study, term, t)
                bars = axes.errorbar(
                    x,
                    y,
                    yerr=np.clip(np.vstack([lower, upper]), 0.0, None),
                    color=colour,
                    marker=MARKERS[s % len(MARKERS)],
                    markersize=5,
                    markerfacecolor="white",
                    capsize=3,
                    linewidth=1.2,
                    label=_factor_label(study, term) if s == 0 else None,
                )
                bars.lines[0].set_gid(f"effect:{name}:{term}")
                filled = [i for i, p in enumerate(rows) if (name, term, p[2]) in kept]
                if filled:
                    axes.plot(
                        x[filled],
                        y[filled],
                        color=colour,
                        marker=MARKERS[s % len(MARKERS)],
                        markersize=5,
                        linestyle="",
                        zorder=3,
                        gid=f"retained:{name}:{term}",
                    )
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
        if retained is not None:
            handles += [
                Line2D([], [], color="grey", marker="o", linestyle=""),
                Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle=""),
            ]
            names += [RETAINED_LABEL, NOT_RETAINED_LABEL]
        figure.legend(handles, names, loc="outside right center")
    return figure


def variance_figure(
    shares: Sequence[VarianceShare] | None, *, metric: str = "val_bpb"
) -> Figure | None:
    """Paper fig. 2: Type-II ANOVA eta^2 per term, largest first, residual last."""
    rows = [(row.term, row.eta_sq) for row in shares or () if row.eta_sq is not None]
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


def _anchor_label(role: object, condition: object) -> str:
    """An anchor's label: its role with its condition, else whichever it has."""
    role = None if role is None or (isinstance(role, float) and math.isnan(role)) else role
    if role and condition:
        return f"{role}\n({condition})"
    return str(role or condition or DASH)


SEED_LABEL = "seed run"
MEAN_LABEL = "mean, 95% interval"
ADJUSTED_LABEL = "seed-adjusted mean, 95% interval"
UNFINISHED = {"diverged": ("X", "#d62728"), "failed": ("v", "#7f7f7f")}
"""A run with no value, drawn at its panel's top edge: the marker and colour of each status."""


def anchor_figure(
    results: pd.DataFrame | None,
    ranking: Sequence[RankedCondition] | None = None,
    *,
    metric: str = "val_bpb",
    goal: str = "minimize",
    pools: Sequence[str] = (),
    title: str | None = None,
) -> Figure | None:
    """Paper figs. 3 and 4: each seed run as a point, the mean and its 95% interval in black.

    One panel per (pool, budget): pools are rows, budgets columns, and the panels of one
    budget share their y-axis, so pools compare by eye. Anchors keep one order in every
    panel, the ranking table's at the longest budget on the first pool (failures behind,
    then by mean), so a pool-sensitive ordering shows as a change in shape. Means and
    intervals come from the outcome's ranking when it has the cell (a seed-adjusted mean
    drawn as a hollow diamond, so one drawn away from its points says why), else from the
    runs themselves. Runs that diverged or failed have no value: each is a marker at the
    panel's top edge above its anchor.
    """
    if results is None or metric not in results.columns or "budget_s" not in results.columns:
        return None
    results = results.reset_index(drop=True)
    runs = succeeded(results, metric)
    if runs.empty:
        return None
    table = results.assign(
        _pool=results["pool"].fillna("").astype(str) if "pool" in results.columns else "",
        _label=[
            _anchor_label(row.get("role"), row.get("condition_id"))
            for row in results.to_dict("records")
        ],
    )
    runs = table.loc[runs.index].assign(_y=pd.to_numeric(runs[metric]).astype(float))
    unfinished = table.drop(index=runs.index)
    unfinished = unfinished[unfinished["status"].astype(str).isin(list(UNFINISHED))]
    present = list(dict.fromkeys(runs["_pool"]))
    pool_order = [p for p in pools if p in present] + [p for p in present if p not in pools]
    budgets = sorted(runs["budget_s"].unique().tolist())
    cells = {(r.pool, r.budget_s, _anchor_label(r.role, r.condition_id)): r for r in ranking or ()}
    order = _anchor_order(runs, cells, pool_order[0], budgets[-1], goal)
    colour = {label: COLOURS[i % len(COLOURS)] for i, label in enumerate(order)}
    adjusted = any(cell.adjusted for cell in cells.values())
    rows, cols = len(pool_order), len(budgets)
    with _styled():
        figure = Figure(
            figsize=(max(4.2, 0.9 * len(order) + 1.5) * cols + 1.8, 3.6 * rows + 0.6),
            dpi=DPI,
            layout="constrained",
        )
        grid = figure.subplots(rows, cols, squeeze=False, sharey="col")
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
                    mean, low, high, seed_adjusted = _cell_interval(
                        cells, pool, budget, label, values
                    )
                    # An interval that misses its mean (inconsistent input) draws as none.
                    bars = axes.errorbar(
                        [i + 0.12],
                        [mean],
                        yerr=None
                        if low is None or high is None
                        else [[max(mean - low, 0.0)], [max(high - mean, 0.0)]],
                        color="black",
                        marker="D" if seed_adjusted else "o",
                        markerfacecolor="white" if seed_adjusted else "black",
                        markersize=6,
                        capsize=4,
                        zorder=3,
                    )
                    bars.lines[0].set_gid(f"mean:{label}")
                here = unfinished[
                    (unfinished["_pool"] == pool) & (unfinished["budget_s"] == budget)
                ]
                for status, (marker, tint) in UNFINISHED.items():
                    xs = [
                        order.index(label)
                        for label in here.loc[here["status"] == status, "_label"]
                        if label in order
                    ]
                    if xs:
                        axes.scatter(
                            xs,
                            [0.97] * len(xs),
                            marker=marker,
                            s=40,
                            color=tint,
                            zorder=4,
                            clip_on=False,
                            transform=axes.get_xaxis_transform(),
                            gid=f"{status}:{pool}:{budget}",
                        )
                axes.set_xticks(range(len(order)), order, fontsize=8)
                axes.set_xlim(-0.6, len(order) - 0.4)
                where = f"{pool}, " if pool else ""
                axes.set_title(f"{where}{fmt_budget(budget)}")
                if c == 0:
                    axes.set_ylabel(metric)
        statuses = set(unfinished["status"].astype(str))
        figure.legend(
            *_anchor_legend(adjusted, [s for s in UNFINISHED if s in statuses]),
            loc="outside right center",
        )
        width = figure.get_figwidth()
        heading = title or f"{metric} per anchor"
        figure.suptitle("\n".join(textwrap.wrap(heading, int(width * 11))), fontsize=10)
    return figure


def _anchor_order(
    runs: pd.DataFrame,
    cells: Mapping[tuple[str, int, str], RankedCondition],
    pool: str,
    budget: int,
    goal: str,
) -> list[str]:
    """The anchors in the ranking table's order at (pool, budget); those it does not rank
    after them, by their mean there (best first), then by label."""
    ranked = {label: cell.rank for (p, b, label), cell in cells.items() if (p, b) == (pool, budget)}
    first = runs[(runs["_pool"] == pool) & (runs["budget_s"] == budget)]
    means = first.groupby("_label")["_y"].mean()
    sign = -1.0 if goal == "maximize" else 1.0
    return sorted(
        runs["_label"].unique(),
        key=lambda lab: (
            lab not in ranked,
            ranked.get(lab, 0),
            lab not in means,
            sign * means.get(lab, 0.0),
            lab,
        ),
    )


def _anchor_legend(adjusted: bool, unfinished: Sequence[str]) -> tuple[list[Line2D], list[str]]:
    """What the anchor panels draw: seed runs, means (seed-adjusted where the stage adjusts
    them) and the runs with no value, by status."""
    handles = [
        Line2D([], [], color="grey", marker="o", markersize=4, linestyle=""),
        Line2D([], [], color="black", marker="o", linestyle=""),
    ]
    labels = [SEED_LABEL, MEAN_LABEL]
    if adjusted:
        handles.append(
            Line2D([], [], color="black", marker="D", markerfacecolor="white", linestyle="")
        )
        labels.append(ADJUSTED_LABEL)
    for status in unfinished:
        marker, tint = UNFINISHED[status]
        handles.append(Line2D([], [], color=tint, marker=marker, linestyle=""))
        labels.append(f"{status} run (no value)")
    return handles, labels


def _cell_interval(
    cells: Mapping[tuple[str, int, str], RankedCondition],
    pool: str,
    budget: int,
    label: str,
    values: np.ndarray,
) -> tuple[float, float | None, float | None, bool]:
    """A cell's mean, its 95% interval and whether the mean is seed-adjusted: the outcome's
    ranking where it has the cell, else the runs' own."""
    cell = cells.get((pool, budget, label))
    if cell is not None and cell.mean is not None:
        return cell.mean, cell.ci_low, cell.ci_high, cell.adjusted
    return (*mean_interval(values), False)


def search_figure(
    outcome: StageOutcome | None,
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
    greedy = outcome.greedy if outcome is not None else None
    for climb in greedy.climbs if greedy is not None else ():
        hours = climb.budget_s * seeds / 3600
        xs: list[float] = []
        ys: list[float] = []
        incumbent: float | None = None
        for step in climb.steps:
            if step.mean is not None and step.accepted:
                incumbent = step.mean if incumbent is None else better(incumbent, step.mean)
            if incumbent is not None:
                xs.append(hours * (len(xs) + 1))
                ys.append(incumbent)
        label = f"greedy {fmt_budget(climb.budget_s)} {fmt_text(climb.pool)}"
        lines.append((label, xs, ys))
    random = outcome.random if outcome is not None else None
    if random is not None and random.batches and results is not None:
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


def watermark(figure: Figure, word: str) -> Figure:
    """A watermark no crop removes (SYNTHETIC, REPLAY): a rehearsal's figure must never pass
    for one of a study that trained."""
    figure.text(
        0.5,
        0.5,
        word,
        fontsize=44,
        color="#d62728",
        alpha=0.18,
        rotation=25,
        ha="center",
        va="center",
        gid=word.lower(),
    )
    return figure
