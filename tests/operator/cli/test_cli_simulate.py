"""`stagescreen simulate`: the whole programme on planted effects, written as a study would be."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from seaweed import S3Bucket
from typer.testing import CliRunner

from stagescreen_operator.cli import app

ROOT = Path(__file__).resolve().parents[3]
QUICKSTART = ROOT / "tests" / "data" / "quickstart-two-stages.yaml"
runner = CliRunner()


def test_a_term_planted_at_zero_prints_without_a_sign(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["simulate", str(QUICKSTART), "--effects", "A=0.1,B=-0", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].endswith("planted effects A=+0.1, B=0")


def test_simulate_writes_the_study_keys_and_says_it_is_synthetic(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    # The plain model of before the paper calibration: one noise sd, no spread, no divergence.
    plain = ["--noise", "0.004", "--relaxation", "0.8", "--spread", "0", "--divergence", "0"]
    result = runner.invoke(
        app,
        ["simulate", str(QUICKSTART), "--effects", "A=0.1,B=-0.05", *plain, "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "SYNTHETIC study 'quickstart': planted effects A=+0.1, B=-0.05"
    assert lines[1].startswith("SYNTHETIC model: run noise sd 0.004 at every budget; cell spread")
    assert lines[2].split()[:5] == ["SYNTHETIC", "screen", "screen", "16", "runs"]
    assert "retained A, B" in lines[2]
    assert lines[3].split()[:5] == ["SYNTHETIC", "confirm", "confirm", "12", "runs"]
    assert all(line.startswith("SYNTHETIC") for line in lines)
    # The last stage's best condition is the study's answer, with its recipe and interval.
    assert lines[4].startswith("SYNTHETIC outcome: best ")
    assert "A-,B+" in lines[4] and "DEPTH=1, ASPECT_RATIO=64" in lines[4]
    assert "at 20s in stage 'confirm'" in lines[4]
    assert "] as the best of 3 at 20s" in lines[4]  # the selection-aware interval
    assert lines[-1] == f"SYNTHETIC study written to {(out / 'quickstart').as_uri()}/"
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
    assert outcome["synthetic"] is True
    # A+ raises the metric and B+ lowers it: the best corner is A-,B+ (C is null).
    assert outcome["best"]["levels"]["A"] == -1
    assert outcome["best"]["levels"]["B"] == 1
    manifest = json.loads((out / "quickstart/manifest.json").read_text())
    assert manifest["total"]["succeeded"] == 28


def test_simulate_refuses_to_write_into_the_studys_own_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["simulate", str(QUICKSTART), "--out", "runs/"])
    assert result.exit_code == 2
    assert "error: --out 'runs/' is the study's own storage (./runs)" in result.stderr
    assert not (tmp_path / "runs").exists()
    as_uri = runner.invoke(
        app, ["simulate", str(QUICKSTART), "--out", (tmp_path / "runs").as_uri()]
    )
    assert as_uri.exit_code == 2 and "is the study's own storage" in as_uri.stderr


def test_by_default_the_model_is_calibrated_to_the_paper(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", str(QUICKSTART), "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # The paper's measured effects and its 5/10-minute noise, stretched to a 10 s pilot.
    assert lines[0].endswith("at 50s A=+0.018, B=+0.0059, C=-0.0045, A:B=+0.0049")
    assert "at 25s A=+0.0568, B=+0.0441, C=-0.0165, A:B=+0.0101;" in lines[0]
    assert lines[1] == (
        "SYNTHETIC model: run noise sd 0.0318 at 25s, 0.00863 at 50s (held flat outside); "
        "cell spread 0.68; seed sd 0.002; seed x condition sd 0; divergence 0.005; "
        "effects per budget at 10s, 25s, 50s (linear in log-budget between, flat outside)"
    )


def test_the_defaults_plant_the_papers_ten_minute_effects() -> None:
    paper = ROOT / "examples" / "paper.yaml"
    result = runner.invoke(app, ["simulate", str(paper), "--replicates", "20", "--json"])
    assert result.exit_code == 0, result.output
    planted = {
        row["term"]: row["planted"]
        for row in json.loads(result.stdout)["terms"]
        if row["stage"] == "seeded-screen" and row["budget_s"] == 600
    }
    assert planted == {"A": 0.0180, "B": 0.0059, "C": -0.0045, "D": 0.0346, "E": 0.0}


def test_replicates_print_a_synthetic_power_table_and_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["simulate", str(QUICKSTART), "--replicates", "200", "--effects", "A=0.3"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(line.startswith("SYNTHETIC") for line in lines)
    assert lines[0].startswith("SYNTHETIC power of study 'quickstart': 200 replicates")
    header = lines[3].split()
    assert header == [
        "SYNTHETIC", "stage", "budget", "term", "planted", "power", "sign", "err",
        "coverage", "mean", "est", "fitted",
    ]  # fmt: skip
    a_at_10s = next(line.split() for line in lines if line.split()[1:4] == ["screen", "10s", "A"])
    assert a_at_10s[4:6] == ["+0.3000", "1.000"]
    assert any(line.split()[1:3] == ["confirm", "best"] for line in lines)
    assert list(tmp_path.iterdir()) == []


def test_replicates_as_json_and_written_where_asked(tmp_path: Path) -> None:
    out = tmp_path / "power"
    args = ["simulate", str(QUICKSTART), "--replicates", "50", "--seed", "3", "--json"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    text, written = result.stdout.rsplit("\n", 2)[0], result.stdout.splitlines()[-1]
    document = json.loads(text)
    assert document["synthetic"] is True and document["replicates"] == 50
    assert document["model"]["divergence"] == 0.005
    assert {row["term"] for row in document["terms"]} == {"A", "B", "C"}
    assert written.startswith("SYNTHETIC power report written to ")
    assert json.loads((out / "quickstart" / "power.json").read_text()) == document
    again = runner.invoke(app, args)
    assert json.loads(again.stdout) == document  # replicate r is fixed by (seed, r)


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


def test_status_and_report_name_an_outcome_that_does_not_validate(tmp_path: Path) -> None:
    """One reader for stored outcomes: `status` (through the snapshot every executor uses)
    says what is wrong where the report does, instead of failing on it."""
    out = tmp_path / "sim"
    assert runner.invoke(app, ["simulate", str(QUICKSTART), "--out", str(out)]).exit_code == 0
    broken = out / "quickstart" / "stages" / "confirm" / "outcome.json"
    broken.write_text(json.dumps({**json.loads(broken.read_text()), "runs": "twelve"}))
    status = runner.invoke(app, ["status", str(out / "quickstart")])
    assert status.exit_code == 0, status.output
    assert "stage confirm: its outcome.json does not fit the record" in status.stdout
    report = runner.invoke(app, ["report", str(out / "quickstart")])
    assert report.exit_code == 0, report.output


def test_status_of_a_simulated_study_shows_what_simulate_wrote(tmp_path: Path) -> None:
    """`status sim/paper` (its --help's example): every simulated run ended, every stage
    analysed, each line marked SYNTHETIC; nothing waits and no line repeats."""
    out = tmp_path / "sim"
    assert runner.invoke(app, ["simulate", str(QUICKSTART), "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["status", str(out / "quickstart")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("SYNTHETIC: `stagescreen simulate` wrote this study; no model")
    assert lines[1] == "SYNTHETIC study phase Succeeded, 28/28 runs ended"
    assert lines[3].split() == [
        "SYNTHETIC",
        "screen",
        "screen",
        "Succeeded",
        "16",
        "16",
        "0",
        "0",
        "0",
    ]
    assert lines[4].split()[:6] == ["SYNTHETIC", "confirm", "confirm", "Succeeded", "12", "12"]
    assert all(line.startswith("SYNTHETIC") for line in lines)
    assert not any("waiting" in line for line in lines)
    assert len(set(lines)) == len(lines)


def test_simulate_plants_the_papers_effects_by_factor_name(tmp_path: Path) -> None:
    """A study's own factor coded D is not the paper's batch size: it gets no effect, and the
    output says so; a study with none of the paper's factors must give --effects."""
    text = QUICKSTART.read_text()
    study = tmp_path / "warmup.yaml"
    study.write_text(
        text.replace(
            "{name: MATRIX_LR, code: C, low: 0.02, high: 0.04}",
            "{name: WARMUP_RATIO, code: C, low: 0.0, high: 0.1}",
        ).replace("      WARMUP_RATIO: 0.0\n", "")
    )
    result = runner.invoke(app, ["simulate", str(study), "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("SYNTHETIC note: no effect planted on WARMUP_RATIO (C): the paper")
    assert lines[1].endswith("at 50s A=+0.018, B=+0.0059, C=0, A:B=+0.0049")
    power = runner.invoke(app, ["simulate", str(study), "--replicates", "5", "--json"])
    assert power.exit_code == 0, power.output
    assert json.loads(power.stdout)["replicates"] == 5  # the note leaves the JSON alone
    assert power.stderr.startswith("SYNTHETIC note: no effect planted on WARMUP_RATIO (C)")
    own = runner.invoke(
        app, ["simulate", str(study), "--effects", "C=0.05", "--out", str(tmp_path / "o")]
    )
    assert own.exit_code == 0 and "note" not in own.stdout
    none = tmp_path / "none.yaml"
    none.write_text(
        study.read_text()
        .replace(
            "{name: DEPTH, code: A, low: 1, high: 2, scale: integer}",
            "{name: EMBEDDING_LR, code: A, low: 0.1, high: 0.3}",
        )
        .replace(
            "{name: ASPECT_RATIO, code: B, low: 32, high: 64, scale: integer}",
            "{name: WEIGHT_DECAY, code: B, low: 0.0, high: 0.2}",
        )
    )
    refused = runner.invoke(app, ["simulate", str(none), "--out", str(tmp_path / "n")])
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.startswith(
        "error: give --effects: the default effects are the paper's, measured on DEPTH, "
    )
    assert "(it has EMBEDDING_LR, WEIGHT_DECAY, WARMUP_RATIO)" in refused.stderr
    assert not (tmp_path / "n").exists()


def test_noise_from_a_finished_study_replaces_the_papers(tmp_path: Path) -> None:
    """The noise of a study `simulate` wrote (any stored study reads the same way): each
    budget's residual sd pooled over its analysed stages, printed with where it came from."""
    from stagescreen.outcomes.model import StageOutcome
    from stagescreen.statistics.noise import pooled_noise

    out = tmp_path / "sim"
    # A main effect alone: the screen's residual sd is then run noise, no missing interaction.
    plain = ["--effects", "A=0.1", "--noise", "0.004", "--spread", "0", "--divergence", "0"]
    assert (
        runner.invoke(app, ["simulate", str(QUICKSTART), *plain, "--out", str(out)]).exit_code == 0
    )
    finished = out / "quickstart"
    floors = [
        floor
        for path in sorted(finished.glob("stages/*/outcome.json"))
        for floor in StageOutcome.model_validate_json(path.read_text()).noise_floor
    ]
    measured = pooled_noise(floors)
    assert sorted(measured) == [10, 20]
    assert all(0.001 < sd < 0.01 for sd in measured.values())
    args = ["simulate", str(QUICKSTART), "--replicates", "20", "--noise-from", str(finished)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    model_line = next(line for line in result.stdout.splitlines() if "model:" in line)
    assert model_line.startswith(f"SYNTHETIC model: run noise sd measured in {finished}: ")
    assert f"{measured[10]:.3g} at 10s, {measured[20]:.3g} at 20s" in model_line
    document = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert document["noise_from"] == str(finished)
    assert {int(b): sd for b, sd in document["model"]["noise_points"].items()} == measured


def test_noise_from_says_what_the_folder_lacks(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    assert runner.invoke(app, ["simulate", str(QUICKSTART), "--out", str(out)]).exit_code == 0
    finished = out / "quickstart"

    def refused(folder: Path) -> str:
        args = ["simulate", str(QUICKSTART), "--replicates", "5", "--noise-from", str(folder)]
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        return result.stderr

    assert "the folder does not exist" in refused(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    assert "expected spec.yaml at file://" in refused(tmp_path / "empty")
    for path in finished.glob("stages/*/outcome.json"):
        stored = json.loads(path.read_text())
        path.write_text(json.dumps({k: v for k, v in stored.items() if k != "noise_floor"}))
    assert "no run noise measured at any budget (stages analysed: screen, confirm;" in refused(
        finished
    )
    for path in finished.glob("stages/*/outcome.json"):
        path.unlink()
    assert "no analysed stage" in refused(finished)
    both = ["simulate", str(QUICKSTART), "--noise", "0.01", "--noise-from", str(finished)]
    assert "give --noise or --noise-from, not both" in runner.invoke(app, both).stderr


def test_noise_from_reads_a_study_in_s3(s3_bucket: S3Bucket) -> None:
    out = s3_bucket.uri("sims")
    assert runner.invoke(app, ["simulate", str(QUICKSTART), "--out", out]).exit_code == 0
    finished = s3_bucket.uri("sims/quickstart")
    args = ["simulate", str(QUICKSTART), "--replicates", "5", "--noise-from", finished]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"run noise sd measured in {finished}: " in result.stdout


HALF_FRACTION = """
apiVersion: stagescreen.dev/v1alpha1
kind: ScreeningStudy
metadata: {name: half}
spec:
  factors:
    - {name: DEPTH, code: A, low: 6, high: 8, scale: integer}
    - {name: ASPECT_RATIO, code: B, low: 48, high: 72, scale: integer}
    - {name: MATRIX_LR, code: C, low: 0.03, high: 0.05}
    - {name: TOTAL_BATCH_SIZE, code: D, low: 262144, high: 524288, scale: log}
    - {name: WARMDOWN_RATIO, code: E, low: 0.25, high: 0.5}
  design: {type: fractional, generators: [E=ABCD]}
  metric: {name: val_bpb, goal: minimize}
  stages:
    - {name: screen, kind: screen, budgets: [60s, 120s], seeds: 2}
    - name: confirm
      kind: confirm
      budgets: [120s]
      seeds: 2
      select:
        - {from: screen, rule: predicted, k: 2}
        - {from: screen, rule: best}
  pools:
    - {name: gpu, gpus: 1}
"""


def test_a_half_fraction_confirms_the_corner_its_model_predicts_and_never_ran(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "half.yaml"
    spec.write_text(HALF_FRACTION)
    out = tmp_path / "sim"
    # Every high level raises the metric: the best corner, all low, is outside E=ABCD.
    plain = ["--noise", "0.004", "--relaxation", "0.8", "--spread", "0", "--divergence", "0"]
    effects = "A=0.2,B=0.1,C=0.15,D=0.06,E=0.12"
    result = runner.invoke(
        app, ["simulate", str(spec), "--effects", effects, *plain, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    screen = json.loads((out / "half/stages/screen/outcome.json").read_text())
    promoted = {p["role"]: p for p in screen["promoted"]}
    first = promoted["predicted-1"]
    assert first["condition_id"] == "f32-01"
    assert first["ran"] is False and first["levels"] == dict.fromkeys("ABCDE", -1)
    assert "predicted" not in promoted["best"]  # only the predicted rule predicts
    assert promoted["predicted-2"]["ran"] is True
    confirm = pd.read_parquet(out / "half/stages/confirm/results.parquet")
    assert set(confirm["condition_id"]) == {
        "f32-01",
        promoted["predicted-2"]["condition_id"],
        promoted["best"]["condition_id"],
    }
    outcome = json.loads((out / "half/stages/confirm/outcome.json").read_text())
    assert outcome["ranking"][0]["condition_id"] == "f32-01"
    report = runner.invoke(app, ["report", str(out / "half")])
    assert report.exit_code == 0, report.output
    text = "\n".join(path.read_text() for path in (out / "half").rglob("*.md"))
    assert "predicted-1 `f32-01`: the model of screen predicts " in text
    assert "(never run there)." in text
