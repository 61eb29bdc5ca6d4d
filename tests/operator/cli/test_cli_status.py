"""`stagescreen status` and `report` on a folder that holds no study name the one meant."""

from __future__ import annotations

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
