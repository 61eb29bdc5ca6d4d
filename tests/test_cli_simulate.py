"""`stagescreen simulate`: the whole programme on planted effects, written as a study would be."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from stagescreen_operator.cli import app

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "tests" / "data" / "quickstart-two-stages.yaml"
runner = CliRunner()


def test_simulate_writes_the_study_keys_and_says_it_is_synthetic(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    result = runner.invoke(
        app, ["simulate", str(QUICKSTART), "--effects", "A=0.1,B=-0.05", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "SYNTHETIC study 'quickstart': planted effects A=+0.1, B=-0.05"
    assert lines[1].split()[:4] == ["screen", "screen", "16", "runs"]
    assert "retained A, B" in lines[1]
    assert lines[2].split()[:4] == ["confirm", "confirm", "12", "runs"]
    # The last stage's best condition is the study's answer, with its recipe and interval.
    assert lines[3].startswith("SYNTHETIC outcome: best ")
    assert "A-,B+" in lines[3] and "DEPTH=1, ASPECT_RATIO=64" in lines[3]
    assert "at 20 s in stage 'confirm'" in lines[3]
    assert lines[-1] == f"wrote {(out / 'quickstart').as_uri()}/"
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == [
        "quickstart/manifest.json",
        "quickstart/spec.yaml",
        "quickstart/stages/confirm/outcome.json",
        "quickstart/stages/confirm/results.parquet",
        "quickstart/stages/screen/outcome.json",
        "quickstart/stages/screen/results.parquet",
    ]
    screen = pd.read_parquet(out / "quickstart/stages/screen/results.parquet")
    assert len(screen) == 16
    assert screen["synthetic"].all()
    outcome = json.loads((out / "quickstart/stages/screen/outcome.json").read_text())
    # A+ raises the metric and B+ lowers it: the best corner is A-,B+ (C is null).
    assert outcome["best"]["levels"]["A"] == -1
    assert outcome["best"]["levels"]["B"] == 1
    manifest = json.loads((out / "quickstart/manifest.json").read_text())
    assert manifest["total"]["succeeded"] == 28


def test_bad_effects_exit_2_naming_the_part(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    result = runner.invoke(
        app, ["simulate", str(QUICKSTART), "--effects", "A=0.1,Q=2", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "effect 'Q=2'" in result.stderr
    assert "(A, B, C)" in result.stderr
    assert not out.exists()


def test_bad_effect_value_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["simulate", str(QUICKSTART), "--effects", "A=lots", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "effect 'A=lots': 'lots' is not a number" in result.stderr


def test_invalid_study_exits_2_before_writing(tmp_path: Path) -> None:
    study = tmp_path / "bad.yaml"
    study.write_text(QUICKSTART.read_text().replace("seeds: 2", "seeds: 0"))
    out = tmp_path / "sim"
    result = runner.invoke(app, ["simulate", str(study), "--out", str(out)])
    assert result.exit_code == 2
    assert f"{study}: spec.stages[1].seeds" in result.stderr
    assert not out.exists()


def test_a_negative_noise_is_refused_where_it_enters(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["simulate", str(QUICKSTART), "--noise", "-1", "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 2 and "--noise" in result.output
    assert not (tmp_path / "s").exists()


def test_version_answers_before_any_command() -> None:
    from stagescreen import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"stagescreen {__version__}\n"
