"""`stagescreen plan`: runs, GPU-hours per pool and wall-clock per stage, before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagescreen.planning.cost import RUN_OVERHEAD_S
from stagescreen_operator.cli import app

ROOT = Path(__file__).resolve().parents[3]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
PAPER = ROOT / "examples" / "paper.yaml"
runner = CliRunner()


def plan_json(path: Path, *options: str) -> dict:
    result = runner.invoke(app, ["plan", str(path), "--json", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_quickstart_table_prices_the_cpu_pool_in_run_hours_with_the_measured_overhead() -> None:
    result = runner.invoke(app, ["plan", str(QUICKSTART)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "Study 'quickstart': 3 stages, parallelism 2, overhead 5 s per run",
        "stage    kind     budgets  seeds  runs  cpu CPU run-h  wall-clock",
        "screen   screen   5s,15s       1    16           0.07          2m",
        "confirm  confirm  5s,15s       2    12           0.05          2m",
        "longer   bridge   45s          2     4           0.06          2m",
        "total                               32           0.17          5m",
        "Overhead 5 s per run is what CPU runs measure (start-up, evaluation, checkpoint); "
        "GPU runs that compile their model need more: --overhead 60s.",
        "CPU run-hours: each run's duration on its share of the cores (gpus: 0 pools).",
        "Runs are the most a stage can run: greedy stops once no move improves, and an anchor "
        "two rules pick (the same levels) runs once.",
    ]
    assert result.stderr == ""


def test_default_overhead_is_the_measured_one() -> None:
    assert plan_json(QUICKSTART)["overhead_s"] == RUN_OVERHEAD_S > 0


def test_quickstart_json_figures() -> None:
    document = plan_json(QUICKSTART, "--overhead", "0s")
    assert (document["study"], document["overhead_s"], document["parallelism"]) == (
        "quickstart",
        0,
        2,
    )
    assert [(s["stage"], s["kind"], s["runs"]) for s in document["stages"]] == [
        ("screen", "screen", 16),
        ("confirm", "confirm", 12),
        ("longer", "bridge", 4),
    ]
    # Screen: 8 runs of 15 s and 8 of 5 s on 2 slots = 80 s; confirm: 6 + 6 runs = 60 s;
    # the bridge stage: 4 runs of 45 s = 90 s.
    assert [s["wall_hours"] * 3600 for s in document["stages"]] == [
        pytest.approx(80),
        pytest.approx(60),
        pytest.approx(90),
    ]
    assert document["stages"][0]["gpu_hours"] == {"cpu": 0.0}  # a CPU pool has no GPUs
    # ...but its runs take time: 8 x 15 s + 8 x 5 s of CPU runs in the screen.
    assert document["stages"][0]["run_hours"]["cpu"] * 3600 == pytest.approx(160)
    assert document["total"]["runs"] == 32
    assert document["total"]["wall_hours"] * 3600 == pytest.approx(230)
    assert document["max_gpu_hours"] is None


def test_overhead_is_added_to_every_run() -> None:
    plain = plan_json(PAPER, "--overhead", "0")
    padded = plan_json(PAPER, "--overhead", "90s")
    assert padded["overhead_s"] == 90
    # Screen: 16 conditions x (2 + 5 + 10 min) on one GPU, then 48 runs x 90 s more.
    assert plain["stages"][0]["gpu_hours"]["a100"] == pytest.approx(16 * 1020 / 3600)
    assert padded["stages"][0]["gpu_hours"]["a100"] == pytest.approx((16 * 1020 + 48 * 90) / 3600)
    assert padded["total"]["wall_hours"] > plain["total"]["wall_hours"]
    assert padded["total"]["runs"] == plain["total"]["runs"] == 584


def test_paper_table_has_a_column_per_pool_and_no_warning_under_the_limit() -> None:
    result = runner.invoke(app, ["plan", str(PAPER)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split() == [
        "stage", "kind", "budgets", "seeds", "runs",
        "a100", "GPU-h", "l40s", "GPU-h", "wall-clock",
    ]  # fmt: skip
    assert lines[-4].split()[:7] == [
        "long-horizon", "long-horizon", "12h,24h", "2", "24", "216.0", "216.0",
    ]  # fmt: skip
    assert lines[-3].split()[:2] == ["total", "584"]
    assert "warning" not in result.stderr


def test_more_gpu_hours_than_the_limit_prices_then_refuses(tmp_path: Path) -> None:
    study = tmp_path / "tight.yaml"
    study.write_text(PAPER.read_text().replace("maxGpuHours: 600", "maxGpuHours: 100"))
    result = runner.invoke(app, ["plan", str(study)])
    assert result.exit_code == 2, result.output
    assert "total" in result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {study}: spec.limits.maxGpuHours: the plan needs ")
    assert "more than maxGpuHours 100; raise maxGpuHours to at least " in line
    answer = runner.invoke(app, ["plan", str(study), "--json"])
    assert answer.exit_code == 2 and json.loads(answer.stdout)["max_gpu_hours"] == 100
    refused = runner.invoke(app, ["validate", str(study)])
    assert refused.exit_code == 2 and refused.stderr.splitlines() == [line]


def test_invalid_study_exits_2_naming_the_field(tmp_path: Path) -> None:
    study = tmp_path / "bad.yaml"
    study.write_text(QUICKSTART.read_text().replace("parallelism: 2", "parallelism: 0"))
    result = runner.invoke(app, ["plan", str(study)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{study}: spec.limits.parallelism:" in result.stderr


def test_bad_overhead_exits_2_naming_the_option() -> None:
    result = runner.invoke(app, ["plan", str(QUICKSTART), "--overhead", "soon"])
    assert result.exit_code == 2
    assert "--overhead 'soon'" in result.stderr
    assert "120s" in result.stderr  # says what would be accepted


def test_the_table_says_its_runs_are_the_most_a_stage_can_run() -> None:
    """Greedy and anchor stages may run fewer than priced (greedy stops early; two rules
    picking the same levels run them once): the table says its runs are an upper bound."""
    result = runner.invoke(app, ["plan", str(PAPER)])
    assert result.exit_code == 0, result.output
    assert "Runs are the most a stage can run: greedy stops once no move improves" in result.stdout
