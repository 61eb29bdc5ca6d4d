"""`stagescreen design`: the table, the JSON contract and refusals of bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from stagescreen_operator.cli import app

runner = CliRunner()


def design(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["design", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_is_the_papers_screen_in_condition_order() -> None:
    code, out, _ = design("--factors", "A,B,C,D,E", "--generators", "E=ABCD", "--json")
    assert code == 0
    payload = json.loads(out)
    assert list(payload) == ["runs", "defining_relation", "resolution", "aliases"]
    assert payload["defining_relation"] == ["ABCDE"]
    assert payload["resolution"] == 5
    assert payload["aliases"]["A"] == ["BCDE"]
    assert payload["aliases"]["A:B"] == ["CDE"]
    assert len(payload["runs"]) == 16
    assert payload["runs"][6] == {"A": -1, "B": 1, "C": 1, "D": -1, "E": 1}  # c07
    assert payload["runs"][9] == {"A": 1, "B": -1, "C": -1, "D": 1, "E": 1}  # c10


def test_json_of_a_full_factorial_has_null_resolution() -> None:
    code, out, _ = design("--factors", "A,B,C", "--json")
    payload = json.loads(out)
    assert code == 0
    assert payload["resolution"] is None
    assert payload["defining_relation"] == []
    assert payload["aliases"]["A:B"] == []
    assert len(payload["runs"]) == 8


def test_table_shows_condition_ids_relation_resolution_and_aliases() -> None:
    code, out, _ = design("--factors", "A,B,C,D,E", "--generators", "E=ABCD")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "2^(5-1) fractional factorial, 16 runs, paper order"
    assert "condition   A   B   C   D   E" in lines
    assert "c07        -1  +1  +1  -1  +1" in lines
    assert "defining relation: I = ABCDE" in lines
    assert "resolution: V (5)" in lines
    assert "  A = BCDE" in lines
    assert "  A:B = CDE" in lines


def test_yates_flag_numbers_runs_first_factor_fastest() -> None:
    code, out, _ = design("--factors", "ABC", "--yates", "--json")
    assert code == 0
    runs = json.loads(out)["runs"]
    assert runs[1] == {"A": 1, "B": -1, "C": -1}


def test_resolution_option_chooses_and_prints_generators() -> None:
    code, out, _ = design("--factors", "A,B,C,D,E,F,G", "--resolution", "4")
    assert code == 0
    assert "2^(7-3) fractional factorial, 16 runs" in out
    assert "generators: E=ABC, F=ABD, G=ACD" in out
    assert "resolution: IV (4)" in out


def test_several_generators_comma_separated_or_repeated_agree() -> None:
    _, joined, _ = design("--factors", "A,B,C,D,E,F", "-g", "E=ABC,F=BCD", "--json")
    _, repeated, _ = design("--factors", "A,B,C,D,E,F", "-g", "E=ABC", "-g", "F=BCD", "--json")
    assert json.loads(joined) == json.loads(repeated)
    assert json.loads(joined)["defining_relation"] == ["ABCE", "ADEF", "BCDF"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--factors", "A,B,C,D,E", "--generators", "E=ABCF"],
            "--generators: generator 'E=ABCF' references unknown factor 'F'; "
            "factors are A, B, C, D, E",
        ),
        (
            ["--factors", "A,B,C,D,E", "--generators", "E=AB,D=AB"],
            "--generators: generators 'D=AB' and 'E=AB' alias main effect D with main effect E",
        ),
        (["--factors", "A,B,A"], "--factors: factor 'A' appears twice in A,B,A"),
        (["--factors", "A,B1"], "--factors: 'B1' is not a factor code"),
        (["--factors", "A,B,C", "--resolution", "2"], "--resolution: resolution must be"),
        (
            ["--factors", "A,B,C,D", "-g", "D=ABC", "--resolution", "4"],
            "--generators: got both --generators D=ABC and --resolution 4",
        ),
        (["--factors", "A,B,C", "--alias-order", "4"], "--alias-order: must be between 1 and 3"),
    ],
)
def test_bad_input_exits_2_naming_option_value_and_what_is_accepted(
    args: list[str], message: str
) -> None:
    code, out, err = design(*args)
    assert code == 2
    assert message in err
    assert out == ""


def test_help_teaches_with_examples_and_the_numbering() -> None:
    result = runner.invoke(app, ["design", "--help"])
    assert result.exit_code == 0
    assert "stagescreen design --factors A,B,C,D,E --generators E=ABCD" in result.stdout
    assert "c07 is A-,B+,C+,D-,E+" in result.stdout
    assert "[default: 2]" in result.stdout
