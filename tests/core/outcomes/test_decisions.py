"""Decision rules a researcher can trust: ranking with failures and missing seeds, the best
per pool with its runner-up, retention under Lenth's method and across pools."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from stagescreen.outcomes import analyse
from stagescreen.planning.ranking import rank_conditions, select_anchors
from stagescreen.statistics import families as fx
from stagescreen.statistics import power, retention, synthetic
from stagescreen.statistics.means import (
    adjusted_means,
    bonferroni_level,
    mean_interval,
    paired_difference,
)
from stagescreen.study.parse import load_study
from stagescreen.study.spec import Selection

ROOT = Path(__file__).resolve().parents[3]
QUICKSTART_TEXT = (ROOT / "tests" / "data" / "quickstart-two-stages.yaml").read_text()
SPEC = load_study(QUICKSTART_TEXT).spec
TWO_POOLS = load_study(
    QUICKSTART_TEXT.replace(
        "    - name: cpu\n      gpus: 0",
        "    - name: cpu\n      gpus: 0\n    - name: cpu2\n      gpus: 0",
    ).replace("      seeds: [1]\n", "      seeds: [1]\n      pools: [cpu, cpu2]\n")
).spec
MODEL = synthetic.ResponseModel(effects={"A": 0.10, "B": -0.05, "C": 0.02})


def confirm_results(model: synthetic.ResponseModel = MODEL, seeds: int = 5) -> pd.DataFrame:
    """The quickstart's screen and a confirm stage on `seeds` seeds."""
    study = load_study(QUICKSTART_TEXT.replace("seeds: 2", f"seeds: {seeds}"))
    results = synthetic.simulate_stage(study.spec, "screen", pd.DataFrame(), model)
    return synthetic.simulate_stage(study.spec, "confirm", results, model), study.spec


def test_a_condition_diverging_on_most_seeds_does_not_rank_best_on_its_survivors() -> None:
    results, spec = confirm_results()
    longest = results["budget_s"] == 20
    bridge = (results["stage"] == "confirm") & (results["role"] == "bridge") & longest
    # The bridge's survivors look far better than anything, but it diverged on 3 of 5 seeds.
    results.loc[bridge, "val_bpb"] = 0.5
    diverged = bridge & results["seed"].isin([1, 2, 3])
    results.loc[diverged, ["status", "val_bpb"]] = ["diverged", np.nan]
    # and failed outright on a fourth: failures and divergences are counted apart too
    results.loc[bridge & (results["seed"] == 4), ["status", "val_bpb"]] = ["failed", np.nan]
    out = analyse.stage_outcome(spec, spec.stage("confirm"), results, "q")
    assert out.best is not None and out.best.role == "best"
    row = next(r for r in out.ranking if r.budget_s == 20 and r.role == "bridge")
    assert (row.runs, row.failed, row.diverged, row.n, row.rank) == (5, 4, 3, 1, 3)


def test_promoted_anchors_say_how_many_of_their_runs_failed() -> None:
    results, spec = confirm_results()
    rule = Selection.model_validate({"from": "confirm", "rule": "best", "k": 1})
    at_20 = (results["stage"] == "confirm") & (results["budget_s"] == 20)
    # One failure on the best anchor: it ranks behind the two clean ones.
    best_fails = at_20 & (results["role"] == "best") & (results["seed"] == 1)
    one = results.copy()
    one.loc[best_fails, ["status", "val_bpb"]] = ["failed", np.nan]
    (anchor,) = select_anchors(spec, rule, one)
    assert anchor.role != "best" and anchor.failed == 0
    # Every anchor lost seed 1: the best is promoted, and says it lost a run.
    every = results.copy()
    every.loc[at_20 & (results["seed"] == 1), ["status", "val_bpb"]] = ["failed", np.nan]
    (anchor,) = select_anchors(spec, rule, every)
    assert (anchor.role, anchor.runs, anchor.failed) == ("best", 5, 1)
    assert anchor.failed == 1


