"""A categorical factor through the CLI: `simulate` runs it end to end and the outcomes and
report name its levels; `validate` refuses a bridge on it by name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from stagescreen_operator.cli import app

ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()


def categorical_quickstart(tmp_path: Path, bridged: str = "B") -> Path:
    """The two-stage quickstart with MATRIX_LR swapped for the window pattern, L vs SSSL."""
    text = (ROOT / "tests" / "data" / "quickstart-two-stages.yaml").read_text()
    text = text.replace(
        "{name: MATRIX_LR, code: C, low: 0.02, high: 0.04}",
        "{name: WINDOW_PATTERN, code: C, levels: [L, SSSL]}",
    )
    text = text.replace("      WINDOW_PATTERN: L\n", "")
    text = text.replace("rule: bridge, factors: [B]", f"rule: bridge, factors: [{bridged}]")
    path = tmp_path / "windows.yaml"
    path.write_text(text)
    return path


def test_simulate_runs_a_categorical_factor_and_the_report_names_its_levels(
    tmp_path: Path,
) -> None:
    out = tmp_path / "sim"
    study = categorical_quickstart(tmp_path)
    result = runner.invoke(
        app, ["simulate", str(study), "--effects", "A=0.1,C=-0.05", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    # The answer's recipe names the level as written, beside the numeric factors' values.
    outcome_line = next(line for line in result.stdout.splitlines() if "outcome:" in line)
    assert re.search(r"DEPTH=\d, ASPECT_RATIO=\d+, WINDOW_PATTERN=(L|SSSL)\)", outcome_line)
    screen = pd.read_parquet(out / "quickstart/stages/screen/results.parquet")
    assert set(screen["WINDOW_PATTERN"]) == {"L", "SSSL"}
    assert (screen["WINDOW_PATTERN"] == screen["C"].map({-1: "L", 1: "SSSL"})).all()
    outcome = json.loads((out / "quickstart/stages/screen/outcome.json").read_text())
    best = outcome["best"]
    assert best["hyperparameters"]["WINDOW_PATTERN"] == (
        "SSSL" if best["levels"]["C"] == 1 else "L"
    )
    result = runner.invoke(app, ["report", str(out / "quickstart")])
    assert result.exit_code == 0, result.output
    report = (out / "quickstart/report.md").read_text()
    assert "| C | `WINDOW_PATTERN` | L | SSSL | — | categorical: effect = SSSL minus L |" in report


def test_validate_refuses_a_bridge_on_a_categorical_factor(tmp_path: Path) -> None:
    study = categorical_quickstart(tmp_path, bridged="C")
    result = runner.invoke(app, ["validate", str(study)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {study}: spec.stages[1].select[2].factors: factor WINDOW_PATTERN (levels L, "
        "SSSL) is categorical: it has no centre, so rule bridge cannot set it to 0; bridge "
        "numeric factors only"
    )


def test_validate_accepts_the_categorical_study(tmp_path: Path) -> None:
    study = categorical_quickstart(tmp_path)
    result = runner.invoke(app, ["validate", str(study)])
    assert result.exit_code == 0, result.output
