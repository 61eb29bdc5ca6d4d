"""`stagescreen validate`: exit 0 and a one-line summary, or exit 2 and one line per problem."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from stagescreen_operator.cli import app

ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()


def test_paper_example_is_valid_and_summarised() -> None:
    path = ROOT / "examples" / "paper.yaml"
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{path}: valid ScreeningStudy 'paper' "
        "(5 factors, 2^(5-1) regular fraction of resolution V, 10 stages)\n"
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
        f"error: {bad}: spec.factors[2].high: must differ from low (both 0.02)",
        f"error: {bad}: spec.limits.parallelism: must be at least 1 (got 0)",
        f"error: {bad}: spec.stages[1].select[1].from: no stage named 'later' "
        "(stages: screen, confirm, longer)",
    ]


def test_a_valid_and_an_invalid_file_exit_2_but_report_both(tmp_path: Path) -> None:
    good = ROOT / "examples" / "quickstart.yaml"
    missing = tmp_path / "missing.yaml"
    result = runner.invoke(app, ["validate", str(good), str(missing)])
    assert result.exit_code == 2
    assert "valid ScreeningStudy 'quickstart'" in result.stdout
    assert result.stderr == f"error: {missing}: no such file\n"


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: stagescreen.dev/v1alpha1\nspec:\n  factors: [1\n  stages: 2\n")
    result = runner.invoke(app, ["validate", str(broken)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {broken}: line 4, column 9: YAML syntax error: ")


def test_type_errors_do_not_hide_design_and_selection_problems(tmp_path: Path) -> None:
    """Four mistakes, four lines: a type error in one stage used to hide the generator and
    the `from:` problems of the others."""
    text = (ROOT / "examples" / "paper.yaml").read_text()
    text = text.replace("generators: [E=ABCD]", "generators: [E=ABCX]")
    text = text.replace("seeds: [1]", "seeds: one", 1)
    text = text.replace("from: screen,", "from: screem,", 1)
    text = text.replace("parallelism:", "parallelism: -3 #", 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    problems = [line.removeprefix(f"error: {bad}: ") for line in result.stderr.splitlines()]
    assert len(problems) == 4, problems
    assert any(p.startswith("spec.stages[0].seeds:") for p in problems)
    assert any(p.startswith("spec.limits.parallelism:") for p in problems)
    assert any(p.startswith("spec.design.generators[0]: unknown factor code X") for p in problems)
    assert any("from: no stage named 'screem'" in p for p in problems)


def invalid(tmp_path: Path, old: str, new: str) -> list[str]:
    """The problems `validate` reports for the quickstart with one edit."""
    text = (ROOT / "examples" / "quickstart.yaml").read_text()
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new, 1))
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2, result.output
    return [line.removeprefix(f"error: {bad}: ") for line in result.stderr.splitlines()]


def test_a_typo_in_among_is_caught_before_the_study_runs(tmp_path: Path) -> None:
    problems = invalid(
        tmp_path, "{from: confirm, rule: best,", "{from: confirm, among: [brige], rule: best,"
    )
    assert problems == [
        "spec.stages[2].select[0].among: stage 'confirm' has no anchors with role brige "
        "(its anchors' roles: best, bridge, worst)"
    ]


def test_a_rule_cannot_pick_more_conditions_than_its_source_ranks(tmp_path: Path) -> None:
    problems = invalid(
        tmp_path, "{from: screen, rule: best, role: best}", "{from: screen, rule: best, k: 9}"
    )
    assert problems == [
        "spec.stages[1].select[0].k: k=9 but stage 'screen' ranks at most 8 conditions; "
        "lower k to 8 or less"
    ]


def test_a_worst_rule_labelled_best_is_refused(tmp_path: Path) -> None:
    problems = invalid(tmp_path, "rule: worst, role: worst", "rule: worst, role: best-2")
    assert problems == [
        "spec.stages[1].select[1].role: a worst rule labelled 'best-2' would read as the best "
        "condition in every report; name it worst or neutrally"
    ]


def test_a_predicted_rule_needs_a_stage_that_fits_effects(tmp_path: Path) -> None:
    problems = invalid(
        tmp_path, "{from: confirm, rule: best, role: best}", "{from: confirm, rule: predicted}"
    )
    assert problems == [
        "spec.stages[2].select[0].from: rule predicted predicts from fitted effects, so it "
        "needs a screen or followup stage ('confirm' is confirm, which fits none)"
    ]


def test_a_replay_only_study_is_valid_with_replay_and_without_it_is_told_the_flag() -> None:
    """Its factors are a table's columns: the trainer's checks refuse them, and name the fix."""
    path = ROOT / "tests" / "data" / "replay-sweep.yaml"
    result = runner.invoke(app, ["validate", "--replay", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{path}: valid ScreeningStudy 'sweep' (3 factors, 2^3 full factorial, 2 stages)\n"
    )
    refused = runner.invoke(app, ["validate", str(path)])
    assert refused.exit_code == 2
    lines = refused.stderr.splitlines()
    assert any("WIDTH is not a variable the trainer reads" in line for line in lines)
    assert lines[-1] == (
        f"error: {path}: a study only replayed on a measured table (simulate --table) skips "
        "the trainer's checks above: validate it with --replay"
    )


def test_replay_keeps_every_other_check_and_names_no_flag_it_would_not_fix(
    tmp_path: Path,
) -> None:
    text = (ROOT / "tests" / "data" / "replay-sweep.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("factors: [C], role: bridge", "factors: [Z], role: bridge"))
    for args in (["--replay", str(bad)], [str(bad)]):
        result = runner.invoke(app, ["validate", *args])
        assert result.exit_code == 2
        assert "Z" in result.stderr
    assert "--replay" not in runner.invoke(app, ["validate", "--replay", str(bad)]).stderr
    quickstart = tmp_path / "q.yaml"
    quickstart.write_text(
        (ROOT / "examples" / "quickstart.yaml")
        .read_text()
        .replace("parallelism: 2", "parallelism: 0")
    )
    result = runner.invoke(app, ["validate", str(quickstart)])
    assert result.exit_code == 2 and "--replay" not in result.stderr


def test_validate_help_says_when_replay_applies() -> None:
    result = runner.invoke(app, ["validate", "--help"], terminal_width=200)
    assert "only replayed on a measured table (simulate --table)" in result.stdout
