"""What confirm, bridge and long-horizon share: anchors chosen by `select` rules from earlier
stages, each run at every budget, seed and pool of the stage.

The kinds differ in what the programme means by them (paper 4.6: confirm the screen's best,
bridge to the centre levels, repeat the anchors at long horizons), not in how they plan.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from stagescreen.kinds.base import StageKind
from stagescreen.plans import Condition, StagePlan, expand_runs
from stagescreen.ranking import select_anchors, unique_anchors
from stagescreen.spec import WINNER_RULES, Stage, StudySpec


class AnchorKind(StageKind):
    """A stage of anchors: every `select` rule's picks, one run set per condition."""

    fields = ("select",)
    needs_complete_sources = True

    def plan(self, spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
        anchors = unique_anchors(
            [a for selection in stage.select for a in select_anchors(spec, selection, results)]
        )
        picked: list[Condition] = [(a.condition_id, a.levels, a.role) for a in anchors]
        return StagePlan(stage.name, tuple(expand_runs(spec, stage, picked)), tuple(anchors))

    def expected_runs(self, spec: StudySpec, stage: Stage) -> int:
        """One condition per pick (k per rule, one for control), the most the stage can run:
        once the sources are complete, two rules picking the same condition plan it once
        (one recipe, one id), and the manifest counts the plan."""
        picks = sum(
            1 if s.rule == "control" or s.rule in WINNER_RULES else s.k for s in stage.select
        )
        return picks * self.runs_per_condition(spec, stage)

    def problems(self, stage: Stage, codes: Sequence[str] | None) -> list[tuple[str, str]]:
        if not stage.select:
            return [("select", f"a {self.name} stage needs at least one selection rule")]
        return []
