"""Planted-effect simulation: results for a study's runs drawn from a known response model.

Used to check before spending GPU hours that a design, its seeds and its budgets can detect
effects of the size one expects (`stagescreen simulate`, and with `--replicates` the power
study of `statistics.power`), to exercise the whole analysis path in tests and benchmarks,
and for the quickstart until real runs exist. Every figure it produces is labelled synthetic;
nothing here stands in for the trainer.

The model follows the paper's findings (section 5.1): the metric falls with budget, and main
effects shrink ("relax") as budget grows. `paper_model` calibrates it to the paper's published
tables: the main effects and the A:B interaction measured at each budget, the residual noise
per budget, and how much noisier its worst cells are than its best; a power of the budget
ratio (the relaxation law) stands in for the table when a user plants effects of their own.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from scipy import stats

from stagescreen.planning.planner import plan_stage
from stagescreen.planning.plans import PlanError, PlannedRun
from stagescreen.study.spec import StudySpec, parse_duration
from stagescreen_contract.status import RunStatus


@dataclass(frozen=True)
class ResponseModel:
    """metric = base(budget) + sum(effect/2 * level) + interactions + seed + noise.

    Effects are high-minus-low at `reference_s` and scale as (reference_s / budget) **
    `relaxation`; the base falls by `gain` per doubling of budget. Noise is Gaussian: one
    draw per seed (shared by all runs with that seed), one per seed and condition (shared by
    that recipe's runs with that seed, at every budget and in every stage) and one per run.
    The per-run sd depends on the budget (`noise_points`) and on the condition (`spread`).
    A run diverges with probability `divergence`: it has a status and no metric.
    The defaults are a plain homoscedastic model; `paper_model` gives the calibrated one.
    """

    effects: Mapping[str, float]
    interactions: Mapping[str, float] = field(default_factory=dict)
    base: float = 1.30
    reference_s: int = 120
    relaxation: float = 0.8
    gain: float = 0.06
    seed_sd: float = 0.002
    noise_sd: float = 0.004
    """Per-run noise sd at every budget when `noise_points` is empty."""
    noise_points: Mapping[int, float] = field(default_factory=dict)
    """Per-run noise sd at calibration budgets (seconds). Between two points log(sd) is
    linear in log(budget); outside them the sd is held at the nearest point."""
    spread: float = 0.0
    """Heteroscedastic cells: a condition's sd is multiplied by exp(spread * z) (normalised
    to a root-mean-square of one over the full 2^k space), z being its planted main-effect
    signal in standard deviations of that signal over the space. Positive: conditions with
    a higher metric are noisier; 0: every cell has the same sd."""
    seed_condition_sd: float = 0.0
    """Noise sd shared by the runs of one seed and one condition (a seed x condition term)."""
    divergence: float = 0.0
    """Probability that a run diverges (status diverged, no metric)."""
    overhead_s: float = 45.0
    """Start-up and evaluation seconds added to each run's wall time."""
    effect_points: Mapping[int, Mapping[str, float]] = field(default_factory=dict)
    """Planted effects measured at calibration budgets, {budget_s: {term: effect}}, terms as
    in `effects` and `interactions`. When given they replace the relaxation law in the mean:
    between two points an effect is linear in log(budget), outside them held at the nearest
    point, so a table of published effects is reproduced at its own budgets, sign changes
    included. `effects` still sets the cell spread."""
    centre_points: Mapping[int, Mapping[str, float]] = field(default_factory=dict)
    """A factor's centre shift at calibration budgets, {budget_s: {code: shift}}: the
    metric at level 0 minus the mean of its two levels (interpolated like `effect_points`).
    Empty: every factor is linear, so no centre point can beat both of its corners."""

    def shrink(self, budget_s: int) -> float:
        """How much of its reference size an effect keeps at a budget."""
        return float((self.reference_s / budget_s) ** self.relaxation)

    def effect_at(self, term: str, budget_s: int) -> float:
        """The planted high-minus-low effect of a main effect or interaction at a budget."""
        if self.effect_points:
            return interpolate_points(self.effect_points, budget_s).get(term, 0.0)
        planted = self.interactions if ":" in term else self.effects
        return self.shrink(budget_s) * planted.get(term, 0.0)

    def mean(self, levels: Mapping[str, float], budget_s: int) -> float:
        """The noise-free metric of a condition at a budget."""
        value = self.base - self.gain * math.log2(budget_s / self.reference_s)
        terms = (
            interpolate_points(self.effect_points, budget_s)
            if self.effect_points
            else [*self.effects, *self.interactions]
        )
        for term in terms:
            product = math.prod(levels.get(code, 0) for code in term.split(":"))
            value += self.effect_at(term, budget_s) / 2 * product
        if self.centre_points:
            for code, shift in interpolate_points(self.centre_points, budget_s).items():
                value += shift * (1 - levels.get(code, 0) ** 2)
        return value

    def noise_at(self, budget_s: int) -> float:
        """The per-run noise sd of an average cell at a budget (see `noise_points`)."""
        if not self.noise_points:
            return self.noise_sd
        budgets = sorted(self.noise_points)
        log_sd = np.log([self.noise_points[b] for b in budgets])
        # np.interp holds the end values outside the points: the documented extrapolation.
        return float(np.exp(np.interp(math.log(budget_s), np.log(budgets), log_sd)))

    def cell_factor(self, levels: Mapping[str, float]) -> float:
        """The condition's multiplier of the noise sd (1 for every cell when spread is 0)."""
        halves = {code: effect / 2 for code, effect in self.effects.items() if effect}
        scale = math.sqrt(sum(h * h for h in halves.values()))
        if self.spread == 0 or scale == 0:
            return 1.0
        z = sum(h * levels.get(code, 0) for code, h in halves.items()) / scale
        # E[exp(2 spread z)] over the 2^k corners is the product of cosh(spread * 2h / scale).
        norm = math.prod(math.cosh(self.spread * 2 * h / scale) for h in halves.values())
        return math.exp(self.spread * z) / math.sqrt(norm)

    def cell_sd(self, levels: Mapping[str, float], budget_s: int) -> float:
        """The per-run noise sd of one condition at one budget."""
        return self.noise_at(budget_s) * self.cell_factor(levels)

    def draw(self, levels: Mapping[str, float], budget_s: int, seed: int, run_id: str) -> float:
        """One run's metric: deterministic from (seed, run_id), whatever order runs happen in."""
        seed_shift = np.random.default_rng([seed, 7]).normal(0.0, self.seed_sd)
        pair = np.random.default_rng([seed, zlib.crc32(condition_key(levels).encode()), 11])
        noise = np.random.default_rng([seed, zlib.crc32(run_id.encode())]).normal(
            0.0, self.cell_sd(levels, budget_s)
        )
        return (
            self.mean(levels, budget_s)
            + float(seed_shift)
            + float(pair.normal(0.0, self.seed_condition_sd))
            + float(noise)
        )

    def run_rows(self, runs: Sequence[PlannedRun], metric: str) -> pd.DataFrame:
        """The planned runs' results drawn from this model (`simulate_runs`)."""
        return simulate_runs(runs, self, metric)

    def diverges(self, seed: int, run_id: str) -> bool:
        """Whether a run diverges: deterministic from (seed, run_id) like its draw."""
        if self.divergence <= 0:
            return False
        chance = np.random.default_rng([seed, zlib.crc32(run_id.encode()), 13]).random()
        return bool(chance < self.divergence)