def test_missing_seeds_are_adjusted_for_before_ranking() -> None:
    """Seed 3 is good for every condition; the worse condition kept only seed 3 at 20 s, so
    its raw mean would beat the better one."""
    rows = []
    for condition, level in (("good", 1.00), ("bad", 1.05)):
        for seed, shift in ((1, 0.0), (2, 0.01), (3, -0.10)):
            rows.append(
                {
                    "condition_id": condition,
                    "role": condition,
                    "budget_s": 20,
                    "seed": seed,
                    "pool": "cpu",
                    "status": "succeeded",
                    "val_bpb": level + shift,
                }
            )
    results = pd.DataFrame(rows)
    lost = (results["condition_id"] == "bad") & (results["seed"] != 3)
    results.loc[lost, ["status", "val_bpb"]] = ["failed", np.nan]
    raw = results[results["status"] == "succeeded"].groupby("condition_id")["val_bpb"].mean()
    assert raw["bad"] < raw["good"]
    ranking = rank_conditions(results, "val_bpb", "minimize")
    assert list(ranking["condition_id"]) == ["good", "bad"]
    assert ranking["adjusted"].all()
    adjusted = dict(zip(ranking["condition_id"], ranking["mean"], strict=True))
    assert adjusted["bad"] - adjusted["good"] == pytest.approx(0.05)


def by_seed(results: pd.DataFrame, condition: str) -> pd.Series:
    """A condition's metric at 20 s in the confirm stage, indexed by seed."""
    rows = results[
        (results["stage"] == "confirm")
        & (results["budget_s"] == 20)
        & (results["condition_id"] == condition)
    ]
    return rows.set_index("seed")["val_bpb"].astype(float)


def test_adjusted_means_hold_for_the_quietest_and_the_noisiest_condition() -> None:
    """The 2^3 on 5 seeds, the worst cell's sd 6x the best's (the paper's spread), three
    conditions short of seeds so the ranking adjusts. The truth is each condition's mean over
    the 5 seeds as their shifts fell. One pooled variance covered the worst 68% of the time
    and gave the best an interval 3x the width its own noise needs."""
    model = synthetic.ResponseModel(
        effects={"A": 0.02, "B": 0.02, "C": 0.02},
        noise_sd=0.0086,
        seed_sd=0.002,
        spread=math.log(6) / (2 * math.sqrt(3)),
    )
    corners = [
        dict(zip("ABC", levels, strict=True)) for levels in itertools.product([-1, 1], repeat=3)
    ]
    lost = {0: {2}, 3: {3, 4}, 7: {1}}  # c0 is the best (and quietest), c7 the worst
    cells = [(c, seed) for c in range(8) for seed in range(5) if seed not in lost.get(c, ())]
    condition, seed = (np.array(column) for column in zip(*cells, strict=True))
    mean = np.array([model.mean(levels, 120) for levels in corners])
    sd = np.array([model.cell_sd(levels, 120) for levels in corners])
    assert sd[7] / sd[0] == pytest.approx(6)
    results = pd.DataFrame(
        {
            "condition_id": [f"c{c}" for c in condition],
            "role": "anchor",
            "budget_s": 120,
            "seed": seed,
            "pool": "cpu",
            "status": "succeeded",
        }
    )
    reps = 300
    rng = np.random.default_rng(6)
    shifts = rng.normal(0, model.seed_sd, (reps, 5))
    draws = mean[condition] + shifts[:, seed] + rng.normal(0, sd[condition], (reps, len(cells)))
    truth = mean + shifts.mean(axis=1, keepdims=True)
    ranking = rank_conditions(results.assign(val_bpb=draws[0]), "val_bpb", "minimize")
    assert ranking["adjusted"].all()
    covered = []
    for y, planted in zip(draws, truth, strict=True):
        means = adjusted_means(results.assign(val_bpb=y), "val_bpb", "condition_id", ["seed"])
        low = np.array([m.ci_low for m in means])
        high = np.array([m.ci_high for m in means])
        covered.append((low <= planted) & (planted <= high))
    coverage = np.mean(covered, axis=0)
    assert coverage[0] >= 0.93 and coverage[7] >= 0.93, coverage


