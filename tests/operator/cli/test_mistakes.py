"""Every mistake a user makes gets a fix, not a traceback (issue 20).

One case per mistake, each driven through the real command line: bad paths, a file given
where a folder is wanted and a folder where a file is, outputs that cannot be written, no
cluster, fields with a required form, bare budgets, a plan over its GPU-hour cap, URIs, and
tables that cannot be fitted as given. Each must exit 2 with `error:` lines on stderr, one
naming the fix, and say it in words: no traceback, no pydantic phrasing, no regular
expression.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from stagescreen_operator.cli import app, main

ROOT = Path(__file__).resolve().parents[3]
QUICKSTART = ROOT / "tests" / "data" / "quickstart-two-stages.yaml"
PAPER = ROOT / "examples" / "paper.yaml"
runner = CliRunner()

NOT_WORDS = (
    "Traceback",
    "should match pattern",
    "Input should",
    "should be a valid",
    "after validation",
    "^[",
    "type=",
    "pydantic",
    "name the terms",
)
"""What a message to a user never says: Python's, pydantic's or a regex's words."""


def study_with(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> str:
    """The two-stage quickstart with `change` applied to its document, as a file."""
    document = copy.deepcopy(yaml.safe_load(QUICKSTART.read_text()))
    change(document)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def spec_of(document: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = document["spec"]
    return spec


def trainer_of(document: dict[str, Any]) -> dict[str, Any]:
    trainer: dict[str, Any] = spec_of(document).setdefault("trainer", {})
    return trainer


def setup_nothing(tmp_path: Path) -> None:
    """Most cases need no more than an empty working folder."""


def a_file(tmp_path: Path) -> str:
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return str(path)


def empty_file(tmp_path: Path) -> str:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    return str(path)


def a_simulated_study(tmp_path: Path) -> str:
    result = runner.invoke(app, ["simulate", str(QUICKSTART), "--out", str(tmp_path / "sim")])
    assert result.exit_code == 0, result.output
    return str(tmp_path / "sim" / "quickstart")


def a_csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "runs.csv"
    path.write_text(text)
    return str(path)


def over_cap(tmp_path: Path) -> str:
    path = tmp_path / "tight.yaml"
    path.write_text(PAPER.read_text().replace("maxGpuHours: 600", "maxGpuHours: 100"))
    return str(path)


CONSTANT_A = "A,B,y\n1,-1,1.0\n1,1,2.0\n1,-1,1.1\n1,1,2.2\n"

# (case, args built from tmp_path, what the error must say)
CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    # --- outputs: a file where a folder goes, a folder that cannot be made -----------------
    (
        "simulate --out a file",
        lambda t: ["simulate", str(QUICKSTART), "--out", a_file(t)],
        "is a file, not a folder; give a folder",
    ),
    (
        "simulate --out unwritable",
        lambda t: ["simulate", str(QUICKSTART), "--out", "/proc/stagescreen"],
        "give a folder you can write to",
    ),
    (
        "simulate --replicates --out a file",
        lambda t: ["simulate", str(QUICKSTART), "--replicates", "2", "--out", a_file(t)],
        "--out",
    ),
    (
        "report --out a file",
        lambda t: ["report", a_simulated_study(t), "--out", a_file(t)],
        "is a file, not a folder; give a folder",
    ),
    (
        "report --out unwritable",
        lambda t: ["report", a_simulated_study(t), "--out", "/proc/stagescreen"],
        "--out '/proc/stagescreen': cannot create the folder",
    ),
    (
        "run --store a file",
        lambda t: ["run", str(QUICKSTART), "--store", a_file(t)],
        "is a file, not a folder; give a folder",
    ),
    # --- inputs: nothing there, a file for a folder, a folder for a file -------------------
    ("validate a folder", lambda t: ["validate", str(t)], "cannot read: it is a folder"),
    ("validate nothing", lambda t: ["validate", str(t / "nope.yaml")], "no such file"),
    ("plan a folder", lambda t: ["plan", "."], "give the study's YAML file, e.g. examples/"),
    ("simulate a folder", lambda t: ["simulate", str(t)], "cannot read"),
    ("run a folder", lambda t: ["run", "."], "give the study's YAML file, e.g. examples/"),
    (
        "validate an empty file",
        lambda t: ["validate", empty_file(t)],
        "the file is empty: write a ScreeningStudy (see examples/quickstart.yaml)",
    ),
    ("manifests a folder", lambda t: ["manifests", str(t)], "cannot read"),
    ("report a file", lambda t: ["report", a_file(t)], "no study at"),
    ("report nothing", lambda t: ["report", str(t / "nowhere" / "study")], "no study at"),
    ("status a file", lambda t: ["status", a_file(t)], "no study at"),
    ("status nothing", lambda t: ["status", str(t / "nowhere" / "study")], "no study at"),
    (
        "effects a folder",
        lambda t: ["effects", str(t), "--response", "y", "--factors", "A"],
        "RESULTS",
    ),
    (
        "simulate --table without an extension",
        lambda t: ["simulate", str(QUICKSTART), "--table", a_file(t)],
        "has no extension: give a .csv or .parquet file",
    ),
    (
        "effects nothing",
        lambda t: ["effects", str(t / "nope.csv"), "--response", "y", "--factors", "A"],
        "no such file",
    ),
    (
        "design given two ways",
        lambda t: ["design", "--factors", "A,B,C", "--generators", "C=AB", "--resolution", "3"],
        "give one of them",
    ),
    # --- no cluster: fail once, saying what to set -----------------------------------------
    ("operator without a cluster", lambda t: ["operator"], "set KUBECONFIG"),
    ("analyse without a cluster", lambda t: ["analyse", "paper", "screen"], "set KUBECONFIG"),
    # --- fields with a required form, said in words with an example ------------------------
    (
        "study name with capitals",
        lambda t: ["validate", study_with(t, lambda d: d["metadata"].update(name="My_Study"))],
        "lowercase letters, digits and '-', starting and ending with a letter or digit, "
        "e.g. my-study",
    ),
    (
        "factor code I",
        lambda t: [
            "validate",
            study_with(t, lambda d: spec_of(d)["factors"][0].update(code="I")),
        ],
        "I is reserved",
    ),
    (
        "no factors",
        lambda t: ["validate", study_with(t, lambda d: spec_of(d).update(factors=[]))],
        "spec.factors: needs at least one entry, e.g. - {name: MATRIX_LR",
    ),
    (
        "seeds in words",
        lambda t: [
            "validate",
            study_with(t, lambda d: spec_of(d)["stages"][0].update(seeds="two")),
        ],
        "a count (e.g. 3) or a list of seeds (e.g. [1, 2, 3])",
    ),
    (
        "parallelism in words",
        lambda t: [
            "validate",
            study_with(t, lambda d: spec_of(d).update(limits={"parallelism": "two"})),
        ],
        "expected a whole number, e.g. 2",
    ),
    # --- accepted before, wrong: now refused with the fix ----------------------------------
    (
        "namespace Kubernetes refuses",
        lambda t: [
            "validate",
            study_with(t, lambda d: d["metadata"].update(namespace="ML_Research")),
        ],
        "metadata.namespace: must be a Kubernetes namespace: lowercase letters, digits and "
        "'-', starting and ending with a letter or digit, at most 63 characters, e.g. ml-team",
    ),
    (
        "bare budgets",
        lambda t: [
            "validate",
            study_with(t, lambda d: spec_of(d)["stages"][0].update(budgets=[2, 5])),
        ],
        "a budget needs a unit: write 2s or 2m",
    ),
    (
        "a number in quotes",
        lambda t: [
            "validate",
            study_with(t, lambda d: spec_of(d)["factors"][0].update(low="1")),
        ],
        "low: a number is written without quotes: write 1, or use levels: [a, b] for a "
        "categorical factor",
    ),
    (
        "design with factor I",
        lambda t: ["design", "--factors", "A,B,I"],
        "I is reserved: it is the identity in defining relations",
    ),
    (
        "simulate --reference without a unit",
        lambda t: ["simulate", str(QUICKSTART), "--reference", "2", "--out", str(t / "sim")],
        "a budget needs a unit: write 2s or 2m",
    ),
    (
        "plan over maxGpuHours",
        lambda t: ["validate", over_cap(t)],
        "more than maxGpuHours 100; raise maxGpuHours to at least",
    ),
    (
        "s3 URI without a bucket",
        lambda t: [
            "validate",
            study_with(t, lambda d: trainer_of(d).update(dataUri="s3:///data")),
        ],
        "the s3:// URI names no bucket",
    ),
    (
        "constant factor",
        lambda t: ["effects", a_csv(t, CONSTANT_A), "--response", "y", "--factors", "A,B"],
        "factor A takes one level in every run (constant)",
    ),
]


@pytest.mark.parametrize(("args", "fix"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_mistake_gets_one_error_naming_the_fix(
    args: Callable[[Path], list[str]],
    fix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    # No cluster: not in a pod, and a kubeconfig that is not there.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    result = runner.invoke(app, args(tmp_path))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(
        line.startswith(("error: ", "warning: ")) for line in result.stderr.splitlines()
    )
    assert any(fix in line for line in errors), errors
    for words in NOT_WORDS:
        assert words not in result.output, words


def test_an_infinite_response_is_excluded_and_named_like_a_missing_one(tmp_path: Path) -> None:
    table = "A,B,y\n-1,-1,1.0\n1,1,2.0\n-1,1,inf\n1,-1,2.2\n-1,-1,1.2\n1,1,2.1\n"
    result = runner.invoke(
        app, ["effects", a_csv(tmp_path, table), "--response", "y", "--factors", "A,B"]
    )
    assert result.exit_code == 0, result.output
    assert "excluded line 4: y is inf" in result.stdout
    assert "nan" not in result.stdout and "inf [" not in result.stdout
    assert "n=5" in result.stdout


def test_a_long_horizon_no_longer_than_the_screen_is_a_warning(tmp_path: Path) -> None:
    study = tmp_path / "short.yaml"
    study.write_text(PAPER.read_text().replace("budgets: [12h, 24h]", "budgets: [1m, 24h]"))
    result = runner.invoke(app, ["validate", str(study)])
    assert result.exit_code == 0, result.output
    (warning,) = result.stderr.splitlines()
    assert warning.startswith(f"warning: {study}: spec.stages[")
    assert "runs 1m, no longer than screen 'screen' already runs (10m)" in warning


def test_what_no_command_caught_is_one_line_asking_for_a_bug_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("stagescreen.study.parse.load_study", broken)
    monkeypatch.setattr(sys, "argv", ["stagescreen", "validate", str(QUICKSTART)])
    monkeypatch.delenv("STAGESCREEN_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: RuntimeError: boom (this is a bug, please report it")


def test_an_unknown_report_format_says_what_to_give(tmp_path: Path) -> None:
    """A choice typer would check (its words open with pydantic's "Value error,") is checked
    in words: what each format gives."""
    result = runner.invoke(app, ["report", a_simulated_study(tmp_path), "--format", "xml"])
    assert result.exit_code == 2
    assert "'xml': give md (report.md and its figures) or json" in result.stderr
    assert "Value error" not in result.output


# (case, args built from tmp_path, the words the usage error must say)
OPTION_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("run --workers 0", lambda t: ["run", str(QUICKSTART), "--workers", "0"], "must be at least 1"),
    (
        "run --workers two",
        lambda t: ["run", str(QUICKSTART), "--workers", "two"],
        "'two' must be a whole number, e.g. 2",
    ),
    (
        "simulate --replicates -3",
        lambda t: ["simulate", str(QUICKSTART), "--replicates", "-3"],
        "must be at least 0",
    ),
    (
        "simulate --seed abc",
        lambda t: ["simulate", str(QUICKSTART), "--seed", "abc"],
        "must be a whole number",
    ),
    (
        "simulate --divergence 2",
        lambda t: ["simulate", str(QUICKSTART), "--divergence", "2"],
        "must be at most 1",
    ),
    (
        "effects --fdr a word",
        lambda t: ["effects", a_csv(t, CONSTANT_A), "--response", "y", "--fdr", "low"],
        "must be a number, e.g. 0.05",
    ),
    (
        "manifests --vocab -1",
        lambda t: ["manifests", str(QUICKSTART), "--vocab", "-1"],
        "must be at least 260",
    ),
]


@pytest.mark.parametrize(
    ("args", "words"), [c[1:] for c in OPTION_CASES], ids=[c[0] for c in OPTION_CASES]
)
def test_an_option_value_is_checked_in_words(
    args: Callable[[Path], list[str]], words: str, tmp_path: Path
) -> None:
    """Typer checks an option's type and bounds with pydantic; its usage error says what the
    value must be in words instead."""
    result = runner.invoke(app, args(tmp_path))
    assert result.exit_code == 2, result.output
    assert words in result.stderr
    for phrase in ("Input should", "Value error", "x>=", "x<="):
        assert phrase not in result.output, phrase


def test_help_states_bounds_in_words() -> None:
    result = runner.invoke(app, ["run", "-h"])
    assert result.exit_code == 0
    assert "[at least 1]" in result.stdout
    assert "x>=" not in result.stdout
