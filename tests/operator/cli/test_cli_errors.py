"""Every command fails the same way: `error:` lines on stderr naming what to fix, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagescreen_operator.cli import app

ROOT = Path(__file__).resolve().parents[3]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")
runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["validate", "nope.yaml"], "nope.yaml: no such file"),
        (["plan", QUICKSTART, "--overhead", "soon"], "--overhead 'soon'"),
        (["manifests", QUICKSTART, "--stage", "nope"], "--stage 'nope'"),
        (["run", QUICKSTART, "--device", "tpu"], "--device='tpu'"),
        (["simulate", QUICKSTART, "--noise", "loud"], "--noise 'loud'"),
        (["effects", "nope.csv", "--response", "y", "--factors", "A"], "no such file"),
        (["report", "nowhere/study"], "no study at 'nowhere/study'"),
        (["status", "nowhere/study"], "no study at 'nowhere/study'"),
        (["plan", "nope.yaml"], "nope.yaml: no such file"),
        (["design", "--factors", "A,B,C,D", "--resolution", "5"], "--resolution"),
    ],
)
def test_errors_start_with_error_and_name_the_input(
    args: list[str], names: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), lines
    assert names in result.stderr