def test_an_adjusted_mean_without_residual_df_has_no_interval() -> None:
    """A condition left with one run is fitted exactly: nothing measures its noise, and its
    run moves no other condition's adjusted mean or interval."""
    values = {"a": [1.00, 1.02, 0.97], "b": [1.05, 1.06, 1.01], "c": [None, None, 1.10]}
    rows = [
        {"condition_id": c, "seed": seed, "val_bpb": v}
        for c, runs in values.items()
        for seed, v in enumerate(runs, start=1)
        if v is not None
    ]
    data = pd.DataFrame(rows)
    means = {m.key["condition_id"]: m for m in adjusted_means(data, "val_bpb")}
    assert means["c"].ci_low is None
    # its run less seed 3's shift, read from a (-0.0267 below its mean) and b (-0.03)
    assert 1.10 + 0.0266 < means["c"].mean < 1.10 + 0.0301
    assert all(means[c].ci_low < means[c].mean < means[c].ci_high for c in "ab")
    moved = {m.key["condition_id"]: m for m in adjusted_means(data.replace(1.10, 1.50), "val_bpb")}
    assert (moved["a"].mean, moved["a"].ci_low) == pytest.approx(
        (means["a"].mean, means["a"].ci_low)
    )


def test_conditions_sharing_one_residual_df_get_the_pooled_fits_interval() -> None:
    """The paper simulation's long-horizon l40s cell at 24 h: two conditions on seeds 1 and 2,
    a third left with seed 2. The fit has 1 residual df, half in each cell; each cell's sum of
    squares is still a chi-square on 1 df, so the interval is the pooled fit's on 1 df (t 12.7),
    not one on 0.5 df 13x wider (0.13 to 1.28 for a val_bpb of 0.706); and it covers 95%."""
    values = {"best": [0.703875, 0.708120], "control": [0.750537, 0.764668], "one": [None, 0.7078]}
    layout = pd.DataFrame(
        [
            {"condition_id": c, "seed": seed, "val_bpb": v}
            for c, runs in values.items()
            for seed, v in enumerate(runs, start=1)
            if v is not None
        ]
    )
    pooled = smf.ols("val_bpb ~ C(condition_id) + C(seed)", data=layout).fit()
    assert pooled.df_resid == 1
    half = stats.t.ppf(0.975, 1) * math.sqrt(pooled.scale / 2)  # a mean of 2 runs, 1 df
    means = {m.key["condition_id"]: m for m in adjusted_means(layout, "val_bpb")}
    best = means["best"]
    assert (best.ci_low, best.ci_high) == pytest.approx((best.mean - half, best.mean + half))
    assert 0.66 < best.ci_low < best.ci_high < 0.751
    rng = np.random.default_rng(20)
    truth = np.array([0.70, 0.75])
    cond = pd.Categorical(layout["condition_id"]).codes
    covered = []
    for _ in range(400):
        shifts = rng.normal(0, 0.003, 2)
        planted = np.array([*truth, 0.70])[cond] + shifts[layout["seed"] - 1]
        y = planted + rng.normal(0, 0.005, len(layout))
        fit = adjusted_means(layout.assign(val_bpb=y), "val_bpb")[:2]
        covered.append(
            [m.ci_low <= t + shifts.mean() <= m.ci_high for m, t in zip(fit, truth, strict=True)]
        )
    assert 0.93 <= np.mean(covered) <= 0.97, np.mean(covered)


def test_the_best_comes_with_its_runner_up_and_whether_they_are_separated() -> None:
    results, spec = confirm_results(seeds=3)
    best = analyse.stage_outcome(spec, spec.stage("confirm"), results, "q").best
    assert best is not None and best.runner_up is not None
    runner = best.runner_up
    # three anchors: the runner-up is read paired over the 3 seeds
    assert (best.candidates, runner.seeds) == (3, 3)
    gap = paired_difference(
        by_seed(results, runner.condition_id),
        by_seed(results, best.condition_id),
    )
    assert runner.difference == pytest.approx(runner.mean - best.mean)
    assert (runner.difference, runner.ci_low, runner.ci_high) == pytest.approx(
        (gap.effect, gap.ci_low, gap.ci_high)
    )
    assert runner.separated is (runner.ci_low > 0)
    assert runner.total == 9
    # Near-tied conditions: the bridge is the best with B at its centre, B's effect is tiny.
    tie = synthetic.ResponseModel(effects={"A": 0.10, "B": -0.0001}, noise_sd=0.01)
    results, spec = confirm_results(tie, seeds=3)
    best = analyse.stage_outcome(spec, spec.stage("confirm"), results, "q").best
    assert best is not None and best.runner_up is not None
    assert best.runner_up.separated is False


