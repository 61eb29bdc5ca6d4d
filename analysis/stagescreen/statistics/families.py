"""Effects of two-level factors on a response, the way the paper reads its screens (4.4).

Effects are high-minus-low contrasts under -1/+1 coding, so an effect is 2*beta of an OLS fit.
One *family* is one model fit: by default one per budget (`by`), with an optional block
(seed) fixed effect, Wald intervals on the residual df, two-sided p-values and
Benjamini-Hochberg q-values within the family (or across all families on request).

The table reaches the fit through `statistics.coding`, which codes the factors, refuses
aliased models and builds the one design matrix whose rows each family fits; this module only
fits and judges. Departures from a bare `smf.ols(...)` call, each for a reason a user meets in
practice:
- failed or missing runs are excluded and listed; a family that lost the runs an effect needs
  reports that effect as null with the reason rather than a pseudo-inverse artefact;
- saturated designs (no residual df) report effects without intervals, or with Lenth's
  pseudo standard error when asked (Lenth 1989, Technometrics 31:469-473), judged against
  its null distribution simulated for the number of effects (Ye and Hamada 2000, J. Quality
  Technology 32:57-66) rather than Lenth's t on m/3 df, which is conservative;
- effects fitted per pool are judged per factor: Simes' combination of a factor's p over the
  pools, then BH over the factors (`q_across`).

The relaxation table (5.1) reads families, so it lives here too. The result records are
pydantic models: what `stagescreen effects --json` prints and what outcome.json holds is their
dump, and an outcome read back validates into the same records.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from pydantic import BaseModel, ConfigDict, Field
from statsmodels.stats.multitest import multipletests

from stagescreen.statistics.coding import (
    TOL,
    DesignLike,
    EffectsError,
    Prepared,
    estimability,
    missing_runs,
    model_terms,
    prepare,
    require_columns,
    row_labels,
)
from stagescreen.storage.jsonvalues import JsonFloat, Scalar, json_number, json_ready

# --- result records ----------------------------------------------------------------------


class Record(BaseModel):
    """A result record: frozen, unknown keys of newer writers ignored on read."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Effect(Record):
    """One high-minus-low effect; None where it cannot be computed (`reason` says why).

    Written as exactly term, effect, ci_low, ci_high, p, q: `se` and `reason` serve the
    analysis and the command line, not the stored record."""

    term: str
    effect: JsonFloat
    se: JsonFloat = Field(default=None, exclude=True)
    ci_low: JsonFloat = None
    ci_high: JsonFloat = None
    p: JsonFloat = None
    q: JsonFloat = None
    reason: str | None = Field(default=None, exclude=True)


class ExcludedRun(BaseModel):
    """A row of the input left out of the fit: its row label (position, unless the table's
    index labels rows by integers such as file lines), why, and its labels (run_id,
    condition_id, seed, budget_s: those the table has) as further keys."""

    model_config = ConfigDict(frozen=True, extra="allow")

    row: int
    reason: str

    @property
    def labels(self) -> dict[str, Scalar]:
        return dict(self.model_extra or {})


class LenthMargin(Record):
    """Lenth's pseudo standard error and margins of error for an unreplicated design: ME and
    SME are PSE times the critical values of `lenth_reference`. (Outcomes written before
    the simulated reference also carry the t distribution's df, ignored on read.)"""

    pse: float
    me: float
    sme: float


