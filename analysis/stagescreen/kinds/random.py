"""`random`: the paper's matched-cost random-search baseline over the full 2^k space.

Independent batches of uniform draws (with replacement), each run at every budget, seed and
pool; the draws are seeded, so a restarted controller plans the same runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from stagescreen import design as designs
from stagescreen.ids import condition_name
from stagescreen.kinds.base import StageKind
from stagescreen.plans import PlannedRun, StagePlan, expand_runs
from stagescreen.spec import Stage, StudySpec


def random_draws(
    codes: Sequence[str], batches: int, draws_per_batch: int, seed: int
) -> list[tuple[int, int, dict[str, int]]]:
    """Independent uniform draws (with replacement) from the full 2^k space, per batch.

    Returns (batch, draw, levels) with batch and draw counted from 1; the same seed always
    gives the same draws, so a restarted controller plans the same runs.
    """
    space = designs.full_factorial(codes).runs()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(space), size=(batches, draws_per_batch))
    return [
        (b + 1, d + 1, dict(space[int(picks[b, d])]))
        for b in range(batches)
        for d in range(draws_per_batch)
    ]


class Random(StageKind):
    """`batches` x `draws_per_batch` draws seeded by `draw_seed`; a baseline."""

    name = "random"
    fields = ("batches", "draws_per_batch", "draw_seed")
    baseline = True

    def plan(self, spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
        runs: list[PlannedRun] = []
        width = len(str(stage.draws_per_batch))
        for batch, draw, levels in random_draws(
            spec.codes, stage.batches, stage.draws_per_batch, stage.draw_seed
        ):
            cid = condition_name(levels, spec)
            tag = f"b{batch}d{draw:0{width}d}"
            runs += expand_runs(spec, stage, [(cid, levels, None)], tag=tag, batch=batch)
        return StagePlan(stage.name, tuple(runs))

    def expected_runs(self, spec: StudySpec, stage: Stage) -> int:
        return stage.batches * stage.draws_per_batch * self.runs_per_condition(spec, stage)

    def supply(
        self, stage: Stage, codes: Sequence[str] | None, screen_runs: int | None
    ) -> int | None:
        return stage.batches * stage.draws_per_batch
