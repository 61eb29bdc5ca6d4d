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
    assert payload["aliases"][:2] == [["A"], ["B"]]  # nothing aliased up to order 2
    assert len(payload["aliases"]) == 5 + 10
    assert len(payload["runs"]) == 16
    assert payload["runs"][6] == {"condition_id": "c07", "A": -1, "B": 1, "C": 1, "D": -1, "E": 1}
    assert payload["runs"][9] == {"condition_id": "c10", "A": 1, "B": -1, "C": -1, "D": 1, "E": 1}


def test_json_of_a_full_factorial_has_null_resolution() -> None:
    code, out, _ = design("--factors", "A,B,C", "--json")
    payload = json.loads(out)
    assert code == 0
    assert payload["resolution"] is None
    assert payload["defining_relation"] == []
    assert ["A:B"] in payload["aliases"]
    assert all(len(chain) == 1 for chain in payload["aliases"])
    assert [run["condition_id"] for run in payload["runs"]] == [f"c0{i}" for i in range(1, 9)]


def test_table_shows_condition_ids_relation_resolution_and_aliases() -> None:
    code, out, _ = design("--factors", "A,B,C,D,E", "--generators", "E=ABCD")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "2^(5-1) regular fraction, 16 runs, paper order"
    assert "condition   A   B   C   D   E" in lines
    assert "c07        -1  +1  +1  -1  +1" in lines
    assert "defining relation: I = ABCDE" in lines
    assert "resolution: V (5)" in lines
    assert lines[-3:] == [
        "aliases up to order 2:",
        "  none",
        "aliased with nothing up to order 2: A, B, C, D, E, A:B, A:C, A:D, A:E, B:C, B:D, B:E, "
        "C:D, C:E, D:E",
    ]


def aliases_printed(out: str) -> list[str]:
    lines = out.splitlines()
    return lines[lines.index(next(line for line in lines if line.startswith("aliases"))) :]


def test_each_alias_chain_is_printed_once() -> None:
    code, out, _ = design("--factors", "A,B,C,D,E", "-g", "D=AB,E=AC")
    assert code == 0
    assert aliases_printed(out) == [
        "aliases up to order 2:",
        "  A = B:D = C:E",
        "  B = A:D",
        "  C = A:E",
        "  D = A:B",
        "  E = A:C",
        "  B:C = D:E",
        "  B:E = C:D",
    ]


@pytest.mark.parametrize(
    ("order", "printed"),
    [
        (
            "1",
            [
                "aliases up to order 1:",
                "  none",
                "aliased with nothing up to order 1: A, B, C, D, E",
            ],
        ),
        ("5", ["aliases up to order 5:", "  I = -A:B:C:D:E", "  A = -B:C:D:E"]),
    ],
)
def test_alias_order_bounds_every_effect_listed(order: str, printed: list[str]) -> None:
    code, out, _ = design("--factors", "A,B,C,D,E", "-g", "E=-ABCD", "--alias-order", order)
    assert code == 0
    assert aliases_printed(out)[: len(printed)] == printed
    if order == "5":
        assert "  A:B = -C:D:E" in out
        assert "  C:D:E" not in out  # the chain of A:B, not printed again from C:D:E


def test_yates_flag_numbers_runs_first_factor_fastest() -> None:
    code, out, _ = design("--factors", "ABC", "--yates", "--json")
    assert code == 0
    runs = json.loads(out)["runs"]
    assert runs[1] == {"condition_id": "c02", "A": 1, "B": -1, "C": -1}


def test_resolution_option_chooses_and_prints_generators() -> None:
    code, out, _ = design("--factors", "A,B,C,D,E,F,G", "--resolution", "4")
    assert code == 0
    assert "2^(7-3) regular fraction, 16 runs" in out
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
            "--generators: unknown factor code F in 'E=ABCF' (codes: A, B, C, D, E)",
        ),
        (
            ["--factors", "A,B,C,D,E", "--generators", "E=AB,D=AB"],
            "--generators: 'D=AB' and 'E=AB' alias main effect D with main effect E",
        ),
        (["--factors", "A,B,A"], "--factors: factor 'A' appears twice in A,B,A"),
        (["--factors", "A,B1"], "--factors: 'B1' is not a factor code"),
        (["--factors", "A,B,C", "--resolution", "2"], "--resolution: resolution must be"),
        (
            ["--factors", "A,B,C,D", "-g", "D=ABC", "--resolution", "4"],
            "--generators: got both --generators D=ABC and --resolution 4",
        ),
        (["--factors", "A,B,C", "--alias-order", "4"], "--alias-order: must be between 1 and 3"),
        (
            ["--factors", "A,B,C,D", "--resolution", "5"],
            "--resolution: no fraction of 4 factors reaches resolution V (5): the best is "
            "resolution IV, the 2^(4-1) half fraction (8 runs); ask for resolution 4 or less, "
            "or use the full factorial (all 16 runs, nothing aliased)",
        ),
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
