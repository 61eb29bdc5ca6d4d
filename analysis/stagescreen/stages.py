"""Stage planning: from the spec and the results so far to the runs a stage needs.

Everything here is a pure function of `(spec, stage, results)`, so the kopf operator and the
local executor take the same decisions and a restarted controller re-derives them exactly:
run ids are deterministic from (stage, condition, budget, seed, pool), and the sequential
greedy and halving baselines are replayed from the completed runs rather than remembered.

The paper's programme (section 4.6) maps onto stage kinds: a fractional `screen`, anchors
chosen by `select` rules for `confirm` / `bridge` / `long-horizon`, a `followup` factorial with
a dominant factor fixed, and two baselines, matched-cost `random` search over the full 2^k
space and `greedy` one-factor-at-a-time hill climbing. A third baseline the paper leaves out
(its section 7) is the multi-fidelity method an automated search would use: `halving`,
successive halving (Jamieson and Talwalkar 2016; the inner loop of Hyperband, Li et al. 2018)
over the full 2^k space with one rung per budget.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stagescreen import design as designs
from stagescreen import effects as fx
from stagescreen.spec import WINNER_RULES, Selection, Stage, StudySpec
from stagescreen_contract.status import TERMINAL, reads_succeeded


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
    many of them failed or diverged: an anchor promoted despite failures says so.
    """

    condition_id: str
    levels: Mapping[str, int]
    role: str
    rule: str
    source: str | None
    runs: int = 0
    failed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "condition_id": self.condition_id,
            "role": self.role,
            "rule": self.rule,
            "source": self.source,
            "levels": dict(self.levels),
            "runs": self.runs,
            "failed": self.failed,
        }


