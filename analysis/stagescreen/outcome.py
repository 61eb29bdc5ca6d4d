"""Stage outcomes and the run manifest: what a finished stage found, in one JSON record.

`stage_outcome` is what an analysis Job (or the local executor) writes to
`<study>/stages/<stage>/outcome.json`: the effects the stage's kind calls for (paper 4.4),
the ranking of its conditions with Student-t intervals, cross-seed win counts between its
anchors, the best condition, and the anchors promoted into later stages with the rule that
chose each. `manifest` is the paper's Table 1: runs and GPU-seconds per stage and pool.
Both are pure functions of the spec and the results table.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from stagescreen import effects as fx
from stagescreen import stages as planning
from stagescreen.jsonvalues import json_number
from stagescreen.records import compute_seconds
from stagescreen.spec import Stage, StudySpec
from stagescreen_contract.status import RunStatus

SCHEMA_VERSION = 1
FDR = 0.05
"""The q threshold at which a main effect counts as retained (paper 4.4)."""


class _Record(BaseModel):
    """A JSON record in storage: snake_case keys, unknown keys of newer writers ignored."""

    model_config = ConfigDict(extra="ignore")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class StageRuns(_Record):
    """A stage's planned runs by terminal state, and those with no record yet."""

    planned: int
    succeeded: int = 0
    failed: int = 0
    diverged: int = 0
    missing: list[str] = Field(default_factory=list)


class RankedCondition(_Record):
    """One condition in one (budget, pool) cell: its runs, failures, mean and interval.

    `runs` counts ended runs, `failed` those that failed or diverged, `n` the succeeded ones
    the mean is taken over; `adjusted` marks a seed-adjusted mean (`stages.rank_conditions`).
    """

    budget_s: int
    pool: str
    condition_id: str
    role: str | None = None
    runs: int = 0
    failed: int = 0
    n: int
    mean: float | None
    sd: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    adjusted: bool = False
    rank: int


class RunnerUp(_Record):
    """The condition ranked second, and how far the best is from it.

    `difference` is runner-up minus best over their runs, with Welch's interval (on the seeds
    both kept, when either lost one, so estimate and interval speak of the same runs);
    `separated` is True when that interval excludes zero, False when it does not, None
    without an interval (fewer than two runs on a side).
    `wins` of `total` cross-seed pairings go to the best (descriptive, paper 4.4).
    """

    condition_id: str
    mean: float | None
    difference: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    wins: int
    total: int
    separated: bool | None = None


class Best(_Record):
    """A stage's best condition on one pool at its longest budget.

    Its interval is not adjusted for the pick: the best of several near-tied conditions is
    usually lucky (best of six tied conditions on five seeds: 88% coverage in simulation).
    """

    condition_id: str
    role: str | None = None
    budget_s: int
    pool: str
    mean: float
    ci_low: float | None = None
    ci_high: float | None = None
    adjusted: bool = False
    runs: int = 0
    failed: int = 0
    levels: dict[str, int]
    hyperparameters: dict[str, Any]
    runner_up: RunnerUp | None = None


