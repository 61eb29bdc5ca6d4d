"""The paper's pooled follow-up model with budget interactions (5.3).

One weighted fit over every budget of a follow-up stage: each budget's effects, and how much
each effect changes against the shortest budget, with each budget's own noise as the weight.
Built on the per-budget preparation of `statistics.coding` (coding, aliasing, estimability)
and the records of `statistics.families`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats

from stagescreen.statistics.coding import (
    EffectsError,
    estimability,
    model_terms,
    prepare,
    require_columns,
)
from stagescreen.statistics.families import Effect, Family, Record
from stagescreen.storage.jsonvalues import Scalar, json_ready


class NoiseSd(Record):
    """One budget's residual standard deviation, the weight the pooled fit gives its runs."""

    budget: Scalar
    sd: float


class PooledBudgetFit(Record):
    """Effects per budget from one pooled fit, and each budget's shift from the reference.

    `families` hold the effect at each budget, 2*(beta + delta_b), with intervals from the
    budget-weighted covariance; `deltas` hold, per non-reference budget, the change in each
    effect against the reference (shortest) budget, 2*delta_b, with its p-value.
    `noise_sd` is each budget's residual standard deviation, the weights' source.
    """

    reference: Scalar
    n: int
    df_resid: int
    noise_sd: tuple[NoiseSd, ...] = ()
    families: tuple[Family, ...] = ()
    deltas: tuple[Family, ...] = ()

    def noise_at(self, budget: Scalar) -> float:
        """The residual standard deviation at `budget`."""
        return next(row.sd for row in self.noise_sd if row.budget == budget)


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

    `y ~ b_1 + ... + T + b_1:(T) + ... [+ block within budget]` where T is the main effects
    plus interactions up to `order` (plus `terms`) and b_k indicates the k-th budget above the
    shortest. Short budgets are much noisier than long ones (the paper's residual sd is 3.7x
    larger at 5 minutes than at 10), so one pooled residual variance would give intervals too
    narrow at the short budget and too wide at the long one. The fit is therefore weighted by
    budget: each budget's residual variance is estimated from an OLS fit, and the model is
    refitted by weighted least squares with those variances as known. Intervals use
    Satterthwaite's degrees of freedom from the budgets' residual df.

    The block (seed) is nested within budget, one set of block levels per budget. A block
    shared across budgets is estimated from every budget's runs, so the noisy budget's error
    enters the quiet budget's residuals through it: the quiet budget's variance came out too
    large (with the paper's noise, 0.032 and 0.0086, and two seeds: standard errors 21% too
    wide at the quiet budget, its 95% intervals covering 97.7%). Nested, every column
    of the model belongs to one budget, so the estimates and intervals at each budget are
    exactly those of a separate fit of that budget with its own block, and hold at its own
    noise; a seed whose shift differs between budgets is allowed for too. A delta's interval
    treats the two budgets' runs as independent.
    """
    require_columns(data, [budget], "budget")
    model_t = model_terms(factors, order, terms)
    data = data.reset_index(drop=True)
    prepared = prepare(data, response, factors, model_t, block, None)
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
    blocks: dict[str, str] = {}  # column: readable name, one per level past the first per budget
    if block is not None:
        for k, value in enumerate(budgets):
            here = frame["_budget"] == value
            for j, tag in enumerate(sorted(frame.loc[here, "block"].unique())[1:]):
                frame[f"s{k}_{j}"] = (here & (frame["block"] == tag)).astype(float)
                blocks[f"s{k}_{j}"] = f"{block} {tag} at {json_ready(value)}"
        formula += "".join(f" + {column}" for column in blocks)
    model = smf.ols(formula, data=frame, eval_env=0)
    x, y = np.asarray(model.exog), np.asarray(model.endog)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        # A budget that lost a corner of the design cannot separate some effects; a
        # pseudo-inverse would return confident nonsense for them, so name them instead.
        readable = {names[t]: f"{t} at {json_ready(reference)}" for t in model_t}
        for k, value in enumerate(budgets[1:], start=1):
            readable[f"b{k}"] = f"budget {json_ready(value)}"
            readable |= {f"b{k}:{names[t]}": f"{t} at {json_ready(value)}" for t in model_t}
        readable |= blocks
        labels = [
            "intercept" if name == "Intercept" else readable[name] for name in model.exog_names
        ]
        lost = [
            f"{labels[i]} ({reason})"
            for i, name in enumerate(model.exog_names)
            if ":" in name or name.startswith("x")
            if (reason := estimability(x, i, labels))
        ]
        raise EffectsError(
            "pooled budget model: the runs left cannot separate "
            + "; ".join(lost or ["every effect"])
            + "; the per-budget effects report what each budget can estimate"
        )
    residuals = y - x @ np.linalg.pinv(x) @ y
    at = frame["_budget"].to_numpy()
    variance, df_budget = np.empty(len(y)), {}
    noise_sd: list[NoiseSd] = []
    for value in budgets:
        rows = at == value
        df_b = int(rows.sum()) - int(np.linalg.matrix_rank(x[rows]))
        if df_b < 1:
            raise EffectsError(
                f"pooled budget model: budget {json_ready(value)} has no residual df to estimate "
                "its noise (every run is needed for the effects); add seeds or reruns"
            )
        variance[rows] = float(residuals[rows] @ residuals[rows]) / df_b
        df_budget[value] = df_b
        noise_sd.append(NoiseSd(budget=value, sd=math.sqrt(variance[rows][0])))
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
        return Effect(
            term=term,
            effect=estimate,
            se=se,
            ci_low=estimate - t_crit * se,
            ci_high=estimate + t_crit * se,
            p=p,
        )

    families, deltas = [], []
    for k, value in enumerate(budgets):
        shift = [] if k == 0 else [f"b{k}:{names[t]}" for t in model_t]
        effects = tuple(
            contrast([names[t], *([shift[i]] if shift else [])], t) for i, t in enumerate(model_t)
        )
        n = int((at == value).sum())
        families.append(
            Family(by={budget: json_ready(value)}, n=n, df_resid=df_budget[value], effects=effects)
        )
        if k:
            delta = tuple(contrast([f"b{k}:{names[t]}"], t) for t in model_t)
            deltas.append(
                Family(
                    by={budget: json_ready(value), "reference": json_ready(reference)},
                    n=n,
                    df_resid=df_budget[value] + df_budget[reference],
                    effects=delta,
                    notes=("effect at this budget minus effect at the reference budget",),
                )
            )
    return PooledBudgetFit(
        reference=reference,
        n=len(frame),
        df_resid=df_resid,
        noise_sd=tuple(noise_sd),
        families=tuple(families),
        deltas=tuple(deltas),
    )
