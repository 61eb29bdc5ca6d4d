"""Planted-effect simulation: results for a study's runs drawn from a known response model.

Used to check before spending GPU hours that a design, its seeds and its budgets can detect
effects of the size one expects (`stagescreen simulate`), to exercise the whole analysis path
in tests and benchmarks, and for the quickstart until real runs exist. Every figure it
produces is labelled synthetic; nothing here stands in for the trainer.

The model follows the paper's qualitative findings (section 5.1): the metric falls with
budget, and main effects shrink ("relax") as budget grows, as a power of the budget ratio.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stagescreen import stages as planning
from stagescreen.runstatus import RunStatus
from stagescreen.spec import StudySpec


@dataclass(frozen=True)
class ResponseModel:
    """metric = base(budget) + sum(effect/2 * level) + interactions + seed + noise.

    Effects are high-minus-low at `reference_s` and scale as (reference_s / budget) **
    `relaxation`; the base falls by `gain` per doubling of budget. Noise is Gaussian: one
    draw per seed (shared by all runs with that seed) and one per run.
    """

    effects: Mapping[str, float]
    interactions: Mapping[str, float] = field(default_factory=dict)
    base: float = 1.30
    reference_s: int = 120
    relaxation: float = 0.8
    gain: float = 0.06
    seed_sd: float = 0.002
    noise_sd: float = 0.004
    overhead_s: float = 45.0
    """Start-up and evaluation seconds added to each run's wall time."""

    def mean(self, levels: Mapping[str, float], budget_s: int) -> float:
        """The noise-free metric of a condition at a budget."""
        ratio = self.reference_s / budget_s
        shrink = ratio**self.relaxation
        value = self.base - self.gain * math.log2(budget_s / self.reference_s)
        for code, effect in self.effects.items():
            value += shrink * effect / 2 * levels.get(code, 0)
        for term, effect in self.interactions.items():
            product = math.prod(levels.get(code, 0) for code in term.split(":"))
            value += shrink * effect / 2 * product
        return value

    def draw(self, levels: Mapping[str, float], budget_s: int, seed: int, run_id: str) -> float:
        """One run's metric: deterministic from (seed, run_id), whatever order runs happen in."""
        seed_shift = np.random.default_rng([seed, 7]).normal(0.0, self.seed_sd)
        noise = np.random.default_rng([seed, zlib.crc32(run_id.encode())]).normal(
            0.0, self.noise_sd
        )
        return self.mean(levels, budget_s) + float(seed_shift) + float(noise)


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


def default_effects(spec: StudySpec) -> dict[str, float]:
    """Paper-like planted effects (section 5.1 pilot): a few large, one null, signs mixed."""
    pattern = [0.11, 0.11, -0.06, 0.18, 0.0, 0.03, -0.02, 0.01]
    return {code: pattern[i % len(pattern)] for i, code in enumerate(spec.codes)}


def simulate_runs(
    runs: Sequence[planning.PlannedRun], model: ResponseModel, metric: str
) -> pd.DataFrame:
    """Run records, flattened to the results-table columns, for the planned runs."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        value = model.draw(run.levels, run.budget_s, run.seed, run.run_id)
        rows.append(
            run.to_row()
            | {
                "status": RunStatus.SUCCEEDED.value,
                metric: value,
                "training_s": float(run.budget_s),
                "wall_s": float(run.budget_s) + model.overhead_s,
                "synthetic": True,
            }
        )
    return pd.DataFrame(rows)


def simulate_stage(
    spec: StudySpec, stage_name: str, results: pd.DataFrame, model: ResponseModel
) -> pd.DataFrame:
    """Results of one stage appended to `results`; greedy stages are simulated step by step."""
    stage = spec.stage(stage_name)
    while True:
        plan = planning.plan_stage(spec, stage, results)
        done = set(results["run_id"]) if "run_id" in results.columns else set()
        new = [run for run in plan.runs if run.run_id not in done]
        if new:
            results = pd.concat(
                [results, simulate_runs(new, model, spec.metric.name)], ignore_index=True
            )
        if plan.finished:
            return results
        if not new:
            raise planning.PlanError(f"stage {stage_name!r} is waiting on runs it cannot simulate")
