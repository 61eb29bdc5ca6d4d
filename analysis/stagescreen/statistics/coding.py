"""A results table made ready for an effects fit: coded factors, model terms, usable rows.

Everything a fit needs settled before it runs, kept apart from the fitting in
`statistics.families` so that the per-budget effects and the pooled model (`statistics.pooled`)
read one and the same preparation. Departures from handing the table to `smf.ols(...)`, each
for a reason a user meets in practice:
- factor columns are coded to -1/+1 (two numeric levels such as 6/8 work as they are) and
  text columns are refused, since their order of levels is not knowable;
- columns are renamed into a clean formula namespace (`y`, `x0`, `x1`, `block`), so a factor
  named `C` cannot shadow patsy's `C()`, and names with spaces just work;
- the design matrix is built once for the whole table, so each family takes its own rows of
  it and hundreds of families stay fast;
- rows with a failed status or a missing value are marked with the reason (the fit lists
  them), and expected runs with no usable row are named;
- a model asking for two aliased terms (identical or opposite columns in the design) is
  refused with both names, because its estimates would silently be sums of effects; a term
  the runs present cannot separate is named with what confounds it.

This module never imports `statistics.families`: the fit depends on the preparation, not the
other way round.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from stagescreen.storage.jsonvalues import Scalar, json_ready
from stagescreen_contract.status import reads_succeeded

TOL = 1e-9  # a column whose norm or range is below this counts as zero


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
    if distinct.size == 1:  # one level: coded 0, which the aliasing check names as constant
        return numeric - distinct[0], None
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
    constant = [
        term for i, term in enumerate(terms) if ":" not in term and np.ptp(columns[:, i]) < TOL
    ]
    if constant:
        raise EffectsError(
            f"factor {', '.join(constant)} takes one level in every run (constant), so it has "
            "no effect to estimate; leave it out of the factors (--factors), or give runs "
            "at both of its levels"
        )
    problems: list[str] = []
    for i, term in enumerate(terms):
        if np.ptp(columns[:, i]) < TOL:
            problems.append(f"{term} does not vary in the design (aliased with the intercept)")
    for i, j in itertools.combinations(range(len(terms)), 2):
        a, b = columns[:, i], columns[:, j]
        if np.ptp(a) < TOL:
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


def estimability(x: np.ndarray, column: int, names: Sequence[str]) -> str | None:
    """None when coefficient `column` is estimable from `x`, else which columns confound it."""
    target = x[:, column]
    others = np.delete(x, column, axis=1)
    if np.linalg.norm(target) < TOL:
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


# --- rows: what is usable, what is missing ------------------------------------------------


def require_columns(data: pd.DataFrame, columns: Iterable[str], role: str) -> None:
    """Refuse a table lacking one of `columns`, naming its `role` and the columns it has."""
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
        if pd.api.types.is_numeric_dtype(data[column]):
            # An infinite value (a diverged loss written as inf) would turn every estimate
            # into nan; like a missing one, it is excluded and named.
            infinite = np.isinf(data[column].astype(float)) & (reasons == "")
            reasons[infinite] = f"{column} is " + data.loc[infinite, column].astype(str)
    return reasons


def row_labels(row: pd.Series) -> dict[str, Scalar]:
    """The identifying values of a row (run_id, condition_id, seed, budget_s: those present),
    by which an excluded run is listed."""
    return {
        key: json_ready(row[key])
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


def usable_rows(data: pd.DataFrame, response: str, required: Sequence[str] = ()) -> pd.DataFrame:
    """The rows that can enter a fit, with the response checked to be numeric."""
    require_columns(data, [response, *required], "required")
    _require_numeric_response(data, response)
    return data[_exclusion_reasons(data, response, required) == ""]


# --- the prepared table ------------------------------------------------------------------


@dataclass
class Prepared:
    """The coded table and the one design matrix every family takes its rows from."""

    frame: pd.DataFrame
    coded: pd.DataFrame
    exog: np.ndarray
    exog_names: list[str]
    term_columns: dict[str, int]
    notes: tuple[str, ...]


def prepare(
    data: pd.DataFrame,
    response: str,
    factors: Sequence[str],
    terms: Sequence[str],
    block: str | None,
    design: DesignLike | None,
) -> Prepared:
    """The table coded and checked once for a model of `terms`: refused when a column is
    absent, the response is not numeric or two terms are aliased in the design (the
    `design`'s runs, else the distinct coded levels in the table); each row marked with why it
    cannot enter a fit ("" when it can) in `frame["_reason"]`."""
    if not factors:
        raise EffectsError("name at least one factor")
    require_columns(data, factors, "factor")
    require_columns(data, [response], "response")
    if block is not None:
        require_columns(data, [block], "block")
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
    return Prepared(frame, levels_frame, full, names, term_columns, tuple(notes))


def missing_runs(
    family_rows: pd.DataFrame,
    usable: pd.DataFrame,
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
                usable[block] if block else [None] * len(usable),
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
                usable["condition_id"].astype(str),
                usable[block] if block else [None] * len(usable),
                strict=True,
            )
        )
        gaps = [(c, b) for c in all_conditions for b in blocks if (c, b) not in present_ids]
    else:
        return ()
    return tuple(cid if b is None else f"{cid}/{block}={json_ready(b)}" for cid, b in gaps)
