"""Confirmation-stage summaries: pooled budget model, ANOVA shares, means, wins, relaxation."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from stagescreen.effects import (
    Effect,
    EffectsError,
    Family,
    condition_means,
    fit_effects,
    pooled_budget_effects,
    relaxation_table,
    variance_shares,
    win_count,
)

# effects at (300 s, 600 s) planted in the D-fixed follow-up below (paper 5.3 magnitudes)
FOLLOWUP = {"A": (0.0227, 0.0084), "B": (0.0210, 0.0023), "C": (-0.0085, -0.0013)}
FOLLOWUP_AB = (0.0101, 0.0049)


def d_fixed_followup(noise: float = 0.0005, seed: int = 5) -> pd.DataFrame:
    """A full 2^3 in A, B, C at two budgets, two reruns per cell, effects changing with budget."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, budget in enumerate((300, 600)):
        for rerun, (a, b, c) in itertools.product(range(2), itertools.product([-1, 1], repeat=3)):
            mean = 1.15 - 0.06 * k
            mean += (FOLLOWUP["A"][k] * a + FOLLOWUP["B"][k] * b + FOLLOWUP["C"][k] * c) / 2
            mean += FOLLOWUP_AB[k] * a * b / 2
            rows.append({"budget": budget, "rerun": rerun, "A": a, "B": b, "C": c, "y": mean})
    data = pd.DataFrame(rows)
    data["y"] += rng.normal(0, noise, len(data))
    return data


def test_pooled_model_gives_the_per_budget_effects_and_their_shifts() -> None:
    """Paper 5.3: effect at budget b = 2*(beta + delta_b); the shift is 2*delta_b."""
    data = d_fixed_followup()
    pooled = pooled_budget_effects(data, "y", list("ABC"), budget="budget", order=2)
    assert pooled.reference == 300 and pooled.n == 32
    assert pooled.df_resid == 32 - 2 * (1 + 6)  # intercept and six terms, per budget
    separate = fit_effects(data, "y", list("ABC"), by="budget", order=2)
    for family, alone in zip(pooled.families, separate, strict=True):
        assert family.by == alone.by
        for effect in family.effects:
            assert effect.effect == pytest.approx(alone.effect(effect.term).effect, abs=1e-12)
            assert effect.ci_low < effect.effect < effect.ci_high
    for k, family in enumerate(pooled.families):
        for term, truth in FOLLOWUP.items():
            effect = family.effect(term)
            assert effect.ci_low <= truth[k] <= effect.ci_high
    [shift] = pooled.deltas
    assert shift.by == {"budget": 600, "reference": 300}
    ab = shift.effect("A:B")
    assert ab.effect == pytest.approx(
        pooled.families[1].effect("A:B").effect - pooled.families[0].effect("A:B").effect
    )
    assert ab.ci_low <= FOLLOWUP_AB[1] - FOLLOWUP_AB[0] <= ab.ci_high
    assert ab.p < 1e-6
    assert shift.effect("B:C").p > 0.001  # planted shift is zero


def test_pooled_interval_matches_a_direct_contrast_on_the_fit() -> None:
    """The effect at the longer budget, checked against statsmodels' own t_test contrast."""
    data = d_fixed_followup()
    data["budget600"] = (data["budget"] == 600).astype(float)
    terms = "A + B + C + A:B + A:C + B:C"
    fit = smf.ols(f"y ~ budget600 + {terms} + budget600:({terms})", data=data).fit()
    test = fit.t_test("2 * A + 2 * budget600:A = 0")
    low, high = np.asarray(test.conf_int()).ravel()
    pooled = pooled_budget_effects(data, "y", list("ABC"), budget="budget")
    effect = pooled.families[1].effect("A")
    assert (effect.ci_low, effect.ci_high) == pytest.approx((low, high), rel=1e-9)
    assert effect.p == pytest.approx(float(test.pvalue), rel=1e-6)


def test_pooled_model_needs_two_budgets() -> None:
    data = d_fixed_followup()
    with pytest.raises(EffectsError, match="two budgets"):
        pooled_budget_effects(data[data.budget == 300], "y", list("ABC"), budget="budget")


