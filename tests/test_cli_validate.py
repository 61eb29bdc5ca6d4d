"""`stagescreen validate`: exit 0 and a one-line summary, or exit 2 and one line per problem."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from stagescreen_operator.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_paper_example_is_valid_and_summarised() -> None:
    path = ROOT / "examples" / "paper.yaml"
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{path}: valid ScreeningStudy 'paper' (5 factors, 2^(5-1) resolution V, 10 stages)\n"
    )


def test_several_files_are_checked_in_one_call() -> None:
    paths = [str(ROOT / "examples" / name) for name in ("quickstart.yaml", "paper.yaml")]
    result = runner.invoke(app, ["validate", *paths])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        f"{paths[0]}: valid ScreeningStudy 'quickstart' (3 factors, 2^3 full factorial, 3 stages)"
    )
    assert len(result.stdout.splitlines()) == 2


def test_every_problem_is_listed_with_its_path_and_exit_code_2(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "quickstart.yaml").read_text()
    text = text.replace("low: 0.02, high: 0.04", "low: 0.02, high: 0.02")
    text = text.replace("parallelism: 2", "parallelism: 0")
    text = text.replace("{from: screen, rule: worst, role: worst}", "{from: later, rule: worst}")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{bad}: spec.factors[2].high: must differ from low (both 0.02)",
        f"{bad}: spec.limits.parallelism: Input should be greater than or equal to 1 (got 0)",
        f"{bad}: spec.stages[1].select[1].from: no stage named 'later' "
        "(stages: screen, confirm, longer)",
    ]


def test_a_valid_and_an_invalid_file_exit_2_but_report_both(tmp_path: Path) -> None:
    good = ROOT / "examples" / "quickstart.yaml"
    missing = tmp_path / "missing.yaml"
    result = runner.invoke(app, ["validate", str(good), str(missing)])
    assert result.exit_code == 2
    assert "valid ScreeningStudy 'quickstart'" in result.stdout
    assert result.stderr == f"{missing}: no such file\n"


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: stagescreen.dev/v1alpha1\nspec:\n  factors: [1\n  stages: 2\n")
    result = runner.invoke(app, ["validate", str(broken)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{broken}: line 4, column 9: YAML syntax error: ")
