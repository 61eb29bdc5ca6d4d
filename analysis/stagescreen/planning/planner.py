"""Stage planning: from the spec and the results so far to the runs a stage needs.

Everything here is a pure function of `(spec, stage, results)`, so the kopf operator and the
local executor take the same decisions and a restarted controller re-derives them exactly:
run ids are deterministic from (stage, condition, budget, seed, pool), and the sequential
greedy and halving baselines are replayed from the completed runs rather than remembered.

The paper's programme (section 4.6) maps onto stage kinds (`stagescreen.kinds`, one module
each): a fractional `screen`, anchors chosen by `select` rules for `confirm` / `bridge` /
`long-horizon`, a `followup` factorial with a dominant factor fixed, and the baselines. This
module only dispatches: it waits for an anchor stage's sources, then asks the stage's kind.
"""

from __future__ import annotations

import pandas as pd

from stagescreen.kinds import kind_of
from stagescreen.planning.plans import NotReady, StagePlan, with_identity_columns
from stagescreen.study.spec import Stage, StudySpec
from stagescreen_contract.status import TERMINAL


def plan_stage(spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
    """The runs `stage` needs, given every result recorded so far (any stage).

    For greedy stages the plan holds the runs of every point evaluated so far plus the next
    point of each climb; `finished` turns True when every climb has stopped. A halving stage
    holds every rung whose predecessor has ended; `finished` once the last rung is planned.
    """
    results = with_identity_columns(results, spec.codes)
    kind = kind_of(stage)
    if kind.needs_complete_sources:
        _require_complete_sources(spec, stage, results)
    return kind.plan(spec, stage, results)


def _require_complete_sources(spec: StudySpec, stage: Stage, results: pd.DataFrame) -> None:
    """Anchors are chosen only from finished stages, so a plan never changes its mind.

    A source is complete when its own plan is finished (a greedy climb has stopped) and every
    run of that plan has ended (succeeded, diverged or failed); until then the stage is not
    ready. Ranking half a screen would pick other anchors than the whole one and orphan the
    runs already launched for them.
    """
    ended = set(results.loc[results["status"].isin(list(TERMINAL)), "run_id"])
    for source_name in dict.fromkeys(s.from_ for s in stage.select if s.from_ is not None):
        source_plan = plan_stage(spec, spec.stage(source_name), results)
        waiting = [run.run_id for run in source_plan.runs if run.run_id not in ended]
        if waiting:
            raise NotReady(
                f"stage {stage.name!r} waits for stage {source_name!r}: {len(waiting)} of its "
                f"{len(source_plan.runs)} planned runs have not ended (first: {waiting[0]})"
            )
        if not source_plan.finished:
            raise NotReady(
                f"stage {stage.name!r} waits for stage {source_name!r}: its climbs have not stopped"
            )