def seeded_anchors() -> pd.DataFrame:
    """Paper 5.7's layout: 6 conditions x 3 budgets x 5 seeds, budget and condition dominant."""
    rng = np.random.default_rng(9)
    rows = []
    for (b, budget), (c, cond), seed in itertools.product(
        enumerate((120, 300, 600)),
        enumerate(["best", "worst", "bridge6", "bridge8", "x", "y"]),
        range(5),
    ):
        value = 1.4 - 0.15 * b + 0.05 * c * (1 - 0.3 * b) + 0.002 * seed + rng.normal(0, 0.005)
        rows.append({"budget": budget, "condition": cond, "seed": seed, "val_bpb": value})
    return pd.DataFrame(rows)


def test_variance_shares_are_type_ii_eta_squared_summing_to_one() -> None:
    data = seeded_anchors()
    shares = variance_shares(data, "val_bpb", factors=("budget", "condition"), block="seed")
    by_term = {share.term: share for share in shares}
    assert set(by_term) == {"budget", "condition", "budget:condition", "seed", "residual"}
    assert sum(share.eta_sq for share in shares) == pytest.approx(1.0)
    assert by_term["budget"].eta_sq > by_term["condition"].eta_sq > by_term["seed"].eta_sq
    assert by_term["residual"].df == 90 - 18 - 4
    ssr = smf.ols("val_bpb ~ C(budget) * C(condition) + C(seed)", data=data).fit().ssr
    assert by_term["residual"].sum_sq == pytest.approx(ssr)


def test_condition_means_have_student_t_intervals_and_none_for_single_runs() -> None:
    data = pd.DataFrame(
        {
            "condition_id": ["c01", "c01", "c01", "c02", "c03"],
            "status": ["succeeded", "succeeded", "succeeded", "succeeded", "failed"],
            "val_bpb": [1.0, 2.0, 3.0, 5.0, 0.1],
        }
    )
    first, second = condition_means(data, "val_bpb", "condition_id")
    assert (first.key, first.n, first.mean, first.sd) == ({"condition_id": "c01"}, 3, 2.0, 1.0)
    half = 4.302652729749464 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert (first.ci_low, first.ci_high) == pytest.approx((2.0 - half, 2.0 + half))
    assert (second.n, second.sd, second.ci_low, second.ci_high) == (1, None, None, None)
    assert second.to_dict()["ci_low"] is None


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ([1.0, 2.0], [1.5, 3.0], (3, 0, 4)),
        ([0.97] * 4, [0.98] * 4, (16, 0, 16)),
        ([1.0, 2.0], [1.0, 2.0], (1, 2, 4)),
        ([5.0], [1.0, 2.0, 3.0], (0, 0, 3)),
    ],
)
def test_win_counts_over_all_left_right_pairings(
    left: list[float], right: list[float], expected: tuple[int, int, int]
) -> None:
    count = win_count(left, right)
    assert (count.wins, count.ties, count.total) == expected
    assert str(count) == f"{expected[0]}/{expected[2]}"


def test_win_counts_for_higher_is_better_metrics() -> None:
    assert win_count([0.9], [0.5, 0.95], lower_is_better=False).wins == 1


def family(budget: int, effects: dict[str, float | None]) -> Family:
    return Family(
        by={"budget": budget},
        n=80,
        df_resid=70,
        effects=tuple(Effect(term, value) for term, value in effects.items()),
    )


def test_relaxation_table_divides_by_the_shortest_budget() -> None:
    """Paper 5.1 seeded estimates: A relaxes from +0.0568 (5 min) to +0.0180 (10 min)."""
    rows = relaxation_table(
        [family(600, {"A": 0.0180, "E": None}), family(300, {"A": 0.0568, "E": 0.0054})]
    )
    table = {(row.term, row.budget): row.ratio for row in rows}
    assert table[("A", 300)] == 1.0
    assert table[("A", 600)] == pytest.approx(0.0180 / 0.0568)
    assert table[("E", 600)] is None


def test_relaxation_table_needs_the_budget_key() -> None:
    with pytest.raises(EffectsError, match="'budget_s'"):
        relaxation_table([family(300, {"A": 1.0})], budget="budget_s")
