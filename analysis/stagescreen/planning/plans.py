"""What a plan is made of: the runs a stage needs, the anchors it carries, and why it waits.

Every stage kind (`stagescreen.kinds`) builds its plan from these; `planner.plan_stage` picks
the kind. Planning is a pure function of `(spec, stage, results)`, so the kopf operator and the
local executor take the same decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from stagescreen.planning.ids import decode_levels, run_id
from stagescreen.study.spec import Stage, StudySpec


class PlanError(ValueError):
    """A stage cannot be planned yet or at all; the message says which stage and why."""


class NotReady(PlanError):
    """A source stage has runs still to end: plan again later; nothing is wrong."""


class Unplannable(PlanError):
    """The stage can never be planned as the spec stands; the study fails with this reason."""


@dataclass(frozen=True)
class Anchor:
    """A condition carried into a stage, with the rule and source stage that chose it.

    `runs` and `failed` are the source condition's ended runs at the ranked budget and how
    many of them failed or diverged: an anchor promoted despite failures says so. A
    `predicted` anchor also carries the metric its source's model predicts (`predicted`),
    whether the source ran it (`ran`: a half fraction's model may pick a corner it never
    ran), and a `note` when the rule fell back to the best run condition. `also` holds the
    roles of further rules of the stage that picked the same levels (`unique_anchors`), and
    of a source that held several: it runs once, under `role` and `condition_id`, and the
    report and later stages' `among` see every role.
    """

    condition_id: str
    levels: Mapping[str, int]
    role: str
    rule: str
    source: str | None
    runs: int = 0
    failed: int = 0
    predicted: float | None = None
    ran: bool | None = None
    note: str | None = None
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlannedRun:
    """One training run: what the trainer gets (levels decoded to hyperparameters) and where."""

    run_id: str
    stage: str
    condition_id: str
    levels: Mapping[str, int]
    hyperparameters: Mapping[str, int | float | str]
    budget_s: int
    seed: int
    pool: str
    role: str | None = None
    batch: int | None = None
    also: tuple[str, ...] = ()  # the anchor's further roles (`Anchor.also`)

    def to_row(self) -> dict[str, Any]:
        """The run's identity columns of the results table (docs/architecture.md, run contract).
        `also` is the anchor's further roles joined by commas (None without), so a later
        stage's `among` finds a control that runs under another role."""
        return {
            "stage": self.stage,
            "run_id": self.run_id,
            "condition_id": self.condition_id,
            "role": self.role,
            "also": ",".join(self.also) or None,
            "batch": self.batch,
            "budget_s": self.budget_s,
            "seed": self.seed,
            "pool": self.pool,
            **self.levels,
            **self.hyperparameters,
        }


@dataclass(frozen=True)
class StagePlan:
    """The runs a stage needs now. `finished` is False while a sequential stage may add more."""

    stage: str
    runs: tuple[PlannedRun, ...]
    anchors: tuple[Anchor, ...] = ()
    finished: bool = True


def stage_pools(spec: StudySpec, stage: Stage) -> list[str]:
    """The pools a stage runs on: those it names, else the first declared pool."""
    return list(stage.pools) or [spec.pools[0].name]


Condition = tuple[str, Mapping[str, int], str | None]
"""A condition to run: its id, coded levels and anchor role (None outside anchor stages)."""


def expand_runs(
    spec: StudySpec,
    stage: Stage,
    conditions: Sequence[Condition],
    *,
    budgets: Sequence[int] = (),
    pools: Sequence[str] = (),
    tag: str = "",
    batch: int | None = None,
) -> list[PlannedRun]:
    """Every condition x budget x seed x pool, in that nesting (condition outermost).

    Budgets and pools default to the stage's; a greedy climb narrows them to its own.
    """
    runs = []
    for cid, levels, role in conditions:
        hyper = decode_levels(levels, spec)
        for budget in budgets or stage.budgets:
            for seed in stage.seeds:
                for pool in pools or stage_pools(spec, stage):
                    runs.append(
                        PlannedRun(
                            run_id=run_id(stage.name, cid, budget, seed, pool, tag),
                            stage=stage.name,
                            condition_id=cid,
                            levels=dict(levels),
                            hyperparameters=hyper,
                            budget_s=budget,
                            seed=seed,
                            pool=pool,
                            role=role,
                            batch=batch,
                        )
                    )
    return runs


def with_identity_columns(results: pd.DataFrame, codes: Sequence[str]) -> pd.DataFrame:
    """An empty or partial results table with the columns planning reads."""
    needed = [
        *("stage", "run_id", "condition_id", "role", "also"),
        *("budget_s", "seed", "pool", "status"),
    ]
    missing = [column for column in [*needed, *codes] if column not in results.columns]
    if not missing:
        return results
    return results.assign(**{column: pd.Series(dtype=object) for column in missing})
