"""`stagescreen report URI`: a stored study's report written beside it, locally and on S3."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from seaweed import S3Bucket
from test_report import PAPER, PNG_MAGIC, ROOT, write_programme
from typer.testing import CliRunner

from stagescreen.outcomes.manifest import Manifest
from stagescreen.outcomes.model import StageOutcome
from stagescreen.reports.decision import Decision, behind_on_failures, failure_words
from stagescreen.storage.store import LocalStore, open_store
from stagescreen_operator.cli import app
from stagescreen_operator.cli.report import split_study_uri

runner = CliRunner()


def report(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["report", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("uri", "root", "study"),
    [
        ("./runs/quickstart", "runs", "quickstart"),
        ("runs/quickstart/", "runs", "quickstart"),
        ("quickstart", ".", "quickstart"),
        ("/data/runs/paper", "/data/runs", "paper"),
        ("file:///data/runs/paper", "file:///data/runs", "paper"),
        ("s3://bucket/prefix/paper", "s3://bucket/prefix", "paper"),
        ("s3://bucket/a/b/paper/", "s3://bucket/a/b", "paper"),
        ("s3://bucket/paper", "s3://bucket", "paper"),
    ],
)
def test_the_last_path_segment_is_the_study_and_the_rest_the_store_root(
    uri: str, root: str, study: str
) -> None:
    assert split_study_uri(uri) == (root, study)


@pytest.mark.parametrize("uri", ["s3://bucket", "s3://bucket/", "", "."])
def test_a_uri_without_a_study_segment_is_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="study"):
        split_study_uri(uri)


def test_local_report_is_written_beside_the_study(tmp_path: Path) -> None:
    write_programme(LocalStore(tmp_path / "runs"))
    code, out, _ = report(str(tmp_path / "runs" / "quickstart"))
    assert code == 0
    study = tmp_path / "runs" / "quickstart"
    assert out.splitlines()[0] == f"report: {(study / 'report.md').as_uri()}"
    assert f"  {(study / 'stages' / 'screen' / 'effects.png').as_uri()}" in out.splitlines()
    markdown = (study / "report.md").read_text()
    assert "# Study `quickstart`" in markdown
    assert "| 2^3 full factorial | 8 | — | — | — |" in markdown
    assert "**Not run yet**" in markdown.split("### Stage `confirm`")[1]
    assert "(stages/screen/effects.png)" in markdown
    assert (study / "stages" / "screen" / "effects.png").read_bytes().startswith(PNG_MAGIC)
    assert (study / "stages" / "confirm" / "report.md").read_text().count("Not run yet") == 1


def test_out_directory_receives_the_report_and_the_store_is_left_alone(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "runs")
    write_programme(store)
    before = store.list()
    code, out, _ = report(str(tmp_path / "runs" / "quickstart"), "--out", str(tmp_path / "out"))
    assert code == 0
    assert store.list() == before
    assert (tmp_path / "out" / "report.md").is_file()
    assert (tmp_path / "out" / "main-effects.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "out" / "stages" / "screen" / "effects.png").is_file()
    assert str(tmp_path / "out") in out


def test_a_study_with_only_its_spec_reports_every_stage_as_not_run(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_text("paper/spec.yaml", PAPER.read_text())
    code, _, _ = report(str(tmp_path / "paper"))
    assert code == 0
    markdown = (tmp_path / "paper" / "report.md").read_text()
    assert markdown.count("**Not run yet**") == 10
    assert "No stage has a best condition yet." in markdown
    assert not list(tmp_path.rglob("*.png"))


def test_no_spec_at_the_uri_exits_2_naming_the_uri_and_what_was_expected(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "nothing"
    code, out, err = report(str(folder))
    assert code == 2
    assert out == ""
    assert f"no study at {str(folder)!r}: the folder does not exist" in err
    folder.mkdir(parents=True)
    code, out, err = report(str(folder))
    assert code == 2
    spec = (folder / "spec.yaml").as_uri()
    assert f"no study at {str(folder)!r}: expected spec.yaml at {spec}" in err


def test_an_invalid_spec_exits_2_with_its_field_paths(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    text = PAPER.read_text().replace("high: 8, scale: integer", "high: 6, scale: integer")
    store.put_text("paper/spec.yaml", text)
    code, _, err = report(str(tmp_path / "paper"))
    assert code == 2
    assert "is not a valid study" in err and "spec.factors[0]" in err


def test_a_bucket_without_a_study_exits_2() -> None:
    code, _, err = report("s3://bucket")
    assert code == 2
    assert "names a bucket but no study" in err


def test_s3_report_is_written_beside_the_study(s3_bucket: S3Bucket) -> None:
    write_programme(open_store(s3_bucket.uri("team/studies")))
    code, out, err = report(s3_bucket.uri("team/studies/quickstart"))
    assert code == 0, err
    assert out.splitlines()[0] == f"report: {s3_bucket.uri('team/studies/quickstart/report.md')}"
    markdown = s3_bucket.read("team/studies/quickstart/report.md").decode()
    assert "# Study `quickstart`" in markdown
    figure = s3_bucket.read("team/studies/quickstart/stages/screen/effects.png")
    assert figure.startswith(PNG_MAGIC)


def test_s3_uri_without_a_spec_exits_2(s3_bucket: S3Bucket) -> None:
    code, _, err = report(s3_bucket.uri("team/missing"))
    assert code == 2
    assert f"expected spec.yaml at {s3_bucket.uri('team/missing/spec.yaml')}" in err


# --- the decision first, on the simulated quickstart and paper ----------------------------------


def simulate(spec: Path, out: Path) -> Path:
    """`stagescreen simulate SPEC --out OUT` then `report`: the study folder."""
    result = runner.invoke(app, ["simulate", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    study = out / yaml.safe_load(spec.read_text())["metadata"]["name"]
    code, _, err = report(str(study))
    assert code == 0, err
    return study


@pytest.fixture(scope="module")
def simulated_quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate(ROOT / "examples" / "quickstart.yaml", tmp_path_factory.mktemp("sim"))


@pytest.fixture(scope="module")
def simulated_paper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate(PAPER, tmp_path_factory.mktemp("sim"))


def decision_of(markdown: str) -> str:
    """The report's first section after its title and banner, which must be the decision."""
    sections = markdown.split("\n## ")
    assert sections[0].startswith("# Study `")
    assert "**SYNTHETIC**" in sections[0]
    assert sections[1].startswith("Decision\n")
    return sections[1]


