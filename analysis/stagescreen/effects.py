"""Effects of two-level factors on a response, the way the paper reads its screens (4.4).

Effects are high-minus-low contrasts under -1/+1 coding, so an effect is 2*beta of an OLS fit.
One *family* is one model fit: by default one per budget (`by`), with an optional block
(seed) fixed effect, Wald intervals on the residual df, two-sided p-values and
Benjamini-Hochberg q-values within the family (or across all families on request).

Departures from a bare `smf.ols(...)` call, each for a reason a user meets in practice:
- columns are renamed into a clean formula namespace (`y`, `x0`, `x1`, `block`), so a factor
  named `C` cannot shadow patsy's `C()`, and names with spaces just work;
- the design matrix is built once for the whole table and each family fits its own rows, which
  keeps hundreds of families fast;
- failed or missing runs are excluded and listed; a family that lost the runs an effect needs
  reports that effect as null with the reason rather than a pseudo-inverse artefact;
- a model asking for two aliased terms (identical or opposite columns in the design) is
  refused with both names, because its estimates would silently be sums of effects;
- saturated designs (no residual df) report effects without intervals, or with Lenth's
  pseudo standard error when asked (Lenth 1989, Technometrics 31:469-473).

The confirmation-stage summaries of the paper live here too: the pooled model with budget
interactions (5.3), Type-II ANOVA eta^2 shares (5.7), condition means with Student-t
intervals, cross-seed win counts (4.4) and the relaxation table (5.1).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from stagescreen.jsonvalues import json_number
from stagescreen_contract.status import reads_succeeded

_TOL = 1e-9


class EffectsError(ValueError):
    """The table or the requested model cannot be analysed as asked; the message says why."""


class DesignLike(Protocol):
    """What the effects need from a `stagescreen.design.Design`: its runs and their ids."""

    @property
    def factors(self) -> tuple[str, ...]: ...
    @property
    def matrix(self) -> np.ndarray: ...
    @property
    def condition_ids(self) -> tuple[str, ...]: ...


# --- result records ----------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """numpy scalars to Python scalars, so `by` keys and labels serialise as JSON."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class Effect:
    """One high-minus-low effect; None where it cannot be computed (`reason` says why)."""

    term: str
    effect: float | None
    se: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p: float | None = None
    q: float | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The `--json` shape: exactly term, effect, ci_low, ci_high, p, q."""
        return {
            "term": self.term,
            "effect": json_number(self.effect),
            "ci_low": json_number(self.ci_low),
            "ci_high": json_number(self.ci_high),
            "p": json_number(self.p),
            "q": json_number(self.q),
        }


@dataclass(frozen=True)
class ExcludedRun:
    """A row of the input left out of the fit: its row label (position, unless the table's
    index labels rows by integers such as file lines), its labels and why."""

    row: int
    reason: str
    labels: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, **self.labels, "reason": self.reason}


@dataclass(frozen=True)
class LenthMargin:
    """Lenth's pseudo standard error and margins of error for an unreplicated design."""

    pse: float
    df: float
    me: float
    sme: float

    def to_dict(self) -> dict[str, Any]:
        return {"pse": self.pse, "df": self.df, "me": self.me, "sme": self.sme}


@dataclass(frozen=True)
class Family:
    """One fitted model: the effects of one `by` group and what was left out of it.

    `missing` names expected runs with no usable row (condition ids, with the block level
    when a block is fitted); `excluded` lists the rows dropped for a failed status or a
    missing value. `q_scope` is "family", "combined" (BH across every family of the call) or
    "across pool" (BH across the families that differ only in pool).
    """

    by: dict[str, Any]
    n: int
    df_resid: int | None
    effects: tuple[Effect, ...]
    missing: tuple[str, ...] = ()
    excluded: tuple[ExcludedRun, ...] = ()
    notes: tuple[str, ...] = ()
    lenth: LenthMargin | None = None
    q_scope: str = "family"

    def effect(self, term: str) -> Effect:
        """The effect named `term` (e.g. "A" or "A:B")."""
        for effect in self.effects:
            if effect.term == term:
                return effect
        raise KeyError(f"no term {term!r} in this family; terms: {[e.term for e in self.effects]}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "by": {key: _plain(value) for key, value in self.by.items()},
            "n": self.n,
            "df_resid": self.df_resid,
            "effects": [effect.to_dict() for effect in self.effects],
            "missing": list(self.missing),
            "excluded": [run.to_dict() for run in self.excluded],
            "notes": list(self.notes),
            "q_scope": self.q_scope,
        }
        if self.lenth is not None:
            out["lenth"] = self.lenth.to_dict()
        return out


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


# --- coding and terms ----------------------------------------------------------------------


