"""Power before GPU-hours: the study repeated many times on a planted response model.

One simulated study (`stagescreen simulate`) shows what a design *might* find; this module
answers how often it would. Each replicate draws every run of the study's fixed-design stages
(screens and follow-ups, whose runs do not depend on any result) from a
`synthetic.ResponseModel` and reads them the way `stagescreen.outcomes.analyse` does:

- per stage, factor, budget (and pool): the detection rate (power), how often a detection has
  the wrong sign, how often the 95% interval covers the planted effect at that budget;
- per anchor rule that picks from a fixed-design stage (best, worst, bridge): how often its
  pick, ranked as `ranking.select_anchors` ranks (for best and bridge, a condition that lost
  runs behind every one that lost fewer), is the true optimum, the condition with the best
  (or worst) noise-free mean at the budget the rule ranks at. Rule predicted is named as
  not rehearsed: its pick is a refit and a corner search per replicate.

Departures from calling `families.fit_effects` once per replicate, each for speed: within a
stage the design matrix is the same in every replicate, so all replicates of a family are
fitted with one least-squares solve on a runs x replicates matrix, and BH q-values come from
sorting along the term axis. Replicates that lost runs to divergence are grouped by which
runs they lost, one solve per group. The detection rule is the vectorised equivalent of
`retention.retained_factors` applied to every budget: the interval excludes zero and the
term's q is at most `retention.FDR`, q from Simes' combination of the term's p over the
budget's pools then BH over the terms (plain BH with one pool), with Lenth's margin and
simulated p (`families.lenth_reference`) in saturated single-seed fits, as `stage_outcome`
fits them. Replicate r is deterministic from (seed, r). Pure: no I/O; progress is reported
through a callback.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from scipy import stats

from stagescreen.kinds import kind_of
from stagescreen.planning.planner import plan_stage
from stagescreen.planning.plans import PlannedRun, stage_pools
from stagescreen.statistics import families as fx
from stagescreen.statistics import synthetic
from stagescreen.statistics.coding import model_terms
from stagescreen.statistics.retention import FDR
from stagescreen.study.spec import RANKING_RULES, Stage, StudySpec
from stagescreen_contract.status import RunStatus

CHUNK = 250
"""Replicates drawn and fitted together: bounds memory and paces the progress callback."""

LEVEL = 0.95


# --- results ---------------------------------------------------------------------------------


class _Result(BaseModel):
    """A result record of the power study: frozen, dumped as the `--json` document."""

    model_config = ConfigDict(frozen=True)


class TermPower(_Result):
    """How one effect of one stage fared at one budget (and pool) over the replicates.

    `power`: fraction of fitted replicates where the effect is detected (for a null effect,
    the false-positive rate); `sign_errors`: fraction where it is detected with the opposite
    sign of the planted effect (None for a null effect); `coverage`: fraction whose 95%
    interval holds the planted effect; `fitted`: replicates whose runs could fit the model.
    """

    stage: str
    term: str
    budget_s: int
    pool: str | None
    planted: float
    fitted: int
    power: float
    sign_errors: float | None
    coverage: float
    mean_estimate: float | None


class AnchorMatch(_Result):
    """How often one select rule of a stage picks the true optimum of its source stage.

    `optimum`: the conditions tied for the best (worst, for rule worst) noise-free mean at
    `at_s`; `match`: fraction of replicates whose first pick is one of them.
    """

    stage: str
    rule: str
    role: str
    source: str
    at_s: int
    optimum: tuple[str, ...]
    replicates: int
    match: float


class PowerReport(_Result):
    """Everything `stagescreen simulate --replicates` prints or writes as JSON."""

    synthetic: bool = True
    replicates: int
    seed: int
    fdr: float
    terms: tuple[TermPower, ...]
    anchors: tuple[AnchorMatch, ...]
    notes: tuple[str, ...] = ()


# --- drawing replicates ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rehearsal:
    """The fixed runs of a study with what every replicate shares: noise-free means, cell
    sds, and which seed shift and seed x condition term each run takes."""

    runs: tuple[PlannedRun, ...]
    mean: np.ndarray
    sd: np.ndarray
    seed_index: np.ndarray
    pair_index: np.ndarray
    seeds: int
    pairs: int


def rehearsal(spec: StudySpec, model: synthetic.ResponseModel) -> Rehearsal:
    """The runs of every screen and follow-up stage, in stage order."""
    empty = pd.DataFrame()
    runs = tuple(
        run
        for stage in spec.stages
        if kind_of(stage).fits_effects
        for run in plan_stage(spec, stage, empty).runs
    )
    seeds = {seed: i for i, seed in enumerate(sorted({run.seed for run in runs}))}
    pair_keys = [(run.seed, synthetic.condition_key(run.levels)) for run in runs]
    pairs = {key: i for i, key in enumerate(dict.fromkeys(pair_keys))}
    return Rehearsal(
        runs=runs,
        mean=np.array([model.mean(run.levels, run.budget_s) for run in runs]),
        sd=np.array([model.cell_sd(run.levels, run.budget_s) for run in runs]),
        seed_index=np.array([seeds[run.seed] for run in runs], dtype=int),
        pair_index=np.array([pairs[key] for key in pair_keys], dtype=int),
        seeds=len(seeds),
        pairs=len(pairs),
    )


def draw(
    plan: Rehearsal, model: synthetic.ResponseModel, seed: int, replicates: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Metric values (runs x replicates, NaN where diverged) and the diverged mask.

    Each replicate has its own generator seeded with (seed, r), so replicate r is the same
    whatever else is drawn with it.
    """
    n = len(plan.runs)
    values = np.empty((n, len(replicates)))
    diverged = np.zeros((n, len(replicates)), dtype=bool)
    for column, r in enumerate(replicates):
        rng = np.random.default_rng([seed, r])
        seed_shift = rng.normal(0.0, model.seed_sd, plan.seeds)
        pair_shift = rng.normal(0.0, model.seed_condition_sd, plan.pairs)
        noise = rng.standard_normal(n) * plan.sd
        lost = rng.random(n) < model.divergence
        values[:, column] = (
            plan.mean + seed_shift[plan.seed_index] + pair_shift[plan.pair_index] + noise
        )
        diverged[:, column] = lost
    values[diverged] = np.nan
    return values, diverged