class StageOutcome(_Record):
    """What a finished stage found: `<study>/stages/<stage>/outcome.json`.

    The effect sections keep the shape `stagescreen.effects` writes (families of terms with
    intervals, p and q); the parts that drive decisions and status (run counts, ranking,
    best, retained factors, anchors) are typed here.
    """

    schema_version: int = SCHEMA_VERSION
    study: str
    stage: str
    kind: str
    synthetic: bool = False
    """Results simulated by `stagescreen simulate` on planted effects: no model was trained."""
    metric: str
    goal: str
    runs: StageRuns
    effects: dict[str, Any] | None = None
    interactions: dict[str, Any] | None = None
    pooled: dict[str, Any] | None = None
    variance_shares: list[dict[str, Any]] | None = None
    relaxation: list[dict[str, Any]] | None = None
    retained: list[str] = Field(default_factory=list)
    retained_at: int | None = None
    """The budget (seconds) whose effects `retained` was judged on."""
    ranking: list[RankedCondition] = Field(default_factory=list)
    win_counts: list[dict[str, Any]] = Field(default_factory=list)
    best_per_pool: list[Best] = Field(default_factory=list)
    anchors: list[dict[str, Any]] = Field(default_factory=list)
    promoted: list[dict[str, Any]] = Field(default_factory=list)
    greedy: dict[str, Any] | None = None
    random: dict[str, Any] | None = None
    halving: dict[str, Any] | None = None
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _best_of_older_writers(cls, data: Any) -> Any:
        """An outcome written before `best_per_pool` existed names its best only as `best`."""
        if isinstance(data, dict) and "best_per_pool" not in data and data.get("best"):
            return {**data, "best_per_pool": [data["best"]]}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def best(self) -> Best | None:
        """The best on the stage's first pool, the one status and summaries name; written
        to outcome.json beside `best_per_pool` for readers that want one."""
        return self.best_per_pool[0] if self.best_per_pool else None

    def summary(self) -> str:
        """One line for a status table: retained factors, best, promoted anchors."""
        parts = []
        if self.kind in ("screen", "followup"):
            parts.append("retained " + (", ".join(self.retained) or "none"))
        if self.best is not None:
            parts.append(f"best {self.best.condition_id} {self.best.mean:.4f}")
        promoted = sorted({(p.get("role") or "", p["condition_id"]) for p in self.promoted})
        if promoted:
            parts.append("promoted " + ", ".join(f"{r} {c}".strip() for r, c in promoted))
        return "; ".join(parts) or "; ".join(self.notes)


def _stage_rows(results: pd.DataFrame, stage: Stage) -> pd.DataFrame:
    if results.empty or "stage" not in results.columns:
        return results
    return results[results["stage"] == stage.name]


# Terminal states in the order the outcome and the report list them.
TERMINAL_ORDER = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.DIVERGED)


def status_counts(status: pd.Series) -> dict[str, int]:
    """Runs per terminal state, keyed by the state's name."""
    return {state.value: int((status == state).sum()) for state in TERMINAL_ORDER}


def _run_counts(plan: planning.StagePlan, rows: pd.DataFrame) -> StageRuns:
    status = rows.set_index("run_id")["status"] if not rows.empty else pd.Series(dtype=object)
    planned = [run.run_id for run in plan.runs]
    return StageRuns(
        planned=len(planned),
        **status_counts(status),
        missing=[run for run in planned if run not in status.index],
    )


def _effect_groups(spec: StudySpec, stage: Stage) -> list[str]:
    return ["budget_s", "pool"] if len(planning.stage_pools(spec, stage)) > 1 else ["budget_s"]


def _main_effects(
    spec: StudySpec, stage: Stage, rows: pd.DataFrame, factors: Sequence[str], order: int = 1
) -> list[fx.Family]:
    """Effects per budget (and pool); BH runs across a budget's pools, so a factor retained on
    any pool is one claim among all the pools' (per-pool BH let the retained set's FDR reach
    0.069 with two pools and 0.158 with four)."""
    block = "seed" if len(stage.seeds) > 1 else None
    groups = _effect_groups(spec, stage)
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


def judged_budget(families: Sequence[fx.Family]) -> int | None:
    """The budget whose families a retention decision reads: the longest the stage ran."""
    return max((int(family.by["budget_s"]) for family in families), default=None)


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


def _ranking(spec: StudySpec, rows: pd.DataFrame) -> list[RankedCondition]:
    """Every (budget, pool) cell ranked by `stages.rank_conditions`, the one ranking rule."""
    metric = spec.metric.name
    if rows.empty:
        return []
    table = []
    for (budget, pool), cell in rows.groupby(["budget_s", "pool"], sort=True):
        ranked = planning.rank_conditions(cell, metric, spec.metric.goal, int(budget))
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
                    mean=json_number(row.mean),
                    sd=json_number(row.sd),
                    ci_low=json_number(row.ci_low),
                    ci_high=json_number(row.ci_high),
                    adjusted=bool(row.adjusted),
                    rank=rank,
                )
            )
    return table