def interpolate_points(
    points: Mapping[int, Mapping[str, float]], budget_s: int
) -> dict[str, float]:
    """Each term's value at a budget from its calibration points: linear in log(budget)
    between points, held at the nearest point outside them; a term a point leaves out is 0
    there."""
    budgets = sorted(points)
    where = np.log(budgets)
    terms = dict.fromkeys(term for budget in budgets for term in points[budget])
    return {
        term: float(
            np.interp(math.log(budget_s), where, [points[b].get(term, 0.0) for b in budgets])
        )
        for term in terms
    }


def condition_key(levels: Mapping[str, float]) -> str:
    """A recipe's identity across stages (ids differ for one recipe: c07 vs f32-14)."""
    return ",".join(f"{code}{levels[code]:+g}" for code in sorted(levels))


# --- calibration to the paper ---------------------------------------------------------------

PILOT_BUDGET_S = 120
"""The paper's shortest screen budget; the planted effects hold here (its 2-minute pilot)."""

PAPER_MAIN_EFFECTS: Mapping[int, Mapping[str, float]] = {
    120: {"A": 0.1112, "B": 0.1109, "C": -0.0597, "D": 0.1847, "E": 0.0448},
    300: {"A": 0.0568, "B": 0.0441, "C": -0.0165, "D": 0.0818, "E": 0.0054},
    600: {"A": 0.0180, "B": 0.0059, "C": -0.0045, "D": 0.0346, "E": -0.0013},
}
"""High-minus-low main effects on val_bpb by budget, paper 5.1: the 2-minute single-seed
pilot and the seeded 5- and 10-minute full screens."""

