"""Analysing a stage: its outcome record from the spec and the results table.

`stage_outcome` builds the `StageOutcome` an analysis Job (or the local executor) writes:
what every kind has (run counts, ranking with Student-t intervals, best per pool with its
runner-up, anchors, promotions), then the parts the stage's kind calls for, each kind's in
one summariser (`SUMMARISERS`): effects and retention for screens and follow-ups (paper 4.4,
5.1, 5.3), win counts and variance shares for anchor stages (4.4, 5.7), and the baselines'
climbs, batches and ladders. A pure function of the spec and the results table.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stagescreen import families as fx
from stagescreen.ids import condition_name, decode_levels
from stagescreen.kinds.greedy import greedy_climbs
from stagescreen.kinds.halving import RungEntry, halving_ladders
from stagescreen.means import mean_difference, variance_shares, win_count
from stagescreen.outcome import (
    AnchorRecord,
    Best,
    GreedyClimb,
    GreedyStep,
    GreedySummary,
    HalvingLadder,
    HalvingRung,
    HalvingSummary,
    HalvingWinner,
    PairWins,
    Promotion,
    RandomBatch,
    RandomSummary,
    RankedCondition,
    RungConfiguration,
    RunnerUp,
    StageOutcome,
    StageRuns,
)
from stagescreen.planner import plan_stage
from stagescreen.plans import StagePlan, stage_pools
from stagescreen.pooled import PooledBudgetFit, pooled_budget_effects
from stagescreen.ranking import rank_conditions, select_anchors, succeeded
from stagescreen.runstatus import RunStatus
from stagescreen.spec import Stage, StudySpec

FDR = 0.05
"""The q threshold at which a main effect counts as retained (paper 4.4)."""

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


# --- retention (paper 4.4) -------------------------------------------------------------------


def judged_budget(families: Sequence[fx.Family]) -> int | None:
    """The budget whose families a retention decision reads: the longest the stage ran."""
    budgets = [family.by["budget_s"] for family in families]
    return max((int(b) for b in budgets if isinstance(b, int | float)), default=None)


def judged(families: Sequence[fx.Family]) -> list[fx.Family]:
    """The families a retention decision reads: those at `judged_budget`."""
    at = judged_budget(families)
    return [family for family in families if family.by["budget_s"] == at]


def retained_factors(families: Sequence[fx.Family], fdr: float = FDR) -> list[str]:
    """Main effects that hold at the longest budget: interval excludes zero and q <= fdr.

    One rule for every family. In a saturated (unreplicated) family the interval and p come
    from Lenth's pseudo standard error, so the same rule reads "exceeds Lenth's margin of
    error and survives BH". A factor retained on any pool counts; q spans the pools. Order:
    largest absolute effect first.
    """
    kept: dict[str, float] = {}
    for family in judged(families):
        for effect in family.effects:
            if ":" not in effect.term and holds(effect, fdr):
                kept[effect.term] = max(kept.get(effect.term, 0.0), abs(effect.effect or 0.0))
    return sorted(kept, key=lambda term: -kept[term])


def holds(effect: fx.Effect, fdr: float = FDR) -> bool:
    """The retention rule for one effect: its interval excludes zero and q <= fdr."""
    if effect.effect is None or effect.ci_low is None or effect.ci_high is None:
        return False
    return (effect.ci_low > 0 or effect.ci_high < 0) and effect.q is not None and effect.q <= fdr


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


def _runner_up(
    spec: StudySpec, rows: pd.DataFrame, best: RankedCondition, second: RankedCondition
) -> RunnerUp:
    metric = spec.metric.name
    usable = succeeded(rows, metric)
    cell = usable[(usable["budget_s"] == best.budget_s) & (usable["pool"] == best.pool)]
    pair = cell[cell["condition_id"].isin([best.condition_id, second.condition_id])]
    seeds = [
        set(pair.loc[pair["condition_id"] == c, "seed"])
        for c in (best.condition_id, second.condition_id)
    ]
    if seeds[0] != seeds[1] and seeds[0] & seeds[1]:
        # seeds were lost: compare on the seeds both kept, so the difference and its
        # interval speak of the same runs and a lost seed does not tilt the comparison
        pair = pair[pair["seed"].isin(seeds[0] & seeds[1])]

    def values(condition: str) -> np.ndarray:
        return pair.loc[pair["condition_id"] == condition, metric].to_numpy(float)

    gap = mean_difference(values(second.condition_id), values(best.condition_id))
    wins = win_count(
        values(best.condition_id),
        values(second.condition_id),
        lower_is_better=spec.metric.goal == "minimize",
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
        wins=wins.wins,
        total=wins.total,
        separated=separated,
    )


def _bests(
    spec: StudySpec, stage: Stage, rows: pd.DataFrame, ranking: list[RankedCondition]
) -> list[Best]:
    """The best condition of each pool at the stage's longest budget, in the stage's pool
    order. Hosts differ in absolute level (the paper's L40S runs sit apart from its A100
    runs), so a best is never picked by comparing means across pools."""
    if not ranking:
        return []
    longest = max(row.budget_s for row in ranking)
    out = []
    for pool in stage_pools(spec, stage):
        cell = [row for row in ranking if row.budget_s == longest and row.pool == pool]
        cell = [row for row in cell if row.n > 0 and row.mean is not None]
        if not cell:
            continue
        best = cell[0]
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
                adjusted=best.adjusted,
                runs=best.runs,
                failed=best.failed,
                levels=levels,
                hyperparameters=dict(decode_levels(levels, spec)),
                runner_up=_runner_up(spec, rows, best, cell[1]) if len(cell) > 1 else None,
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


# --- each kind's part ------------------------------------------------------------------------


@dataclass(frozen=True)
class StageResults:
    """What a kind's summariser reads: the stage, every result so far, the stage's rows and
    those of them that succeeded with a metric value."""

    spec: StudySpec
    stage: Stage
    results: pd.DataFrame
    rows: pd.DataFrame
    usable: pd.DataFrame


def _main_effects(at: StageResults, factors: Sequence[str], order: int = 1) -> list[fx.Family]:
    """Effects per budget (and pool); BH runs across a budget's pools, so a factor retained on
    any pool is one claim among all the pools' (per-pool BH let the retained set's FDR reach
    0.069 with two pools and 0.158 with four)."""
    spec, stage, rows = at.spec, at.stage, at.usable
    block = "seed" if len(stage.seeds) > 1 else None
    groups = ["budget_s", "pool"] if len(stage_pools(spec, stage)) > 1 else ["budget_s"]
    terms = len(fx.model_terms(factors, order))
    saturated = block is None and rows.groupby(groups).size().max() <= terms + 1
    return fx.fit_effects(
        rows,
        spec.metric.name,
        factors,
        by=groups,
        block=block,
        order=order,
        lenth=saturated,
        q_across=["pool"] if "pool" in groups else (),
    )


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
    except fx.EffectsError as error:
        notes.append(f"pooled budget model: {error}")
        return None


def summarise_effects(at: StageResults, out: StageOutcome) -> None:
    """Screens and follow-ups: main effects per budget, the factors they retain, relaxation
    with budget; a follow-up with interactions adds the two-factor and pooled models."""
    spec, stage, usable = at.spec, at.stage, at.usable
    factors = [c for c in spec.codes if c not in stage.fix]
    families = _main_effects(at, factors)
    out.effects = fx.EffectFamilies(families=tuple(families))
    out.retained = retained_factors(families)
    out.retained_at = judged_budget(families)
    budgets = usable["budget_s"].nunique()
    if budgets > 1:
        out.relaxation = fx.relaxation_table(families, "budget_s")
    if stage.kind == "followup" and stage.interactions:
        out.interactions = fx.EffectFamilies(families=tuple(_main_effects(at, factors, order=2)))
        if budgets > 1:
            out.pooled = _pooled(at, factors, out.notes)


def summarise_anchors(at: StageResults, out: StageOutcome) -> None:
    """Confirm, bridge and long-horizon stages: win counts between every pair of anchors
    (by role, else condition) within each budget and pool, and the variance shares of
    budget and condition once both, and the seeds, vary."""
    metric, usable = at.spec.metric.name, at.usable
    label = usable["role"].fillna(usable["condition_id"]).astype(str)
    for (budget, pool), cell in usable.assign(_label=label).groupby(["budget_s", "pool"]):
        values = {name: group[metric].to_numpy(float) for name, group in cell.groupby("_label")}
        for left, right in itertools.combinations(sorted(values), 2):
            count = win_count(
                values[left], values[right], lower_is_better=at.spec.metric.goal == "minimize"
            )
            out.win_counts.append(
                PairWins(
                    budget_s=int(budget),
                    pool=str(pool),
                    left=left,
                    right=right,
                    **count.model_dump(),
                )
            )
    if all(usable[column].nunique() > 1 for column in ("budget_s", "condition_id", "seed")):
        blocks = ["seed", *(["pool"] if usable["pool"].nunique() > 1 else [])]
        out.variance_shares = variance_shares(
            usable, metric, factors=("budget_s", "condition_id"), blocks=blocks
        )


def summarise_greedy(at: StageResults, out: StageOutcome) -> None:
    """Each (budget, pool) climb step by step, with its incumbent and whether it stopped."""
    spec = at.spec
    climbs = []
    for (budget, pool), climb in greedy_climbs(spec, at.stage, at.results).items():
        steps = [
            GreedyStep(
                step=i,
                condition_id=condition_name(step.levels, spec),
                levels=dict(step.levels),
                mean=step.value,
                accepted=step.accepted,
            )
            for i, step in enumerate(climb.steps, 1)
        ]
        accepted = [s for s in steps if s.accepted]
        climbs.append(
            GreedyClimb(
                budget_s=budget,
                pool=pool,
                steps=steps,
                accepted=max(0, len(accepted) - 1),
                best=climb.best,
                best_step=accepted[-1].step if accepted else None,
                stopped=climb.next_levels is None,
            )
        )
    out.greedy = GreedySummary(climbs=climbs)


def summarise_random(at: StageResults, out: StageOutcome) -> None:
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


def summarise_halving(at: StageResults, out: StageOutcome) -> None:
    """Each pool's ladder: per rung its budget, how many configurations ran and those that
    went on with their means there; the winner is the best of the last rung once it ended."""
    stage = at.stage

    def entry(of: RungEntry) -> RungConfiguration:
        return RungConfiguration(condition_id=of.condition_id, levels=dict(of.levels), mean=of.mean)

    ladders = []
    for pool, ladder in halving_ladders(at.spec, stage, at.rows).items():
        rungs = [
            HalvingRung(
                budget_s=rung.budget_s,
                configurations=len(rung.entries),
                complete=rung.complete,
                survivors=[entry(e) for e in rung.entries[: rung.survivors] if rung.complete],
            )
            for rung in ladder
        ]
        last = ladder[-1]
        top = last.entries[0] if len(ladder) == len(stage.budgets) and last.complete else None
        winner = (
            None
            if top is None or top.mean is None
            else HalvingWinner(**entry(top).model_dump(), budget_s=last.budget_s)
        )
        ladders.append(HalvingLadder(pool=pool, rungs=rungs, winner=winner))
    out.halving = HalvingSummary(eta=stage.eta, ladders=ladders)


SUMMARISERS: dict[str, Callable[[StageResults, StageOutcome], None]] = {
    "screen": summarise_effects,
    "followup": summarise_effects,
    "confirm": summarise_anchors,
    "bridge": summarise_anchors,
    "long-horizon": summarise_anchors,
    "greedy": summarise_greedy,
    "random": summarise_random,
    "halving": summarise_halving,
}
"""Each stage kind's part of the outcome, added once the stage has a succeeded run."""


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
        best_per_pool=_bests(spec, stage, rows, ranking),
        anchors=[AnchorRecord.model_validate(a, from_attributes=True) for a in plan.anchors],
    )
    if usable.empty:
        out.notes.append("no succeeded runs yet")
        return out
    SUMMARISERS[stage.kind](StageResults(spec, stage, results, rows, usable), out)
    out.promoted = _promoted(spec, stage, results)
    return out
