"""`stagescreen status` and `report` on a folder that holds no study name the one meant."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagescreen_operator.cli import app
from stagescreen_operator.cli.report import did_you_mean

runner = CliRunner()


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory as `make demo` leaves it: runs/demo/quickstart holds the study."""
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "runs" / "demo" / "quickstart"
    study.mkdir(parents=True)
    (study / "spec.yaml").write_text("kind: ScreeningStudy\n")
    (tmp_path / "sim" / "paper").mkdir(parents=True)
    (tmp_path / "sim" / "paper" / "spec.yaml").write_text("kind: ScreeningStudy\n")
    return tmp_path


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("runs/quickstart", "runs/demo/quickstart"),  # after `make demo`, not a plain `run`
        ("./runs/quickstart/", "runs/demo/quickstart"),
        ("quickstart", "runs/demo/quickstart"),
        ("runs/demo", "runs/demo/quickstart"),  # the parent of the study
        ("runs/demo/quickstar", "runs/demo/quickstart"),  # a typo
        ("sim/papr", "sim/paper"),
    ],
)
def test_a_folder_without_a_study_suggests_the_one_meant(given: str, meant: str) -> None:
    assert did_you_mean(given) == f"; did you mean {meant}?"
    for command in ("status", "report"):
        result = runner.invoke(app, [command, given])
        assert result.exit_code == 2
        assert result.stderr.startswith(f"error: no study at {given!r}: ")
        assert result.stderr.rstrip().endswith(f"; did you mean {meant}?")


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("given", ["nowhere/else", "runs/other", "s3://bucket/quickstart"])
def test_no_suggestion_when_nothing_is_near(given: str) -> None:
    assert did_you_mean(given) == ""


QUICKSTART = Path(__file__).resolve().parents[3] / "tests" / "data" / "quickstart-two-stages.yaml"


@pytest.fixture
def simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A study `simulate` wrote, under sim/quickstart in the working directory."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["simulate", str(QUICKSTART), "--out", "sim"])
    assert result.exit_code == 0, result.output
    return tmp_path / "sim" / "quickstart"


def test_a_study_copied_under_another_name_is_read_from_its_folder(simulated: Path) -> None:
    shutil.copytree(simulated, simulated.parent / "part2")
    result = runner.invoke(app, ["status", "sim/part2"])
    assert result.exit_code == 0, result.output
    assert "study phase Succeeded, 28/28 runs ended" in result.stdout
    # diverged and failed runs are counted apart, as in the report's runs tables
    assert "planned  ended  diverged  failed  running" in result.stdout


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("given", ["/nonexistent", "nowhere/else", "/"])
def test_a_folder_that_is_not_there_is_said_so(given: str) -> None:
    """No walk of the filesystem (/proc cannot be read), no "is empty" for the root."""
    for command in ("status", "report"):
        result = runner.invoke(app, [command, given])
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.splitlines()
        words = "names no study" if given == "/" else "the folder does not exist"
        assert line.startswith("error: ") and words in line
        assert "is empty" not in line and "this is a bug" not in line


def test_a_study_file_given_for_its_folder_says_which_folder(demo: Path) -> None:
    study = demo / "quickstart.yaml"
    study.write_text(QUICKSTART.read_text())
    for command in ("status", "report"):
        result = runner.invoke(app, [command, "quickstart.yaml"])
        assert result.exit_code == 2
        assert "this is a study's YAML file; give the folder `stagescreen run`" in result.stderr
        assert result.stderr.rstrip().endswith("; did you mean runs/demo/quickstart?")


def test_a_damaged_file_is_named(simulated: Path) -> None:
    outcome = simulated / "stages" / "screen" / "outcome.json"
    outcome.write_text("garbage")
    result = runner.invoke(app, ["status", "sim/quickstart"])
    assert f"its outcome.json at {outcome.as_uri()} cannot be read: not JSON" in result.stdout
    (simulated / "stages" / "screen" / "results.parquet").write_text("garbage")
    result = runner.invoke(app, ["report", "sim/quickstart"])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: file://") and "results.parquet cannot be read" in line
