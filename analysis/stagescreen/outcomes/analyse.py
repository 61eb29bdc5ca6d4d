"""Analysing a stage: its outcome record from the spec and the results table.

`stage_outcome` builds the `StageOutcome` an analysis Job (or the local executor) writes:
what every kind has (run counts, ranking with Student-t intervals, best per pool with its
runner-up, anchors, promotions), then the part the stage's kind adds (`StageKind.summarise`
in `stagescreen.kinds`): effects and retention for screens and follow-ups (paper 4.4, 5.1,
5.3), win counts and variance shares for anchor stages (4.4, 5.7), and the baselines' climbs,
batches and ladders. A pure function of the spec and the results table.
"""

from __future__ import annotations

import pandas as pd

from stagescreen.kinds import kind_of
from stagescreen.kinds.base import StageResults
from stagescreen.outcomes.model import (
    AnchorRecord,
    Best,
    Promotion,
    RankedCondition,
    RunnerUp,
    StageOutcome,
    StageRuns,
)
from stagescreen.outcomes.stability import rank_stability
from stagescreen.planning.ids import decode_levels
from stagescreen.planning.planner import plan_stage
from stagescreen.planning.plans import StagePlan, stage_pools
from stagescreen.planning.ranking import rank_conditions, select_anchors, succeeded
from stagescreen.statistics.means import bonferroni_level, paired_difference, win_count
from stagescreen.study.spec import Stage, StudySpec
from stagescreen_contract.status import RunStatus

# Terminal states in the order the outcome and the report list them.
TERMINAL_ORDER = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.DIVERGED)


def status_counts(status: pd.Series) -> dict[str, int]:
    """Runs per terminal state, keyed by the state's name."""
    return {state.value: int((status == state).sum()) for state in TERMINAL_ORDER}


def stage_rows(results: pd.DataFrame, stage: Stage) -> pd.DataFrame:
    """The rows of the results table that belong to `stage`."""
    if results.empty or "stage" not in results.columns:
        return results
    return results[results["stage"] == stage.name]


# --- what every kind has ---------------------------------------------------------------------


def _run_counts(plan: StagePlan, rows: pd.DataFrame) -> StageRuns:
    status = rows.set_index("run_id")["status"] if not rows.empty else pd.Series(dtype=object)
    planned = [run.run_id for run in plan.runs]
    return StageRuns(
        planned=len(planned),
        **status_counts(status),
        missing=[run for run in planned if run not in status.index],
    )


def _ranking(spec: StudySpec, rows: pd.DataFrame) -> list[RankedCondition]:
    """Every (budget, pool) cell ranked by `ranking.rank_conditions`, the one ranking rule."""
    metric = spec.metric.name
    if rows.empty:
        return []
    table = []
    for (budget, pool), cell in rows.groupby(["budget_s", "pool"], sort=True):
        ranked = rank_conditions(cell, metric, spec.metric.goal, int(budget))
        for rank, row in enumerate(ranked.itertuples(index=False), 1):
            table.append(
                RankedCondition(
                    budget_s=int(budget),
                    pool=str(pool),
                    condition_id=str(row.condition_id),
                    role=None if pd.isna(row.role) else str(row.role),
                    runs=int(row.runs),
                    failed=int(row.failed),
                    diverged=int(row.diverged),
                    n=int(row.n),
                    mean=row.mean,
                    sd=row.sd,
                    ci_low=row.ci_low,
                    ci_high=row.ci_high,
                    adjusted=bool(row.adjusted),
                    rank=rank,
                )
            )
    return table


def _by_seed(runs: pd.DataFrame, metric: str, condition: str) -> pd.Series:
    """One condition's metric in one (budget, pool) cell by seed (a seed run twice, as a
    baseline may, counts once at its mean)."""
    return runs[runs["condition_id"] == condition].groupby("seed")[metric].mean().astype(float)


def _runner_up(
    spec: StudySpec, runs: pd.DataFrame, best: RankedCondition, second: RankedCondition
) -> RunnerUp:
    """The runner-up against the best, paired over the seeds both ran (`RunnerUp`)."""
    metric = spec.metric.name
    mine, theirs = (_by_seed(runs, metric, c) for c in (best.condition_id, second.condition_id))
    gap = paired_difference(theirs, mine)
    common = mine.index.intersection(theirs.index)
    wins = win_count(
        mine.loc[common], theirs.loc[common], lower_is_better=spec.metric.goal == "minimize"
    )
    separated = (
        None
        if gap.ci_low is None or gap.ci_high is None
        else bool(gap.ci_low > 0 or gap.ci_high < 0)
    )
    return RunnerUp(
        condition_id=second.condition_id,
        mean=second.mean,
        difference=gap.effect,
        ci_low=gap.ci_low,
        ci_high=gap.ci_high,
        seeds=len(common),
        reason=gap.reason,
        wins=wins.wins,
        total=wins.total,
        separated=separated,
    )


