"""`followup`: a full factorial over the factors a stage leaves free (paper 5.3: D fixed)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from stagescreen import design as designs
from stagescreen.kinds.base import StageResults
from stagescreen.kinds.fitted import EffectKind
from stagescreen.outcomes.model import StageOutcome
from stagescreen.planning.ids import condition_name
from stagescreen.planning.plans import StagePlan, expand_runs, stage_pools
from stagescreen.statistics import families as fx
from stagescreen.statistics.coding import EffectsError
from stagescreen.statistics.pooled import PooledBudgetFit, pooled_budget_effects
from stagescreen.statistics.retention import free_factors, stage_families
from stagescreen.study.bounds import MAX_DESIGN_RUNS
from stagescreen.study.spec import Stage, StudySpec


def followup_design(spec: StudySpec, stage: Stage) -> designs.Design:
    """Full factorial over the factors the follow-up leaves free (paper 5.3: D fixed)."""
    free = [code for code in spec.codes if code not in stage.fix]
    return designs.full_factorial(free)


class Followup(EffectKind):
    """Holds the `fix` factors and runs every combination of the rest; its outcome fits main
    effects (see `effects`), and with `interactions` the two-factor interactions too."""

    name = "followup"
    fields = ("fix", "interactions")

    def plan(self, spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
        # Follow-up points are named as everywhere else (the screen's id when the point is
        # one of its runs, else its full-space id), never by the follow-up's own numbering,
        # so one id always means one set of levels across the study.
        points = [
            {code: int(stage.fix.get(code, run.get(code, 0))) for code in spec.codes}
            for run in followup_design(spec, stage).runs()
        ]
        conditions = [(condition_name(levels, spec), levels, None) for levels in points]
        return StagePlan(stage.name, tuple(expand_runs(spec, stage, conditions)))

    def expected_runs(self, spec: StudySpec, stage: Stage) -> int:
        """Counted, not built: 2^(free factors) conditions."""
        free = len([code for code in spec.codes if code not in stage.fix])
        return 2**free * self.runs_per_condition(spec, stage)

    def problems(self, stage: Stage, codes: Sequence[str] | None) -> list[tuple[str, str]]:
        if not stage.fix:
            return [("fix", "a followup stage needs the factors it holds, e.g. {D: -1}")]
        free = len([code for code in codes or () if code not in stage.fix])
        if 2**free > MAX_DESIGN_RUNS:
            return [
                (
                    "fix",
                    f"at most {MAX_DESIGN_RUNS} conditions per design (got {2**free}, the "
                    f"2^{free} full factorial of the factors left free); fix more factors",
                )
            ]
        return []

    def supply(
        self, stage: Stage, codes: Sequence[str] | None, screen_runs: int | None
    ) -> int | None:
        if codes is None:
            return None
        return 2 ** len([code for code in codes if code not in stage.fix])

    def effect_orders(self, stage: Stage) -> list[int]:
        return [1, 2] if stage.interactions else [1]

    def summarise(self, at: StageResults, out: StageOutcome) -> None:
        """The effects every effect kind fits; with `interactions`, the two-factor model and,
        over several budgets, the pooled budget-interaction model (paper 5.3)."""
        super().summarise(at, out)
        if not at.stage.interactions:
            return
        factors = free_factors(at.spec, at.stage)
        out.interactions = fx.EffectFamilies(
            families=tuple(stage_families(at.spec, at.stage, at.usable, factors, 2))
        )
        if at.usable["budget_s"].nunique() > 1:
            out.pooled = _pooled(at, factors, out.notes)


def _pooled(at: StageResults, factors: Sequence[str], notes: list[str]) -> PooledBudgetFit | None:
    """The pooled budget-interaction model (paper 5.3) on the stage's first pool, seed as a
    block when seeds vary; a model the runs cannot support leaves a note instead."""
    pools = stage_pools(at.spec, at.stage)
    usable = at.usable
    if len(pools) > 1:
        notes.append(f"pooled budget model fitted on {pools[0]} only (hosts differ in level)")
    try:
        return pooled_budget_effects(
            usable[usable["pool"] == pools[0]],
            at.spec.metric.name,
            factors,
            budget="budget_s",
            order=2,
            block="seed" if usable["seed"].nunique() > 1 else None,
        )
    except EffectsError as error:
        notes.append(f"pooled budget model: {error}")
        return None