class Family(Record):
    """One fitted model: the effects of one `by` group and what was left out of it.

    `missing` names expected runs with no usable row (condition ids, with the block level
    when a block is fitted); `excluded` lists the rows dropped for a failed status or a
    missing value. `q_scope` is "family", "combined" (BH across every family of the call) or
    "Simes over pool, BH over terms" (each term's p combined over the families that differ
    only in pool, then BH over the terms: q is the term's, the same on every pool). `lenth`
    is written only for a family judged by Lenth's margin.
    """

    by: dict[str, Scalar]
    n: int
    df_resid: int | None
    effects: tuple[Effect, ...]
    missing: tuple[str, ...] = ()
    excluded: tuple[ExcludedRun, ...] = ()
    notes: tuple[str, ...] = ()
    q_scope: str = "family"
    lenth: LenthMargin | None = Field(default=None, exclude_if=lambda margin: margin is None)

    def effect(self, term: str) -> Effect:
        """The effect named `term` (e.g. "A" or "A:B")."""
        for effect in self.effects:
            if effect.term == term:
                return effect
        raise KeyError(f"no term {term!r} in this family; terms: {[e.term for e in self.effects]}")

    @property
    def budget(self) -> Scalar:
        """The budget the family was fitted at: effects name it budget_s, pooled fits the
        column they were given (budget)."""
        return self.by.get("budget_s", self.by.get("budget"))


class EffectFamilies(Record):
    """The `stagescreen effects --json` document, and an outcome's effects and interactions."""

    families: tuple[Family, ...] = ()