def test_the_best_has_an_interval_aware_of_the_candidates_it_was_picked_from() -> None:
    """The ranking's Student-t interval at the Bonferroni level over the 3 anchors: the one
    tests/core/statistics/test_comparisons.py measures."""
    results, spec = confirm_results(seeds=3)
    best = analyse.stage_outcome(spec, spec.stage("confirm"), results, "q").best
    assert best is not None and best.candidates == 3 and not best.adjusted
    mean, low, high = mean_interval(by_seed(results, best.condition_id), bonferroni_level(3))
    assert (best.mean, best.selection_ci_low, best.selection_ci_high) == pytest.approx(
        (mean, low, high)
    )
    assert best.selection_ci_low < best.ci_low < best.ci_high < best.selection_ci_high


def test_the_best_is_picked_per_pool() -> None:
    results = synthetic.simulate_stage(TWO_POOLS, "screen", pd.DataFrame(), MODEL)
    # The second host runs everything 0.3 lower and favours a different condition.
    second = results["pool"] == "cpu2"
    results.loc[second, "val_bpb"] -= 0.3
    results.loc[second & (results["condition_id"] == "c08"), "val_bpb"] -= 2.0
    out = analyse.stage_outcome(TWO_POOLS, TWO_POOLS.stage("screen"), results, "q")
    assert [(b.pool, b.condition_id) for b in out.best_per_pool] == [
        ("cpu", "c03"),
        ("cpu2", "c08"),
    ]
    assert out.best == out.best_per_pool[0]


def test_retention_across_pools_combines_each_factor_over_the_pools() -> None:
    """q is the factor's: Simes over the pools' p, then BH over the factors, the same on
    every pool."""
    results = synthetic.simulate_stage(TWO_POOLS, "screen", pd.DataFrame(), MODEL)
    out = analyse.stage_outcome(TWO_POOLS, TWO_POOLS.stage("screen"), results, "q")
    assert out.effects is not None
    families = out.effects.families
    assert {family.q_scope for family in families} == {"Simes over pool, BH over terms"}
    at_20 = [f for f in families if f.by["budget_s"] == 20]
    terms = [e.term for e in at_20[0].effects]
    combined = [fx.simes(f.effect(term).p for f in at_20) for term in terms]
    expected = dict(zip(terms, fx.benjamini_hochberg(combined), strict=True))
    for family in at_20:
        assert [e.q for e in family.effects] == pytest.approx([expected[t] for t in terms])


def design(base: int, generators: list[str]) -> np.ndarray:
    """Model matrix (intercept, then one column per factor) of the 2^(k-p) whose first
    `base` factors run a full factorial and the rest are the products `generators` name
    ("AB" = A times B)."""
    corners = np.array(list(itertools.product((-1.0, 1.0), repeat=base)))
    columns = [corners[:, j] for j in range(base)]
    columns += [np.prod(corners[:, [ord(c) - 65 for c in g]], axis=1) for g in generators]
    return np.column_stack([np.ones(len(corners)), *columns])


def factor_fdr(retained: np.ndarray) -> float:
    """Share of the retained factors that are null (all but the first), averaged over the
    replicates (factors x replicates), 0 where none is retained."""
    count = retained.sum(axis=0)
    false = retained[1:].sum(axis=0)
    return float(np.mean(np.where(count > 0, false / np.maximum(count, 1), 0.0)))


@pytest.mark.parametrize("pools", [2, 4])
def test_retention_across_pools_holds_the_factor_level_fdr(pools: int) -> None:
    """One real factor (2 SE on every pool) among the five of a 2^(5-1), 4,000 replicates:
    retaining a factor on any pool by Simes-then-BH keeps the factor-level FDR at 0.041 (two
    pools) and 0.037 (four); BH across every pool's effects, the rule it replaces, reached
    0.056 and 0.082 at the same power (0.90 and 0.97). docs/analysis.md quotes these."""
    x = design(4, ["ABCD"])
    rng = np.random.default_rng(1)
    planted = np.array([0.0, 1.0, 0, 0, 0, 0])  # beta: effect A = 2, its SE 0.5
    fits = []
    for _ in range(pools):
        y = (x @ planted)[:, None] + rng.standard_normal((len(x), 4000))
        fit = power.fit_family(x, y, range(1, 6), lenth=False)
        assert fit is not None
        fits.append(fit)
    retained = power.detect(fits).any(axis=0)
    # The rule it replaces: BH over every pool's effects at once, retained on any pool.
    q = power._bh_along_terms(np.concatenate([fit.p for fit in fits]))
    excludes = np.concatenate([(fit.ci_low > 0) | (fit.ci_high < 0) for fit in fits])
    before = (excludes & (q <= retention.FDR)).reshape(pools, 5, -1).any(axis=0)
    assert factor_fdr(retained) <= 0.05 < factor_fdr(before)
    assert abs(retained[0].mean() - before[0].mean()) <= 0.02