RELAXING_TERMS = ("A", "B", "C", "D")
"""Factors whose seeded intervals exclude zero at both 5 and 10 minutes (5.1); E's do not,
and its sign flips, so it carries no information about the rate of relaxation."""

PAPER_FACTORS: Mapping[str, str] = {
    "DEPTH": "A",
    "ASPECT_RATIO": "B",
    "MATRIX_LR": "C",
    "TOTAL_BATCH_SIZE": "D",
    "WARMDOWN_RATIO": "E",
}
"""The paper's factors by hyperparameter name, and their code in its tables (its 2^(5-1)
screen, examples/paper.yaml): its measured effects belong to these names only."""

PAPER_SEEDED_HALF_WIDTH: Mapping[int, float] = {300: 0.0142, 600: 0.00385}
"""Half the width of every seeded main-effect interval (5.1; e.g. A at 5 min [+0.0426,
+0.0710], at 10 min [+0.0141, +0.0218]): one width per budget, as the design is orthogonal."""

SEEDED_SCREEN_RUNS = 80
SEEDED_SCREEN_DF = 80 - 1 - 5 - 4
"""16 conditions x 5 seeds per budget; residual df after intercept, 5 effects, 4 seeds."""

PAPER_CELL_INTERVALS: Mapping[tuple[int, str], tuple[float, float]] = {
    (300, "c07"): (1.152515, 1.168028),
    (300, "c14"): (1.307309, 1.436364),
    (600, "c07"): (1.085720, 1.091999),
    (600, "c14"): (1.147242, 1.181241),
}
"""95% intervals of the best (c07) and worst (c14) condition means over 5 seeds (5.8)."""

PAPER_CELL_LEVELS: Mapping[str, Mapping[str, int]] = {
    "c07": {"A": -1, "B": 1, "C": 1, "D": -1, "E": 1},
    "c14": {"A": 1, "B": 1, "C": -1, "D": 1, "E": -1},
}
"""Coded levels of those two conditions in the paper's 2^(5-1) screen (E = ABCD)."""

PAPER_AB: Mapping[int, float] = {300: 0.0101, 600: 0.0049}
"""The A:B interaction by budget in the D-fixed follow-up (5.3); the paper has none at 2
minutes."""

PAPER_SEED_SD = 0.002
"""Seed shifts are small in the paper (5.7: seed eta^2 0.0044 against 0.0118 residual);
0.002 keeps them below the 10-minute residual sd."""

PAPER_DIVERGENCE = 0.005
"""Not from the paper, which reports every one of its 613 runs: an assumption, so a design is
rehearsed losing the odd run (`--divergence 0` turns it off)."""