def _bests(
    spec: StudySpec, stage: Stage, rows: pd.DataFrame, ranking: list[RankedCondition]
) -> list[Best]:
    """The best condition of each pool at the stage's longest budget, in the stage's pool
    order. Hosts differ in absolute level (the paper's L40S runs sit apart from its A100
    runs), so a best is never picked by comparing means across pools. The candidates are the
    conditions with a succeeded run in the cell; the best's selection-aware interval is the
    ranking's own at the Bonferroni level over them (`Best`)."""
    if not ranking:
        return []
    metric = spec.metric.name
    longest = max(row.budget_s for row in ranking)
    out = []
    for pool in stage_pools(spec, stage):
        ranked = [row for row in ranking if row.budget_s == longest and row.pool == pool]
        ranked = [row for row in ranked if row.n > 0 and row.mean is not None]
        if not ranked:
            continue
        best, k = ranked[0], len(ranked)
        cell = rows[(rows["budget_s"] == longest) & (rows["pool"] == pool)]
        picked = rank_conditions(cell, metric, spec.metric.goal, longest, bonferroni_level(k))
        selection = picked[picked["condition_id"] == best.condition_id].iloc[0]
        first = rows[rows["condition_id"] == best.condition_id].iloc[0]
        levels = {code: int(first[code]) for code in spec.codes}
        out.append(
            Best(
                condition_id=best.condition_id,
                role=best.role,
                budget_s=best.budget_s,
                pool=best.pool,
                mean=best.mean if best.mean is not None else float("nan"),
                ci_low=best.ci_low,
                ci_high=best.ci_high,
                candidates=k,
                selection_ci_low=selection["ci_low"],
                selection_ci_high=selection["ci_high"],
                adjusted=best.adjusted,
                runs=best.runs,
                failed=best.failed,
                levels=levels,
                hyperparameters=dict(decode_levels(levels, spec)),
                runner_up=(
                    _runner_up(spec, succeeded(cell, metric), best, ranked[1]) if k > 1 else None
                ),
            )
        )
    return out


def _promoted(spec: StudySpec, stage: Stage, results: pd.DataFrame) -> list[Promotion]:
    """Anchors that later stages select from this one, with the rule that chose each."""
    out = []
    for later in spec.stages[spec.stages.index(stage) + 1 :]:
        for selection in later.select:
            if selection.from_ != stage.name:
                continue
            for anchor in select_anchors(spec, selection, results):
                record = AnchorRecord.model_validate(anchor, from_attributes=True)
                out.append(Promotion(to_stage=later.name, **record.model_dump()))
    return out


def stage_outcome(spec: StudySpec, stage: Stage, results: pd.DataFrame, study: str) -> StageOutcome:
    """The outcome record of one stage from every result so far (docs/architecture.md "Storage")."""
    plan = plan_stage(spec, stage, results)
    rows = stage_rows(results, stage)
    metric = spec.metric.name
    usable = succeeded(rows, metric)
    ranking = _ranking(spec, rows)
    out = StageOutcome(
        study=study,
        stage=stage.name,
        kind=stage.kind,
        metric=metric,
        goal=spec.metric.goal,
        runs=_run_counts(plan, rows),
        ranking=ranking,
        synthetic=bool("synthetic" in rows and rows["synthetic"].fillna(False).astype(bool).any()),
        replay=next(iter(rows["replay"].dropna()), None) if "replay" in rows else None,
        best_per_pool=_bests(spec, stage, rows, ranking),
        anchors=[AnchorRecord.model_validate(a, from_attributes=True) for a in plan.anchors],
    )
    if usable.empty:
        out.notes.append("no succeeded runs yet")
        return out
    kind_of(stage).summarise(StageResults(spec, stage, results, rows, usable), out)
    out.promoted = _promoted(spec, stage, results)
    out.rank_agreement, out.reversals = rank_stability(spec, stage, results, out)
    return out