def saturated(effects: dict[str, float]) -> pd.DataFrame:
    """The 8-run 2^(7-4) design (D=AB, E=AC, F=BC, G=ABC) with exactly these effects."""
    rows = []
    for a in (-1, 1):
        for b in (-1, 1):
            for c in (-1, 1):
                levels = dict(A=a, B=b, C=c, D=a * b, E=a * c, F=b * c, G=a * b * c)
                y = 1.0 + sum(effects[k] / 2 * levels[k] for k in levels)
                rows.append({**levels, "budget_s": 60, "status": "succeeded", "y": y})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("a", "kept"), [(0.6, []), (1.0, ["A"])])
def test_a_saturated_family_retains_by_lenth_interval_and_bh_q(a: float, kept: list[str]) -> None:
    """One rule for every family: A=0.6 exceeds Lenth's margin of error (0.36) but its BH q
    is 0.14, so it is not retained; A=1.0 passes both (q 0.042 from the simulated p; Lenth's
    t on m/3 df gave it 0.10)."""
    effects = {"A": a, "B": 0.1, "C": -0.12, "D": 0.08, "E": 0.15, "F": -0.05, "G": 0.11}
    families = fx.fit_effects(saturated(effects), "y", list("ABCDEFG"), by="budget_s", lenth=True)
    (family,) = families
    assert family.lenth is not None and abs(family.effect("A").effect) > family.lenth.me
    assert retention.retained_factors(families) == kept


SATURATED = {
    7: design(3, ["AB", "AC", "BC", "ABC"]),
    15: design(4, ["AB", "AC", "AD", "BC", "BD", "CD", "ABC", "ABD", "ACD", "BCD", "ABCD"]),
}
"""The saturated 2^(7-4) and 2^(15-11): every column a main effect."""


@pytest.mark.parametrize(("effects", "screens"), [(7, 4000), (15, 2000)])
def test_lenth_per_effect_null_rate_is_nominal(effects: int, screens: int) -> None:
    """No effects at all: an effect's interval excludes zero, and its simulated p is at most
    0.05, 5 +/- 0.7% of the time (measured 5.2% for 7 effects, 4.9% for 15; Lenth's t on m/3
    df gave 2.1% and 2.9%). docs/analysis.md quotes the figures."""
    x = SATURATED[effects]
    y = np.random.default_rng(5).standard_normal((len(x), screens))
    fit = power.fit_family(x, y, range(1, effects + 1), lenth=True)
    assert fit is not None
    beyond = (fit.ci_low > 0) | (fit.ci_high < 0)
    assert abs(beyond.mean() - 0.05) <= 0.007
    assert abs(np.mean(fit.p <= 0.05) - 0.05) <= 0.007


def test_a_saturated_screen_retains_a_real_effect_of_six_standard_errors() -> None:
    """Seven effects (2^(7-4)), A planted at 6 SE, 2,000 screens: retained 47% of the time
    (Lenth's t on m/3 df: about 17%), at a factor-level FDR of 0.026."""
    x = SATURATED[7]
    planted = np.zeros(8)
    planted[1] = 6 * (2 / np.sqrt(8)) / 2  # beta of an effect of 6 SE
    y = (x @ planted)[:, None] + np.random.default_rng(6).standard_normal((8, 2000))
    fit = power.fit_family(x, y, range(1, 8), lenth=True)
    assert fit is not None
    retained = power.detect([fit])[0]
    assert retained[0].mean() >= 0.45
    assert factor_fdr(retained) <= 0.05


def cells(values: dict[str, dict[int, float | None]]) -> pd.DataFrame:
    """Runs of conditions at 20 s on one pool: {condition: {seed: value, None = diverged}}."""
    return pd.DataFrame(
        [
            {
                "condition_id": condition,
                "role": condition,
                "budget_s": 20,
                "seed": seed,
                "pool": "cpu",
                "status": "succeeded" if value is not None else "diverged",
                "val_bpb": value,
                **dict.fromkeys(SPEC.codes, -1),
            }
            for condition, by_seed in values.items()
            for seed, value in by_seed.items()
        ]
    )