def fit_relaxation(
    table: Mapping[int, Mapping[str, float]] = PAPER_MAIN_EFFECTS,
    terms: Sequence[str] = RELAXING_TERMS,
) -> float:
    """The common exponent p of |effect| ~ budget^-p, one intercept per term (least squares
    in log-log). On the paper's table: 1.38 (A alone 1.13, D 1.04, B 1.82, C 1.61)."""
    budgets = np.log(sorted(table))
    centred = budgets - budgets.mean()
    slope = 0.0
    for term in terms:
        size = np.log([abs(table[b][term]) for b in sorted(table)])
        slope += float(centred @ (size - size.mean()))
    return -slope / (len(terms) * float(centred @ centred))


def paper_noise() -> dict[int, float]:
    """Residual sd per budget of the seeded screens: half-width / (t_0.975,70 * 2/sqrt(80)),
    since an effect is 2*beta and se(beta) = sd / sqrt(80). 5 min: 0.032; 10 min: 0.0086."""
    t = float(stats.t.ppf(0.975, SEEDED_SCREEN_DF))
    return {
        budget: half / (t * 2 / math.sqrt(SEEDED_SCREEN_RUNS))
        for budget, half in PAPER_SEEDED_HALF_WIDTH.items()
    }


def fit_spread() -> float:
    """The log-sd slope per standard deviation of main-effect signal, from the paper's best and
    worst cells: sd = half-width * sqrt(5) / t_0.975,4; slope = log(sd_c14 / sd_c07) /
    (z_c14 - z_c07) with z from that budget's seeded effects. 5 min: 0.78, 10 min: 0.57;
    the mean, 0.68, is returned."""
    t = float(stats.t.ppf(0.975, 4))
    slopes = []
    for budget in (300, 600):
        halves = {code: effect / 2 for code, effect in PAPER_MAIN_EFFECTS[budget].items()}
        scale = math.sqrt(sum(h * h for h in halves.values()))
        z = {
            cid: sum(h * levels[code] for code, h in halves.items()) / scale
            for cid, levels in PAPER_CELL_LEVELS.items()
        }
        sd = {
            cid: (high - low) / 2 * math.sqrt(5) / t
            for (b, cid), (low, high) in PAPER_CELL_INTERVALS.items()
            if b == budget
        }
        slopes.append(math.log(sd["c14"] / sd["c07"]) / (z["c14"] - z["c07"]))
    return sum(slopes) / len(slopes)