@dataclass(frozen=True)
class PlannedRun:
    """One training run: what the trainer gets (levels decoded to hyperparameters) and where."""

    run_id: str
    stage: str
    condition_id: str
    levels: Mapping[str, int]
    hyperparameters: Mapping[str, int | float]
    budget_s: int
    seed: int
    pool: str
    role: str | None = None
    batch: int | None = None

    def to_row(self) -> dict[str, Any]:
        """The run's identity columns of the results table (docs/architecture.md, run contract)."""
        return {
            "stage": self.stage,
            "run_id": self.run_id,
            "condition_id": self.condition_id,
            "role": self.role,
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


# --- naming ---------------------------------------------------------------------------------


def format_budget(seconds: int) -> str:
    """Shortest exact spelling: 120 -> "2m", 90 -> "90s", 43200 -> "12h"."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def run_id(
    stage: str, condition_id: str, budget_s: int, seed: int, pool: str, batch: str = ""
) -> str:
    """Deterministic, DNS-safe run id, e.g. `screen-c07-5m-s1-a100`."""
    parts = [stage, batch, condition_id, format_budget(budget_s), f"s{seed}", pool]
    text = "-".join(part for part in parts if part).lower()
    return re.sub(r"[^a-z0-9-]+", "-", text)


def full_space_id(levels: Mapping[str, int], codes: Sequence[str]) -> str:
    """Id of a point of the full 2^k space, numbered as the paper does (`full32_c14`).

    Factors at their centre (0) are named after the low-level point with a suffix, so a
    bridge point with B centred reads `full32_c06-b0`.
    """
    corner = {code: -1 if levels[code] == 0 else levels[code] for code in codes}
    base = designs.condition_id(corner, codes)
    centred = "".join(f"{code.lower()}0" for code in codes if levels[code] == 0)
    return f"full{2 ** len(codes)}_{base}" + (f"-{centred}" if centred else "")


def condition_name(levels: Mapping[str, int], spec: StudySpec) -> str:
    """The screen design's id when the point is one of its runs, else its full-space id."""
    codes = spec.codes
    screen = spec.build_design()
    for cid, run in zip(screen.condition_ids, screen.runs(), strict=True):
        if all(run[code] == levels[code] for code in codes):
            return str(cid)
    return full_space_id(levels, codes)


def decode_levels(levels: Mapping[str, int], spec: StudySpec) -> dict[str, int | float]:
    """Coded levels to the trainer's hyperparameters, by factor name."""
    return {factor.name: factor.decode(levels[factor.code or ""]) for factor in spec.factors}


# --- ranking and selection ------------------------------------------------------------------


def succeeded(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows that count for ranking: status succeeded and a finite metric."""
    if results.empty:
        return results
    ok = results["status"].map(reads_succeeded).astype(bool) & np.isfinite(
        pd.to_numeric(results[metric], errors="coerce")
    )
    return results[ok]


BLOCKS = ("seed", "pool")
"""What shifts every condition alike within one budget: the seed, and the host a run ran on."""


def rank_conditions(
    results: pd.DataFrame, metric: str, goal: str, at: int | str = "longest"
) -> pd.DataFrame:
    """Conditions at one budget, best first, the one ranking every decision reads.

    Columns: condition_id, role, budget_s, runs (ended runs), failed (of those, failed or
    diverged), n (succeeded with a finite metric), mean, sd, ci_low, ci_high, adjusted.
    - The mean is the raw mean with its Student-t interval (paper 4.4) when every condition
      ran every seed and pool the others did; when some lost runs, it is the seed- and
      pool-adjusted mean (`effects.adjusted_means`), so a condition is not flattered by the
      seeds it happened to keep; `adjusted` says which.
    - A condition that failed or diverged on any run ranks behind every condition with a
      smaller failure share: a recipe that diverges on some seeds is not the one to bet long
      runs on, however good its survivors look. Then by mean; ties break on condition id, so
      the ranking and everything promoted from it are reproducible.
    """
    if results.empty:
        return pd.DataFrame()
    ended = results[results["status"].isin(list(TERMINAL))]
    if ended.empty:
        return pd.DataFrame()
    budget = ended["budget_s"].max() if at == "longest" else at
    ended = ended[ended["budget_s"] == budget]
    if ended.empty:
        return pd.DataFrame()
    good = succeeded(ended, metric)
    table = ended.groupby("condition_id", sort=True).agg(
        role=("role", "first"),
        runs=("status", "size"),
        failed=("status", lambda status: int((~status.map(reads_succeeded).astype(bool)).sum())),
    )
    table["n"] = good.groupby("condition_id").size().reindex(table.index, fill_value=0)
    blocks = [b for b in BLOCKS if b in good.columns and good[b].nunique() > 1]
    cells = (
        good.groupby("condition_id")[blocks].apply(
            lambda rows: frozenset(map(tuple, rows.to_numpy()))
        )
        if blocks and not good.empty
        else pd.Series(dtype=object)
    )
    adjusted = bool(cells.nunique() > 1)
    means: list[fx.ConditionMean] = []
    if adjusted:
        try:
            means = fx.adjusted_means(good, metric, "condition_id", blocks)
        except fx.EffectsError:
            adjusted = False  # no seeds in common to adjust through: the raw means are all
    if not adjusted and not good.empty:
        means = fx.condition_means(good, metric, "condition_id")
    stats = pd.DataFrame(
        [
            {
                "condition_id": m.key["condition_id"],
                "mean": m.mean,
                "sd": m.sd,
                "ci_low": m.ci_low,
                "ci_high": m.ci_high,
            }
            for m in means
        ],
        columns=["condition_id", "mean", "sd", "ci_low", "ci_high"],
    ).set_index("condition_id")
    table = table.join(stats).reset_index()
    table["adjusted"] = adjusted
    table["budget_s"] = budget
    table["_share"] = table["failed"] / table["runs"]
    table["_key"] = table["mean"] if goal == "minimize" else -table["mean"]
    table = table.sort_values(["_share", "_key", "condition_id"], na_position="last")
    return table.drop(columns=["_share", "_key"]).reset_index(drop=True)


def _levels_of(results: pd.DataFrame, condition: str, codes: Sequence[str]) -> dict[str, int]:
    row = results[results["condition_id"] == condition].iloc[0]
    return {code: int(row[code]) for code in codes}


def _source_role(results: pd.DataFrame, condition: str) -> str | None:
    """The role an anchor already had in its source stage, so it keeps its name onwards."""
    roles = results.loc[results["condition_id"] == condition, "role"].dropna()
    return str(roles.iloc[0]) if len(roles) else None


def _roles(selection: Selection, count: int) -> list[str]:
    role = selection.role or selection.rule
    return [role] if count == 1 else [f"{role}-{i}" for i in range(1, count + 1)]


def _among(results: pd.DataFrame, roles: Sequence[str]) -> pd.DataFrame:
    if not roles:
        return results
    role = results["role"].fillna("")
    pattern = "|".join(re.escape(r) for r in roles)
    return results[role.str.fullmatch(f"(?:{pattern})(?:-[0-9]+)?")]


def select_anchors(spec: StudySpec, selection: Selection, results: pd.DataFrame) -> list[Anchor]:
    """The anchors one `select` rule picks from the results of its source stage."""
    codes = spec.codes
    if selection.rule == "control":
        levels = {code: int(selection.levels[code]) for code in codes}
        cid = condition_name(levels, spec)
        return [Anchor(cid, levels, _roles(selection, 1)[0], "control", None)]
    source = selection.from_ or ""
    rows = _among(results[results["stage"] == source], selection.among)
    # `longest` is the longest budget the source declares, never merely the longest that
    # happens to have results: a ranking must not move as the source's runs come in.
    at = max(spec.stage(source).budgets) if selection.at == "longest" else selection.at
    ranking = rank_conditions(rows, spec.metric.name, spec.metric.goal, at)
    if not ranking.empty:
        ranking = ranking[ranking["n"] > 0]
    if ranking.empty:
        raise Unplannable(
            f"select rule {selection.rule!r} from stage {source!r}: no succeeded runs to rank "
            f"at {at} s"
        )
    if selection.rule == "worst":
        # the worst recipe by its metric, a contrast for the best: failures do not enter
        worst_first = ranking["mean"] if spec.metric.goal == "maximize" else -ranking["mean"]
        picked = list(
            ranking.assign(_key=worst_first).sort_values(["_key", "condition_id"])["condition_id"][
                : selection.k
            ]
        )
    elif selection.rule in WINNER_RULES:
        picked = list(ranking["condition_id"].iloc[:1])
    else:
        picked = list(ranking["condition_id"].iloc[: selection.k])
    record = ranking.set_index("condition_id")
    anchors: list[Anchor] = []
    for role, cid in zip(_roles(selection, len(picked)), picked, strict=True):
        levels = _levels_of(rows, cid, codes)
        if selection.role is None and selection.rule in ("best", "worst"):
            role = _source_role(rows, cid) or role
        if selection.rule == "bridge":
            levels = {
                code: 0 if code in selection.factors else level for code, level in levels.items()
            }
            suffix = "".join(f"{code.lower()}0" for code in codes if code in selection.factors)
            cid = f"{cid}-{suffix}"
        source_row = record.loc[picked[len(anchors)]]
        anchors.append(
            Anchor(
                cid,
                levels,
                role,
                selection.rule,
                source,
                runs=int(source_row["runs"]),
                failed=int(source_row["failed"]),
            )
        )
    return anchors


# --- baselines ------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class ClimbStep:
    """One evaluated point of a greedy climb and whether it became the incumbent."""

    levels: Mapping[str, int]
    value: float | None
    accepted: bool


@dataclass(frozen=True)
class Climb:
    """A replayed greedy climb: the steps so far and the next point to run (None: stopped)."""

    steps: tuple[ClimbStep, ...]
    next_levels: Mapping[str, int] | None
    incumbent: Mapping[str, int] | None
    best: float | None


def _better(value: float | None, than: float | None, goal: str) -> bool:
    if value is None:
        return False
    if than is None:
        return True
    return value < than if goal == "minimize" else value > than


def greedy_climb(
    codes: Sequence[str],
    options: Mapping[str, Sequence[int]],
    start: Mapping[str, int],
    evaluated: Mapping[tuple[int, ...], float | None],
    goal: str,
    max_steps: int,
) -> Climb:
    """Replay one-factor-at-a-time hill climbing over what has been evaluated so far.

    From the incumbent, try each factor's other levels in factor order; a strictly better
    point becomes the incumbent. The climb stops after a full pass over all factors without
    improvement or after `max_steps` evaluated points. `evaluated` maps level tuples (in
    `codes` order) to the point's value, None when its runs failed (never accepted).
    """
    key = tuple(start[code] for code in codes)
    steps: list[ClimbStep] = []
    seen: set[tuple[int, ...]] = set()

    def visit(point: tuple[int, ...]) -> bool:
        """Record an evaluated point; False when it still has to run."""
        if point not in evaluated:
            return False
        if point not in seen:
            seen.add(point)
            steps.append(ClimbStep(dict(zip(codes, point, strict=True)), evaluated[point], False))
        return True

    def climb(next_point: tuple[int, ...] | None, incumbent: tuple[int, ...] | None) -> Climb:
        best = evaluated.get(incumbent) if incumbent is not None else None
        return Climb(
            steps=tuple(steps),
            next_levels=None
            if next_point is None or len(steps) >= max_steps
            else dict(zip(codes, next_point, strict=True)),
            incumbent=None if incumbent is None else dict(zip(codes, incumbent, strict=True)),
            best=best,
        )

    if not visit(key):
        return climb(key, None)
    steps[-1] = ClimbStep(steps[-1].levels, steps[-1].value, True)
    incumbent = key
    untried_since_accept = 0
    position = 0
    while untried_since_accept < len(codes) and len(steps) < max_steps:
        code_index = position % len(codes)
        position += 1
        improved = False
        for level in options[codes[code_index]]:
            if level == incumbent[code_index]:
                continue
            point = (*incumbent[:code_index], level, *incumbent[code_index + 1 :])
            if point in seen:
                continue
            if not visit(point):
                return climb(point, incumbent)
            if _better(evaluated[point], evaluated[incumbent], goal):
                steps[-1] = ClimbStep(steps[-1].levels, steps[-1].value, True)
                incumbent = point
                improved = True
                break
            if len(steps) >= max_steps:
                break
        untried_since_accept = 0 if improved else untried_since_accept + 1
    return climb(None, incumbent)


def _greedy_options(spec: StudySpec) -> dict[str, list[int]]:
    """Levels greedy may move a factor to: -1 and +1, and 0 where a centre is declared."""
    return {
        factor.code or "": [-1, 0, 1] if factor.centre is not None else [-1, 1]
        for factor in spec.factors
    }


# --- planning -------------------------------------------------------------------------------


def stage_pools(spec: StudySpec, stage: Stage) -> list[str]:
    """The pools a stage runs on: those it names, else the first declared pool."""
    return list(stage.pools) or [spec.pools[0].name]


Condition = tuple[str, Mapping[str, int], str | None]
"""A condition to run: its id, coded levels and anchor role (None outside anchor stages)."""


def _expand(
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


def followup_design(spec: StudySpec, stage: Stage) -> designs.Design:
    """Full factorial over the factors the follow-up leaves free (paper 5.3: D fixed)."""
    free = [code for code in spec.codes if code not in stage.fix]
    return designs.full_factorial(free)


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


def plan_stage(spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
    """The runs `stage` needs, given every result recorded so far (any stage).

    For greedy stages the plan holds the runs of every point evaluated so far plus the next
    point of each climb; `finished` turns True when every climb has stopped. A halving stage
    holds every rung whose predecessor has ended; `finished` once the last rung is planned.
    """
    results = _with_identity_columns(results, spec.codes)
    if stage.kind == "screen":
        screen = spec.build_design()
        conditions = [
            (str(cid), run, None)
            for cid, run in zip(screen.condition_ids, screen.runs(), strict=True)
        ]
        return StagePlan(stage.name, tuple(_expand(spec, stage, conditions)))
    if stage.kind == "followup":
        # Follow-up points are named as everywhere else (the screen's id when the point is
        # one of its runs, else its full-space id), never by the follow-up's own numbering,
        # so one id always means one set of levels across the study.
        points = [
            {code: int(stage.fix.get(code, run.get(code, 0))) for code in spec.codes}
            for run in followup_design(spec, stage).runs()
        ]
        conditions = [(condition_name(levels, spec), levels, None) for levels in points]
        return StagePlan(stage.name, tuple(_expand(spec, stage, conditions)))
    if stage.kind in ("confirm", "bridge", "long-horizon"):
        _require_complete_sources(spec, stage, results)
        anchors = _unique_anchors(
            [a for selection in stage.select for a in select_anchors(spec, selection, results)]
        )
        picked: list[Condition] = [(a.condition_id, a.levels, a.role) for a in anchors]
        return StagePlan(stage.name, tuple(_expand(spec, stage, picked)), tuple(anchors))
    if stage.kind == "random":
        return StagePlan(stage.name, tuple(_plan_random(spec, stage)))
    if stage.kind == "halving":
        return _plan_halving(spec, stage, results)
    return _plan_greedy(spec, stage, results)


def _unique_anchors(anchors: Sequence[Anchor]) -> list[Anchor]:
    """One anchor per condition; a condition picked by two rules keeps the first role."""
    unique: dict[str, Anchor] = {}
    for anchor in anchors:
        unique.setdefault(anchor.condition_id, anchor)
    return list(unique.values())


def _plan_random(spec: StudySpec, stage: Stage) -> list[PlannedRun]:
    runs = []
    width = len(str(stage.draws_per_batch))
    for batch, draw, levels in random_draws(
        spec.codes, stage.batches, stage.draws_per_batch, stage.draw_seed
    ):
        cid = condition_name(levels, spec)
        tag = f"b{batch}d{draw:0{width}d}"
        runs += _expand(spec, stage, [(cid, levels, None)], tag=tag, batch=batch)
    return runs


def greedy_climbs(
    spec: StudySpec, stage: Stage, results: pd.DataFrame
) -> dict[tuple[int, str], Climb]:
    """Replay each greedy climb (one per budget and pool) from this stage's results.

    A point counts as evaluated once every seed has a run that ended (a pending or running one
    in the results table does not count); its value is the mean of the seeds that succeeded
    (None if none did).
    """
    results = _with_identity_columns(results, spec.codes)
    codes = spec.codes
    metric = spec.metric.name
    mine = results[(results["stage"] == stage.name) & results["status"].isin(list(TERMINAL))]
    start = {code: int(stage.start.get(code, -1)) for code in codes}
    climbs = {}
    for budget in stage.budgets:
        for pool in stage_pools(spec, stage):
            rows = mine[(mine["budget_s"] == budget) & (mine["pool"] == pool)]
            evaluated: dict[tuple[int, ...], float | None] = {}
            for point, group in rows.groupby(list(codes), sort=False):
                values_of_point = point if isinstance(point, tuple) else (point,)
                point_key = tuple(int(float(str(v))) for v in values_of_point)
                if set(group["seed"]) >= set(stage.seeds):
                    values = succeeded(group, metric)[metric]
                    evaluated[point_key] = float(values.mean()) if len(values) else None
            max_steps = max(1, (stage.max_runs or 1) // len(stage.seeds))
            climbs[(budget, pool)] = greedy_climb(
                codes, _greedy_options(spec), start, evaluated, spec.metric.goal, max_steps
            )
    return climbs


def _plan_greedy(spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
    runs: list[PlannedRun] = []
    finished = True
    for (budget, pool), climb in greedy_climbs(spec, stage, results).items():
        points = [step.levels for step in climb.steps]
        if climb.next_levels is not None:
            points.append(climb.next_levels)
            finished = False
        conditions = [(condition_name(levels, spec), levels, None) for levels in points]
        runs += _expand(spec, stage, conditions, budgets=[budget], pools=[pool])
    return StagePlan(stage.name, tuple(runs), finished=finished)


def halving_rungs(stage: Stage, factors: int) -> list[int]:
    """Configurations per rung of a halving ladder, one rung per budget: `initial` (default
    the whole 2^k space), then ceil(n / eta) of the rung before, so never fewer than one.

    The counts are fixed before any run, so the stage is priced exactly: a configuration that
    failed ranks last and is still promoted when too few others succeeded.
    """
    sizes = [stage.initial or 2**factors]
    for _ in stage.budgets[1:]:
        sizes.append(math.ceil(sizes[-1] / stage.eta))
    return sizes


def halving_configurations(
    codes: Sequence[str], initial: int | None, seed: int
) -> list[dict[str, int]]:
    """The first rung: the whole 2^k space, or `initial` of its points drawn without
    replacement from `seed`. Kept in the space's order, so the same seed gives the same runs
    and drawing all 2^k is the whole space."""
    space = designs.full_factorial(codes).runs()
    if initial is None or initial >= len(space):
        return [dict(point) for point in space]
    picks = np.random.default_rng(seed).choice(len(space), size=initial, replace=False)
    return [dict(space[int(pick)]) for pick in sorted(picks)]


@dataclass(frozen=True)
class RungEntry:
    """A configuration in one rung: its mean over the seeds that succeeded, None if none did."""

    condition_id: str
    levels: Mapping[str, int]
    mean: float | None


@dataclass(frozen=True)
class Rung:
    """One rung of a replayed halving ladder: its runs and configurations, in planned order
    until every run has ended, then ranked best first with their means; the first
    `survivors` of them run at the next budget (none after the last)."""

    budget_s: int
    pool: str
    runs: tuple[PlannedRun, ...]
    entries: tuple[RungEntry, ...]
    complete: bool
    survivors: int


def halving_ladders(
    spec: StudySpec, stage: Stage, results: pd.DataFrame
) -> dict[str, tuple[Rung, ...]]:
    """Replay each halving ladder (one per pool) from this stage's results, up to and
    including its first rung with runs still to end.

    A complete rung ranks its configurations by their mean over seeds, as anchors are ranked
    (`rank_conditions`: ties on condition id), a configuration with no succeeded run last.
    The best `halving_rungs` allows go on to the next budget.
    """
    results = _with_identity_columns(results, spec.codes)
    sizes = halving_rungs(stage, len(spec.codes))
    first = [
        RungEntry(condition_name(levels, spec), levels, None)
        for levels in halving_configurations(spec.codes, stage.initial, stage.draw_seed)
    ]
    ladders = {}
    for pool in stage_pools(spec, stage):
        rungs: list[Rung] = []
        entries = first
        for budget, survivors in zip(stage.budgets, [*sizes[1:], 0], strict=True):
            conditions = [(entry.condition_id, entry.levels, None) for entry in entries]
            runs = tuple(_expand(spec, stage, conditions, budgets=[budget], pools=[pool]))
            ids = {run.run_id for run in runs}
            ended = results[results["run_id"].isin(ids) & results["status"].isin(list(TERMINAL))]
            if set(ended["run_id"]) < ids:
                rungs.append(Rung(budget, pool, runs, tuple(entries), False, survivors))
                break
            ranked = _rank_rung(spec, entries, ended, budget)
            rungs.append(Rung(budget, pool, runs, tuple(ranked), True, survivors))
            entries = [RungEntry(e.condition_id, e.levels, None) for e in ranked[:survivors]]
        ladders[pool] = tuple(rungs)
    return ladders


def _rank_rung(
    spec: StudySpec, entries: Sequence[RungEntry], ended: pd.DataFrame, budget: int
) -> list[RungEntry]:
    """A complete rung's configurations with their means, ranked as anchors are
    (`rank_conditions`: one with failures behind, then by mean, ties on condition id)."""
    ranking = rank_conditions(ended, spec.metric.name, spec.metric.goal, budget)
    levels = {entry.condition_id: entry.levels for entry in entries}
    return [
        RungEntry(str(cid), levels[str(cid)], None if pd.isna(mean) else float(mean))
        for cid, mean in zip(ranking["condition_id"], ranking["mean"], strict=True)
    ]


def _plan_halving(spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
    ladders = halving_ladders(spec, stage, results).values()
    runs = [run for ladder in ladders for rung in ladder for run in rung.runs]
    finished = all(len(ladder) == len(stage.budgets) for ladder in ladders)
    return StagePlan(stage.name, tuple(runs), finished=finished)


def _with_identity_columns(results: pd.DataFrame, codes: Sequence[str]) -> pd.DataFrame:
    """An empty or partial results table with the columns planning reads."""
    needed = ["stage", "run_id", "condition_id", "role", "budget_s", "seed", "pool", "status"]
    missing = [column for column in [*needed, *codes] if column not in results.columns]
    if not missing:
        return results
    return results.assign(**{column: pd.Series(dtype=object) for column in missing})


# --- cost -----------------------------------------------------------------------------------


def expected_runs(spec: StudySpec, stage: Stage) -> int:
    """How many runs a stage will launch, known before any of its sources has run.

    Anchor stages count one condition per pick (k per rule, one for control), the most they
    can run: once the sources are complete, two rules picking the same condition plan it
    once (one recipe, one id), and the manifest counts the plan. A greedy stage counts its
    run limit, the most it can spend.
    """
    per_condition = len(stage.budgets) * len(stage.seeds) * len(stage_pools(spec, stage))
    if stage.kind == "screen":
        return len(spec.build_design().matrix) * per_condition
    if stage.kind == "followup":
        return len(followup_design(spec, stage).matrix) * per_condition
    if stage.kind == "random":
        return stage.batches * stage.draws_per_batch * per_condition
    if stage.kind == "greedy":
        max_steps = max(1, (stage.max_runs or 1) // len(stage.seeds))
        return max_steps * per_condition
    if stage.kind == "halving":
        return sum(_runs_by_budget(spec, stage).values())
    picks = sum(1 if s.rule == "control" or s.rule in WINNER_RULES else s.k for s in stage.select)
    return picks * per_condition


def _runs_by_budget(spec: StudySpec, stage: Stage) -> dict[int, int]:
    """Runs at each budget: a halving ladder's rungs narrow, every other stage runs the same
    conditions at each of its budgets."""
    width = len(stage.seeds) * len(stage_pools(spec, stage))
    if stage.kind == "halving":
        sizes = halving_rungs(stage, len(spec.codes))
        return {budget: size * width for budget, size in zip(stage.budgets, sizes, strict=True)}
    return dict.fromkeys(stage.budgets, expected_runs(spec, stage) // len(stage.budgets))


RUN_OVERHEAD_S = 5
"""Seconds a run spends beyond its training budget: interpreter and torch start-up, data
loading, evaluation and the final checkpoint. Measured on the CPU quickstart (a 5-45 s run
takes 2.6-4.7 s longer inside the trainer, about 2 s more to start the process); GPU runs
that compile their model start slower: price them with `stagescreen plan --overhead`."""


@dataclass(frozen=True)
class StageCost:
    """What a stage will spend: runs, GPU-hours and run-hours per pool, and wall-clock at
    the parallelism. Run-hours are the runs' own durations; on a CPU pool (gpus: 0) they are
    what the study costs."""

    stage: str
    kind: str
    runs: int
    gpu_hours: Mapping[str, float]
    wall_hours: float
    run_hours: Mapping[str, float] = field(default_factory=dict)


def stage_cost(spec: StudySpec, stage: Stage, overhead_s: int = 0) -> StageCost:
    """Cost of one stage; `overhead_s` adds start-up and evaluation time to every run.

    Wall-clock packs the runs onto `limits.parallelism` slots longest-first; a greedy climb
    is sequential, so each of its steps waits for the previous one, and each rung of a halving
    ladder waits for the rung before it.
    """
    pools = {pool.name: pool for pool in spec.pools}
    runs = expected_runs(spec, stage)
    per_budget = _runs_by_budget(spec, stage)
    gpu_hours: dict[str, float] = {}
    run_hours: dict[str, float] = {}
    durations: list[int] = []
    for budget in stage.budgets:
        per_pool = per_budget[budget] // len(stage_pools(spec, stage))
        for pool in stage_pools(spec, stage):
            gpus = pools[pool].gpus if pool in pools else 1
            hours = per_pool * (budget + overhead_s) / 3600
            run_hours[pool] = run_hours.get(pool, 0.0) + hours
            gpu_hours[pool] = gpu_hours.get(pool, 0.0) + hours * gpus
            durations += [budget + overhead_s] * per_pool
    slots = spec.limits.parallelism
    if stage.kind == "greedy":
        width = len(stage.seeds) * len(stage.budgets) * len(stage_pools(spec, stage))
        slots = min(slots, width)
    if stage.kind == "halving":
        wall = math.fsum(
            _pack([budget + overhead_s] * count, slots) for budget, count in per_budget.items()
        )
    else:
        wall = _pack(sorted(durations, reverse=True), slots)
    return StageCost(stage.name, stage.kind, runs, gpu_hours, wall / 3600, run_hours)


def _pack(durations: Sequence[int], slots: int) -> float:
    """Makespan of longest-first list scheduling on `slots` identical workers."""
    if not durations:
        return 0.0
    loads = [0] * max(1, min(slots, len(durations)))
    for duration in durations:
        loads[loads.index(min(loads))] += duration
    return float(max(loads))


def programme_cost(spec: StudySpec, overhead_s: int = 0) -> list[StageCost]:
    """Every stage's cost, in the order the stages run."""
    return [stage_cost(spec, stage, overhead_s) for stage in spec.stages]


def budget_hours(costs: Sequence[StageCost]) -> float:
    """Total GPU-hours across stages and pools."""
    return math.fsum(hours for cost in costs for hours in cost.gpu_hours.values())