class Relaxation(BaseModel):
    """One term's effect at one budget and its ratio to the effect at the shortest budget;
    the family's other grouping values (e.g. pool) are further keys (`group`)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    term: str
    budget: Scalar
    effect: JsonFloat
    ratio: JsonFloat
    reason: str | None = None

    @property
    def group(self) -> dict[str, Scalar]:
        return dict(self.model_extra or {})


# --- multiplicity -------------------------------------------------------------------------


def benjamini_hochberg(pvalues: Iterable[float | None]) -> np.ndarray:
    """Benjamini-Hochberg (1995) step-up q-values (statsmodels' fdr_bh), in the order the
    p-values came: q_(i) = min over j >= i of m * p_(j) / j, capped at 1. Missing
    p-values (None or NaN) stay NaN and do not count towards m: an effect that could not be
    tested is not a hypothesis of the family.
    """
    p = np.array([np.nan if value is None else value for value in pvalues], dtype=float)
    q = np.full(p.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    if present.size == 0:
        return q
    if np.any((p[present] < 0) | (p[present] > 1)):
        raise EffectsError(f"p-values must lie in [0, 1], got {p[present].tolist()}")
    q[present] = multipletests(p[present], method="fdr_bh")[1]
    return q


def simes(pvalues: Iterable[float | None]) -> float | None:
    """Simes' (1986) combined p of one hypothesis tested m times: min over i of m * p_(i) / i,
    over the p-values present (None where none is). Valid for independent tests and the
    positively dependent ones BH itself assumes, such as a factor's tests on separate pools.
    """
    p = np.sort([value for value in pvalues if value is not None and not math.isnan(value)])
    if p.size == 0:
        return None
    return float(min(1.0, np.min(p * p.size / np.arange(1, p.size + 1))))


# --- Lenth's margin ----------------------------------------------------------------------


def lenth_pse(effects: np.ndarray) -> np.ndarray:
    """Lenth's pseudo standard error of each column of effects (effects along axis 0):
    s0 = 1.5 * median|c|, PSE = 1.5 * median of the |c| below 2.5 * s0 (NaN when every effect
    is zero). Columns at once, by sorting: the power simulation judges a thousand replicates
    in one call, and `lenth_reference` hundreds of thousands of null screens."""
    size = np.sort(np.abs(effects), axis=0)
    m = size.shape[0]
    s0 = 1.5 * (size[(m - 1) // 2] + size[m // 2]) / 2
    kept = np.sum(size < 2.5 * s0, axis=0)
    low = np.take_along_axis(size, np.maximum((kept - 1) // 2, 0)[None], axis=0)[0]
    high = np.take_along_axis(size, (kept // 2)[None], axis=0)[0]
    return np.where(kept > 0, 1.5 * (low + high) / 2, np.nan)


LENTH_DRAWS = 200_000
"""Null screens simulated per number of effects: the 95% critical values move by under 0.5%
(individual) and 1% (simultaneous) from one seed to another at this size."""

LENTH_SEED = 1989


def _sorted_quantile(values: np.ndarray, level: float) -> float:
    """np.quantile's linear interpolation on an array already sorted."""
    h = (values.size - 1) * level
    low = math.floor(h)
    high = min(low + 1, values.size - 1)
    return float(values[low] + (h - low) * (values[high] - values[low]))


@dataclass(frozen=True)
class LenthReference:
    """The null distribution of Lenth's t = |c| / PSE for `effects` effects, simulated:
    `t` pools every effect of every null screen (sorted), `largest` holds each screen's
    largest t (sorted), for the simultaneous margin."""

    effects: int
    t: np.ndarray
    largest: np.ndarray

    def p(self, t: np.ndarray | float) -> np.ndarray:
        """Tail probability P(T >= t) with the +1 of a Monte Carlo p-value, so no p is 0;
        NaN where t is NaN. T has atoms (the effect at the median of an odd count is always
        at t = 2/3), so a t within 1e-9 of a simulated one counts as reaching it: rounding in
        the last digit does not move p."""
        t = np.asarray(t, dtype=float)
        above = self.t.size - np.searchsorted(self.t, t * (1 - 1e-9), side="left")
        return np.where(np.isnan(t), np.nan, (1 + above) / (1 + self.t.size))

    def critical(self, level: float) -> float:
        """The t that a null effect exceeds with probability 1 - level."""
        return _sorted_quantile(self.t, level)

    def simultaneous(self, level: float) -> float:
        """The t that the largest of the null screen's effects exceeds with probability
        1 - level."""
        return _sorted_quantile(self.largest, level)


@functools.cache
def lenth_reference(effects: int) -> LenthReference:
    """Lenth's t under the null for `effects` effects, from `LENTH_DRAWS` screens of iid
    N(0, 1) contrasts (t does not depend on their scale). Deterministic (seeded by the number
    of effects) and computed once per number of effects: 0.1-0.3 s and 12-24 MB held for 7 to
    15 effects, 1.3 s and 98 MB for 63 (bench/lenth_reference.py)."""
    if effects < 2:
        raise EffectsError("Lenth's method needs at least two effects")
    rng = np.random.default_rng([LENTH_SEED, effects])
    contrasts = rng.standard_normal((effects, LENTH_DRAWS))
    t = np.abs(contrasts) / lenth_pse(contrasts)
    pooled, largest = np.sort(t, axis=None), np.sort(t.max(axis=0))
    pooled.flags.writeable = largest.flags.writeable = False
    return LenthReference(effects=effects, t=pooled, largest=largest)


def lenth_margin(effects: Sequence[float], level: float = 0.95) -> LenthMargin:
    """Lenth's (1989) pseudo standard error with its margin (ME) and simultaneous margin (SME).

    s0 = 1.5 * median|c|; PSE = 1.5 * median of the |c| below 2.5 * s0; ME is PSE times the
    t that a null effect exceeds with probability 1 - level, SME the t that the largest of
    the m null effects exceeds with that probability, both from `lenth_reference(m)`.
    """
    absolute = np.abs(np.asarray(effects, dtype=float))
    m = absolute.size
    if m < 2:
        raise EffectsError("Lenth's method needs at least two effects")
    pse = float(lenth_pse(absolute))
    reference = lenth_reference(m)
    return LenthMargin(
        pse=pse,
        me=reference.critical(level) * pse,
        sme=reference.simultaneous(level) * pse,
    )


# --- per-family fit ------------------------------------------------------------------------


def _fit_family(
    prepared: Prepared,
    rows: pd.Index,
    terms: Sequence[str],
    lenth: bool,
    level: float,
) -> tuple[int, int | None, list[Effect], LenthMargin | None, list[str]]:
    frame = prepared.frame.loc[rows]
    keep = (frame["_reason"] == "").to_numpy()
    positions = prepared.frame.index.get_indexer(rows)[keep]
    n = int(keep.sum())
    notes: list[str] = []
    if n == 0:
        reason = "no usable runs in this family"
        return (
            0,
            None,
            [Effect(term=term, effect=None, reason=reason) for term in terms],
            None,
            [reason],
        )
    x = prepared.exog[positions]
    y = prepared.frame["y"].to_numpy()[positions]
    nonzero = np.flatnonzero(np.linalg.norm(x, axis=0) > TOL)
    nonzero = np.union1d(nonzero, list(prepared.term_columns.values()))
    x = x[:, nonzero]
    names = [prepared.exog_names[i] for i in nonzero]
    local = {
        term: int(np.searchsorted(nonzero, col)) for term, col in prepared.term_columns.items()
    }
    readable = dict(zip(prepared.exog_names, prepared.exog_names, strict=True))
    for term, col in prepared.term_columns.items():
        readable[prepared.exog_names[col]] = term
    if any(name.startswith("C(block)") for name in names):
        readable.update({name: "block" for name in names if name.startswith("C(block)")})
    blocked = {term: estimability(x, local[term], [readable[n] for n in names]) for term in terms}
    rank = int(np.linalg.matrix_rank(x))
    df_resid = n - rank
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # rank deficiency and zero residual df are reported per effect below
        warnings.simplefilter("ignore")
        fit = sm.OLS(y, x).fit(method="pinv")
        if df_resid > 0:
            bse, pvalues = np.asarray(fit.bse), np.asarray(fit.pvalues)
            interval = np.asarray(fit.conf_int(alpha=1 - level))
    effects: list[Effect] = []
    for term in terms:
        if blocked[term] is not None:
            reason = f"{term} cannot be estimated: {blocked[term]}"
            notes.append(reason)
            effects.append(Effect(term=term, effect=None, reason=reason))
            continue
        j = local[term]
        estimate = 2 * float(fit.params[j])
        if df_resid > 0:
            # Wald interval and p of beta from the fit, doubled onto the effect scale
            se = 2 * float(bse[j])
            low, high = 2 * interval[j]
            p = float(pvalues[j]) if se > 0 else None
            effects.append(Effect(term=term, effect=estimate, se=se, ci_low=low, ci_high=high, p=p))
        else:
            effects.append(
                Effect(term=term, effect=estimate, reason="no residual df (saturated design)")
            )
    margin = None
    if df_resid == 0:
        estimable = [e for e in effects if e.effect is not None]
        if lenth and len(estimable) >= 2:
            margin = lenth_margin([e.effect for e in estimable if e.effect is not None], level)
            notes.append(
                f"no residual df: intervals and p use Lenth's PSE={margin.pse:.4g} against "
                f"its null distribution for {len(estimable)} effects ({LENTH_DRAWS:,} "
                f"simulated null screens; ME={margin.me:.4g}, SME={margin.sme:.4g})"
            )
            reference = lenth_reference(len(estimable))
            effects = [_with_lenth(e, margin, reference) for e in effects]
        else:
            notes.append(
                "no residual df (saturated design): no intervals; for Lenth's pseudo standard "
                "error ask for --lenth (lenth=True)"
            )
    elif lenth:
        notes.append("residual df available: Wald intervals used, Lenth's method not needed")
    return n, df_resid, effects, margin, notes


def _with_lenth(effect: Effect, margin: LenthMargin, reference: LenthReference) -> Effect:
    if effect.effect is None:
        return effect
    t = abs(effect.effect) / margin.pse if margin.pse > 0 else math.inf
    return effect.model_copy(
        update={
            "se": margin.pse,
            "ci_low": effect.effect - margin.me,
            "ci_high": effect.effect + margin.me,
            "p": float(reference.p(t)),
            "reason": None,
        }
    )


def _with_q(effects: Sequence[Effect]) -> tuple[Effect, ...]:
    q = benjamini_hochberg([e.p for e in effects])
    return tuple(
        e.model_copy(update={"q": json_number(value)}) for e, value in zip(effects, q, strict=True)
    )


def fit_effects(
    data: pd.DataFrame,
    response: str,
    factors: Sequence[str],
    *,
    by: Sequence[str] | str = (),
    block: str | None = None,
    order: int = 1,
    terms: Sequence[str] = (),
    design: DesignLike | None = None,
    lenth: bool = False,
    combined_fdr: bool = False,
    q_across: Sequence[str] = (),
    level: float = 0.95,
) -> list[Family]:
    """Effects per `by` group from `response ~ main effects [+ interactions] [+ C(block)]`.

    `order=2` adds every two-factor interaction, `terms` adds chosen ones ("A:B"); a model
    with aliased terms is refused (`EffectsError` naming both). Each family reports
    effect = 2*beta, a Wald interval at `level` on the residual df, a two-sided p and a BH q
    within the family or across all families with `combined_fdr`. With `q_across` (a stage
    run on several pools: ["pool"]) the families that differ only in those `by` columns are
    judged per term: the term's p-values over them are combined by Simes, BH runs over the
    terms, and every family reports the term's q (a factor retained on any pool is one claim
    per factor, not one per pool). Rows whose `status` is not
    "succeeded" or whose response, factor, block or `by` value is missing are excluded and
    listed; expected runs absent from a family (from `design`, else the table's
    `condition_id` values, per block level) are listed in `missing`. Effects the remaining
    runs cannot separate come back as None with the reason.
    """
    by_columns = [by] if isinstance(by, str) else list(by)
    require_columns(data, by_columns, "by")
    # An excluded run is named by the table's own integer row label (a CSV reader may label
    # rows by file line), else by its position.
    labels = (
        list(data.index)
        if pd.api.types.is_integer_dtype(data.index) and data.index.is_unique
        else list(range(len(data)))
    )
    data = data.reset_index(drop=True)
    model = model_terms(factors, order, terms)
    prepared = prepare(data, response, factors, model, block, design)
    extra_missing = data[by_columns].isna().any(axis=1)
    if extra_missing.any():
        prepared.frame.loc[extra_missing & (prepared.frame["_reason"] == ""), "_reason"] = (
            "by value is missing"
        )
    all_conditions = (
        sorted(data["condition_id"].dropna().astype(str).unique().tolist())
        if "condition_id" in data.columns
        else []
    )
    groups: list[tuple[dict[str, Scalar], pd.Index]]
    if by_columns:
        groups = [
            ({c: json_ready(v) for c, v in zip(by_columns, key, strict=True)}, group.index)
            for key, group in data.groupby(by_columns, sort=True, dropna=True)
        ]
    else:
        groups = [({}, data.index)]
    families: list[Family] = []
    for key, index in groups:
        rows = data.loc[index]
        reasons = prepared.frame.loc[index, "_reason"]
        excluded = tuple(
            ExcludedRun(row=int(labels[i]), reason=str(reasons[i]), **row_labels(rows.loc[i]))
            for i in index
            if reasons[i] != ""
        )
        n, df_resid, effects, margin, notes = _fit_family(prepared, index, model, lenth, level)
        usable = rows[reasons == ""]
        missing = missing_runs(
            rows, usable, prepared.coded.loc[usable.index], block, design, all_conditions
        )
        families.append(
            Family(
                by=key,
                n=n,
                df_resid=df_resid,
                effects=_with_q(effects),
                missing=missing,
                excluded=excluded,
                notes=prepared.notes + tuple(notes),
                lenth=margin,
            )
        )
    unknown = [column for column in q_across if column not in by_columns]
    if unknown:
        raise EffectsError(f"q_across {unknown} must be among the by columns {by_columns}")
    if combined_fdr:
        return _combine_q(families)
    if q_across:
        keep = [column for column in by_columns if column not in q_across]
        return _simes_q(families, keep, f"Simes over {', '.join(q_across)}, BH over terms")
    return families


def _combine_q(families: Sequence[Family]) -> list[Family]:
    """Replace each q by the BH q across every effect of every family."""
    q = iter(benjamini_hochberg([effect.p for family in families for effect in family.effects]))
    return [
        family.model_copy(
            update={
                "effects": tuple(
                    effect.model_copy(update={"q": json_number(next(q))})
                    for effect in family.effects
                ),
                "q_scope": "combined",
            }
        )
        for family in families
    ]


def _simes_q(families: Sequence[Family], keep: Sequence[str], scope: str) -> list[Family]:
    """Replace each q by its term's: Simes' combination of the term's p over the families
    sharing `keep` values, then BH over the terms. An effect without a p keeps no q."""
    groups: dict[tuple[Scalar, ...], list[int]] = {}
    for i, family in enumerate(families):
        groups.setdefault(tuple(family.by[k] for k in keep), []).append(i)
    out = list(families)
    for members in groups.values():
        pvalues: dict[str, list[float | None]] = {}
        for i in members:
            for effect in families[i].effects:
                pvalues.setdefault(effect.term, []).append(effect.p)
        combined = benjamini_hochberg(simes(p) for p in pvalues.values())
        q = dict(zip(pvalues, combined, strict=True))
        for i in members:
            effects = tuple(
                effect.model_copy(
                    update={"q": None if effect.p is None else json_number(q[effect.term])}
                )
                for effect in families[i].effects
            )
            out[i] = families[i].model_copy(update={"effects": effects, "q_scope": scope})
    return out


def _ratio(effect: Effect, base: Effect | None) -> tuple[float | None, str | None]:
    """An effect over its reference, or None with why the reference cannot anchor a ratio."""
    if base is None or base.effect is None:
        return None, "no estimate at the reference budget"
    if base.ci_low is None or base.ci_high is None:
        return None, "no interval at the reference budget"
    if base.ci_low <= 0 <= base.ci_high:
        return None, "does not hold at the reference budget (interval includes zero)"
    if effect.effect is None:
        return None, "no estimate at this budget"
    return effect.effect / base.effect, None


def _ordered(value: Scalar) -> tuple[bool, float, str]:
    """A grouping value's place in order: numbers by size, then text."""
    if isinstance(value, int | float):
        return False, float(value), ""
    return True, 0.0, str(value)


def relaxation_table(families: Sequence[Family], budget: str = "budget") -> list[Relaxation]:
    """How each effect relaxes with budget: effect_b / effect at the shortest budget.

    Families are grouped by their other `by` keys (e.g. pool), so each group has its own
    shortest budget. A ratio is given only for effects that hold at that reference budget
    (interval excludes zero): the ratio of noise to noise says nothing about relaxation, and
    dividing by an estimate near zero makes arbitrary numbers. `reason` says why a ratio is
    missing.
    """
    missing = [f.by for f in families if budget not in f.by]
    if missing:
        raise EffectsError(f"families without a {budget!r} key: {missing}")
    groups: dict[tuple, list[Family]] = {}
    for family in families:
        rest = tuple(sorted((k, v) for k, v in family.by.items() if k != budget))
        groups.setdefault(rest, []).append(family)
    rows = []
    for rest, members in groups.items():
        members = sorted(members, key=lambda f: _ordered(f.by[budget]))
        reference = {e.term: e for e in members[0].effects}
        for family in members:
            for effect in family.effects:
                ratio, reason = _ratio(effect, reference.get(effect.term))
                rows.append(
                    Relaxation(
                        term=effect.term,
                        budget=family.by[budget],
                        effect=effect.effect,
                        ratio=ratio,
                        reason=reason,
                        **dict(rest),
                    )
                )
    return rows
