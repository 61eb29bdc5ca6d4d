"""Replay: each planned run takes a measured value of its condition from a table."""

from __future__ import annotations

import pandas as pd
import pytest
from replayed import FACTORS, SWEEP, SWEEP_FILE, measured_table

from stagescreen.statistics import replay, synthetic
from stagescreen.study.parse import load_study
from stagescreen.study.spec import SpecError

SPEC = SWEEP.spec


def replayed(table: replay.Table) -> pd.DataFrame:
    results = pd.DataFrame()
    for stage in SPEC.stages:
        results = synthetic.simulate_stage(SPEC, stage.name, results, table)
    return results


def coded(frame: pd.DataFrame) -> pd.DataFrame:
    """The table's rows keyed as the results are: codes, budget in seconds."""
    return frame.assign(
        A=frame["WIDTH"].map({16: -1, 64: 1}),
        B=frame["LEARNING_RATE"].map({0.001: -1, 0.01: 1}),
        C=frame["DROPOUT"],
        budget_s=frame["budget"].map({"10m": 600, "30m": 1800}),
    )


def test_a_seeded_table_gives_each_run_its_seeds_value_of_its_condition() -> None:
    frame = measured_table()
    table = replay.table_for(SPEC, frame, "sweep.csv")
    assert table.read_as == {"WIDTH": "values", "LEARNING_RATE": "values", "DROPOUT": "codes"}
    assert table.budgets == [600, 1800] and table.seeded
    results = replayed(table)
    key = ["A", "B", "C", "budget_s", "seed"]
    measured = coded(frame).set_index(key)["val_loss"]
    expected = [measured.loc[tuple(row)] for row in results[key].itertuples(index=False)]
    assert results["val_loss"].tolist() == expected
    # The bridge point replayed the table's centre of DROPOUT.
    assert (results["C"] == 0).any()
    assert (results["replay"] == "sweep.csv").all() and "synthetic" not in results
    assert set(results["stage"]) == {"screen", "confirm"}


def test_without_a_seed_column_runs_draw_distinct_replicates_of_their_condition() -> None:
    frame = measured_table(replicates=6, seeded=False)
    results = replayed(replay.table_for(SPEC, frame, "sweep.csv", draw_seed=3))
    table = coded(frame)
    for (a, b, c, budget), runs in results.groupby(["A", "B", "C", "budget_s"]):
        mine = table[(a == table.A) & (b == table.B) & (c == table.C) & (table.budget_s == budget)]
        assert set(runs["val_loss"]) <= set(mine["val_loss"])
        assert runs["val_loss"].is_unique  # no replicate taken twice, across stages too
    again = replayed(replay.table_for(SPEC, frame, "sweep.csv", draw_seed=3))
    assert again["val_loss"].tolist() == results["val_loss"].tolist()


def _without(frame: pd.DataFrame, **levels: object) -> pd.DataFrame:
    drop = pd.Series(True, index=frame.index)
    for column, value in levels.items():
        drop &= frame[column] == value
    return frame[~drop]


BAD_TABLES = [
    ("empty", lambda f: f.iloc[:0], "the table has no rows"),
    ("no factor", lambda f: f.drop(columns="WIDTH"), "no column WIDTH (a column per factor"),
    ("no metric", lambda f: f.drop(columns="val_loss"), "no column val_loss"),
    (
        "a level not the factor's",
        lambda f: f.assign(WIDTH=f["WIDTH"].replace(64, 32)),
        "column WIDTH: 32 is not a level of WIDTH (its values 16, 40, 64, or the codes",
    ),
    (
        "a condition missing",
        lambda f: _without(f, WIDTH=64, LEARNING_RATE=0.01, DROPOUT=1),
        "the table has no run of condition c08 (WIDTH=64 (A+), LEARNING_RATE=0.01 (B+), "
        "DROPOUT=0.3 (C+))",
    ),
    (
        "no centre",
        lambda f: _without(f, DROPOUT=0),
        "it has no centre level of DROPOUT (a bridge point replays only where the table "
        "measured the centre)",
    ),
    (
        "a budget missing",
        lambda f: f[f["budget"] == "10m"],
        "the table has no run at budget 30m (stage 'screen', condition c01); its budgets: 10m",
    ),
    (
        "a seed missing",
        lambda f: f[f["seed"] != 2],
        "the table has no seed 2 of condition c01 at 10m (stage 'screen'); its seeds there: "
        "1, 3, 4",
    ),
    (
        "a seed twice",
        lambda f: pd.concat([f, f.iloc[:1]]),
        "the table has 2 rows of condition c01 at 10m with seed 1",
    ),
    (
        "a missing value",
        lambda f: f.assign(val_loss=f["val_loss"].where(f.index != 0)),
        "table row 1: val_loss is nan for condition c01 at 10m; each run replayed as "
        "succeeded needs a finite value (drop the row, give it one, or mark it diverged or "
        "failed in a status column)",
    ),
    (
        "too few replicates",
        lambda f: f.drop(columns="seed"),
        "the table's 4 replicates of condition c03 at 10m are all taken (stage 'confirm' "
        "needs one more)",
    ),
    (
        "a status no run ends with",
        lambda f: f.assign(status=["crashed"] + [""] * (len(f) - 1)),
        "column status: 'crashed' is not how a run ended (succeeded, diverged or failed; an "
        "empty entry reads as succeeded)",
    ),
    (
        "a bad budget",
        lambda f: f.assign(budget=f["budget"].replace("30m", "soon")),
        "column budget: expected a duration such as 120s",
    ),
]


