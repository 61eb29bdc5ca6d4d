"""The method benchmark (bench/method_efficiency.py): its surface reproduces the paper's
numbers it is built from, its scoring is right where the answer is known, and a few
repetitions of every method size behave as a sweep should."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from benchscript import load

from stagescreen.statistics import synthetic

bench = load("method_efficiency")
from benchdoc import replace_section  # noqa: E402  (bench/ joins sys.path as load runs)

SPEC = bench.study_for(bench.VARIANTS[0], 1)
SURFACE = bench.paper_surface(SPEC)


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
        for levels in bench.reachable(SPEC)
    }
    best = min(means.values())
    winners = [point for point, mean in means.items() if mean <= best + 1e-12]
    assert winners and all(point[1] == 0 for point in winners)  # B, the bridge factor
    corners = [mean for point, mean in means.items() if 0 not in point]
    assert min(corners) - best > 0.009  # about the 60-minute bridge's advantage (5.9)
    flat = bench.paper_surface(SPEC, centre=False)
    assert min(flat.mean(levels, 3600) for levels in bench.reachable(SPEC)) == pytest.approx(
        min(flat.mean(levels, 3600) for levels in bench.reachable(SPEC) if 0 not in levels.values())
    )


def test_without_noise_the_staged_workflow_recommends_the_winner() -> None:
    quiet = dataclasses.replace(SURFACE, seed_sd=0.0, noise_points={}, noise_sd=0.0)
    for variant in [v for v in bench.VARIANTS if v.method == "staged"][:2]:
        trial = bench.run_variant(variant, 1, quiet)
        assert trial.correct and trial.regret == pytest.approx(0.0, abs=1e-12)
        assert trial.retained_right  # every non-null factor, with its sign, and E left out


def test_a_few_repetitions_behave_as_a_sweep() -> None:
    rows = bench.run(repetitions=2, jobs=1)
    assert [(r.method, r.label) for r in rows] == [(v.method, v.label) for v in bench.VARIANTS]
    for row in rows:
        assert row.repetitions == 2 and row.gpu_hours > 0 and row.regret >= 0
        assert (row.retained is None) == (row.method != "staged")
    for method in ("staged", "random", "halving"):  # fixed-cost plans grow with the sweep
        hours = [row.gpu_hours for row in rows if row.method == method]
        assert hours == sorted(hours) and len(set(hours)) == len(hours)
    # corners only: the centre-point winner is out of reach at any cost
    assert all(row.correct == 0 for row in rows if row.method in ("random", "halving"))


def row(method: str, hours: float, correct: float) -> object:
    return bench.Row(method, f"{method} {hours}", hours, correct, None, 0.0, 200)


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


def test_writing_the_section_leaves_the_other_sections(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    replace_section(path, f"{bench.SECTION}\n\nfirst\n")
    replace_section(path, f"{bench.SECTION}\n\nsecond\n")
    text = path.read_text()
    assert "kept" in text and "second" in text and "first" not in text