def replicate_results(
    spec: StudySpec, model: synthetic.ResponseModel, seed: int, replicate: int
) -> pd.DataFrame:
    """One replicate as a results table, the rows `synthetic.simulate_runs` would write."""
    plan = rehearsal(spec, model)
    values, diverged = draw(plan, model, seed, [replicate])
    return pd.DataFrame(
        [
            run.to_row()
            | {
                "status": (RunStatus.DIVERGED if lost else RunStatus.SUCCEEDED).value,
                spec.metric.name: float(value),
                "synthetic": True,
            }
            for run, value, lost in zip(plan.runs, values[:, 0], diverged[:, 0], strict=True)
        ]
    )


# --- vectorised fits -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Family:
    """One model fit of a stage, as `analyse.stage_outcome` makes it: the rows of one budget
    (and pool), the full-design model matrix, and the terms whose power is reported."""

    stage: str
    budget_s: int
    pool: str | None
    rows: np.ndarray
    x: np.ndarray
    terms: tuple[str, ...]
    columns: tuple[int, ...]
    reported: tuple[str, ...]
    lenth: bool
    order: int

    @property
    def q_group(self) -> tuple[str, int, int]:
        """Families whose q-values are computed together: one stage, model and budget, every
        pool (as `analyse.stage_outcome` combines a term's p over a budget's pools)."""
        return (self.stage, self.order, self.budget_s)