def test_conditions_that_share_no_seeds_are_ranked_on_raw_means() -> None:
    """No common seed to adjust through: an adjusted mean would be arbitrary (0.89 and 1.14
    from values between 0.99 and 1.03)."""
    results = cells({"good": {1: 1.00, 2: 0.99, 3: None}, "bad": {1: None, 3: 1.03, 4: 1.02}})
    results = results[results["status"] == "succeeded"]
    ranking = rank_conditions(results, "val_bpb", "minimize")
    assert not ranking["adjusted"].any()
    assert dict(zip(ranking["condition_id"], ranking["mean"], strict=True)) == pytest.approx(
        {"good": 0.995, "bad": 1.025}
    )


def test_the_runner_up_is_compared_on_the_seeds_both_kept() -> None:
    # first's seed-4 run has no record yet (missing, not failed)
    results = cells(
        {"first": {1: 1.00, 2: 1.01, 3: 1.02}, "second": {1: 1.02, 2: 1.03, 3: 1.05, 4: 0.90}}
    )
    screen = synthetic.simulate_stage(SPEC, "screen", pd.DataFrame(), MODEL)
    both = pd.concat([screen, results.assign(stage="confirm")], ignore_index=True)
    best = analyse.stage_outcome(SPEC, SPEC.stage("confirm"), both, "q").best
    assert best is not None and best.condition_id == "first" and best.runner_up is not None
    runner = best.runner_up
    # seed 4 (where only the runner-up ran, and luckily) is left out of the comparison, and
    # the rest is read within seeds: differences 0.02, 0.02, 0.03, a paired t on 2 df
    assert runner.seeds == 3 and best.candidates == 2
    assert runner.difference == pytest.approx((1.02 + 1.03 + 1.05) / 3 - (1.00 + 1.01 + 1.02) / 3)
    half = stats.t.ppf(0.975, 2) * np.std([0.02, 0.02, 0.03], ddof=1) / np.sqrt(3)
    assert (runner.ci_low, runner.ci_high) == pytest.approx(
        (runner.difference - half, runner.difference + half)
    )
    assert runner.separated is True and runner.total == 9


def test_a_runner_up_sharing_one_seed_with_the_best_is_not_judged() -> None:
    results = cells({"first": {1: 1.00, 2: 1.01}, "second": {2: 1.05, 3: 1.06}})
    screen = synthetic.simulate_stage(SPEC, "screen", pd.DataFrame(), MODEL)
    both = pd.concat([screen, results.assign(stage="confirm")], ignore_index=True)
    best = analyse.stage_outcome(SPEC, SPEC.stage("confirm"), both, "q").best
    assert best is not None and best.runner_up is not None
    runner = best.runner_up
    assert (runner.seeds, runner.reason, runner.separated) == (
        1,
        "fewer than two common seeds",
        None,
    )
    assert runner.difference == pytest.approx(0.04) and runner.ci_low is None


def test_a_seed_adjusted_best_reads_the_fit_at_the_selection_level() -> None:
    """`third` lost seed 2: the means are seed-adjusted, and so is the best's selection-aware
    interval, at the Bonferroni level over the three candidates."""
    results = cells(
        {
            "first": {1: 1.00, 2: 1.02, 3: 1.01},
            "second": {1: 1.03, 2: 1.04, 3: 1.05},
            "third": {1: 1.06, 2: None, 3: 1.08},
        }
    )
    screen = synthetic.simulate_stage(SPEC, "screen", pd.DataFrame(), MODEL)
    both = pd.concat([screen, results.assign(stage="confirm")], ignore_index=True)
    best = analyse.stage_outcome(SPEC, SPEC.stage("confirm"), both, "q").best
    assert best is not None and best.condition_id == "first" and best.adjusted
    usable = results[results["status"] == "succeeded"]
    fit = adjusted_means(usable, "val_bpb", "condition_id", ["seed"], level=bonferroni_level(3))
    (first,) = [m for m in fit if m.key["condition_id"] == "first"]
    assert (best.candidates, best.selection_ci_low, best.selection_ci_high) == pytest.approx(
        (3, first.ci_low, first.ci_high)
    )
