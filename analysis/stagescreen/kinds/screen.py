"""`screen`: the spec's two-level design, every run at every budget, seed and pool (paper 4.6)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from stagescreen.kinds.fitted import EffectKind
from stagescreen.planning.plans import StagePlan, expand_runs
from stagescreen.study.spec import Stage, StudySpec


class Screen(EffectKind):
    """The fractional (or full) factorial of `spec.design`; its outcome fits main effects
    (see `effects`)."""

    name = "screen"
    in_study_effects = True

    def plan(self, spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
        screen = spec.build_design()
        conditions = [
            (str(cid), run, None)
            for cid, run in zip(screen.condition_ids, screen.runs(), strict=True)
        ]
        return StagePlan(stage.name, tuple(expand_runs(spec, stage, conditions)))

    def expected_runs(self, spec: StudySpec, stage: Stage) -> int:
        return len(spec.build_design().matrix) * self.runs_per_condition(spec, stage)

    def supply(
        self, stage: Stage, codes: Sequence[str] | None, screen_runs: int | None
    ) -> int | None:
        return screen_runs