def _families(spec: StudySpec, plan: Rehearsal) -> list[_Family]:
    """Every family the stage outcomes fit: main effects, plus the two-factor model of a
    follow-up with interactions (whose interaction terms are reported)."""
    out = []
    stage_of = np.array([run.stage for run in plan.runs])
    for stage in spec.stages:
        if not kind_of(stage).fits_effects:
            continue
        factors = [code for code in spec.codes if code not in stage.fix]
        several_pools = len(stage_pools(spec, stage)) > 1
        orders = kind_of(stage).effect_orders(stage)
        cells: dict[tuple[int, str | None], list[int]] = {}
        for i in np.flatnonzero(stage_of == stage.name).tolist():
            run = plan.runs[i]
            cells.setdefault((run.budget_s, run.pool if several_pools else None), []).append(i)
        for order in orders:
            terms = model_terms(factors, order)
            block = len(stage.seeds) > 1
            saturated = not block and max(len(rows) for rows in cells.values()) <= len(terms) + 1
            reported = [t for t in terms if order == 1 or ":" in t]
            for (budget, pool), rows in sorted(
                cells.items(), key=lambda c: (c[0][0], c[0][1] or "")
            ):
                x = _model_matrix([plan.runs[i] for i in rows], terms, stage, block)
                out.append(
                    _Family(
                        stage=stage.name,
                        budget_s=budget,
                        pool=pool,
                        rows=np.array(rows),
                        x=x,
                        terms=tuple(terms),
                        columns=tuple(range(1, len(terms) + 1)),
                        reported=tuple(reported),
                        lenth=saturated,
                        order=order,
                    )
                )
    return out


def _model_matrix(
    runs: Sequence[PlannedRun], terms: Sequence[str], stage: Stage, block: bool
) -> np.ndarray:
    """Intercept, one -1/+1 product column per term, then seed indicators (first seed out)."""
    columns = [np.ones(len(runs))]
    for term in terms:
        codes = term.split(":")
        columns.append(np.array([math.prod(run.levels[c] for c in codes) for run in runs], float))
    if block:
        for seed in stage.seeds[1:]:
            columns.append(np.array([run.seed == seed for run in runs], float))
    return np.column_stack(columns)


@dataclass
class _Tally:
    """Counts over replicates for one family, one entry per term."""

    fitted: np.ndarray
    detected: np.ndarray
    wrong_sign: np.ndarray
    covered: np.ndarray
    estimate_sum: np.ndarray

    @classmethod
    def empty(cls, terms: int) -> _Tally:
        return cls(*(np.zeros(terms) for _ in range(5)))