def code_factor(values: pd.Series, name: str) -> tuple[pd.Series, str | None]:
    """Coded levels of one factor column, and a note when the values had to be recoded.

    Numeric columns with exactly two distinct values are mapped low -> -1, high -> +1 (so a
    column of real hyperparameters such as 6/8 works as it is). Columns already within
    [-1, +1] (e.g. -1/0/+1 with centre points) are used as they are; any other numeric column
    is rescaled linearly so its minimum is -1 and its maximum +1. Non-numeric columns are
    refused: their order of levels is not knowable.
    """
    if not pd.api.types.is_numeric_dtype(values):
        examples = ", ".join(repr(v) for v in values.dropna().unique()[:4].tolist())
        raise EffectsError(
            f"factor column {name!r} is not numeric (values such as {examples}); give coded "
            "levels -1/+1 or two numeric levels (low, high)"
        )
    numeric = values.astype(float)
    distinct = np.sort(numeric.dropna().unique())
    if distinct.size == 0:
        raise EffectsError(f"factor column {name!r} has no values")
    if distinct.size == 2:
        low, high = distinct
        if (low, high) == (-1.0, 1.0):
            return numeric, None
        coded = numeric.map({low: -1.0, high: 1.0})
        return coded, f"{name}: coded {low:g} -> -1, {high:g} -> +1"
    low, high = distinct[0], distinct[-1]
    if low >= -1 and high <= 1:
        return numeric, None
    centre, half = (high + low) / 2, (high - low) / 2
    return (numeric - centre) / half, f"{name}: rescaled linearly, {low:g} -> -1, {high:g} -> +1"


def model_terms(factors: Sequence[str], order: int = 1, terms: Sequence[str] = ()) -> list[str]:
    """Main effects, every interaction up to `order`, then the extra `terms` ("A:B").

    Interaction names list their factors in the order of `factors`, so "B:A" becomes "A:B".
    """
    out: list[str] = []
    for size in range(1, max(order, 1) + 1):
        out += [":".join(combo) for combo in itertools.combinations(factors, size)]
    for term in terms:
        parts = term.split(":")
        unknown = [part for part in parts if part not in factors]
        if unknown or len(set(parts)) != len(parts):
            raise EffectsError(
                f"term {term!r} must join distinct factors with ':'; factors: {list(factors)}"
            )
        canonical = ":".join(sorted(parts, key=list(factors).index))
        if canonical not in out:
            out.append(canonical)
    return out


def _term_columns(coded: pd.DataFrame | np.ndarray, terms: Sequence[str], factors: Sequence[str]):
    """The model matrix of `terms` (products of coded factor columns), one column per term."""
    array = np.asarray(coded, dtype=float)
    index = {factor: i for i, factor in enumerate(factors)}
    return np.column_stack(
        [np.prod(array[:, [index[part] for part in term.split(":")]], axis=1) for term in terms]
    )


def check_aliasing(matrix: np.ndarray, terms: Sequence[str], factors: Sequence[str]) -> None:
    """Refuse a model whose terms are aliased in the design `matrix` (runs x factors).

    Two terms are aliased when their columns are identical or opposite over the design's
    runs; a term whose column is constant is aliased with the intercept. Only terms in the
    model matter: in a 2^(5-1) with E=ABCD, A:B is fine unless C:D:E is fitted too.
    """
    columns = _term_columns(matrix, terms, factors)
    problems: list[str] = []
    for i, term in enumerate(terms):
        if np.ptp(columns[:, i]) < _TOL:
            problems.append(f"{term} does not vary in the design (aliased with the intercept)")
    for i, j in itertools.combinations(range(len(terms)), 2):
        a, b = columns[:, i], columns[:, j]
        if np.ptp(a) < _TOL:
            continue
        if np.allclose(a, b):
            problems.append(f"{terms[i]} is aliased with {terms[j]} (identical columns)")
        elif np.allclose(a, -b):
            problems.append(f"{terms[i]} is aliased with -{terms[j]} (opposite columns)")
    if problems:
        raise EffectsError(
            "aliased terms in the model: "
            + "; ".join(problems)
            + ". Fit at most one term of each alias chain: name the terms (terms=[...] or --terms)."
        )


# --- rows: what is usable, what is missing ------------------------------------------------


def _require_columns(data: pd.DataFrame, columns: Iterable[str], role: str) -> None:
    for column in columns:
        if column not in data.columns:
            raise EffectsError(
                f"{role} column {column!r} is not in the table; columns: {list(data.columns)}"
            )


def _exclusion_reasons(data: pd.DataFrame, response: str, required: Sequence[str]) -> pd.Series:
    """Per row, why it cannot enter a fit ("" when it can): failed status or missing values."""
    reasons = pd.Series("", index=data.index, dtype=object)
    if "status" in data.columns:
        bad = ~data["status"].map(reads_succeeded).astype(bool)
        reasons[bad] = "status=" + data.loc[bad, "status"].astype(str)
        reasons[bad & data["status"].isna()] = "status is missing"
    for column in (response, *required):
        gap = data[column].isna() & (reasons == "")
        reasons[gap] = f"{column} is missing"
    return reasons


