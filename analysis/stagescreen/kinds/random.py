"""`random`: the paper's matched-cost random-search baseline over the full 2^k space.

Independent batches of uniform draws (with replacement), each run at every budget, seed and
pool; the draws are seeded, so a restarted controller plans the same runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from stagescreen import design as designs
from stagescreen.kinds.base import Section, StageKind, StageResults
from stagescreen.outcomes.model import RandomBatch, RandomSummary, StageOutcome
from stagescreen.planning.ids import condition_name
from stagescreen.planning.plans import PlannedRun, StagePlan, expand_runs
from stagescreen.reports.formatting import fmt_count, fmt_levels, fmt_mean, fmt_text, md_table
from stagescreen.study.spec import Stage, StudySpec


def random_draws(
    codes: Sequence[str], batches: int, draws_per_batch: int, seed: int
) -> list[tuple[int, int, dict[str, int]]]:
    """Independent uniform draws (with replacement) from the full 2^k space, per batch.

    Returns (batch, draw, levels) with batch and draw counted from 1; the same seed always
    gives the same draws, so a restarted controller plans the same runs.
    """
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, 1 << len(codes), size=(batches, draws_per_batch))
    return [
        (b + 1, d + 1, designs.full_factorial_run(codes, int(picks[b, d])))
        for b in range(batches)
        for d in range(draws_per_batch)
    ]


class Random(StageKind):
    """`batches` x `draws_per_batch` draws seeded by `draw_seed`; a baseline."""

    name = "random"
    fields = ("batches", "draws_per_batch", "draw_seed")
    baseline = True
    figures = ("search.png",)

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

    def summarise(self, at: StageResults, out: StageOutcome) -> None:
        """Each batch's winner and the spread of the batch bests."""
        spec, usable = at.spec, at.usable
        metric = spec.metric.name
        pick = "idxmin" if spec.metric.goal == "minimize" else "idxmax"
        batches = []
        for batch, group in usable.groupby("batch", sort=True):
            winner = group.loc[getattr(group[metric], pick)()]
            batches.append(
                RandomBatch(
                    batch=int(batch),
                    condition_id=winner["condition_id"],
                    levels={code: int(winner[code]) for code in spec.codes},
                    best=float(winner[metric]),
                )
            )
        bests = np.array([b.best for b in batches])
        out.random = RandomSummary(
            batches=batches,
            mean_batch_best=float(bests.mean()),
            median_batch_best=float(np.median(bests)),
            min_batch_best=float(bests.min()),
            max_batch_best=float(bests.max()),
        )

    def plan_details(self, stage: Stage) -> list[str]:
        return [f"{stage.batches} batches of {stage.draws_per_batch} draws"]

    def search_sections(self, outcome: StageOutcome) -> list[Section]:
        if outcome.random is None or not outcome.random.batches:
            return []
        return [("Random search", _random_section(outcome.random))]


def _random_section(random: RandomSummary) -> str:
    rows = [
        [
            fmt_count(b.batch),
            f"`{fmt_text(b.condition_id)}`",
            fmt_levels(b.levels),
            fmt_mean(b.best),
        ]
        for b in random.batches
    ]
    summary = (
        f"Batch best: mean {fmt_mean(random.mean_batch_best)}, "
        f"median {fmt_mean(random.median_batch_best)}, "
        f"min {fmt_mean(random.min_batch_best)}, "
        f"max {fmt_mean(random.max_batch_best)}."
    )
    return md_table(["batch", "winner", "levels", "best"], rows) + "\n\n" + summary