def _runner_up(
    spec: StudySpec, rows: pd.DataFrame, best: RankedCondition, second: RankedCondition
) -> RunnerUp:
    metric = spec.metric.name
    usable = planning.succeeded(rows, metric)
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

    gap = fx.mean_difference(values(second.condition_id), values(best.condition_id))
    wins = fx.win_count(
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
    for pool in planning.stage_pools(spec, stage):
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
                hyperparameters=planning.decode_levels(levels, spec),
                runner_up=_runner_up(spec, rows, best, cell[1]) if len(cell) > 1 else None,
            )
        )
    return out


def _win_counts(spec: StudySpec, rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Every pair of anchors (by role, else condition), within each budget and pool."""
    metric = spec.metric.name
    usable = planning.succeeded(rows, metric)
    if usable.empty:
        return []
    label = usable["role"].fillna(usable["condition_id"]).astype(str)
    usable = usable.assign(_label=label)
    out = []
    for (budget, pool), cell in usable.groupby(["budget_s", "pool"], sort=True):
        values = {name: group[metric].to_numpy(float) for name, group in cell.groupby("_label")}
        for left, right in itertools.combinations(sorted(values), 2):
            count = fx.win_count(
                values[left], values[right], lower_is_better=spec.metric.goal == "minimize"
            )
            out.append(
                {"budget_s": int(budget), "pool": pool, "left": left, "right": right}
                | count.to_dict()
            )
    return out


def _greedy(spec: StudySpec, stage: Stage, rows: pd.DataFrame) -> dict[str, Any]:
    climbs = []
    for (budget, pool), climb in planning.greedy_climbs(spec, stage, rows).items():
        steps = [
            {
                "step": i,
                "condition_id": planning.condition_name(step.levels, spec),
                "levels": dict(step.levels),
                "mean": json_number(step.value),
                "accepted": step.accepted,
            }
            for i, step in enumerate(climb.steps, 1)
        ]
        accepted = [s for s in steps if s["accepted"]]
        climbs.append(
            {
                "budget_s": budget,
                "pool": pool,
                "steps": steps,
                "accepted": max(0, len(accepted) - 1),
                "best": json_number(climb.best),
                "best_step": accepted[-1]["step"] if accepted else None,
                "stopped": climb.next_levels is None,
            }
        )
    return {"climbs": climbs}


def _random(spec: StudySpec, rows: pd.DataFrame) -> dict[str, Any] | None:
    metric = spec.metric.name
    usable = planning.succeeded(rows, metric)
    if usable.empty:
        return None
    pick = "idxmin" if spec.metric.goal == "minimize" else "idxmax"
    batches = []
    for batch, group in usable.groupby("batch", sort=True):
        winner = group.loc[getattr(group[metric], pick)()]
        batches.append(
            {
                "batch": int(batch),
                "condition_id": winner["condition_id"],
                "levels": {code: int(winner[code]) for code in spec.codes},
                "best": float(winner[metric]),
            }
        )
    bests = np.array([b["best"] for b in batches])
    return {
        "batches": batches,
        "mean_batch_best": float(bests.mean()),
        "median_batch_best": float(np.median(bests)),
        "min_batch_best": float(bests.min()),
        "max_batch_best": float(bests.max()),
    }


def _halving(spec: StudySpec, stage: Stage, rows: pd.DataFrame) -> dict[str, Any]:
    """Each pool's ladder: per rung its budget, how many configurations ran and those that
    went on with their means there; the winner is the best of the last rung once it ended."""

    def entry(at: planning.RungEntry) -> dict[str, Any]:
        return {"condition_id": at.condition_id, "levels": dict(at.levels), "mean": at.mean}

    ladders = []
    for pool, ladder in planning.halving_ladders(spec, stage, rows).items():
        rungs = [
            {
                "budget_s": rung.budget_s,
                "configurations": len(rung.entries),
                "complete": rung.complete,
                "survivors": [entry(e) for e in rung.entries[: rung.survivors] if rung.complete],
            }
            for rung in ladder
        ]
        last = ladder[-1]
        top = last.entries[0] if len(ladder) == len(stage.budgets) and last.complete else None
        winner = (
            None if top is None or top.mean is None else entry(top) | {"budget_s": last.budget_s}
        )
        ladders.append({"pool": pool, "rungs": rungs, "winner": winner})
    return {"eta": stage.eta, "ladders": ladders}


def _promoted(spec: StudySpec, stage: Stage, results: pd.DataFrame) -> list[dict[str, Any]]:
    """Anchors that later stages select from this one, with the rule that chose each."""
    out = []
    for later in spec.stages[spec.stages.index(stage) + 1 :]:
        for selection in later.select:
            if selection.from_ != stage.name:
                continue
            for anchor in planning.select_anchors(spec, selection, results):
                out.append({"to_stage": later.name} | anchor.to_dict())
    return out


def _pooled(
    spec: StudySpec, stage: Stage, usable: pd.DataFrame, factors: Sequence[str], notes: list[str]
) -> dict[str, Any] | None:
    """The pooled budget-interaction model (paper 5.3) on the stage's first pool, seed as a
    block when seeds vary; a model the runs cannot support leaves a note instead."""
    pools = planning.stage_pools(spec, stage)
    if len(pools) > 1:
        notes.append(f"pooled budget model fitted on {pools[0]} only (hosts differ in level)")
    try:
        return fx.pooled_budget_effects(
            usable[usable["pool"] == pools[0]],
            spec.metric.name,
            factors,
            budget="budget_s",
            order=2,
            block="seed" if usable["seed"].nunique() > 1 else None,
        ).to_dict()
    except fx.EffectsError as error:
        notes.append(f"pooled budget model: {error}")
        return None


def stage_outcome(spec: StudySpec, stage: Stage, results: pd.DataFrame, study: str) -> StageOutcome:
    """The outcome record of one stage from every result so far (docs/architecture.md "Storage")."""
    plan = planning.plan_stage(spec, stage, results)
    rows = _stage_rows(results, stage)
    metric = spec.metric.name
    usable = planning.succeeded(rows, metric)
    ranking = _ranking(spec, rows)
    bests = _bests(spec, stage, rows, ranking)
    out = StageOutcome(
        study=study,
        stage=stage.name,
        kind=stage.kind,
        metric=metric,
        goal=spec.metric.goal,
        runs=_run_counts(plan, rows),
        ranking=ranking,
        synthetic=bool("synthetic" in rows and rows["synthetic"].fillna(False).astype(bool).any()),
        best_per_pool=bests,
        anchors=[anchor.to_dict() for anchor in plan.anchors],
    )
    if usable.empty:
        out.notes.append("no succeeded runs yet")
        return out
    if stage.kind in ("screen", "followup"):
        factors = [c for c in spec.codes if c not in stage.fix]
        families = _main_effects(spec, stage, usable, factors)
        out.effects = fx.families_to_dict(families)
        out.retained = retained_factors(families)
        out.retained_at = judged_budget(families)
        if usable["budget_s"].nunique() > 1:
            out.relaxation = [r.to_dict() for r in fx.relaxation_table(families, "budget_s")]
        if stage.kind == "followup" and stage.interactions:
            out.interactions = fx.families_to_dict(
                _main_effects(spec, stage, usable, factors, order=2)
            )
            if usable["budget_s"].nunique() > 1:
                out.pooled = _pooled(spec, stage, usable, factors, out.notes)
    if stage.kind in ("confirm", "bridge", "long-horizon"):
        out.win_counts = _win_counts(spec, usable)
        if all(usable[column].nunique() > 1 for column in ("budget_s", "condition_id", "seed")):
            blocks = ["seed", *(["pool"] if usable["pool"].nunique() > 1 else [])]
            shares = fx.variance_shares(
                usable, metric, factors=("budget_s", "condition_id"), blocks=blocks
            )
            out.variance_shares = [share.to_dict() for share in shares]
    if stage.kind == "greedy":
        out.greedy = _greedy(spec, stage, results)
    if stage.kind == "random":
        out.random = _random(spec, usable)
    if stage.kind == "halving":
        out.halving = _halving(spec, stage, rows)
    out.promoted = _promoted(spec, stage, results)
    return out


BASELINE_KINDS = ("random", "greedy", "halving")


def deciding_outcome(spec: StudySpec, outcomes: Mapping[str, StageOutcome]) -> StageOutcome | None:
    """The outcome whose best answers the study: the last analysed stage, in spec order,
    that has a best. Later stages are chosen from earlier evidence and run longer; baselines
    (random, greedy, halving) are comparisons, so they answer only when nothing else does.
    The status, the report and the command line all read the study's best from here."""
    analysed = [outcomes[s.name] for s in spec.stages if s.name in outcomes]
    with_best = [o for o in analysed if o.best is not None]
    preferred = [o for o in with_best if o.kind not in BASELINE_KINDS]
    chosen = preferred or with_best
    return chosen[-1] if chosen else None


def _planned_per_pool(
    spec: StudySpec, stage: Stage, rows: pd.DataFrame, results: pd.DataFrame
) -> dict[str, int]:
    """Runs a stage plans on each pool: exactly its plan's once that is final (a greedy
    stage whose climbs have stopped, often short of maxRuns; an anchor stage whose sources
    are complete, one condition per distinct anchor), else the expected count, its most."""
    pools = planning.stage_pools(spec, stage)
    if stage.kind != "greedy" or not rows.empty:
        try:
            plan = planning.plan_stage(spec, stage, results)
        except planning.PlanError:
            plan = None
        if plan is not None and plan.finished:
            return {pool: sum(run.pool == pool for run in plan.runs) for pool in pools}
    return dict.fromkeys(pools, planning.expected_runs(spec, stage) // len(pools))


def manifest(spec: StudySpec, results: pd.DataFrame, study: str) -> dict[str, Any]:
    """Run accounting per stage and pool, the paper's Table 1.

    GPU-seconds count each run's wall time (training, evaluation and start-up) times the
    pool's GPUs per run; runs without a wall time count their budget.
    """
    pools = {pool.name: pool for pool in spec.pools}
    lines: list[dict[str, Any]] = []
    for stage in spec.stages:
        rows = _stage_rows(results, stage)
        planned = _planned_per_pool(spec, stage, rows, results)
        for pool in planning.stage_pools(spec, stage):
            mine = rows[rows["pool"] == pool] if not rows.empty else rows
            seconds = compute_seconds(mine).get(pool, 0.0) * (
                pools[pool].gpus if pool in pools else 1
            )
            status = mine["status"] if not mine.empty else pd.Series(dtype=object)
            lines.append(
                {
                    "stage": stage.name,
                    "kind": stage.kind,
                    "pool": pool,
                    "budgets_s": list(stage.budgets),
                    "planned": planned[pool],
                    **status_counts(status),
                    "gpu_seconds": seconds,
                }
            )
    per_pool: dict[str, dict[str, Any]] = {}
    for line in lines:
        entry = per_pool.setdefault(line["pool"], {"runs": 0, "gpu_seconds": 0.0})
        entry["runs"] += sum(line[status.value] for status in TERMINAL_ORDER)
        entry["gpu_seconds"] += line["gpu_seconds"]
    total = {
        key: sum(line[key] for line in lines)
        for key in ("planned", *(status.value for status in TERMINAL_ORDER), "gpu_seconds")
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "study": study,
        "stages": lines,
        "total": total,
        "pools": per_pool,
    }