def assert_decision_first(study: Path) -> str:
    decision = decision_of((study / "report.md").read_text())
    for heading in ("What the study found", "What to run next", "How far to trust it"):
        assert f"**{heading}**" in decision
    assert "**SYNTHETIC**: simulated on planted effects" in decision
    return decision


def test_the_quickstart_report_opens_with_the_decision(simulated_quickstart: Path) -> None:
    decision = assert_decision_first(simulated_quickstart)
    assert "- `screen` retained " in decision
    assert "- From stage `longer`:" in decision


def test_the_longer_best_sentence_explains_the_divergence_ordering(
    simulated_quickstart: Path,
) -> None:
    """The simulated quickstart's `longer` stage: its best ranks first although another
    condition's mean is better, because that one diverged; both texts must say so."""
    stage = simulated_quickstart / "stages" / "longer"
    record = StageOutcome.model_validate_json((stage / "outcome.json").read_text())
    (best,) = record.best_per_pool
    behind = behind_on_failures(best, record.ranking, record.goal)
    assert behind, "the default simulation makes a better-mean anchor of `longer` diverge"
    # the simulator's runs only diverge, never fail, and the sentence says "diverged"
    assert all(entry.diverged == entry.failed for entry in behind)
    markdown = (stage / "report.md").read_text()
    decision = decision_of((simulated_quickstart / "report.md").read_text())
    for entry in behind:
        # each text prints the mean at its own precision (the stage's at its ranking table's)
        why = re.compile(
            re.escape(f"`{entry.condition_id}` has the lower mean (")
            + r"\d+\.\d+"
            + re.escape(
                f") but ranks behind `{best.condition_id}` because it "
                + failure_words(entry.failed, entry.diverged, entry.runs)
            )
        )
        assert failure_words(entry.failed, entry.diverged, entry.runs).startswith("diverged on")
        assert why.search(markdown.split("# Best condition")[1])
        assert why.search(decision)


