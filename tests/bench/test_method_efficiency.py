"""The method benchmark (bench/method_efficiency.py): its surfaces are what they claim (the
paper's reproduces the numbers it is built from, the random ones reverse signs at the planted
rate), every method chooses among the same candidates at matched cost, its scoring is right
where the answer is known, and a repetition of every method size behaves as a sweep should."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from benchscript import load

from stagescreen.statistics import synthetic

bench = load("method_efficiency")
from benchdoc import replace_section  # noqa: E402  (bench/ joins sys.path as load runs)

SPEC = bench.study_for(bench.VARIANTS[0], 1)
SURFACE = bench.paper_surface(SPEC)
CENTRES = [levels for levels in bench.candidates(SPEC) if levels["B"] == 0]


def gap(left: dict[str, int], right: dict[str, int], budget_s: int) -> float:
    return float(SURFACE.mean(left, budget_s) - SURFACE.mean(right, budget_s))


def test_the_surface_reproduces_the_paper_gaps_it_is_built_from() -> None:
    anchors = {role: anchor for role, anchor in bench.ANCHORS_60M.items()}
    best = anchors["screened_best"]
    for role in ("bridge_best", "control"):
        expected = anchors[role][1] - best[1]
        assert gap(anchors[role][0], best[0], 3600) == pytest.approx(expected, abs=1e-9)
    bridge = {**best[0], "B": 0}
    for budget, expected in bench.BRIDGE_MINUS_BEST.items():
        assert gap(bridge, best[0], budget) == pytest.approx(expected, abs=1e-9)
    for budget, effects in synthetic.paper_effect_points(SPEC).items():
        for term, effect in effects.items():
            assert SURFACE.effect_at(term, budget) == pytest.approx(effect)


def test_the_winner_is_a_centre_point_no_corner_reaches() -> None:
    means = {
        tuple(levels.values()): SURFACE.mean(levels, bench.HORIZON_S)
        for levels in bench.candidates(SPEC)
    }
    best = min(means.values())
    winners = [point for point, mean in means.items() if mean <= best + 1e-12]
    assert winners and all(point[1] == 0 for point in winners)  # B, the bridge factor
    corners = [mean for point, mean in means.items() if 0 not in point]
    assert min(corners) - best > 0.009  # about the 60-minute bridge's advantage (5.9)
    flat = bench.paper_surface(SPEC, centre=False)
    assert 0 not in bench.winner(flat, SPEC, 3600).values()


def reversed_share(share: float, surfaces: int = 300) -> tuple[float, int]:
    """The share of planted terms (centre shifts included) whose 2-minute and 60-minute
    values differ in sign, over `surfaces` random surfaces, and the number of terms."""
    shape = bench.SurfaceShape(reversal_share=share)
    flips, terms = 0, 0
    for index in range(surfaces):
        model = bench.random_surface(SPEC, np.random.default_rng([7, index]), shape)
        pairs = [
            (model.effect_points[120][t], model.effect_points[3600][t])
            for t in model.effect_points[120]
        ] + [
            (model.centre_points[120][c], model.centre_points[3600][c])
            for c in model.centre_points.get(120, {})
        ]
        flips += sum(math.copysign(1, a) != math.copysign(1, b) for a, b in pairs)
        terms += len(pairs)
    return flips / terms, terms


@pytest.mark.parametrize("share", [0.0, 0.2, 0.5])
def test_random_surfaces_reverse_signs_at_the_planted_rate(share: float) -> None:
    rate, terms = reversed_share(share)
    assert terms == 300 * (5 + 3 + 1)  # five mains, three interactions, B's centre
    assert rate == pytest.approx(share, abs=3 * math.sqrt(0.25 / terms))


def test_a_random_surface_relaxes_between_its_two_budgets() -> None:
    model = bench.random_surface(SPEC, np.random.default_rng(3))
    assert sorted(model.effect_points) == sorted(model.centre_points) == [120, 3600]
    for term, early in model.effect_points[120].items():
        late = model.effect_points[3600][term]
        middle = model.effect_at(term, 600)  # linear in log budget between the two
        weight = math.log(600 / 120) / math.log(3600 / 120)
        assert middle == pytest.approx(early + weight * (late - early))
    centreless = bench.random_surface(
        SPEC, np.random.default_rng(3), bench.SurfaceShape(centre_sd=None)
    )
    assert centreless.centre_points == {}


def ladder(method: str, size: int) -> Any:
    return next(v for v in bench.VARIANTS if (v.method, v.size) == (method, size))


@pytest.mark.parametrize("method", ["random", "halving", "top-K"])
def test_every_ladder_draws_from_the_candidates_centres_included(method: str) -> None:
    assert len(bench.candidates(SPEC)) == 48 and len(CENTRES) == 16
    model = bench.random_surface(SPEC, np.random.default_rng(1))
    drawn = set()
    for repetition in (1, 2, 3):
        results, _ = bench.run_ladder(ladder(method, 2), SPEC, repetition, model)
        first = results[results["budget_s"] == results["budget_s"].min()]
        drawn |= {tuple(int(row[c]) for c in SPEC.codes) for _, row in first.iterrows()}
    assert any(point[1] == 0 for point in drawn)
    assert drawn <= {tuple(levels.values()) for levels in bench.candidates(SPEC)}


def test_top_k_runs_every_candidate_short_then_its_k_best_at_the_horizon() -> None:
    variant = ladder("top-K", 2)
    top = variant.rungs[-1]
    model = bench.random_surface(SPEC, np.random.default_rng(5))
    results, answer = bench.run_ladder(variant, SPEC, 1, model)
    short = results[results["budget_s"] == 120]
    assert len(short) == short["condition_id"].nunique() == 48 and set(short["seed"]) == {101}
    long = results[results["budget_s"] == 3600]
    assert set(long["seed"]) == {101 + s for s in range(top.seeds)}
    best_short = short.sort_values("val_bpb")["condition_id"].head(top.size)
    assert set(long["condition_id"]) == set(best_short)
    assert len(long) == top.size * top.seeds
    means = long.groupby("condition_id")["val_bpb"].mean()
    assert answer == {
        c: int(long.loc[long["condition_id"] == means.idxmin(), c].iloc[0]) for c in SPEC.codes
    }
    assert results["budget_s"].sum() / 3600 == pytest.approx(bench.ladder_hours(variant.rungs))


def test_baselines_are_matched_to_the_staged_costs_point_for_point() -> None:
    staged = [v for v in bench.VARIANTS if v.method == "staged"]
    hours = {
        v.size: bench.budget_hours(bench.programme_cost(bench.study_for(v, 1))) for v in staged
    }
    assert [round(h, 2) for h in hours.values()] == [3.33, 10.67, 14.67, 18.67, 36.0]
    for variant in bench.VARIANTS:
        if variant.method == "staged":
            continue
        target = hours[variant.size]
        if variant.method == "greedy":
            (stage,) = variant.stages
            assert abs(stage["maxRuns"] - target) <= 0.5  # one 60-minute run a step
        elif variant.method == "random":
            assert abs(bench.ladder_hours(variant.rungs) - target) <= 1 / 12
        elif variant.method == "top-K":
            step = variant.rungs[-1].seeds  # one more of the K costs its seeds' hours
            assert abs(bench.ladder_hours(variant.rungs) - target) <= step / 2
        else:  # halving: no other first rung is closer at its seeds
            first = variant.rungs[0]
            cost = abs(bench.ladder_hours(variant.rungs) - target)
            for n in range(3, 49):
                rungs = bench.halving_rungs(n, 3, first.seeds)
                assert abs(bench.ladder_hours(rungs) - target) >= cost - 1e-9


def test_without_noise_the_staged_workflow_recommends_the_winner() -> None:
    quiet = dataclasses.replace(SURFACE, seed_sd=0.0, noise_points={}, noise_sd=0.0)
    for variant in [v for v in bench.VARIANTS if v.method == "staged"][:2]:
        trial = bench.run_variant(variant, 1, quiet)
        assert trial.correct and trial.regret == pytest.approx(0.0, abs=1e-12)
        assert trial.retained_right  # every non-null factor, with its sign, and E left out


def test_a_repetition_behaves_as_a_sweep() -> None:
    sweep = bench.run(repetitions=1, jobs=1, surface="random")
    rows = sweep.rows
    assert [(r.method, r.label) for r in rows] == [(v.method, v.label) for v in bench.VARIANTS]
    for row in rows:
        assert row.repetitions == 1 and row.gpu_hours > 0 and row.regret >= 0
        assert (row.retained is None) == (row.method != "staged")
    for method in ("staged", "random", "halving", "top-K"):  # fixed-cost plans grow
        hours = [row.gpu_hours for row in rows if row.method == method]
        assert hours == sorted(hours)
    assert 0 <= sweep.moved_from_10m <= 1


def row(method: str, hours: float, correct: float, size: int = 1) -> object:
    return bench.Row(method, f"{method} {hours}", hours, correct, None, 0.0, 200, size)


@pytest.mark.parametrize(
    ("rows", "last_line"),
    [
        ([row("staged", 4, 0.97), row("greedy", 8, 0.96)], "Goal met"),
        ([row("staged", 5, 0.97), row("greedy", 8, 0.96)], "Goal not met: staged costs 0.62x"),
        ([row("staged", 4, 0.97), row("greedy", 8, 0.6)], "Goal met within this sweep"),
        ([row("staged", 4, 0.90), row("greedy", 8, 0.96)], "Goal not met: no staged size"),
    ],
)
def test_the_verdict_reads_the_goal_off_the_sweep(rows: list[object], last_line: str) -> None:
    assert bench.verdict(rows)[-1].startswith(last_line)


def test_the_equal_cost_verdict_compares_each_staged_size_with_its_matches() -> None:
    rows = [
        row("staged", 3, 0.6, 1),
        row("staged", 10, 0.7, 2),
        row("random", 3, 0.4, 1),
        row("greedy", 3, 0.5, 1),
        row("random", 10, 0.5, 2),
        row("greedy", 10, 0.8, 2),
    ]
    lines = bench.equal_cost_verdict(rows)
    assert lines[0].endswith("staged beats all.")
    assert lines[1].endswith("staged does not beat greedy.")
    assert lines[-1].startswith(
        "Goal (issue 19: staged beats every baseline at equal GPU-h) not met"
    )
    assert "at 1 of 2 sizes" in lines[-1]
    one_size = bench.equal_cost_verdict(rows[:1] + rows[2:4])[-1]
    assert "met: staged beats all at 1 of 1 sizes" in one_size and "not met" not in one_size


def test_every_surface_has_its_own_section_and_reading() -> None:
    assert set(bench.SECTIONS) == set(bench.SURFACES) == set(bench.READING)
    assert len(set(bench.SECTIONS.values())) == 3
    assert all(bench.SECTIONS[s].startswith("## Sensitivity") for s in ("paper", "paper-no-centre"))


def test_writing_the_section_leaves_the_other_sections(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    section = bench.SECTIONS["random"]
    replace_section(path, f"{section}\n\nfirst\n")
    replace_section(path, f"{section}\n\nsecond\n")
    text = path.read_text()
    assert "kept" in text and "second" in text and "first" not in text