@pytest.mark.parametrize(
    ("change", "message"),
    [(c, m) for _, c, m in BAD_TABLES],
    ids=[name for name, _, _ in BAD_TABLES],
)
def test_a_bad_table_is_refused_in_one_line_naming_what_is_wrong(change, message) -> None:
    with pytest.raises(replay.ReplayError) as error:
        replayed(replay.table_for(SPEC, change(measured_table()), "sweep.csv"))
    text = str(error.value)
    assert message in text and "\n" not in text


def test_diverged_and_failed_rows_replay_as_such_runs_without_a_metric() -> None:
    """A past sweep's losses count in the replayed decisions: a run that takes a diverged or
    failed row ends so, with no metric and a reason naming the row; a diverged row needs no
    value, and an empty status reads as succeeded."""
    frame = measured_table()
    first = (frame["WIDTH"] == 16) & (frame["LEARNING_RATE"] == 0.001) & (frame["DROPOUT"] == -1)
    ended = {1: "diverged", 2: "failed"}
    frame["status"] = ""
    for seed, status in ended.items():
        frame.loc[first & (frame["budget"] == "10m") & (frame["seed"] == seed), "status"] = status
    frame.loc[frame["status"] == "diverged", "val_loss"] = float("nan")
    results = replayed(replay.table_for(SPEC, frame, "sweep.csv"))
    lost = results[results["status"] != "succeeded"]
    assert sorted(zip(lost["stage"], lost["seed"], lost["status"], strict=True)) == [
        ("screen", 1, "diverged"),
        ("screen", 2, "failed"),
    ]
    assert (lost["condition_id"] == "c01").all() and (lost["budget_s"] == 600).all()
    assert lost["val_loss"].isna().all()
    assert lost["reason"].tolist() == ["diverged in sweep.csv, row 1", "failed in sweep.csv, row 2"]
    assert results.loc[results["status"] == "succeeded", "val_loss"].notna().all()
    # Without the status column the same table replays every run as succeeded.
    plain = replayed(replay.table_for(SPEC, measured_table(), "sweep.csv"))
    assert (plain["status"] == "succeeded").all() and len(plain) == len(results)


def test_the_table_columns_are_the_factor_names() -> None:
    assert [factor.name for factor in SPEC.factors] == FACTORS


def test_sequential_stages_replay_step_by_step() -> None:
    """Greedy and random stages plan from what they measured: each step is a table lookup."""
    text = SWEEP_FILE.read_text().replace(
        "  pools:\n",
        "    - {name: climb, kind: greedy, budgets: [30m], maxRuns: 6}\n"
        "    - {name: draws, kind: random, budgets: [30m], batches: 2, drawsPerBatch: 3}\n"
        "  pools:\n",
        1,
    )
    spec = load_study(text, trains=False).spec
    frame = measured_table()
    table = replay.table_for(spec, frame, "sweep.csv")
    results = pd.DataFrame()
    for stage in spec.stages:
        results = synthetic.simulate_stage(spec, stage.name, results, table)
    key = ["A", "B", "C", "budget_s", "seed"]
    measured = coded(frame).set_index(key)["val_loss"]
    later = results[results["stage"].isin(["climb", "draws"])]
    assert len(later[later["stage"] == "climb"]) == 6 and len(later[later["stage"] == "draws"]) == 6
    assert later["val_loss"].tolist() == [
        measured.loc[tuple(row)] for row in later[key].itertuples(index=False)
    ]


def test_a_replayed_study_skips_only_the_trainer_contract_checks() -> None:
    """Its factors are table columns, not trainer hyperparameters; every other check stands."""
    text = SWEEP_FILE.read_text()
    with pytest.raises(SpecError, match="WIDTH is not a variable the trainer reads"):
        load_study(text)
    broken = text.replace("factors: [C], role: bridge", "factors: [Z], role: bridge")
    with pytest.raises(SpecError) as error:
        load_study(broken, trains=False)
    assert "Z" in str(error.value) and "trainer reads" not in str(error.value)