def _labels(row: pd.Series) -> dict[str, Any]:
    return {
        key: _plain(row[key])
        for key in ("run_id", "condition_id", "seed", "budget_s")
        if key in row.index and pd.notna(row[key])
    }


def _require_numeric_response(data: pd.DataFrame, response: str) -> None:
    """Refuse a response column holding text, naming the entries that are not numbers."""
    values = data[response]
    if pd.api.types.is_numeric_dtype(values):
        return
    present = values.dropna()
    bad = present[pd.to_numeric(present, errors="coerce").isna()]
    examples = ", ".join(f"row {i}: {v!r}" for i, v in bad.head(4).items())
    raise EffectsError(
        f"response column {response!r} is not numeric ({examples or f'dtype {values.dtype}'}); "
        "give numbers, and leave a value empty (or mark the run's status failed) when a run "
        "has none"
    )


def _usable(data: pd.DataFrame, response: str, required: Sequence[str] = ()) -> pd.DataFrame:
    """The rows that can enter a fit, with the response checked to be numeric."""
    _require_columns(data, [response, *required], "required")
    _require_numeric_response(data, response)
    return data[_exclusion_reasons(data, response, required) == ""]


# --- per-family fit ------------------------------------------------------------------------


def _estimability(x: np.ndarray, column: int, names: Sequence[str]) -> str | None:
    """None when coefficient `column` is estimable from `x`, else which columns confound it."""
    target = x[:, column]
    others = np.delete(x, column, axis=1)
    if np.linalg.norm(target) < _TOL:
        return "no run present has it at a non-zero level"
    if others.shape[1]:
        coef, *_ = np.linalg.lstsq(others, target, rcond=None)
        residual = target - others @ coef
    else:
        coef, residual = np.zeros(0), target
    if np.linalg.norm(residual) > 1e-7 * np.linalg.norm(target):
        return None
    rest = [name for k, name in enumerate(names) if k != column]
    partners = list(
        dict.fromkeys(
            rest[i] for i in np.flatnonzero(np.abs(coef) > 1e-7) if rest[i] != "intercept"
        )
    )
    if not partners:
        return "it does not vary among the runs present"
    return "it is confounded with " + ", ".join(partners) + " among the runs present"