def _bh_along_terms(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q for every column of a terms x replicates matrix at once; NaN p
    (a term not tested in that replicate) stay NaN and do not count towards m, as in
    `families.benjamini_hochberg`."""
    m = np.sum(~np.isnan(p), axis=0)
    order = np.argsort(p, axis=0, kind="stable")  # NaN last
    ordered = np.take_along_axis(p, order, axis=0)
    ranked = ordered * m / np.arange(1, p.shape[0] + 1)[:, None]
    q_sorted = np.minimum(np.fmin.accumulate(ranked[::-1], axis=0)[::-1], 1.0)
    q = np.empty_like(p)
    np.put_along_axis(q, order, np.where(np.isnan(ordered), np.nan, q_sorted), axis=0)
    return q


def _simes_along_pools(p: np.ndarray) -> np.ndarray:
    """Simes' combined p (`families.simes`) of every term and replicate of a pools x terms x
    replicates array: min over i of m * p_(i) / i over the m pools that tested it (NaN
    where none did)."""
    m = np.sum(~np.isnan(p), axis=0)
    ordered = np.sort(p, axis=0)  # NaN last
    ranked = ordered * m / np.arange(1, p.shape[0] + 1)[:, None, None]
    return np.minimum(np.fmin.reduce(ranked, axis=0), 1.0)


@dataclass(frozen=True)
class FamilyFit:
    """Effects (2*beta) of one family for many replicates (terms x replicates), with their
    interval bounds and two-sided p-values (NaN where a replicate was not fitted)."""

    effect: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p: np.ndarray


def fit_family(
    x: np.ndarray, y: np.ndarray, columns: Sequence[int], lenth: bool
) -> FamilyFit | None:
    """One least-squares solve for every column of y; None when x cannot separate its columns
    or leaves no way to judge them (no residual df, and no Lenth margin asked for).

    With residual df: Wald intervals on each replicate's residual sd and p from t. Without:
    Lenth's pseudo standard error per replicate when `lenth`, with the margin and p of its
    simulated null distribution (`families.lenth_reference`).
    """
    n, k = x.shape
    if np.linalg.matrix_rank(x) < k:
        return None
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    effect = 2 * beta[list(columns)]
    df = n - k
    if df > 0:
        residual = y - x @ beta
        sigma2 = np.einsum("ij,ij->j", residual, residual) / df
        unscaled = np.diag(np.linalg.inv(x.T @ x))[list(columns)]
        se = 2 * np.sqrt(np.outer(unscaled, sigma2))
        with np.errstate(divide="ignore", invalid="ignore"):
            p = 2 * stats.t.sf(np.abs(effect / se), df)
        margin = float(stats.t.ppf((1 + LEVEL) / 2, df)) * se
    elif lenth and effect.shape[0] >= 2:
        pse = fx.lenth_pse(effect)
        reference = fx.lenth_reference(effect.shape[0])
        with np.errstate(divide="ignore", invalid="ignore"):
            p = reference.p(np.abs(effect) / pse)
        margin = np.broadcast_to(reference.critical(LEVEL) * pse, effect.shape)
    else:
        return None
    return FamilyFit(effect, effect - margin, effect + margin, np.nan_to_num(p, nan=1.0))


def _fit_chunk(family: _Family, values: np.ndarray, diverged: np.ndarray) -> FamilyFit:
    """Fit one family for a chunk of replicates, one solve per pattern of lost runs; the
    replicates whose runs cannot fit the model are NaN."""
    shape = (len(family.terms), values.shape[1])
    out = FamilyFit(*(np.full(shape, np.nan) for _ in range(4)))
    lost = diverged[family.rows]
    patterns, group = np.unique(lost.T, axis=0, return_inverse=True)
    group = np.asarray(group).reshape(-1)
    for g, pattern in enumerate(patterns):
        keep = ~pattern
        chosen = np.flatnonzero(group == g)
        fit = fit_family(
            family.x[keep], values[family.rows[keep]][:, chosen], family.columns, family.lenth
        )
        if fit is None:
            continue
        for name in ("effect", "ci_low", "ci_high", "p"):
            getattr(out, name)[:, chosen] = getattr(fit, name)
    return out


def detect(fits: Sequence[FamilyFit]) -> np.ndarray:
    """`retention.retained_factors`' rule on families that share their q-values (one
    budget's pools, the same terms), for every replicate: pools x terms x replicates, True
    where the effect's interval on that pool excludes zero and the term's q (Simes over the
    pools that fitted it, then BH over the terms) is at most `FDR`."""
    q = _bh_along_terms(_simes_along_pools(np.stack([fit.p for fit in fits])))
    with np.errstate(invalid="ignore"):
        return np.stack([((fit.ci_low > 0) | (fit.ci_high < 0)) & (q <= FDR) for fit in fits])


def _tally(
    families: Sequence[_Family],
    fits: Sequence[FamilyFit],
    truths: Sequence[np.ndarray],
    tallies: Sequence[_Tally],
) -> None:
    """Detections of families sharing their q-values (one budget's pools, the same terms):
    each term's p combined over the pools that fitted it (Simes), BH over the terms, then the
    retention rule on each pool, counted per reported term."""
    held = detect(fits)
    for family, fit, truth, tally, holds in zip(families, fits, truths, tallies, held, strict=True):
        report = [family.terms.index(t) for t in family.reported]
        ok = ~np.isnan(fit.p[report])
        effect, low, high = fit.effect[report], fit.ci_low[report], fit.ci_high[report]
        detected = holds[report]
        sign = np.sign(truth)[:, None]
        tally.fitted += ok.sum(axis=1)
        tally.detected += detected.sum(axis=1)
        tally.wrong_sign += (detected & (np.sign(effect) == -sign) & (sign != 0)).sum(axis=1)
        tally.covered += (ok & (low <= truth[:, None]) & (truth[:, None] <= high)).sum(axis=1)
        tally.estimate_sum += np.where(ok, effect, 0.0).sum(axis=1)


# --- anchor picks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pick:
    """One select rule rehearsed: the source rows at its budget, grouped by condition."""

    stage: str
    rule: str
    role: str
    source: str
    at_s: int
    conditions: tuple[str, ...]
    membership: np.ndarray
    rows: np.ndarray
    optimum: tuple[str, ...]
    lower_first: bool


def _picks(
    spec: StudySpec, plan: Rehearsal, model: synthetic.ResponseModel
) -> tuple[list[_Pick], list[str]]:
    """The rules whose pick can be rehearsed, and a note for each that cannot."""
    picks, notes = [], []
    minimize = spec.metric.goal == "minimize"
    for stage in spec.stages:
        for selection in stage.select:
            if selection.rule == "control" or selection.from_ is None:
                continue
            source = spec.stage(selection.from_)
            if selection.rule == "predicted":
                notes.append(
                    f"stage {stage.name!r}: rule predicted from {source.name!r} is not "
                    "rehearsed: its pick is a model refit and a search of the 2^k corners per "
                    "replicate, not a ranking of the conditions the source ran"
                )
                continue
            if selection.rule not in RANKING_RULES or not kind_of(source).fits_effects:
                notes.append(
                    f"stage {stage.name!r}: rule {selection.rule} from {source.name!r} "
                    f"({source.kind}) is not rehearsed: only best, worst and bridge picks "
                    "from screen and follow-up stages are"
                )
                continue
            if selection.among:
                notes.append(
                    f"stage {stage.name!r}: rule {selection.rule} from {source.name!r} ranks "
                    "only anchors with roles, which a screen does not have; not rehearsed"
                )
                continue
            at = max(source.budgets) if selection.at == "longest" else int(selection.at)
            rows = [
                i
                for i, run in enumerate(plan.runs)
                if run.stage == source.name and run.budget_s == at
            ]
            conditions = sorted({plan.runs[i].condition_id for i in rows})
            index = {cid: j for j, cid in enumerate(conditions)}
            membership = np.zeros((len(conditions), len(rows)))
            for column, i in enumerate(rows):
                membership[index[plan.runs[i].condition_id], column] = 1.0
            levels = {plan.runs[i].condition_id: plan.runs[i].levels for i in rows}
            truth = np.array([model.mean(levels[cid], at) for cid in conditions])
            lower_first = minimize != (selection.rule == "worst")
            target = truth.min() if lower_first else truth.max()
            optimum = tuple(
                c for c, v in zip(conditions, truth, strict=True) if abs(v - target) < 1e-12
            )
            role = selection.role or selection.rule
            picks.append(
                _Pick(
                    stage.name,
                    selection.rule,
                    role,
                    source.name,
                    at,
                    tuple(conditions),
                    membership,
                    np.array(rows),
                    optimum,
                    lower_first,
                )
            )
    return picks, notes


def _chosen(pick: _Pick, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each replicate's first pick (an index into `pick.conditions`) and whether it has one,
    ranked as `ranking.select_anchors` ranks.

    Best and bridge (`rank_conditions`): a condition that lost runs ranks behind every
    condition with a smaller failure share, then by mean; worst: by mean alone, failures do
    not enter. A condition with no run left is not ranked. Raw means stand in for the
    seed-adjusted ones the ranking takes once a condition lost a run: between conditions that
    kept every seed the two agree (the seed shifts cancel), and the failure order puts those
    first.
    """
    y = values[pick.rows]
    present = ~np.isnan(y)
    sums = pick.membership @ np.where(present, y, 0.0)
    counts = pick.membership @ present
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    ranked = counts > 0
    if pick.rule != "worst":
        share = 1.0 - counts / pick.membership.sum(axis=1)[:, None]
        ranked &= share == np.where(ranked, share, np.inf).min(axis=0)
    worst_possible = np.inf if pick.lower_first else -np.inf
    means = np.where(ranked, means, worst_possible)
    # argmin/argmax take the first of ties, and conditions are sorted by id: the ranking's
    # tie-break. "worst" ranks ascending and reads from the end.
    chosen = np.argmin(means, axis=0) if pick.lower_first else np.argmax(means, axis=0)
    return chosen, ranked.any(axis=0)


def _tally_pick(pick: _Pick, values: np.ndarray) -> tuple[int, int]:
    """(replicates with a pick, replicates whose pick is an optimum) for a chunk."""
    chosen, usable = _chosen(pick, values)
    optimum = np.array([cid in pick.optimum for cid in pick.conditions])
    return int(usable.sum()), int((optimum[chosen] & usable).sum())


# --- the study -------------------------------------------------------------------------------


def power_study(
    spec: StudySpec,
    model: synthetic.ResponseModel,
    replicates: int,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> PowerReport:
    """Repeat the study's fixed-design stages `replicates` times and tally what each finds.

    `progress` is called with the number of replicates finished after every chunk.
    """
    if replicates < 1:
        raise ValueError(f"replicates must be at least 1 (got {replicates})")
    plan = rehearsal(spec, model)
    families = _families(spec, plan)
    truths = [
        np.array([model.effect_at(term, family.budget_s) for term in family.reported])
        for family in families
    ]
    tallies = [_Tally.empty(len(family.reported)) for family in families]
    groups: dict[tuple[str, int, int], list[int]] = {}
    for i, family in enumerate(families):
        groups.setdefault(family.q_group, []).append(i)
    picks, notes = _picks(spec, plan, model)
    pick_counts = np.zeros((len(picks), 2), dtype=int)
    if not families:
        notes.append("the study has no screen or follow-up stage: no effects to rehearse")
    for start in range(0, replicates, CHUNK):
        chunk = range(start, min(start + CHUNK, replicates))
        values, diverged = draw(plan, model, seed, chunk)
        fits = [_fit_chunk(family, values, diverged) for family in families]
        for members in groups.values():
            _tally(
                [families[i] for i in members],
                [fits[i] for i in members],
                [truths[i] for i in members],
                [tallies[i] for i in members],
            )
        for i, pick in enumerate(picks):
            pick_counts[i] += _tally_pick(pick, values)
        if progress is not None:
            progress(chunk.stop)
    terms = [
        _term_power(family, j, truth[j], tally)
        for family, truth, tally in zip(families, truths, tallies, strict=True)
        for j in range(len(family.reported))
    ]
    anchors = [
        AnchorMatch(
            stage=pick.stage,
            rule=pick.rule,
            role=pick.role,
            source=pick.source,
            at_s=pick.at_s,
            optimum=pick.optimum,
            replicates=int(usable),
            match=float(matched / usable) if usable else math.nan,
        )
        for pick, (usable, matched) in zip(picks, pick_counts, strict=True)
    ]
    return PowerReport(
        replicates=replicates,
        seed=seed,
        fdr=FDR,
        terms=tuple(terms),
        anchors=tuple(anchors),
        notes=tuple(notes),
    )


def _term_power(family: _Family, j: int, truth: float, tally: _Tally) -> TermPower:
    fitted = int(tally.fitted[j])

    def rate(count: float) -> float:
        return float(count / fitted) if fitted else math.nan

    return TermPower(
        stage=family.stage,
        term=family.reported[j],
        budget_s=family.budget_s,
        pool=family.pool,
        planted=float(truth),
        fitted=fitted,
        power=rate(tally.detected[j]),
        sign_errors=rate(tally.wrong_sign[j]) if truth != 0 else None,
        coverage=rate(tally.covered[j]),
        mean_estimate=rate(tally.estimate_sum[j]) if fitted else None,
    )
