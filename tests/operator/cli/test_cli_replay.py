"""`stagescreen simulate --table`: a study replayed on measured runs, marked REPLAY."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from replayed import SWEEP_FILE, measured_table
from typer.testing import CliRunner

from stagescreen_operator.cli import app

runner = CliRunner()


def test_a_replayed_study_is_written_marked_replay_and_reported_with_its_decisions(
    tmp_path: Path,
) -> None:
    table = tmp_path / "sweep.csv"
    measured_table().to_csv(table, index=False)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["simulate", str(SWEEP_FILE), "--table", str(table), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(line.startswith("REPLAY ") for line in lines) and "SYNTHETIC" not in result.stdout
    assert lines[0] == (
        f"REPLAY study 'sweep': measured values from {table} (96 rows), no model was trained"
    )
    assert lines[1] == (
        "REPLAY table: factors read WIDTH as values, LEARNING_RATE as values, DROPOUT as "
        "codes; budgets 10m, 30m; the run with seed s takes seed s's value"
    )
    assert "as the best of 3 at 30m in stage 'confirm'" in lines[-2]
    screen = pd.read_parquet(out / "sweep/stages/screen/results.parquet")
    assert (screen["replay"] == "sweep.csv").all() and "synthetic" not in screen
    outcome = json.loads((out / "sweep/stages/confirm/outcome.json").read_text())
    assert outcome["replay"] == "sweep.csv" and outcome["synthetic"] is False

    reported = runner.invoke(app, ["report", str(out / "sweep")])
    assert reported.exit_code == 0, reported.output
    report = (out / "sweep/report.md").read_text()
    assert "> **REPLAY**: measured values from `sweep.csv`, no model was trained" in report
    assert "SYNTHETIC" not in report
    # The decision rules apply unchanged: the selection-aware best, the paired runner-up.
    assert "as the best of 3 (selection-aware" in report
    assert "paired over 3 seeds, 95% CI" in report
    stage = (out / "sweep/stages/screen/report.md").read_text()
    assert "REPLAY: " in stage and "> **REPLAY**" in stage


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (measured_table().drop(columns="val_loss"), "no column val_loss"),
        (measured_table().iloc[:0], "no rows (only a header)"),
        (
            measured_table().assign(val_loss=lambda f: f["val_loss"].where(f.index != 0)),
            "table line 2: val_loss is nan for condition c01 at 10m",  # the header is line 1
        ),
        (measured_table().query("budget == '10m'"), "the table has no run at budget 30m"),
    ],
    ids=["no metric", "empty", "a missing value", "budget missing"],
)
def test_a_bad_table_is_one_error_line_and_exit_2(
    tmp_path: Path, table: pd.DataFrame, message: str
) -> None:
    path = tmp_path / "bad.csv"
    table.to_csv(path, index=False)
    result = runner.invoke(
        app, ["simulate", str(SWEEP_FILE), "--table", str(path), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: --table {str(path)!r}: ") and message in result.stderr
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_the_table_is_read_by_the_one_reader_naming_the_option(tmp_path: Path) -> None:
    """`--table` is read as `effects` reads RESULTS: a folder, another file type or a file
    that does not parse is one error line naming --table and what to give."""
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"junk")
    cases = [
        (tmp_path, f"--table {str(tmp_path)!r} is a folder: give a .csv or .parquet file"),
        (junk, f"--table {str(junk)!r}: cannot be read as a parquet file"),
    ]
    for path, message in cases:
        out = tmp_path / "o"
        result = runner.invoke(
            app, ["simulate", str(SWEEP_FILE), "--table", str(path), "--out", str(out)]
        )
        assert result.exit_code == 2 and result.stderr.count("\n") == 1
        assert result.stderr.startswith(f"error: {message}")
        assert not out.exists()


def test_values_and_codes_read_alike_and_parquet_replays_as_csv(tmp_path: Path) -> None:
    frame = measured_table()
    codes = frame.assign(WIDTH=frame["WIDTH"].map({16: -1, 64: 1}))
    values = frame.assign(DROPOUT=frame["DROPOUT"].map({-1: 0.0, 0: 0.15, 1: 0.3}))
    codes.to_parquet(tmp_path / "t.parquet")
    values.to_csv(tmp_path / "t.csv", index=False)
    measured = {}
    for name, read in (("t.parquet", "WIDTH as codes"), ("t.csv", "DROPOUT as values")):
        out = tmp_path / name.replace(".", "-")
        result = runner.invoke(
            app, ["simulate", str(SWEEP_FILE), "--table", str(tmp_path / name), "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert read in result.stdout
        measured[name] = pd.read_parquet(out / "sweep/stages/confirm/results.parquet")["val_loss"]
    assert measured["t.parquet"].tolist() == measured["t.csv"].tolist()


@pytest.mark.parametrize(
    ("options", "named"),
    [(["--replicates", "10"], "--replicates"), (["--effects", "A=0.1"], "--effects")],
)
def test_table_refuses_the_planted_model_and_power_options(
    tmp_path: Path, options: list[str], named: str
) -> None:
    path = tmp_path / "t.csv"
    measured_table().to_csv(path, index=False)
    result = runner.invoke(app, ["simulate", str(SWEEP_FILE), "--table", str(path), *options])
    assert result.exit_code == 2
    assert f"--table replays measured values; it takes no model or power option (got {named})" in (
        result.stderr
    )


def test_without_table_the_study_is_held_to_the_trainer_contract(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", str(SWEEP_FILE), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "WIDTH is not a variable the trainer reads" in result.stderr


def test_a_categorical_factor_replays_by_its_levels_as_written(tmp_path: Path) -> None:
    """An activation measured as text: the table's `relu`/`gelu` are the factor's levels, the
    runs take their rows' values, and the effect reads gelu minus relu."""
    spec = SWEEP_FILE.read_text().replace(
        "{name: WIDTH, code: A, low: 16, high: 64, scale: integer}",
        "{name: ACTIVATION, code: A, levels: [relu, gelu]}",
    )
    study = tmp_path / "study.yaml"
    study.write_text(spec)
    frame = measured_table()
    frame["ACTIVATION"] = frame.pop("WIDTH").map({16: "relu", 64: "gelu"})
    table = tmp_path / "sweep.parquet"
    frame.to_parquet(table)
    out = tmp_path / "out"
    result = runner.invoke(app, ["simulate", str(study), "--table", str(table), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "factors read ACTIVATION as values" in result.stdout
    screen = pd.read_parquet(out / "sweep/stages/screen/results.parquet")
    measured = frame.set_index(["ACTIVATION", "LEARNING_RATE", "DROPOUT", "budget", "seed"])
    for run in screen.itertuples():
        activation = "gelu" if run.A == 1 else "relu"
        rate = 0.01 if run.B == 1 else 0.001
        budget = f"{run.budget_s // 60}m"
        assert run.val_loss == measured.loc[(activation, rate, run.C, budget, run.seed), "val_loss"]
    outcome = json.loads((out / "sweep/stages/screen/outcome.json").read_text())
    effect = outcome["effects"]["families"][-1]["effects"][0]
    assert effect["term"] == "A" and effect["effect"] > 0.09  # gelu (was WIDTH 64) costs 0.1


def test_a_past_sweeps_diverged_and_failed_runs_count_in_the_replayed_study(
    tmp_path: Path,
) -> None:
    """A status column: the runs that take a diverged or failed row are written so, and the
    stage's outcome counts them as it would a real study's."""
    frame = measured_table()
    frame["status"] = ""
    screen_c01 = (frame["WIDTH"] == 16) & (frame["LEARNING_RATE"] == 0.001)
    screen_c01 &= (frame["DROPOUT"] == -1) & (frame["budget"] == "10m")
    frame.loc[screen_c01 & (frame["seed"] == 1), ["status", "val_loss"]] = ["diverged", None]
    frame.loc[screen_c01 & (frame["seed"] == 2), "status"] = "failed"
    table = tmp_path / "sweep.csv"
    frame.to_csv(table, index=False)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["simulate", str(SWEEP_FILE), "--table", str(table), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    screen = pd.read_parquet(out / "sweep/stages/screen/results.parquet")
    lost = screen[screen["status"] != "succeeded"].sort_values("seed")
    assert lost["status"].tolist() == ["diverged", "failed"]
    assert lost["reason"].tolist() == [
        "diverged in sweep.csv, line 2",
        "failed in sweep.csv, line 3",
    ]
    outcome = json.loads((out / "sweep/stages/screen/outcome.json").read_text())
    assert outcome["runs"] | {"missing": []} == {
        "planned": 32,
        "succeeded": 30,
        "diverged": 1,
        "failed": 1,
        "missing": [],
        "pending": 0,
    }
