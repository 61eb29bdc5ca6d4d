"""Planted-effect simulation: deterministic draws, the response model, and effects recovered.

Recovery closes the loop the way the test layers of docs/architecture.md ask: effects
planted in synthetic data come back out of the screen's analysis (`stagescreen.outcomes.analyse`)
within their noise.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest

from stagescreen.outcomes import analyse
from stagescreen.planning.planner import plan_stage
from stagescreen.planning.plans import PlannedRun
from stagescreen.statistics import synthetic
from stagescreen.study.parse import load_study

ROOT = Path(__file__).resolve().parents[3]
PAPER = load_study(ROOT / "examples" / "paper.yaml").spec
CODES = ["A", "B", "C", "D", "E"]


def screen_runs() -> list[PlannedRun]:
    return list(plan_stage(PAPER, PAPER.stage("screen"), pd.DataFrame()).runs)


def test_a_run_draws_the_same_value_whatever_the_order() -> None:
    model = synthetic.ResponseModel(effects={"A": 0.1})
    runs = screen_runs()
    forward = synthetic.simulate_runs(runs, model, "val_bpb").set_index("run_id")["val_bpb"]
    backward = synthetic.simulate_runs(runs[::-1], model, "val_bpb").set_index("run_id")
    assert backward["val_bpb"].loc[forward.index].tolist() == forward.tolist()
    assert forward.nunique() == len(forward)  # every run has its own noise


def test_draw_depends_on_seed_and_run_id() -> None:
    model = synthetic.ResponseModel(effects={})
    point = {"A": 1}
    same = model.draw(point, 600, 1, "screen-c01-10m-s1-a100")
    assert model.draw(point, 600, 1, "screen-c01-10m-s1-a100") == same
    assert model.draw(point, 600, 2, "screen-c01-10m-s1-a100") != same
    assert model.draw(point, 600, 1, "screen-c02-10m-s1-a100") != same


def test_without_noise_a_draw_is_the_mean() -> None:
    model = synthetic.ResponseModel(effects={"A": 0.1}, seed_sd=0.0, noise_sd=0.0)
    assert model.draw({"A": 1}, 120, 5, "x") == model.mean({"A": 1}, 120)


@pytest.mark.parametrize(
    ("point", "budget_s", "expected"),
    [
        ({"A": 1, "B": -1}, 120, 1.30 + 0.05 + 0.01),
        ({"A": -1, "B": 1}, 120, 1.30 - 0.05 - 0.01),
        ({"A": 0, "B": 0}, 120, 1.30),
        # One doubling of budget: base falls by gain, effects shrink by 2**-relaxation.
        ({"A": 1, "B": 1}, 240, 1.30 - 0.06 + (0.05 - 0.01) * 2**-0.8),
        ({"A": 1, "B": 1}, 480, 1.30 - 0.12 + (0.05 - 0.01) * 4**-0.8),
        # The interaction counts half its size times the product of the levels.
        ({"A": 1, "B": 1, "C": 1}, 120, 1.30 + 0.05 - 0.01 + 0.02),
        ({"A": 1, "B": 1, "C": -1}, 120, 1.30 + 0.05 - 0.01 - 0.02),
    ],
)
def test_response_model_mean(point: dict[str, int], budget_s: int, expected: float) -> None:
    model = synthetic.ResponseModel(effects={"A": 0.1, "B": -0.02}, interactions={"A:C": 0.04})
    assert model.mean(point, budget_s) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "planted"),
    [
        ("A=0.1", {"A": 0.1}),
        ("A=0.1,D=-0.18", {"A": 0.1, "D": -0.18}),
        (" A = 0.1 , B=2e-2 ,", {"A": 0.1, "B": 0.02}),
        ("A:B=0.01,E=0", {"A:B": 0.01, "E": 0.0}),
        ("", {}),
    ],
)
def test_parse_effects(text: str, planted: dict[str, float]) -> None:
    assert synthetic.parse_effects(text, CODES) == planted


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=0.1,Z=0.2", r"effect 'Z=0.2': expected TERM=VALUE .*\(A, B, C, D, E\)"),
        ("A", r"effect 'A': expected TERM=VALUE"),
        ("A:Q=0.1", r"effect 'A:Q=0.1'"),
        ("B=big", r"effect 'B=big': 'big' is not a number"),
    ],
)
def test_parse_effects_names_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synthetic.parse_effects(text, CODES)


def test_default_effects_cover_every_factor_with_one_null() -> None:
    planted = synthetic.default_effects(PAPER)
    assert list(planted) == CODES
    assert [code for code, size in planted.items() if size == 0.0] == ["E"]


def test_simulated_rows_carry_the_results_table_columns() -> None:
    runs = screen_runs()[:2]
    model = synthetic.ResponseModel(effects={}, overhead_s=30.0)
    frame = synthetic.simulate_runs(runs, model, "val_bpb")
    row = frame.iloc[0]
    assert (row["stage"], row["run_id"], row["status"]) == ("screen", runs[0].run_id, "succeeded")
    assert row["wall_s"] == runs[0].budget_s + 30.0
    assert row["DEPTH"] == runs[0].hyperparameters["DEPTH"]
    assert row["A"] == runs[0].levels["A"]
    assert bool(row["synthetic"])


def test_seeded_screen_recovers_the_planted_effects_and_retains_exactly_them() -> None:
    planted = {"A": 0.05, "B": 0.0, "C": -0.03, "D": 0.08, "E": 0.0}
    model = synthetic.ResponseModel(effects=planted, reference_s=600, seed_sd=0.002, noise_sd=0.004)
    results = synthetic.simulate_stage(PAPER, "seeded-screen", pd.DataFrame(), model)
    assert len(results) == 160
    record = analyse.stage_outcome(PAPER, PAPER.stage("seeded-screen"), results, "paper")
    assert record.effects is not None
    longest = next(f for f in record.effects.families if f.by["budget_s"] == 600)
    for code, size in planted.items():
        # 80 runs at 10 min: the effect's standard error is about 2 * 0.004 / sqrt(80).
        estimate = longest.effect(code)
        assert estimate.effect == pytest.approx(size, abs=0.004), code
        assert estimate.ci_low is not None and estimate.ci_high is not None
        assert estimate.ci_low <= size <= estimate.ci_high, code
    shorter = next(f for f in record.effects.families if f.by["budget_s"] == 300)
    d_at_5m = shorter.effect("D").effect
    assert d_at_5m == pytest.approx(0.08 * 2**0.8, abs=0.004)  # larger at the shorter budget
    assert record.retained == ["D", "A", "C"]


def test_greedy_stage_is_simulated_until_its_climb_stops() -> None:
    model = synthetic.ResponseModel(effects=synthetic.default_effects(PAPER))
    results = synthetic.simulate_stage(PAPER, "greedy-10m", pd.DataFrame(), model)
    assert 1 < len(results) <= 20
    assert plan_stage(PAPER, PAPER.stage("greedy-10m"), results).finished
    assert results["run_id"].is_unique
    assert results["val_bpb"].notna().all()


@pytest.mark.parametrize(
    ("budget_s", "sd"),
    [
        (60, 0.032),  # held at the nearest point below the first
        (300, 0.032),
        (424, (0.032 * 0.0086) ** 0.5),  # the geometric midpoint: log-linear in log-budget
        (600, 0.0086),
        (3600, 0.0086),  # held above the last
    ],
)
def test_noise_is_interpolated_in_log_budget_and_held_outside(budget_s: int, sd: float) -> None:
    model = synthetic.ResponseModel(effects={}, noise_points={300: 0.032, 600: 0.0086})
    assert model.noise_at(budget_s) == pytest.approx(sd, rel=2e-3)
    assert synthetic.ResponseModel(effects={}, noise_sd=0.01).noise_at(budget_s) == 0.01


def test_the_paper_calibration_is_what_its_docstrings_say() -> None:
    assert synthetic.fit_relaxation() == pytest.approx(1.380, abs=5e-4)
    noise = synthetic.paper_noise()
    assert noise[300] == pytest.approx(0.0318, abs=5e-5)
    assert noise[600] == pytest.approx(0.00863, abs=5e-6)
    assert synthetic.fit_spread() == pytest.approx(0.677, abs=5e-4)
    model = synthetic.paper_model(PAPER)
    assert model.reference_s == 120 and model.noise_points == noise
    # The measured table at its own budgets: A-D as 5.1 measured them, E null, A:B as 5.3.
    for budget in (120, 300, 600):
        for code in "ABCD":
            assert model.effect_at(code, budget) == synthetic.PAPER_MAIN_EFFECTS[budget][code]
        assert model.effect_at("E", budget) == 0.0
    assert model.effect_at("A:B", 300) == 0.0101 and model.effect_at("A:B", 600) == 0.0049
    # No A:B at 2 minutes in the paper: the 5-minute value grown back by the relaxation.
    assert model.effect_at("A:B", 120) == pytest.approx(0.0101 * 2.5**1.380, rel=1e-3)
    # Linear in log budget between points (424 s: halfway from 5 to 10 min), flat outside.
    assert model.effect_at("A", 424) == pytest.approx((0.0568 + 0.0180) / 2, abs=1e-4)
    assert model.effect_at("D", 3600) == 0.0346


def test_own_effects_or_a_relaxation_keep_the_relaxation_law() -> None:
    law = synthetic.paper_model(PAPER, relaxation=1.0)
    assert not law.effect_points
    assert law.effect_at("D", 120) == 0.1847 and law.effect_at("D", 600) == pytest.approx(0.03694)
    # A:B still reads the paper's +0.0101 at 5 minutes, shrunk by the exponent given.
    assert law.effect_at("A:B", 300) == pytest.approx(0.0101)
    own = synthetic.paper_model(PAPER, {"A": 0.1})
    assert not own.effect_points and own.relaxation == pytest.approx(1.380, abs=5e-4)
    assert own.effect_at("A", 240) == pytest.approx(0.1 * 2**-own.relaxation)


def test_the_table_is_stretched_and_planted_by_factor_name() -> None:
    quickstart = load_study(ROOT / "tests" / "data" / "quickstart-two-stages.yaml").spec
    points = synthetic.paper_effect_points(quickstart, stretch=10 / 120)
    assert sorted(points) == [10, 25, 50]
    assert points[50] == {"A": 0.0180, "B": 0.0059, "C": -0.0045, "A:B": 0.0049}
    # A code names a position in a design, not a hyperparameter: the paper's effects follow
    # their factors' names, and a factor the paper never measured gets none.
    paper = {factor.name: factor for factor in PAPER.factors}
    recoded = [
        paper["TOTAL_BATCH_SIZE"].model_copy(update={"code": "A"}),
        paper["ASPECT_RATIO"].model_copy(update={"code": "B"}),
        paper["MATRIX_LR"].model_copy(update={"code": "C"}),
        paper["DEPTH"].model_copy(update={"name": "WARMUP_RATIO", "code": "D"}),
        paper["DEPTH"].model_copy(update={"code": "E"}),
    ]
    mine = PAPER.model_copy(update={"factors": recoded})
    assert synthetic.paper_effect_points(mine)[600] == {
        "A": 0.0346,  # TOTAL_BATCH_SIZE, the paper's D
        "B": 0.0059,
        "C": -0.0045,
        "D": 0.0,  # WARMUP_RATIO: not the paper's batch-size D
        "E": 0.0180,  # DEPTH, the paper's A
        "B:E": 0.0049,  # DEPTH:ASPECT_RATIO in this study's codes and factor order
    }
    assert synthetic.unplanted(mine) == ["WARMUP_RATIO"]
    assert synthetic.unplanted(PAPER) == []


def test_cell_factors_have_unit_root_mean_square_and_grow_with_the_penalty() -> None:
    model = synthetic.paper_model(PAPER)
    corners = [
        dict(zip(CODES, levels, strict=True)) for levels in itertools.product((-1, 1), repeat=5)
    ]
    factors = [model.cell_factor(levels) for levels in corners]
    assert sum(f * f for f in factors) / len(factors) == pytest.approx(1.0)
    worst, best = synthetic.PAPER_CELL_LEVELS["c14"], synthetic.PAPER_CELL_LEVELS["c07"]
    assert model.cell_factor(worst) > 1 > model.cell_factor(best)
    maximise = PAPER.model_copy(
        update={"metric": PAPER.metric.model_copy(update={"goal": "maximize"})}
    )
    assert synthetic.paper_model(maximise).cell_factor(worst) < 1


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("0.004", 0.004), ("5m=0.032,10m=0.0086", {300: 0.032, 600: 0.0086}), ("0", 0.0)],
)
def test_parse_noise(text: str, parsed: object) -> None:
    assert synthetic.parse_noise(text) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [("-1", "must be >= 0"), ("5m=x", "'x' is not a number"), ("5m=0.1,2", "BUDGET=SD")],
)
def test_parse_noise_names_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synthetic.parse_noise(text)


def test_diverged_runs_have_the_status_and_no_metric() -> None:
    model = synthetic.ResponseModel(effects={"A": 0.1}, divergence=0.25)
    frame = synthetic.simulate_runs(screen_runs(), model, "val_bpb")
    diverged = frame["status"] == "diverged"
    assert 0 < diverged.sum() < len(frame)
    assert frame.loc[diverged, "val_bpb"].isna().all()
    assert frame.loc[~diverged, "val_bpb"].notna().all()
    again = synthetic.simulate_runs(screen_runs(), model, "val_bpb")
    assert again["status"].tolist() == frame["status"].tolist()


def test_seed_condition_noise_is_shared_across_budgets_of_one_seed() -> None:
    model = synthetic.ResponseModel(effects={}, seed_sd=0.0, noise_sd=0.0, seed_condition_sd=0.01)
    point = {"A": 1, "B": -1}
    at_5m = model.draw(point, 300, 1, "run-a") - model.mean(point, 300)
    at_10m = model.draw(point, 600, 1, "run-b") - model.mean(point, 600)
    assert at_5m == pytest.approx(at_10m) and at_5m != 0
    other_seed = model.draw(point, 300, 2, "run-a") - model.mean(point, 300)
    assert other_seed != pytest.approx(at_5m)


POINTS = synthetic.ResponseModel(
    effects={"A": 0.1},
    base=1.0,
    gain=0.0,
    effect_points={300: {"A": 0.04, "A:B": 0.01}, 1200: {"A": -0.02}},
    centre_points={600: {"B": 0.0}, 2400: {"B": -0.008}},
)


@pytest.mark.parametrize(
    ("term", "budget_s", "expected"),
    [
        ("A", 300, 0.04),  # a calibration point is reproduced
        ("A", 1200, -0.02),  # sign changes included
        ("A", 600, 0.01),  # 600 s is halfway in log budget: the effects' midpoint
        ("A", 60, 0.04),  # held flat outside the points
        ("A", 7200, -0.02),
        ("A:B", 600, 0.005),  # a term a point leaves out is 0 there
        ("C", 600, 0.0),
    ],
)
def test_effect_points_interpolate_in_log_budget(term: str, budget_s: int, expected: float) -> None:
    assert POINTS.effect_at(term, budget_s) == pytest.approx(expected)


def test_a_centre_shift_moves_only_the_centre() -> None:
    at = 2400
    corners = [POINTS.mean({"A": 1, "B": b}, at) for b in (-1, 1)]
    assert POINTS.mean({"A": 1, "B": 0}, at) == pytest.approx(sum(corners) / 2 - 0.008)
    # at 1200 s, halfway between the centre points in log budget, half the shift
    half = [POINTS.mean({"A": -1, "B": b}, 1200) for b in (-1, 1)]
    assert POINTS.mean({"A": -1, "B": 0}, 1200) == pytest.approx(sum(half) / 2 - 0.004)
    assert POINTS.mean({"A": 1, "B": 0}, 300) == pytest.approx(1.0 + 0.02)  # no shift yet
