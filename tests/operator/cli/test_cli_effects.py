"""`stagescreen effects` on CSV and parquet tables, as a user runs it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from screens import DATA, paper_like_screen
from seaweed import S3Bucket
from typer.testing import CliRunner

from stagescreen_operator.cli import app
from stagescreen_operator.tables import text_table

runner = CliRunner()


# The paper's seeded-screen model: main effects per budget with a seed block.
SEEDED_SCREEN = (
    "--response",
    "val_bpb",
    "--factors",
    "A,B,C,D,E",
    "--by",
    "budget_s",
    "--block",
    "seed",
)


def run(*args: str):
    return runner.invoke(app, ["effects", *args])


@pytest.fixture
def screen_csv(tmp_path: Path) -> Path:
    data = paper_like_screen()
    data.loc[3, "status"] = "failed"
    path = tmp_path / "results.csv"
    path.write_text(
        "# seeded screen, synthetic\n# budgets 300 and 600 s\n" + data.to_csv(index=False)
    )
    return path


def test_json_has_exactly_the_documented_shape(screen_csv: Path) -> None:
    result = run(
        str(screen_csv),
        *SEEDED_SCREEN,
        "--json",
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert list(document) == ["families"]
    short, long = document["families"]
    assert short["by"] == {"budget_s": 300} and long["by"] == {"budget_s": 600}
    assert (short["n"], long["n"]) == (79, 80)
    assert {"by", "n", "effects"} <= set(short)
    assert [e["term"] for e in short["effects"]] == list("ABCDE")
    for effect in short["effects"]:
        assert list(effect) == ["term", "effect", "ci_low", "ci_high", "p", "q"]
        assert effect["ci_low"] < effect["effect"] < effect["ci_high"]
    assert short["missing"] == ["c04/seed=1"]
    assert short["excluded"][0]["reason"] == "status=failed"


def test_interactions_are_named_with_colons(screen_csv: Path) -> None:
    result = run(
        str(screen_csv),
        *SEEDED_SCREEN,
        "--interactions",
        "--json",
    )
    assert result.exit_code == 0, result.output
    terms = [e["term"] for e in json.loads(result.stdout)["families"][0]["effects"]]
    assert terms[5:] == ["A:B", "A:C", "A:D", "A:E", "B:C", "B:D", "B:E", "C:D", "C:E", "D:E"]


def test_the_human_table_prints_three_factor_terms_as_written() -> None:
    """`A:B:C` holds `:B:`, an emoji code to rich: the table prints it as written."""
    table = text_table(["term", "note"], [["A:B:C", "[bold]kept[/bold]"]])
    assert "A:B:C" in table and "[bold]kept[/bold]" in table


def test_human_table_marks_effects_significant_at_the_fdr(screen_csv: Path) -> None:
    result = run(
        str(screen_csv),
        *SEEDED_SCREEN,
        "--fdr",
        "0.05",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "budget_s=300  n=79  residual df=69"
    assert lines[1].split() == ["term", "effect", "95%", "CI", "p", "q"]
    marked = {line.split()[0] for line in lines if line.endswith("*")}
    assert marked == set("ABCD")
    assert "missing runs (1): c04/seed=1" in result.stdout
    # Named by its file line: two comment lines, the header, then the fourth data row.
    assert "excluded line 7: status=failed" in result.stdout
    assert screen_csv.read_text().splitlines()[6].count("failed") == 1
    assert "* q <= 0.05 (Benjamini-Hochberg, fdr_bh, within each family)" in result.stdout


def test_saturated_design_gives_null_not_nan_and_lenth_fills_it_in() -> None:
    path = DATA / "montgomery_filtration_2x4.csv"
    plain = run(
        str(path), "--response", "filtration rate", "--factors", "A,B,C,D", "--order", "4", "--json"
    )
    assert plain.exit_code == 0, plain.output
    assert "NaN" not in plain.stdout
    [family] = json.loads(plain.stdout)["families"]
    assert family["df_resid"] == 0
    assert family["effects"][0] == {
        "term": "A",
        "effect": 21.625,
        "ci_low": None,
        "ci_high": None,
        "p": None,
        "q": None,
    }
    lenth = run(
        str(path),
        "--response",
        "filtration rate",
        "--factors",
        "A,B,C,D",
        "--order",
        "4",
        "--lenth",
        "--json",
    )
    [family] = json.loads(lenth.stdout)["families"]
    assert family["lenth"]["pse"] == pytest.approx(2.625)
    assert family["effects"][0]["ci_low"] == pytest.approx(21.625 - 2.16 * 2.625, abs=0.06)


def test_aliased_interactions_exit_2_naming_the_aliases() -> None:
    result = run(
        str(DATA / "montgomery_filtration_2x4-1.csv"),
        "--response",
        "filtration rate",
        "--factors",
        "A,B,C,D",
        "--interactions",
    )
    assert result.exit_code == 2
    assert "A:B is aliased with C:D" in result.stderr
    chosen = run(
        str(DATA / "montgomery_filtration_2x4-1.csv"),
        "--response",
        "filtration rate",
        "--factors",
        "A,B,C,D",
        "--terms",
        "A:B,A:C,A:D",
        "--json",
    )
    assert chosen.exit_code == 0, chosen.output
    effects = {e["term"]: e["effect"] for e in json.loads(chosen.stdout)["families"][0]["effects"]}
    assert effects["A:C"] == pytest.approx(-18.5)


def test_parquet_and_real_valued_factors_with_spaces(tmp_path: Path) -> None:
    data = paper_like_screen().rename(columns={"B": "aspect ratio"})
    path = tmp_path / "results.parquet"
    data.to_parquet(path)
    result = run(
        str(path),
        "--response",
        "val_bpb",
        "--factors",
        "A,aspect ratio,C,D,E",
        "--by",
        "budget_s",
        "--block",
        "seed",
        "--combined-fdr",
        "--json",
    )
    assert result.exit_code == 0, result.output
    family = json.loads(result.stdout)["families"][0]
    assert family["q_scope"] == "combined"
    assert "A: coded 6 -> -1, 8 -> +1" in family["notes"]
    assert family["effects"][1]["term"] == "aspect ratio"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--response", "val_bpb", "--factors", "A,B,Z"], "--factors: no column 'Z'; columns: ["),
        (["--response", "loss", "--factors", "A,B"], "--response: no column 'loss'"),
        (
            ["--response", "val_bpb", "--factors", "A,B", "--by", "budget"],
            "--by: no column 'budget'",
        ),
        (
            ["--response", "val_bpb", "--factors", "A,B", "--block", "rng"],
            "--block: no column 'rng'",
        ),
        (["--response", "val_bpb", "--factors", "A,pool"], "factor column 'pool' is not numeric"),
        (["--response", "val_bpb", "--factors", "A,B", "--fdr", "5"], "--fdr must lie"),
    ],
)
def test_bad_input_exits_2_naming_the_option_and_what_exists(
    screen_csv: Path, args: list[str], message: str
) -> None:
    frame = pd.read_csv(screen_csv, comment="#")
    frame["pool"] = np.where(frame.seed % 2, "a100", "l40s")
    frame.to_csv(screen_csv, index=False)
    result = run(str(screen_csv), *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_a_folder_a_missing_file_and_another_file_type_each_say_what_to_give(
    tmp_path: Path,
) -> None:
    """The one table reader (`effects RESULTS`, `simulate --table`): one `error:` line each,
    exit 2, naming the argument, the location and what to give instead."""
    sheet = tmp_path / "results.xlsx"
    sheet.write_bytes(b"not a table")
    cases = [
        (str(tmp_path), f"RESULTS {str(tmp_path)!r} is a folder: give a .csv or .parquet file"),
        (
            str(sheet),
            f"RESULTS {str(sheet)!r}: unknown file type '.xlsx': give a .csv or .parquet file "
            "(accepted: .csv, .parquet, .pq)",
        ),
        (
            str(tmp_path / "absent.csv"),
            f"RESULTS {str(tmp_path / 'absent.csv')!r}: no such file; check the path",
        ),
    ]
    for location, message in cases:
        result = run(location, "--response", "val_bpb", "--factors", "A")
        assert result.exit_code == 2
        assert result.stderr == f"error: {message}\n"


def test_rows_with_missing_response_are_excluded_and_listed(tmp_path: Path) -> None:
    data = paper_like_screen()
    data = data[data.budget_s == 300].drop(columns=["status"])
    data.loc[data.index[0], "val_bpb"] = math.nan
    path = tmp_path / "results.csv"
    data.to_csv(path, index=False)
    result = run(
        str(path), "--response", "val_bpb", "--factors", "A,B,C,D,E", "--block", "seed", "--json"
    )
    [family] = json.loads(result.stdout)["families"]
    assert family["n"] == 79
    assert family["excluded"] == [
        {
            "row": 2,  # its line in the file, after the header
            "run_id": "b300-c01-s1",
            "condition_id": "c01",
            "seed": 1,
            "budget_s": 300,
            "reason": "val_bpb is missing",
        }
    ]
    assert family["missing"] == ["c01/seed=1"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "cannot be read as a CSV table with a header line"),
        ("comments.csv", b"# only a comment\n", "cannot be read as a CSV table"),
        ("ragged.csv", b"A,y\n1,2\n-1,3,4,5\n", "Expected 2 fields in line 3, saw 4"),
        ("junk.parquet", b"junk", "cannot be read as a parquet file"),
    ],
)
def test_unreadable_tables_exit_2_naming_the_file(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = run(str(path), "--response", "y", "--factors", "A")
    assert result.exit_code == 2
    assert f"RESULTS {str(path)!r}: " in result.stderr
    assert message in result.stderr


def test_text_in_the_response_is_refused_naming_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_text("A,B,y\n-1,-1,1.0\n1,-1,oops\n-1,1,3.0\n1,1,n/a?\n")
    result = run(str(path), "--response", "y", "--factors", "A,B")
    assert result.exit_code == 2
    assert "response column 'y' is not numeric (row 1: 'oops', row 3: 'n/a?')" in result.stderr


def test_saturated_note_points_to_the_lenth_option() -> None:
    path = DATA / "montgomery_filtration_2x4.csv"
    result = run(str(path), "--response", "filtration rate", "--factors", "A,B,C,D", "--order", "4")
    assert result.exit_code == 0, result.output
    assert "no intervals; for Lenth's pseudo standard error ask for --lenth" in result.stdout


def test_help_teaches_with_examples_and_defaults() -> None:
    result = runner.invoke(app, ["effects", "--help"])
    assert result.exit_code == 0
    assert "stagescreen effects results.csv --response val_bpb --factors A,B,C,D,E" in result.stdout
    assert "[default: 0.05]" in result.stdout


def test_generators_name_the_design_runs_the_table_lacks(tmp_path: Path) -> None:
    """Without the design, a run deleted outright is invisible; with it, it is named."""
    table = paper_like_screen()
    table = table[(table["budget_s"] == 600) & (table["seed"] == 1)]
    table = table[table["condition_id"] != "c07"].drop(columns=["condition_id"])
    path = tmp_path / "screen.csv"
    table.to_csv(path, index=False)
    args = [str(path), "--response", "val_bpb", "--factors", "A,B,C,D,E", "--json"]
    blind = runner.invoke(app, ["effects", *args])
    named = runner.invoke(app, ["effects", *args, "--generators", "E=ABCD"])
    assert blind.exit_code == 0 and named.exit_code == 0, named.output
    assert json.loads(blind.stdout)["families"][0]["missing"] == []
    assert json.loads(named.stdout)["families"][0]["missing"] == ["c07"]


def test_generators_that_do_not_fit_the_factors_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "screen.csv"
    paper_like_screen().to_csv(path, index=False)
    done = runner.invoke(
        app,
        [
            "effects",
            str(path),
            "--response",
            "val_bpb",
            "--factors",
            "A,B,C,D,E",
            "--generators",
            "F=ABCD",
        ],
    )
    assert done.exit_code == 2
    assert "--generators 'F=ABCD'" in done.output


def test_a_header_only_csv_says_it_has_no_rows(tmp_path: Path) -> None:
    empty = tmp_path / "results.csv"
    empty.write_text("A,B,val_bpb\n")
    result = run(str(empty), "--response", "val_bpb", "--factors", "A,B")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: RESULTS {str(empty)!r}: no rows (only a header)"


def test_results_are_read_from_an_s3_uri_as_given(screen_csv: Path, s3_bucket: S3Bucket) -> None:
    s3_bucket.put("x/results.csv", screen_csv.read_bytes())
    local = run(str(screen_csv), "--response", "val_bpb", "--factors", "A,B,C,D,E", "--json")
    remote = run(
        s3_bucket.uri("x/results.csv"),
        "--response",
        "val_bpb",
        "--factors",
        "A,B,C,D,E",
        "--json",
    )
    assert remote.exit_code == 0, remote.output
    assert remote.stdout == local.stdout
    missing = run(s3_bucket.uri("x/none.csv"), "--response", "val_bpb", "--factors", "A")
    assert missing.exit_code == 2 and "no such object" in missing.stderr


def test_every_effect_of_a_table_has_one_precision(tmp_path: Path) -> None:
    """Not +4.375e-05 beside +0.00052955: one number of decimals per table, two significant
    figures of the effects' standard error (0.0038 here: 4 decimals), E's +0.00004 an
    unsigned zero."""
    data = paper_like_screen()
    data = data[data.budget_s == 300]
    path = tmp_path / "results.csv"
    data.to_csv(path, index=False)
    result = run(str(path), "--response", "val_bpb", "--factors", "A,B,C,D,E", "--block", "seed")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()[2:7]]
    decimals = {len(row[1].split(".")[1]) for row in rows}
    assert decimals == {4} and all("e" not in row[1] for row in rows)
    assert rows[4][:2] == ["E", "0.0000"]