def test_report_format_json_prints_the_decision(simulated_quickstart: Path) -> None:
    before = sorted(p.name for p in simulated_quickstart.rglob("*"))
    code, out, err = report(str(simulated_quickstart), "--format", "json")
    assert code == 0, err
    printed = json.loads(out)
    decision = Decision.model_validate(printed["decision"])
    assert decision.study == "quickstart"
    assert decision.stage == "longer"
    assert decision.trust.rehearsal == "SYNTHETIC"
    assert printed["text"] in (simulated_quickstart / "report.md").read_text()
    # the best is the worst anchor, ahead only because its rival diverged once, over one seed
    # in common: rerun both with more seeds, not "choose on cost"
    (pick,) = decision.picks
    assert pick.verdict == "inconclusive" and "choose on cost" not in printed["text"]
    assert f"Rerun `{pick.condition_id}` and `{pick.runner_up}` with more seeds" in printed["text"]
    # one lost run is counted once: it diverged (the simulator's runs never fail)
    assert pick.behind and all((b.failed, b.diverged) == (0, 1) for b in pick.behind)
    for stage in printed["stages"]:
        runs = stage["runs"]
        assert runs["planned"] == sum(runs[k] for k in RUN_STATES), stage
    assert sorted(p.name for p in simulated_quickstart.rglob("*")) == before  # wrote nothing


def test_report_format_json_with_out_is_refused(simulated_quickstart: Path, tmp_path: Path) -> None:
    code, _, err = report(str(simulated_quickstart), "--format", "json", "--out", str(tmp_path))
    assert code == 2
    assert "--format json prints to stdout" in err


RUN_STATES = ("succeeded", "diverged", "failed", "missing", "pending")


def test_the_paper_simulation_opens_with_the_decision_and_its_run_tables_add_up(
    simulated_paper: Path,
) -> None:
    markdown = (simulated_paper / "report.md").read_text()
    decision = assert_decision_first(simulated_paper)
    assert "- From stage `long-horizon`:" in decision
    # two seeds in common (one df) against the control: separated on a100, inconclusive on
    # l40s, never a choice on cost; the picks hold the centre of a retained factor, and the
    # decision says so
    code, out, err = report(str(simulated_paper), "--format", "json")
    assert code == 0, err
    picks = Decision.model_validate(json.loads(out)["decision"]).picks
    assert {pick.pool: pick.verdict for pick in picks} == {"a100": "ahead", "l40s": "inconclusive"}
    assert "choose on cost" not in decision
    assert any(pick.against for pick in picks)
    assert "Its levels are not the ones found better for `" in decision
    stages = yaml.safe_load(PAPER.read_text())["spec"]["stages"]
    header = "| planned | succeeded | diverged | failed | missing | pending |"
    for stage in stages:
        text = (simulated_paper / "stages" / stage["name"] / "report.md").read_text()
        table = text.split("# Runs\n\n")[1]
        assert table.startswith(header + "\n|---|"), stage["name"]
        planned, *states = (int(cell) for cell in table.splitlines()[2].strip("| ").split(" | "))
        assert planned == sum(states), stage["name"]
        assert table.splitlines()[2] in markdown
    manifest = Manifest.model_validate_json((simulated_paper / "manifest.json").read_text())
    table = markdown.split("## Run manifest")[1]
    assert "| planned | succeeded | diverged | failed | pending | GPU-hours |" in table
    assert "pending: planned runs not ended yet, with or without a record" in table
    for line in [*manifest.stages, manifest.total]:
        assert line.planned == line.succeeded + line.diverged + line.failed + line.pending
    total = manifest.total
    assert (
        f"| **total** |  |  |  | **{total.planned}** | **{total.succeeded}** "
        f"| **{total.diverged}** | **{total.failed}** | **{total.pending}** |"
    ) in table
