"""The noise floor: a stage's measured run noise and the smallest contrast its design detects.

Checked against statsmodels on small designs with known residuals, and the detectable size
against the noncentral t it approximates: a contrast of that size is found about 80% of the
time.
"""

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
from stagescreen.statistics import families as fx
from stagescreen.statistics import noise, synthetic
from stagescreen.study.parse import load_study

ROOT = Path(__file__).resolve().parents[3]
QUICKSTART = load_study(ROOT / "tests" / "data" / "quickstart-two-stages.yaml").spec


def full_factorial(seeds: int, rng: np.random.Generator) -> pd.DataFrame:
    """2^3 conditions x `seeds` seeds at 600 s: A real (0.05), seed shifts, noise sd 0.01."""
    rows = []
    shifts = rng.normal(0, 0.02, seeds)
    for i, (a, b, c) in enumerate(itertools.product((-1, 1), repeat=3)):
        for seed in range(seeds):
            y = 1 + 0.025 * a + shifts[seed] + rng.normal(0, 0.01)
            rows.append(
                {"condition_id": f"c{i + 1:02d}", "A": a, "B": b, "C": c, "seed": seed + 1}
                | {"budget_s": 600, "pool": "cpu", "status": "succeeded", "y": y}
            )
    return pd.DataFrame(rows)


def test_an_effect_floor_is_the_fits_residual_sd_and_its_se() -> None:
    rows = full_factorial(seeds=3, rng=np.random.default_rng(1))
    families = fx.fit_effects(rows, "y", ["A", "B", "C"], by="budget_s", block="seed")
    [floor] = noise.effect_floors(families, rows, "y", ["A", "B", "C"])
    reference = smf.ols("y ~ A + B + c + C(seed)", data=rows.rename(columns={"C": "c"})).fit()
    assert floor.df == reference.df_resid == 24 - 1 - 3 - 2
    assert floor.sd == pytest.approx(math.sqrt(reference.scale), rel=1e-9)
    # A complete 2^3: every effect's se is 2 sd / sqrt(n).
    assert floor.se == pytest.approx(2 * floor.sd / math.sqrt(24), rel=1e-9)
    t = stats.t.ppf(0.975, 18) + stats.t.ppf(0.8, 18)
    assert floor.detectable == pytest.approx(t * floor.se, rel=1e-12)
    assert (floor.budget_s, floor.pool, floor.contrast) == (600, None, "effect")


def test_two_conditions_of_a_single_seed_screen_differ_by_more_than_an_effect() -> None:
    """A single-seed 2^3 replicated nowhere but in its residual df: an effect averages 4 runs
    on each side (se 2 sd / sqrt(8)), two conditions are one run each (se sd * sqrt(2)), so
    the difference between two conditions detectable is twice the effect's."""
    rows = full_factorial(seeds=1, rng=np.random.default_rng(3))
    families = fx.fit_effects(rows, "y", ["A", "B", "C"], by="budget_s")
    [floor] = noise.effect_floors(families, rows, "y", ["A", "B", "C"])
    assert floor.se == pytest.approx(2 * floor.sd / math.sqrt(8), rel=1e-9)
    assert floor.df == 4
    difference = noise.difference_detectable(floor, seeds=1)
    assert difference == pytest.approx(noise.detectable(floor.sd * math.sqrt(2), 4), rel=1e-12)
    assert difference == pytest.approx(2 * floor.detectable, rel=1e-9)
    # on 4 seeds each condition's mean halves the run noise's sd
    assert noise.difference_detectable(floor, seeds=4) == pytest.approx(difference / 2)
    # a difference record is its own figure
    [own] = noise.difference_floors(full_factorial(4, np.random.default_rng(4)), "y")
    assert noise.difference_detectable(own, seeds=1) == own.detectable
    saturated = noise.NoiseFloor(budget_s=600, contrast="effect")
    assert noise.difference_detectable(saturated, seeds=1) is None


def test_a_contrast_of_the_detectable_size_is_found_about_80_percent_of_the_time() -> None:
    for df in (4, 18, 70):
        ncp = noise.detectable(1.0, df)
        critical = stats.t.ppf(0.975, df)
        found = stats.nct.sf(critical, df, ncp) + stats.nct.cdf(-critical, df, ncp)
        assert 0.78 <= found <= 0.81, (df, found)


def test_a_difference_floor_reads_condition_plus_seed() -> None:
    rows = full_factorial(seeds=4, rng=np.random.default_rng(2))
    rows = rows[rows["condition_id"].isin(["c01", "c04", "c08"])]
    [floor] = noise.difference_floors(rows, "y")
    reference = smf.ols("y ~ C(condition_id) + C(seed)", data=rows.drop(columns="C")).fit()
    assert floor.df == reference.df_resid == 12 - 3 - 3
    assert floor.sd == pytest.approx(math.sqrt(reference.scale), rel=1e-9)
    assert floor.se == pytest.approx(floor.sd * math.sqrt(2 / 4))
    assert (floor.pool, floor.contrast) == ("cpu", "difference")


def test_a_saturated_family_has_no_measured_noise() -> None:
    rows = full_factorial(seeds=1, rng=np.random.default_rng(3))
    half = rows[rows["C"] == rows["A"] * rows["B"]]  # four runs, three effects: no df left
    families = fx.fit_effects(half, "y", ["A", "B", "C"], by="budget_s", lenth=True)
    [floor] = noise.effect_floors(families, half, "y", ["A", "B", "C"])
    assert (floor.sd, floor.df, floor.se, floor.detectable) == (None, None, None, None)


def test_pooled_noise_weights_each_budgets_variances_by_df() -> None:
    floors = [
        noise.NoiseFloor(budget_s=300, contrast="effect", sd=0.03, df=10),
        noise.NoiseFloor(budget_s=300, contrast="difference", sd=0.01, df=30),
        noise.NoiseFloor(budget_s=600, contrast="effect", sd=0.008, df=70),
        noise.NoiseFloor(budget_s=1200, contrast="effect"),
    ]
    pooled = noise.pooled_noise(floors)
    assert list(pooled) == [300, 600]
    assert pooled[300] == pytest.approx(math.sqrt((10 * 0.03**2 + 30 * 0.01**2) / 40))
    assert pooled[600] == 0.008


def test_every_analysed_stage_records_its_noise_floor() -> None:
    model = synthetic.ResponseModel(effects={"A": 0.1}, seed_sd=0.0, noise_sd=0.004)
    results = synthetic.simulate_stage(QUICKSTART, "screen", pd.DataFrame(), model)
    results = synthetic.simulate_stage(QUICKSTART, "confirm", results, model)
    for stage, contrast in (("screen", "effect"), ("confirm", "difference")):
        out = analyse.stage_outcome(QUICKSTART, QUICKSTART.stage(stage), results, "quickstart")
        assert [f.budget_s for f in out.noise_floor] == [10, 20], stage
        for floor in out.noise_floor:
            assert floor.contrast == contrast
            assert floor.sd is not None and 0.001 < floor.sd < 0.012, (stage, floor)
            assert floor.detectable is not None and floor.detectable > floor.se