def paper_model(
    spec: StudySpec,
    planted: Mapping[str, float] | None = None,
    reference_s: int | None = None,
    relaxation: float | None = None,
) -> ResponseModel:
    """The response model calibrated to the paper, for any study.

    - effects: with neither `planted` nor `relaxation`, the paper's measured table per budget
      on the factors it measured, by name (`paper_effect_points`); otherwise `planted`
      (terms with ':' are interactions), else that table's 2-minute main effects plus
      DEPTH:ASPECT_RATIO sized to read the paper's A:B at 5 minutes (+0.0101) at 2.5x the
      reference; at the reference and shrunk with budget by `relaxation` (default
      `fit_relaxation()`, 1.38);
    - per-run noise: `paper_noise()` (0.032 at 5 min, 0.0086 at 10 min), held flat outside:
      continuing the 5-to-10-minute slope (sd ~ budget^-1.9) would claim 0.0003 at 60 min,
      below the paper's own 60-minute seed spreads (sd 0.0008-0.0015 from the intervals of
      5.9), and 0.18 at 2 minutes, larger than the pilot's effects;
    - heteroscedastic cells: `fit_spread()` (0.68), the worse direction of the metric noisier;
    - seed shift sd `PAPER_SEED_SD`, divergence `PAPER_DIVERGENCE`, no seed x condition term.

    The reference defaults to the study's shortest budget. A study whose shortest budget is
    not 2 minutes gets the paper's budgets stretched in proportion (effect points at 1x,
    2.5x and 5x its reference, noise points at 2.5x and 5x), since the paper's seconds mean
    nothing for a CPU study's.
    """
    reference = reference_s or min(b for stage in spec.stages for b in stage.budgets)
    stretch = reference / PILOT_BUDGET_S
    spread = fit_spread()
    exponent = fit_relaxation() if relaxation is None else relaxation
    points: dict[int, dict[str, float]] = {}
    if planted is None and relaxation is None:
        points = paper_effect_points(spec, stretch)
        planted = points[min(points)]
    elif planted is None:
        pilot = paper_effect_points(spec)[PILOT_BUDGET_S]
        planted = {term: effect for term, effect in pilot.items() if ":" not in term}
        pair = paper_interaction(spec)
        if pair is not None:
            planted[pair] = PAPER_AB[300] * (300 / PILOT_BUDGET_S) ** exponent
    return ResponseModel(
        effects={t: v for t, v in planted.items() if ":" not in t},
        interactions={t: v for t, v in planted.items() if ":" in t},
        reference_s=reference,
        relaxation=exponent,
        seed_sd=PAPER_SEED_SD,
        noise_points={max(1, round(b * stretch)): sd for b, sd in paper_noise().items()},
        spread=spread if spec.metric.goal == "minimize" else -spread,
        divergence=PAPER_DIVERGENCE,
        effect_points=points,
    )


def paper_effect_points(spec: StudySpec, stretch: float = 1.0) -> dict[int, dict[str, float]]:
    """The paper's measured effects at its 2, 5 and 10 minutes (times `stretch`), planted on
    the study's factors that the paper measured, found by name (`PAPER_FACTORS`) whatever
    code the study gives them: a code letter names a position in a design, not a
    hyperparameter, so the paper's batch-size effect must not land on another study's D.

    - DEPTH, ASPECT_RATIO, MATRIX_LR and TOTAL_BATCH_SIZE take A-D's measured main effects
      (5.1); WARMDOWN_RATIO is planted null, as E's seeded intervals hold zero and its sign
      flips; every other factor is planted null too (`unplanted` names them);
    - DEPTH and ASPECT_RATIO interact as A:B did (5.3: +0.0101 at 5, +0.0049 at 10 minutes);
      at 2 minutes, where the paper has no A:B, the 5-minute value grown back by the fitted
      relaxation (+0.036).
    """
    exponent = fit_relaxation()
    names = [factor.name for factor in spec.factors]
    paper = {code: PAPER_FACTORS.get(name) for code, name in zip(spec.codes, names, strict=True)}
    pair = paper_interaction(spec)
    points: dict[int, dict[str, float]] = {}
    for budget, measured in PAPER_MAIN_EFFECTS.items():
        row = {
            code: measured[term] if term in RELAXING_TERMS else 0.0 for code, term in paper.items()
        }
        if pair is not None:
            grown = PAPER_AB[300] * (300 / budget) ** exponent
            row[pair] = PAPER_AB.get(budget, grown)
        points[max(1, round(budget * stretch))] = row
    return points


def paper_interaction(spec: StudySpec) -> str | None:
    """The study's term for the paper's A:B (DEPTH:ASPECT_RATIO), in its codes and factor
    order; None unless it has both factors."""
    names = [factor.name for factor in spec.factors]
    pair = [
        code
        for code, name in zip(spec.codes, names, strict=True)
        if PAPER_FACTORS.get(name) in ("A", "B")
    ]
    return ":".join(pair) if len(pair) == 2 else None


def unplanted(spec: StudySpec) -> list[str]:
    """The study's factors the paper measured no effect of (not in `PAPER_FACTORS`): the
    paper's defaults plant nothing on them, so a rehearsal must say so or be given effects."""
    return [factor.name for factor in spec.factors if factor.name not in PAPER_FACTORS]