def lenth_pse(effects: np.ndarray) -> np.ndarray:
    """Lenth's pseudo standard error of each column of effects (effects along axis 0):
    s0 = 1.5 * median|c|, PSE = 1.5 * median of the |c| below 2.5 * s0. Columns at once, so
    the power simulation judges a thousand replicates in one call."""
    size = np.abs(effects)
    s0 = 1.5 * np.median(size, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-zero effects: PSE is NaN
        return 1.5 * np.nanmedian(np.where(size < 2.5 * s0, size, np.nan), axis=0)


def lenth_margin(effects: Sequence[float], level: float = 0.95) -> LenthMargin:
    """Lenth's (1989) pseudo standard error with its margin (ME) and simultaneous margin (SME).

    s0 = 1.5 * median|c|; PSE = 1.5 * median of the |c| below 2.5 * s0; the margins use the
    t distribution on d = m/3 df, ME at (1+level)/2 and SME at (1 + level^(1/m))/2.
    """
    absolute = np.abs(np.asarray(effects, dtype=float))
    m = absolute.size
    if m < 2:
        raise EffectsError("Lenth's method needs at least two effects")
    pse = float(lenth_pse(absolute))
    d = m / 3
    me = float(stats.t.ppf((1 + level) / 2, d) * pse)
    sme = float(stats.t.ppf((1 + level ** (1 / m)) / 2, d) * pse)
    return LenthMargin(pse=pse, df=d, me=me, sme=sme)


@dataclass
class _Prepared:
    """The coded table and the one design matrix every family takes its rows from."""

    frame: pd.DataFrame
    coded: pd.DataFrame
    exog: np.ndarray
    exog_names: list[str]
    term_columns: dict[str, int]
    notes: tuple[str, ...]


def _prepare(
    data: pd.DataFrame,
    response: str,
    factors: Sequence[str],
    terms: Sequence[str],
    block: str | None,
    design: DesignLike | None,
) -> _Prepared:
    if not factors:
        raise EffectsError("name at least one factor")
    _require_columns(data, factors, "factor")
    _require_columns(data, [response], "response")
    if block is not None:
        _require_columns(data, [block], "block")
    _require_numeric_response(data, response)
    frame = pd.DataFrame(index=data.index)
    frame["y"] = data[response].astype(float)
    notes: list[str] = []
    internal = {factor: f"x{i}" for i, factor in enumerate(factors)}
    for factor in factors:
        coded, note = code_factor(data[factor], factor)
        frame[internal[factor]] = coded
        if note:
            notes.append(note)
    if block is not None:
        frame["block"] = data[block].astype(str).where(data[block].notna())
    if design is not None:
        unknown = [factor for factor in design.factors if factor not in factors]
        if unknown:
            raise EffectsError(f"design factors {unknown} are not among the factors {factors}")
        matrix = np.asarray(design.matrix, dtype=float)
        check_aliasing(matrix, terms, list(design.factors))
    else:
        levels = frame[[internal[f] for f in factors]].dropna().drop_duplicates().to_numpy()
        check_aliasing(levels, terms, factors)

    formula = "y ~ " + " + ".join(
        ":".join(internal[part] for part in term.split(":")) for term in terms
    )
    if block is not None:
        formula += " + C(block)"
    reasons = _exclusion_reasons(data, response, [*factors, *([block] if block else [])])
    usable = frame[reasons == ""]
    if usable.empty:
        raise EffectsError(f"no usable rows: every row has a failed status or missing {response}")
    model = smf.ols(formula, data=usable, eval_env=0)
    names = ["intercept" if name == "Intercept" else name for name in model.exog_names]
    term_columns = {
        term: names.index(":".join(internal[part] for part in term.split(":"))) for term in terms
    }
    full = np.full((len(frame), model.exog.shape[1]), np.nan)
    full[np.flatnonzero(reasons.to_numpy() == "")] = model.exog
    frame["_reason"] = reasons
    levels_frame = pd.DataFrame({f: frame[internal[f]] for f in factors}, index=frame.index)
    return _Prepared(frame, levels_frame, full, names, term_columns, tuple(notes))


def _missing_runs(
    family_rows: pd.DataFrame,
    usable_rows: pd.DataFrame,
    coded: pd.DataFrame,
    block: str | None,
    design: DesignLike | None,
    all_conditions: Sequence[str],
) -> tuple[str, ...]:
    """Expected runs with no usable row: design runs (or the table's condition ids) x block."""
    blocks = sorted(family_rows[block].dropna().unique().tolist()) if block else [None]
    if design is not None:
        present = {
            (tuple(np.round(row).astype(int)), b)
            for row, b in zip(
                coded[list(design.factors)].to_numpy(dtype=float),
                usable_rows[block] if block else [None] * len(usable_rows),
                strict=True,
            )
        }
        expected = [
            (cid, tuple(np.asarray(levels).astype(int)), b)
            for cid, levels in zip(design.condition_ids, design.matrix, strict=True)
            for b in blocks
        ]
        gaps = [(cid, b) for cid, levels, b in expected if (levels, b) not in present]
    elif all_conditions:
        present_ids = set(
            zip(
                usable_rows["condition_id"].astype(str),
                usable_rows[block] if block else [None] * len(usable_rows),
                strict=True,
            )
        )
        gaps = [(c, b) for c in all_conditions for b in blocks if (c, b) not in present_ids]
    else:
        return ()
    return tuple(cid if b is None else f"{cid}/{block}={_plain(b)}" for cid, b in gaps)


def _fit_family(
    prepared: _Prepared,
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
        return 0, None, [Effect(term, None, reason=reason) for term in terms], None, [reason]
    x = prepared.exog[positions]
    y = prepared.frame["y"].to_numpy()[positions]
    nonzero = np.flatnonzero(np.linalg.norm(x, axis=0) > _TOL)
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
    blocked = {term: _estimability(x, local[term], [readable[n] for n in names]) for term in terms}
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
            effects.append(Effect(term, None, reason=reason))
            continue
        j = local[term]
        estimate = 2 * float(fit.params[j])
        if df_resid > 0:
            # Wald interval and p of beta from the fit, doubled onto the effect scale
            se = 2 * float(bse[j])
            low, high = 2 * interval[j]
            p = float(pvalues[j]) if se > 0 else None
            effects.append(Effect(term, estimate, se, float(low), float(high), p))
        else:
            effects.append(Effect(term, estimate, reason="no residual df (saturated design)"))
    margin = None
    if df_resid == 0:
        estimable = [e for e in effects if e.effect is not None]
        if lenth and len(estimable) >= 2:
            margin = lenth_margin([e.effect for e in estimable if e.effect is not None], level)
            notes.append(
                f"no residual df: intervals and p use Lenth's PSE={margin.pse:.4g} on "
                f"d={margin.df:.3g} df (ME={margin.me:.4g}, SME={margin.sme:.4g})"
            )
            effects = [_with_lenth(e, margin) for e in effects]
        else:
            notes.append(
                "no residual df (saturated design): no intervals; for Lenth's pseudo standard "
                "error ask for --lenth (lenth=True)"
            )
    elif lenth:
        notes.append("residual df available: Wald intervals used, Lenth's method not needed")
    return n, df_resid, effects, margin, notes


def _with_lenth(effect: Effect, margin: LenthMargin) -> Effect:
    if effect.effect is None:
        return effect
    t = abs(effect.effect) / margin.pse if margin.pse > 0 else math.inf
    return replace(
        effect,
        se=margin.pse,
        ci_low=effect.effect - margin.me,
        ci_high=effect.effect + margin.me,
        p=float(2 * stats.t.sf(t, margin.df)),
        reason=None,
    )


def _with_q(effects: Sequence[Effect]) -> tuple[Effect, ...]:
    q = benjamini_hochberg([e.p for e in effects])
    return tuple(replace(e, q=json_number(value)) for e, value in zip(effects, q, strict=True))


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
    within the family, across all families with `combined_fdr`, or across the families that
    share their values of the `by` columns named in `q_across` (a stage run on several pools
    judges each budget's effects on every pool as one family). Rows whose `status` is not
    "succeeded" or whose response, factor, block or `by` value is missing are excluded and
    listed; expected runs absent from a family (from `design`, else the table's
    `condition_id` values, per block level) are listed in `missing`. Effects the remaining
    runs cannot separate come back as None with the reason.
    """
    by_columns = [by] if isinstance(by, str) else list(by)
    _require_columns(data, by_columns, "by")
    # An excluded run is named by the table's own integer row label (a CSV reader may label
    # rows by file line), else by its position.
    labels = (
        list(data.index)
        if pd.api.types.is_integer_dtype(data.index) and data.index.is_unique
        else list(range(len(data)))
    )
    data = data.reset_index(drop=True)
    model = model_terms(factors, order, terms)
    prepared = _prepare(data, response, factors, model, block, design)
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
    groups: list[tuple[dict[str, Any], pd.Index]]
    if by_columns:
        groups = [
            ({c: _plain(v) for c, v in zip(by_columns, key, strict=True)}, group.index)
            for key, group in data.groupby(by_columns, sort=True, dropna=True)
        ]
    else:
        groups = [({}, data.index)]
    families: list[Family] = []
    for key, index in groups:
        rows = data.loc[index]
        reasons = prepared.frame.loc[index, "_reason"]
        excluded = tuple(
            ExcludedRun(int(labels[i]), str(reasons[i]), _labels(rows.loc[i]))
            for i in index
            if reasons[i] != ""
        )
        n, df_resid, effects, margin, notes = _fit_family(prepared, index, model, lenth, level)
        usable = rows[reasons == ""]
        missing = _missing_runs(
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
        return _combine_q(families, (), "combined")
    if q_across:
        keep = [column for column in by_columns if column not in q_across]
        return _combine_q(families, keep, "across " + ", ".join(q_across))
    return families


def _combine_q(families: Sequence[Family], keep: Sequence[str], scope: str) -> list[Family]:
    """Replace each q by the BH q across every effect of the families sharing `keep` values."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, family in enumerate(families):
        groups.setdefault(tuple(family.by[k] for k in keep), []).append(i)
    out = list(families)
    for members in groups.values():
        flat = [effect for i in members for effect in families[i].effects]
        q = iter(benjamini_hochberg([effect.p for effect in flat]))
        for i in members:
            out[i] = replace(
                families[i],
                effects=tuple(
                    replace(effect, q=json_number(next(q))) for effect in families[i].effects
                ),
                q_scope=scope,
            )
    return out


# --- pooled model with budget interactions (paper 5.3) -------------------------------------


@dataclass(frozen=True)
class PooledBudgetFit:
    """Effects per budget from one pooled fit, and each budget's shift from the reference.

    `families` hold the effect at each budget, 2*(beta + delta_b), with intervals from the
    budget-weighted covariance; `deltas` hold, per non-reference budget, the change in each
    effect against the reference (shortest) budget, 2*delta_b, with its p-value.
    `noise_sd` is each budget's residual standard deviation, the weights' source.
    """

    reference: Any
    n: int
    df_resid: int
    families: tuple[Family, ...]
    deltas: tuple[Family, ...]
    noise_sd: dict[Any, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": _plain(self.reference),
            "n": self.n,
            "df_resid": self.df_resid,
            "noise_sd": [
                {"budget": _plain(budget), "sd": sd} for budget, sd in self.noise_sd.items()
            ],
            "families": [family.to_dict() for family in self.families],
            "deltas": [family.to_dict() for family in self.deltas],
        }


def pooled_budget_effects(
    data: pd.DataFrame,
    response: str,
    factors: Sequence[str],
    *,
    budget: str = "budget",
    order: int = 2,
    terms: Sequence[str] = (),
    block: str | None = None,
    level: float = 0.95,
) -> PooledBudgetFit:
    """The paper's pooled follow-up model (5.3) generalised to any number of budgets.

    `y ~ b_1 + ... + T + b_1:(T) + ... [+ C(block)]` where T is the main effects plus
    interactions up to `order` (plus `terms`) and b_k indicates the k-th budget above the
    shortest. Short budgets are much noisier than long ones (the paper's residual sd is 3.7x
    larger at 5 minutes than at 10), so one pooled residual variance would give intervals too
    narrow at the short budget and too wide at the long one. The fit is therefore weighted by
    budget: each budget's residual variance is estimated from an OLS fit, and the model is
    refitted by weighted least squares with those variances as known. Without a block the
    estimates and intervals at each budget equal a separate fit of that budget; the block
    (seed) is shared across budgets. Intervals use Satterthwaite's degrees of freedom from the
    budgets' residual df.
    """
    _require_columns(data, [budget], "budget")
    model_t = model_terms(factors, order, terms)
    data = data.reset_index(drop=True)
    prepared = _prepare(data, response, factors, model_t, block, None)
    frame = prepared.frame[prepared.frame["_reason"] == ""].copy()
    frame["_budget"] = data.loc[frame.index, budget]
    frame = frame[frame["_budget"].notna()]
    budgets = sorted(frame["_budget"].unique().tolist())
    if len(budgets) < 2:
        raise EffectsError(f"pooled budget model needs two budgets in {budget!r}, got {budgets}")
    reference = budgets[0]
    internal = {factor: f"x{i}" for i, factor in enumerate(factors)}
    names = {term: ":".join(internal[p] for p in term.split(":")) for term in model_t}
    body = " + ".join(names.values())
    indicators = [f"b{k}" for k in range(1, len(budgets))]
    for k, value in enumerate(budgets[1:], start=1):
        frame[f"b{k}"] = (frame["_budget"] == value).astype(float)
    formula = "y ~ " + " + ".join(indicators) + " + " + body
    formula += "".join(f" + {b}:({body})" for b in indicators)
    if block is not None:
        formula += " + C(block)"
    model = smf.ols(formula, data=frame, eval_env=0)
    x, y = np.asarray(model.exog), np.asarray(model.endog)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        # A budget that lost a corner of the design cannot separate some effects; a
        # pseudo-inverse would return confident nonsense for them, so name them instead.
        readable = {names[t]: f"{t} at {_plain(reference)}" for t in model_t}
        for k, value in enumerate(budgets[1:], start=1):
            readable[f"b{k}"] = f"budget {_plain(value)}"
            readable |= {f"b{k}:{names[t]}": f"{t} at {_plain(value)}" for t in model_t}
        labels = [
            "intercept"
            if name == "Intercept"
            else "block"
            if name.startswith("C(block)")
            else readable.get(name, name)
            for name in model.exog_names
        ]
        lost = [
            f"{labels[i]} ({reason})"
            for i, name in enumerate(model.exog_names)
            if ":" in name or name.startswith("x")
            if (reason := _estimability(x, i, labels))
        ]
        raise EffectsError(
            "pooled budget model: the runs left cannot separate "
            + "; ".join(lost or ["every effect"])
            + "; the per-budget effects report what each budget can estimate"
        )
    residuals = y - x @ np.linalg.pinv(x) @ y
    at = frame["_budget"].to_numpy()
    variance, df_budget = np.empty(len(y)), {}
    noise_sd: dict[Any, float] = {}
    for value in budgets:
        rows = at == value
        df_b = int(rows.sum()) - int(np.linalg.matrix_rank(x[rows]))
        if df_b < 1:
            raise EffectsError(
                f"pooled budget model: budget {_plain(value)} has no residual df to estimate "
                "its noise (every run is needed for the effects); add seeds or reruns"
            )
        variance[rows] = float(residuals[rows] @ residuals[rows]) / df_b
        df_budget[value] = df_b
        noise_sd[_plain(value)] = math.sqrt(variance[rows][0])
    if np.any(variance <= 0):
        raise EffectsError("pooled budget model: a budget's runs fit exactly (zero noise)")
    weighted = x / variance[:, None]
    influence = np.linalg.solve(x.T @ weighted, weighted.T)  # theta = influence @ y
    params = influence @ y
    index = {name: i for i, name in enumerate(model.exog_names)}
    df_resid = sum(df_budget.values())

    def contrast(columns: Sequence[str], term: str) -> Effect:
        weights = np.zeros(len(params))
        weights[[index[c] for c in columns]] = 2.0
        estimate = float(weights @ params)
        loading = weights @ influence
        parts = [
            float((loading[at == value] ** 2).sum()) * variance[at == value][0] for value in budgets
        ]
        var = sum(parts)
        se = math.sqrt(var)
        df = var**2 / sum(
            part**2 / df_budget[value] for part, value in zip(parts, budgets, strict=True)
        )
        t_crit = float(stats.t.ppf((1 + level) / 2, df))
        p = float(2 * stats.t.sf(abs(estimate / se), df)) if se > 0 else None
        return Effect(term, estimate, se, estimate - t_crit * se, estimate + t_crit * se, p)

    families, deltas = [], []
    for k, value in enumerate(budgets):
        shift = [] if k == 0 else [f"b{k}:{names[t]}" for t in model_t]
        effects = tuple(
            contrast([names[t], *([shift[i]] if shift else [])], t) for i, t in enumerate(model_t)
        )
        n = int((at == value).sum())
        families.append(
            Family(by={budget: _plain(value)}, n=n, df_resid=df_budget[value], effects=effects)
        )
        if k:
            delta = tuple(contrast([f"b{k}:{names[t]}"], t) for t in model_t)
            deltas.append(
                Family(
                    by={budget: _plain(value), "reference": _plain(reference)},
                    n=n,
                    df_resid=df_budget[value] + df_budget[reference],
                    effects=delta,
                    notes=("effect at this budget minus effect at the reference budget",),
                )
            )
    return PooledBudgetFit(
        reference, len(frame), df_resid, tuple(families), tuple(deltas), noise_sd
    )


# --- confirmation summaries (paper 4.4, 5.7, 5.9) ------------------------------------------


@dataclass(frozen=True)
class VarianceShare:
    """One row of a Type-II ANOVA table with its eta^2 = SS_term / SS_total."""

    term: str
    df: float
    sum_sq: float
    eta_sq: float

    def to_dict(self) -> dict[str, Any]:
        return {"term": self.term, "df": self.df, "sum_sq": self.sum_sq, "eta_sq": self.eta_sq}


def variance_shares(
    data: pd.DataFrame,
    response: str,
    *,
    factors: Sequence[str] = ("budget", "condition_id"),
    blocks: Sequence[str] = ("seed",),
) -> list[VarianceShare]:
    """Type-II ANOVA eta^2 shares of `response ~ C(f1)*C(f2)*... + C(block1) + ...` (5.7).

    eta^2 = SS_term / SS_total with SS_total the sum of squares about the grand mean, as the
    paper defines it. With balanced data the Type-II sums of squares add up to SS_total; with
    runs missing they do not, and the shares need not sum to one (the table says so). They are
    descriptive effect sizes, not variance components. Blocks (seed, and pool when a stage ran
    on several hosts) enter additively.
    """
    columns = [*factors, *blocks]
    usable = _usable(data, response, columns)
    constant = [column for column in columns if usable[column].nunique() < 2]
    if constant:
        raise EffectsError(
            f"variance shares need at least two levels of every term; "
            f"{', '.join(repr(c) for c in constant)} has one"
        )
    frame = pd.DataFrame({"y": usable[response].astype(float)})
    for i, column in enumerate(columns):
        frame[f"g{i}"] = usable[column].astype(str)
    formula = "y ~ " + " * ".join(f"C(g{i})" for i in range(len(factors)))
    formula += "".join(f" + C(g{i})" for i in range(len(factors), len(columns)))
    table = anova_lm(smf.ols(formula, data=frame, eval_env=0).fit(), typ=2)
    readable = {f"C(g{i})": column for i, column in enumerate(columns)}
    y = frame["y"].to_numpy()
    total = float(((y - y.mean()) ** 2).sum())
    shares = []
    for term, row in table.iterrows():
        name = (
            "residual"
            if term == "Residual"
            else ":".join(readable[part] for part in str(term).split(":"))
        )
        shares.append(
            VarianceShare(
                name, float(row["df"]), float(row["sum_sq"]), float(row["sum_sq"]) / total
            )
        )
    return shares


@dataclass(frozen=True)
class ConditionMean:
    """Mean of one cell with its Student-t interval (None for a single run)."""

    key: dict[str, Any]
    n: int
    mean: float
    sd: float | None
    ci_low: float | None
    ci_high: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: _plain(v) for k, v in self.key.items()},
            "n": self.n,
            "mean": self.mean,
            "sd": json_number(self.sd),
            "ci_low": json_number(self.ci_low),
            "ci_high": json_number(self.ci_high),
        }


def mean_interval(
    values: Iterable[float], level: float = 0.95
) -> tuple[float, float | None, float | None]:
    """A cell's mean and Student-t interval, mean +- t(n-1) * sd / sqrt(n) (paper 4.4); no
    interval for a single run."""
    cell = DescrStatsW(np.asarray(list(values), dtype=float))
    if cell.nobs < 2:
        return float(cell.mean), None, None
    low, high = cell.tconfint_mean(alpha=1 - level)
    return float(cell.mean), float(low), float(high)


def condition_means(
    data: pd.DataFrame,
    response: str,
    by: Sequence[str] | str = ("condition_id",),
    level: float = 0.95,
) -> list[ConditionMean]:
    """Per cell: n, mean, sample sd and the Student-t interval (`mean_interval`)."""
    columns = [by] if isinstance(by, str) else list(by)
    usable = _usable(data, response, columns)
    out = []
    for key, group in usable.groupby(columns, sort=True):
        values = group[response].to_numpy(dtype=float)
        mean, low, high = mean_interval(values, level)
        sd = float(values.std(ddof=1)) if len(values) > 1 else None
        cell = {c: _plain(k) for c, k in zip(columns, key, strict=True)}
        out.append(ConditionMean(cell, len(values), mean, sd, low, high))
    return out


def adjusted_means(
    data: pd.DataFrame,
    response: str,
    by: str = "condition_id",
    blocks: Sequence[str] = ("seed",),
    level: float = 0.95,
) -> list[ConditionMean]:
    """Block-adjusted (least-squares) means of each `by` level, with model-based intervals.

    Fits `y ~ C(by) + C(block) + ...` and averages each condition's fitted value over every
    level of every block. When a condition lost a seed (diverged, failed, still missing), its
    raw mean is pulled by the seeds it happens to have, and seeds shift every condition alike;
    the adjusted mean compares conditions as if each had run every seed. With every condition
    on every seed it equals the raw mean. `sd` stays the raw sample sd of the cell; the
    interval is the fit's, on its residual df (None when there is none).
    """
    usable = _usable(data, response, [by, *blocks])
    groups = usable[by].astype(str)
    conditions = sorted(groups.unique())
    columns = [np.ones(len(usable))]
    columns += [(groups == c).to_numpy(float) for c in conditions[1:]]
    averaged = []  # each block dummy's average over the block's levels: 1/levels
    for block in blocks:
        levels = sorted(usable[block].astype(str).unique())
        columns += [(usable[block].astype(str) == v).to_numpy(float) for v in levels[1:]]
        averaged += [1 / len(levels)] * (len(levels) - 1)
    x = np.column_stack(columns)
    rank = int(np.linalg.matrix_rank(x))
    if rank < x.shape[1]:
        raise EffectsError(
            f"adjusted means: the conditions share too few {', '.join(blocks)} levels to "
            "compare them through a common block (each kept different seeds)"
        )
    fit = sm.OLS(usable[response].to_numpy(float), x).fit()
    df_resid = len(usable) - rank
    cov = np.asarray(fit.cov_params()) if df_resid > 0 else None
    t_crit = float(stats.t.ppf((1 + level) / 2, df_resid)) if df_resid > 0 else math.nan
    out = []
    for i, condition in enumerate(conditions):
        weights = np.array([1.0, *(float(i == j) for j in range(1, len(conditions))), *averaged])
        mean = float(weights @ np.asarray(fit.params))
        values = usable.loc[groups == condition, response].to_numpy(dtype=float)
        sd = float(values.std(ddof=1)) if len(values) > 1 else None
        low = high = None
        if cov is not None:
            half = t_crit * math.sqrt(float(weights @ cov @ weights))
            low, high = mean - half, mean + half
        key = usable.loc[groups == condition, by].iloc[0]
        out.append(ConditionMean({by: _plain(key)}, len(values), mean, sd, low, high))
    return out


def mean_difference(left: Iterable[float], right: Iterable[float], level: float = 0.95) -> Effect:
    """left mean minus right mean with Welch's interval and p (unequal variances).

    Used to say whether a best condition is separated from its runner-up; None interval
    when either side has fewer than two runs.
    """
    a, b = np.asarray(list(left), dtype=float), np.asarray(list(right), dtype=float)
    estimate = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Effect("difference", estimate, reason="fewer than two runs on a side")
    compare = CompareMeans(DescrStatsW(a), DescrStatsW(b))
    low, high = compare.tconfint_diff(alpha=1 - level, usevar="unequal")
    _, p, _ = compare.ttest_ind(usevar="unequal")
    se = float(compare.std_meandiff_separatevar)
    return Effect("difference", estimate, se, float(low), float(high), json_number(p))


@dataclass(frozen=True)
class WinCount:
    """How many of the n_left * n_right pairings the left value wins (descriptive only)."""

    wins: int
    ties: int
    total: int

    def __str__(self) -> str:
        return f"{self.wins}/{self.total}"

    def to_dict(self) -> dict[str, int]:
        return {"wins": self.wins, "ties": self.ties, "total": self.total}


def win_count(
    left: Iterable[float], right: Iterable[float], *, lower_is_better: bool = True
) -> WinCount:
    """Cross-seed win count: every left value against every right value (paper 4.4)."""
    a = np.asarray(list(left), dtype=float)[:, None]
    b = np.asarray(list(right), dtype=float)[None, :]
    wins = (a < b) if lower_is_better else (a > b)
    return WinCount(int(wins.sum()), int((a == b).sum()), int(a.size * b.size))


@dataclass(frozen=True)
class Relaxation:
    """One term's effect at one budget and its ratio to the effect at the shortest budget."""

    term: str
    budget: Any
    effect: float | None
    ratio: float | None
    group: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: _plain(v) for k, v in self.group.items()},
            "term": self.term,
            "budget": _plain(self.budget),
            "effect": json_number(self.effect),
            "ratio": json_number(self.ratio),
            "reason": self.reason,
        }


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
        members = sorted(members, key=lambda f: f.by[budget])
        reference = {e.term: e for e in members[0].effects}
        for family in members:
            for effect in family.effects:
                ratio, reason = _ratio(effect, reference.get(effect.term))
                rows.append(
                    Relaxation(
                        effect.term, family.by[budget], effect.effect, ratio, dict(rest), reason
                    )
                )
    return rows


def families_to_dict(families: Sequence[Family]) -> dict[str, Any]:
    """The `stagescreen effects --json` document."""
    return {"families": [family.to_dict() for family in families]}
