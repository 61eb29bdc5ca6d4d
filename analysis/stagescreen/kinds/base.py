"""What a stage kind decides, as one class: a new kind subclasses `StageKind` in its own module
and adds one entry to the table in `stagescreen.kinds`.

The rest of the core asks the kind instead of branching on its name: the planner
(`planner.plan_stage`) asks it for its runs, the pricing (`cost.stage_cost`) for its runs per
budget and wall-clock, the cross-section checks (`study.checks`) for the stage fields it reads
and the mistakes it rejects, the power rehearsal (`power`) whether its outcome fits effects,
the analysis (`analyse.stage_outcome`) for its part of the stage outcome, the report
(`report`, `outcome_sections`) for its plan's details, its sections and its figures, and the
status (`status.stage_summary`, `status.deciding_outcome`) whether it fits effects and
whether it is a baseline.
"""

from __future__ import annotations

import abc
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from stagescreen.outcomes.model import StageOutcome
from stagescreen.planning.plans import StagePlan, stage_pools
from stagescreen.study.spec import Stage, StudySpec

Section = tuple[str, str]
"""A titled section of a stage report: (title, markdown)."""


@dataclass(frozen=True)
class StageResults:
    """What a kind's summariser reads: the stage, every result so far, the stage's rows and
    those of them that succeeded with a metric value."""

    spec: StudySpec
    stage: Stage
    results: pd.DataFrame
    rows: pd.DataFrame
    usable: pd.DataFrame


class StageKind(abc.ABC):
    """One kind of stage: how it plans, what it costs, what its spec may say, what its
    outcome adds and how its report reads.

    Subclasses set the class attributes and implement `plan` and `expected_runs`; every
    other method has the answer most kinds share. Instances hold no state: the same object
    serves every stage of its kind, and every answer is a pure function of its arguments.

    The outcome and the report have a shared part (run counts, ranking, best per pool,
    anchors, promotions) and the kind's: `summarise` adds the kind's part to the stage
    outcome (e.g. the greedy climbs, the halving rungs), and the `*_sections` methods,
    `plan_details` and `figures` say how the stage report reads it. A kind with nothing to
    add keeps the base class's defaults.
    """

    name: str
    """The `kind` a stage declares in its spec, e.g. `screen`."""

    fields: tuple[str, ...] = ()
    """Stage fields (python names, e.g. `max_runs`) only this kind and others listing them
    read; any other kind setting one to other than its default is a spec mistake."""

    baseline: bool = False
    """A comparison method (random, greedy, halving), not a step of the screening programme:
    a study's best recipe comes from the programme's stages when they have one."""

    fits_effects: bool = False
    """Its outcome fits factorial effect families (screen, followup) and names the factors
    they retain, "none" included, in its status summary; its runs are fixed by the spec
    alone, so `power` can rehearse it on simulated results."""

    needs_complete_sources: bool = False
    """It picks anchors from earlier stages, so it waits until those stages have finished:
    ranking half a stage would pick other anchors than the whole one."""

    in_study_effects: bool = False
    """Its main effects join the study report's main-effects figure (screens of the spec's
    design; a follow-up holds factors fixed, so its effects are not the screen's)."""

    figures: tuple[str, ...] = ()
    """The stage report's figures it draws, by file name (`report.FIGURES`), in order."""

    @abc.abstractmethod
    def plan(self, spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
        """The runs the stage needs now, given every result recorded so far (any stage).

        `results` always has the identity columns (`plans.with_identity_columns`). A
        sequential kind returns `finished=False` while it may still add runs.
        """

    @abc.abstractmethod
    def expected_runs(self, spec: StudySpec, stage: Stage) -> int:
        """How many runs the stage will launch at most, known before any source has run."""

    def runs_per_condition(self, spec: StudySpec, stage: Stage) -> int:
        """Runs one condition costs: every budget x seed x pool."""
        return len(stage.budgets) * len(stage.seeds) * len(stage_pools(spec, stage))

    def runs_by_budget(self, spec: StudySpec, stage: Stage) -> dict[int, int]:
        """Runs at each budget: by default the same conditions run at every budget."""
        return dict.fromkeys(stage.budgets, self.expected_runs(spec, stage) // len(stage.budgets))

    def wall_s(
        self, spec: StudySpec, stage: Stage, runs_by_budget: Mapping[int, int], overhead_s: int
    ) -> float:
        """Wall-clock seconds of the stage: its runs packed longest-first onto
        `limits.parallelism` slots, all free to start at once."""
        return pack(
            self.durations(spec, stage, runs_by_budget, overhead_s), spec.limits.parallelism
        )

    def durations(
        self, spec: StudySpec, stage: Stage, runs_by_budget: Mapping[int, int], overhead_s: int
    ) -> list[int]:
        """Every run's duration in seconds, longest first."""
        pools = len(stage_pools(spec, stage))
        durations: list[int] = []
        for budget in stage.budgets:
            durations += [budget + overhead_s] * (runs_by_budget[budget] // pools * pools)
        return sorted(durations, reverse=True)

    def problems(self, stage: Stage, codes: Sequence[str] | None) -> list[tuple[str, str]]:
        """Mistakes only this kind can see in its stage, as (field alias, message); `codes`
        is None when the factors did not parse."""
        return []

    def supply(
        self, stage: Stage, codes: Sequence[str] | None, screen_runs: int | None
    ) -> int | None:
        """How many conditions the stage ranks, for a later `select` rule's `k`; None when
        it is not known from the spec alone."""
        return None

    def effect_orders(self, stage: Stage) -> list[int]:
        """Orders of the effect models its outcome fits (1: main effects, 2: two-factor)."""
        return [1]

    def summarise(self, at: StageResults, out: StageOutcome) -> None:
        """Add the kind's part to the stage outcome `out`, once the stage has a succeeded
        run; `stage_outcome` has filled the shared part already. By default, nothing."""
        return None

    def plan_details(self, stage: Stage) -> list[str]:
        """Clauses the stage report's plan line adds for this kind, e.g. its batches."""
        return []

    def finding_sections(self, outcome: StageOutcome) -> list[Section]:
        """Report sections of what the stage found, read before its ranking (effects,
        retained factors, variance shares)."""
        return []

    def ranking_sections(self, outcome: StageOutcome, goal: str) -> list[Section]:
        """Report sections read right after the ranking (the anchors' win counts)."""
        return []

    def search_sections(self, outcome: StageOutcome) -> list[Section]:
        """Report sections read after the anchors and promotions, before the best (a
        baseline's climbs, batches or ladders)."""
        return []


def pack(durations: Sequence[int], slots: int) -> float:
    """Makespan of longest-first list scheduling on `slots` identical workers (a heap of
    their loads, so thousands of runs on thousands of slots price at once)."""
    if not durations:
        return 0.0
    loads = [0] * max(1, min(slots, len(durations)))
    for duration in durations:
        heapq.heappush(loads, heapq.heappop(loads) + duration)
    return float(max(loads))