def parse_effects(text: str, codes: Sequence[str]) -> dict[str, float]:
    """`A=0.05,B=-0.02,A:B=0.01` to {term: effect}; names each bad part and the codes known."""
    planted: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        term, sep, value = part.partition("=")
        term = term.strip()
        letters = term.split(":")
        if not sep or any(letter not in codes for letter in letters):
            raise ValueError(
                f"effect {part!r}: expected TERM=VALUE with TERM a factor code "
                f"({', '.join(codes)}) or an interaction like {codes[0]}:{codes[-1]}"
            )
        try:
            planted[term] = float(value)
        except ValueError:
            raise ValueError(f"effect {part!r}: {value.strip()!r} is not a number") from None
    return planted


def parse_noise(text: str) -> float | dict[int, float]:
    """`0.004` (one sd at every budget) or `5m=0.032,10m=0.0086` (sd per calibration budget)."""

    def sd(value: str, part: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{part!r}: {value.strip()!r} is not a number") from None
        if not number >= 0:
            raise ValueError(f"{part!r}: a noise sd must be >= 0")
        return number

    if "=" not in text:
        return sd(text, text)
    points: dict[int, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        budget, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{part!r}: expected BUDGET=SD, e.g. 5m=0.032")
        points[parse_duration(budget.strip())] = sd(value, part)
    return points


DEFAULT_PATTERN = (0.11, 0.11, -0.06, 0.18, 0.0, 0.03, -0.02, 0.01)
"""Planted effects by factor position: the 2-minute pilot's A-D (5.1), E null, then small."""


def default_effects(spec: StudySpec) -> dict[str, float]:
    """Paper-like planted effects (section 5.1 pilot) by factor position, for models built in
    code (tests, benchmarks): a few large, one null, signs mixed. `simulate` plants by
    factor name instead (`paper_effect_points`)."""
    return {code: DEFAULT_PATTERN[i % len(DEFAULT_PATTERN)] for i, code in enumerate(spec.codes)}


def simulate_runs(runs: Sequence[PlannedRun], model: ResponseModel, metric: str) -> pd.DataFrame:
    """Run records, flattened to the results-table columns, for the planned runs; a diverged
    run has a NaN metric, as a trainer's record has none."""
    rows: list[dict[str, object]] = []
    for run in runs:
        diverged = model.diverges(run.seed, run.run_id)
        value = math.nan if diverged else model.draw(run.levels, run.budget_s, run.seed, run.run_id)
        rows.append(
            run.to_row()
            | {
                "status": (RunStatus.DIVERGED if diverged else RunStatus.SUCCEEDED).value,
                metric: value,
                "training_s": float(run.budget_s),
                "wall_s": float(run.budget_s) + model.overhead_s,
                "synthetic": True,
            }
        )
    return pd.DataFrame(rows)


class RunSource(Protocol):
    """Where a rehearsal's values come from: a planted `ResponseModel`, or a table of measured
    runs (`statistics.replay.Table`). Either answers planned runs with results-table rows."""

    def run_rows(self, runs: Sequence[PlannedRun], metric: str) -> pd.DataFrame: ...


def simulate_stage(
    spec: StudySpec, stage_name: str, results: pd.DataFrame, source: RunSource
) -> pd.DataFrame:
    """Results of one stage appended to `results`, its runs answered by `source`; sequential
    stages (greedy, halving) are planned and answered step by step, as they would run."""
    stage = spec.stage(stage_name)
    while True:
        plan = plan_stage(spec, stage, results)
        done = set(results["run_id"]) if "run_id" in results.columns else set()
        new = [run for run in plan.runs if run.run_id not in done]
        if new:
            results = pd.concat(
                [results, source.run_rows(new, spec.metric.name)], ignore_index=True
            )
        if plan.finished:
            return results
        if not new:
            raise PlanError(f"stage {stage_name!r} is waiting on runs it cannot simulate")
