"""Reports: the markdown a researcher reads and the paper's figures 1-4, from stored outcomes.

The programme below is the paper's (examples/paper.yaml), its runs simulated on planted
effects and every outcome the one `outcomes.analyse.stage_outcome` writes, so the report is
tested against the records it will really read. Part of it has run, as in a study still in
progress: two stages not at all, one with runs but no analysis yet. The seeded screen carries
the paper's own published 5- and 10-minute effect table (section 5.1) in place of its fit.
Expected text is computed from the outcome records, never copied from a hand-made one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.collections import PathCollection

from stagescreen.kinds import KINDS
from stagescreen.outcomes.analyse import stage_outcome
from stagescreen.outcomes.manifest import Manifest, manifest
from stagescreen.outcomes.model import StageOutcome
from stagescreen.reports.figures import (
    ADJUSTED_LABEL,
    MEAN_LABEL,
    NOT_RETAINED_LABEL,
    RETAINED_LABEL,
    SEED_LABEL,
    anchor_figure,
    effects_figure,
    png_bytes,
    search_figure,
    variance_figure,
)
from stagescreen.reports.formatting import (
    DASH,
    fmt_budget,
    fmt_effect,
    fmt_interval,
    fmt_levels,
    fmt_p,
    fmt_percent,
    fmt_significant,
)
from stagescreen.reports.report import (
    StageData,
    StudyData,
    read_study_data,
    render_report,
    write_report,
)
from stagescreen.reports.sections import best_section, outcome_sections
from stagescreen.statistics import synthetic
from stagescreen.statistics.families import Effect, EffectFamilies, Family, relaxation_table
from stagescreen.statistics.means import VarianceShare
from stagescreen.statistics.retention import retained_factors
from stagescreen.storage.keys import StudyKeys
from stagescreen.storage.store import LocalStore, Store
from stagescreen.study.parse import load_study, parse_study
from stagescreen.study.spec import Study

ROOT = Path(__file__).resolve().parents[3]
PAPER = ROOT / "examples" / "paper.yaml"
QUICKSTART = ROOT / "tests" / "data" / "quickstart-two-stages.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLANTED = {"A": 0.018, "B": 0.006, "C": -0.0045, "D": 0.035, "E": 0.0}
# Planted at 10 minutes and relaxing as 1/sqrt(budget), with little noise: the screens find
# the planted factors, so their sections have retained factors and relaxation ratios to show.
PAPER_MODEL = synthetic.ResponseModel(
    effects=PLANTED, reference_s=600, relaxation=0.5, noise_sd=0.002
)
QUICKSTART_MODEL = synthetic.ResponseModel(effects={"A": 0.10, "B": -0.05, "C": 0.02})
# Stages that have run, in spec order (each one's anchors come from earlier ones).
RAN = (
    "screen",
    "greedy-10m",
    "random",
    "confirm",
    "seeded-screen",
    "bridge",
    "cross-host",
    "long-horizon",
)
NOT_RUN = ("followup", "greedy-5m")
NOT_ANALYSED = "cross-host"

# Paper 5.1, seeded 5- and 10-minute estimates: term, effect, ci_low, ci_high, p, q.
PAPER_5M = [
    ("A", 0.0568, 0.0426, 0.0710, 1.98e-11, 4.94e-11),
    ("B", 0.0441, 0.0299, 0.0583, 3.57e-08, 5.94e-08),
    ("C", -0.0165, -0.0307, -0.0023, 0.0232, 0.0290),
    ("D", 0.0818, 0.0676, 0.0960, 9.01e-18, 4.50e-17),
    ("E", 0.0054, -0.0088, 0.0196, 0.454, 0.454),
]
PAPER_10M = [
    ("A", 0.0180, 0.0141, 0.0218, 8.86e-14, 2.21e-13),
    ("B", 0.0059, 0.0021, 0.0098, 0.00319, 0.00532),
    ("C", -0.0045, -0.0084, -0.0007, 0.0219, 0.0274),
    ("D", 0.0346, 0.0308, 0.0385, 9.03e-28, 4.52e-27),
    ("E", -0.0013, -0.0052, 0.0026, 0.501, None),  # q left null: renders as a dash
]


# --- the programme, from the real producer ------------------------------------------------


@dataclass(frozen=True)
class Programme:
    """What storage holds for a study: stage -> (outcome, results), and its manifest."""

    stages: dict[str, tuple[StageOutcome | None, pd.DataFrame | None]]
    manifest: Manifest | None


def published_family(budget: int, rows: list[tuple[Any, ...]]) -> Family:
    """A family of the paper's seeded screen (16 conditions x 5 seeds: n 80, residual df 70)."""
    effects = tuple(
        Effect(term=term, effect=effect, ci_low=low, ci_high=high, p=p, q=q)
        for term, effect, low, high, p, q in rows
    )
    return Family(by={"budget_s": budget}, n=80, df_resid=70, effects=effects)


def as_measured(results: pd.DataFrame) -> pd.DataFrame:
    """Simulated runs as real runs are stored: without the synthetic label, which would put
    the SYNTHETIC banner on every report (test_simulated_results_... adds it back)."""
    return results.drop(columns="synthetic")


def fail(results: pd.DataFrame, runs: pd.Series) -> pd.DataFrame:
    """The selected runs as the trainer records a failure: status failed, no metric."""
    return results.assign(
        status=results["status"].mask(runs, "failed"),
        val_bpb=results["val_bpb"].mask(runs),
    )


def paper_results(study: Study) -> pd.DataFrame:
    """Every run of the stages in RAN, simulated in spec order, with what real runs do: the
    screen's first run fails; three of the bridge control's four seeds fail (one run left,
    so its sd and interval are null); random's last draw has no record yet."""
    results = pd.DataFrame()
    for name in RAN:
        results = synthetic.simulate_stage(study.spec, name, results, PAPER_MODEL)
        if name == "screen":
            results = fail(results, results["run_id"] == results["run_id"].iloc[0])
        if name == "bridge":
            control = (results["stage"] == "bridge") & (results["role"] == "control")
            results = fail(results, control & (results["seed"] > 1))
    last_draw = results.index[results["stage"] == "random"][-1]
    return as_measured(results.drop(index=last_draw))


def paper_programme(study: Study) -> Programme:
    """Each stage in RAN with its results, each but NOT_ANALYSED with its outcome; the seeded
    screen's effects, retention and relaxation are those of the paper's published table."""
    results = paper_results(study)
    stages: dict[str, tuple[StageOutcome | None, pd.DataFrame | None]] = {}
    for name in RAN:
        rows = results[results["stage"] == name].reset_index(drop=True)
        record = None
        if name != NOT_ANALYSED:
            record = stage_outcome(study.spec, study.spec.stage(name), results, study.name)
        stages[name] = (record, rows)
    published = [published_family(300, PAPER_5M), published_family(600, PAPER_10M)]
    seeded, rows = stages["seeded-screen"]
    assert seeded is not None
    stages["seeded-screen"] = (
        seeded.model_copy(
            update={
                "effects": EffectFamilies(families=tuple(published)),
                "retained": retained_factors(published),
                "relaxation": relaxation_table(published, "budget_s"),
            }
        ),
        rows,
    )
    return Programme(stages, manifest(study.spec, results, study.name))


def quickstart_programme(study: Study) -> Programme:
    """The quickstart with its screen run and analysed, its confirm stage not run yet and no
    manifest written."""
    results = synthetic.simulate_stage(study.spec, "screen", pd.DataFrame(), QUICKSTART_MODEL)
    record = stage_outcome(study.spec, study.spec.stage("screen"), results, study.name)
    return Programme({"screen": (record, as_measured(results))}, None)


def write_programme(store: Store, spec_path: Path = QUICKSTART) -> Study:
    """Write spec.yaml and each stored stage's outcome.json, results.parquet and manifest."""
    study = load_study(spec_path)
    keys = StudyKeys(study.name)
    store.put_text(keys.spec(), spec_path.read_text())
    stored = paper_programme(study) if study.name == "paper" else quickstart_programme(study)
    for stage, (outcome, results) in stored.stages.items():
        if outcome is not None:
            store.put_json(keys.stage(stage, "outcome.json"), outcome.to_json())
        if results is not None:
            store.put_frame(keys.stage(stage, "results.parquet"), results)
    if stored.manifest is not None:
        store.put_json(keys.manifest(), stored.manifest.model_dump(mode="json"))
    return study


@pytest.fixture(scope="module")
def paper_data() -> StudyData:
    """The programme as the report reads it, without going through storage."""
    study = load_study(PAPER)
    stored = paper_programme(study)
    stages = tuple(
        StageData(s, *stored.stages.get(s.name, (None, None))) for s in study.spec.stages
    )
    return StudyData(study, stages, stored.manifest)


@pytest.fixture(scope="module")
def paper_report(paper_data: StudyData) -> dict[str, bytes]:
    return render_report(paper_data).files


def stage_data(data: StudyData, name: str) -> StageData:
    return next(s for s in data.stages if s.name == name)


def outcome_of(data: StudyData, name: str) -> dict[str, Any]:
    """A stage's outcome as outcome.json holds it, for tests to compute what its section
    must say."""
    outcome = stage_data(data, name).outcome
    assert outcome is not None, name
    return outcome.to_json()


def section(markdown: str, stage: str) -> str:
    """The study report's section of one stage."""
    start = markdown.index(f"### Stage `{stage}`")
    end = markdown.find("\n### Stage ", start + 1)
    return markdown[start : end if end != -1 else markdown.index("## Run manifest")]


# --- formatting -----------------------------------------------------------------------------


def shows(text: str, value: float) -> bool:
    """`text` prints `value` at the decimals it has (which the SE chose, `formatting.decimals`)."""
    return text == f"{value:.{len(text.partition('.')[2])}f}"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.98e-11, "1.98e-11"),
        (0.00319, "0.00319"),
        (0.0232, "0.0232"),
        (0.454, "0.454"),
        (1.0, "1"),
        (None, DASH),
        (float("nan"), DASH),
    ],
)
def test_p_and_q_have_three_significant_figures_and_e_notation_when_small(
    value: Any, text: str
) -> None:
    assert fmt_p(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (10, "10s"),
        (90, "90s"),
        (120, "2m"),
        (600, "10m"),
        (3600, "1h"),
        (43200, "12h"),
        (86400, "24h"),
        (None, DASH),
    ],
)
def test_budgets_read_as_the_paper_writes_them(seconds: Any, text: str) -> None:
    assert fmt_budget(seconds) == text


def test_effects_are_signed_with_four_decimals_and_nulls_are_dashes() -> None:
    assert fmt_effect(0.0568) == "+0.0568"
    assert fmt_effect(-0.00449) == "-0.0045"
    assert fmt_effect(None) == DASH
    assert fmt_interval(0.0426, 0.071) == "[+0.0426, +0.0710]"
    assert fmt_interval(0.0426, None) == DASH
    assert fmt_levels({"A": -1, "B": 1, "C": 0}) == "A-,B+,C0"
    assert fmt_levels(None) == DASH


# --- the study report -----------------------------------------------------------------------


def test_summary_names_factors_design_defining_relation_and_resolution(
    paper_report: dict[str, bytes],
) -> None:
    markdown = paper_report["report.md"].decode()
    assert markdown.startswith("# Study `paper`")
    assert "| A | `DEPTH` | 6 | 8 | 7 | integer |" in markdown
    assert "| B | `ASPECT_RATIO` | 48 | 72 | 64 | integer |" in markdown
    assert "| 2^(5-1) regular fraction | 16 | E=ABCD | I = ABCDE | V |" in markdown
    assert "Metric: `val_bpb` (minimize)" in markdown


def test_no_number_in_any_report_is_a_signed_zero_or_past_six_decimals(
    paper_report: dict[str, bytes],
) -> None:
    """ "[-0.0000, +0.0126]" read as a direction the digits do not show."""
    for name, content in paper_report.items():
        if name.endswith(".md"):
            text = content.decode()
            assert not re.search(r"[-+]0\.0+(?![0-9])", text), name
            assert not re.search(r"\d\.\d{7,}", text), name


def test_published_effects_table_reproduces_the_papers_numbers(
    paper_report: dict[str, bytes],
) -> None:
    seeded = section(paper_report["report.md"].decode(), "seeded-screen")
    assert "**budget 5m** (n = 80, residual df = 70)" in seeded
    # Retention is judged at the longest budget only: no tick column at 5 minutes.
    assert "| `A` | +0.0568 | [+0.0426, +0.0710] | 1.98e-11 | 4.94e-11 |\n" in seeded
    assert "| `A` | +0.0180 | [+0.0141, +0.0218] | 8.86e-14 | 2.21e-13 | ✓ |" in seeded
    assert "| `B` | +0.0059 | [+0.0021, +0.0098] | 0.00319 | 0.00532 | ✓ |" in seeded
    assert "| `D` | +0.0346 | [+0.0308, +0.0385] | 9.03e-28 | 4.52e-27 | ✓ |" in seeded
    assert f"| `E` | -0.0013 | [-0.0052, +0.0026] | 0.501 | {DASH} |  |" in seeded


def test_a_screen_that_retains_nothing_says_so(tmp_path: Path) -> None:
    study = load_study(QUICKSTART)
    null = synthetic.ResponseModel(effects={"A": 0.0, "B": 0.0, "C": 0.0}, noise_sd=0.01)
    results = synthetic.simulate_stage(study.spec, "screen", pd.DataFrame(), null)
    outcome = stage_outcome(study.spec, study.spec.stage("screen"), results, "quickstart")
    assert outcome.retained == []
    stages = tuple(
        StageData(s, outcome if s.name == "screen" else None, None) for s in study.spec.stages
    )
    markdown = render_report(StudyData(study, stages)).markdown
    assert (
        "#### Retained factors\n\nNo factor retained: no main effect at 20s has an interval "
        "excluding zero with q ≤ 0.05." in markdown
    )
    decision = markdown.split("## Decision")[1].split("## Summary")[0]
    assert "`screen` retained no factor at 20s: no main effect's interval excludes zero" in (
        decision
    )


def test_stages_not_run_say_so_and_stages_without_analysis_say_that(
    paper_data: StudyData, paper_report: dict[str, bytes]
) -> None:
    markdown = paper_report["report.md"].decode()
    for stage in NOT_RUN:
        assert "**Not run yet**" in section(markdown, stage)
        assert f"stages/{stage}/report.md" in paper_report
    assert "**Not run yet**" not in section(markdown, "screen")
    cross = section(markdown, "cross-host")
    results = stage_data(paper_data, NOT_ANALYSED).results
    assert results is not None
    assert (
        f"**Analysis not run yet**: {len(results)} run(s) in `results.parquet`, no `outcome.json`."
        in cross
    )
    assert "![" in cross  # its seed runs are still drawn


def test_screen_section_has_runs_ranking_relaxation_promotions_and_best(
    paper_data: StudyData, paper_report: dict[str, bytes]
) -> None:
    screen = section(paper_report["report.md"].decode(), "screen")
    record = outcome_of(paper_data, "screen")
    # planned, succeeded, diverged, the failed first run, missing, pending: they add up
    assert "| 48 | 47 | 0 | 1 | 0 | 0 |" in screen
    assert "Missing runs" not in screen
    assert "**budget 10m, pool a100** (top 5 and bottom 2 of 16)" in screen
    assert screen.count("| … " * 7 + "|") == 3  # one cut per budget
    assert "(×1.00)" in screen and "Relaxation with budget" in screen
    assert len(record["promoted"]) == 6  # two best, two worst, two bridge points for confirm
    for anchor in record["promoted"]:
        row = (
            f"| confirm | {anchor['role']} | `{anchor['condition_id']}` | {anchor['rule']} "
            f"| {fmt_levels(anchor['levels'])} |  |"
        )
        assert row in screen
    assert record["retained"]
    retained = ", ".join(f"`{code}`" for code in record["retained"])
    assert f"#### Retained factors\n\n{retained} (interval excludes zero and q ≤ 0.05 at 10m)." in (
        screen
    )
    assert "![Main effects on val_bpb by budget (screen)](stages/screen/effects.png)" in screen


def test_confirm_section_has_variance_shares_win_counts_and_anchor_rules(
    paper_data: StudyData, paper_report: dict[str, bytes]
) -> None:
    confirm = section(paper_report["report.md"].decode(), "confirm")
    record = outcome_of(paper_data, "confirm")
    assert "- best k=2 from `screen` as **best**" in confirm
    assert "- bridge k=2 from `screen`, centring B as **bridge**" in confirm
    terms = [share["term"] for share in record["variance_shares"]]
    assert {"budget_s", "condition_id", "budget_s:condition_id", "seed", "residual"} == set(terms)
    for share in record["variance_shares"]:
        ss, eta = fmt_significant(share["sum_sq"]), fmt_percent(share["eta_sq"])
        assert f"| {share['term']} | {share['df']:.0f} | {ss} | {eta} |" in confirm
        assert len(ss.replace(".", "").lstrip("0")) <= 3  # three figures, not six decimals
    assert len(record["win_counts"]) == 3 * 15  # 6 anchors: 15 pairs at each of 3 budgets
    for wins in record["win_counts"]:
        row = (
            f"| {fmt_budget(wins['budget_s'])} | a100 | {wins['left']} < {wins['right']} "
            f"| {wins['wins']}/{wins['total']} | {wins['ties']} |"
        )
        assert row in confirm
    for anchor in record["anchors"]:
        row = (
            f"| {anchor['role']} | `{anchor['condition_id']}` | {anchor['rule']} | screen "
            f"| {fmt_levels(anchor['levels'])} |"
        )
        assert row in confirm
    assert "(stages/confirm/variance-shares.png)" in confirm
    assert "(stages/confirm/anchors.png)" in confirm


def test_greedy_and_random_summaries(paper_data: StudyData, paper_report: dict[str, bytes]) -> None:
    markdown = paper_report["report.md"].decode()
    greedy = section(markdown, "greedy-10m")
    (climb,) = outcome_of(paper_data, "greedy-10m")["greedy"]["climbs"]
    at_best = next(s for s in climb["steps"] if s["step"] == climb["best_step"])
    assert (
        f"| 10m | a100 | {len(climb['steps'])} | {climb['accepted']} | {climb['best']:.4f} "
        f"| {climb['best_step']} | `{at_best['condition_id']}` {fmt_levels(at_best['levels'])} |"
    ) in greedy
    random = section(markdown, "random")
    record = outcome_of(paper_data, "random")
    batches = record["random"]["batches"]
    assert [batch["batch"] for batch in batches] == [1, 2, 3, 4, 5]
    for batch in batches:
        row = (
            f"| {batch['batch']} | `{batch['condition_id']}` | {fmt_levels(batch['levels'])} "
            f"| {batch['best']:.4f} |"
        )
        assert row in random
    summary = record["random"]
    assert (
        f"Batch best: mean {summary['mean_batch_best']:.4f}, "
        f"median {summary['median_batch_best']:.4f}, min {summary['min_batch_best']:.4f}, "
        f"max {summary['max_batch_best']:.4f}."
    ) in random
    # The last draw has no record yet: counted and named as missing.
    (missing,) = record["runs"]["missing"]
    assert "| 80 | 79 | 0 | 0 | 1 | 0 |" in random
    assert f"Missing runs: `{missing}`." in random


def test_null_ranking_values_are_dashes_and_failures_are_counted(
    paper_data: StudyData, paper_report: dict[str, bytes]
) -> None:
    """The bridge control failed on three of its four seeds: one run, so no sd."""
    bridge = section(paper_report["report.md"].decode(), "bridge")
    ranking = outcome_of(paper_data, "bridge")["ranking"]
    control = next(e for e in ranking if e["role"] == "control")
    assert (control["n"], control["runs"], control["failed"], control["sd"]) == (1, 4, 3, None)
    assert control["rank"] == len(ranking)  # failures rank it behind every clean anchor
    assert control["diverged"] == 0  # three crashed runs: the lost column says "failed"
    prefix = f"| {control['rank']} | `{control['condition_id']}` | control | 1 | 3/4 failed | "
    (row,) = [line for line in bridge.splitlines() if line.startswith(prefix)]
    cells = row.strip("|").split(" | ")
    assert shows(cells[5].split()[0], control["mean"])
    assert cells[6].strip() == DASH


def test_the_study_is_answered_by_its_last_analysed_stage_on_each_pool(
    paper_data: StudyData, paper_report: dict[str, bytes]
) -> None:
    """long-horizon is the last analysed stage with a best; it ran on both pools. A best
    names every role its anchor holds (the greedy winner that is also the screened best)."""
    markdown = paper_report["report.md"].decode()
    answer = markdown.split("## Best condition")[1].split("##")[0]
    outcome = outcome_of(paper_data, "long-horizon")
    bests = outcome["best_per_pool"]
    assert [best["pool"] for best in bests] == ["a100", "l40s"]
    roles = {a["condition_id"]: [a["role"], *a.get("also", [])] for a in outcome["anchors"]}
    lines = [
        f"- `{best['condition_id']}` ({', '.join(roles[best['condition_id']])}) at 24h on "
        f"{best['pool']}: mean "
        for best in bests
    ]
    assert answer.startswith("\n\nFrom stage `long-horizon`:\n\n" + lines[0])
    assert f"\n{lines[1]}" in answer
    for line, best in zip(lines, bests, strict=True):
        mean = answer.split(line)[1].split(",")[0]
        assert shows(mean, best["mean"])
    for best in bests:
        assert f"as the best of {best['candidates']} (selection-aware, Bonferroni" in answer


def test_manifest_is_table_one_with_totals_and_pools(
    paper_data: StudyData, paper_report: dict[str, bytes]
) -> None:
    table = paper_report["report.md"].decode().split("## Run manifest")[1]
    assert paper_data.manifest is not None
    screen = next(line for line in paper_data.manifest.stages if line.stage == "screen")
    hours = screen.gpu_seconds / 3600
    # planned, succeeded, diverged, failed, pending: they add up, the total row too
    assert (
        f"| `screen` | screen | a100 | 2m, 5m, 10m | 48 | 47 | 0 | 1 | 0 | {hours:.1f} |" in table
    )
    total = paper_data.manifest.total
    assert total.planned == total.succeeded + total.diverged + total.failed + total.pending
    assert (
        f"| **total** |  |  |  | **{total.planned}** | **{total.succeeded}** "
        f"| **{total.diverged}** | **{total.failed}** | **{total.pending}** "
        f"| **{total.gpu_seconds / 3600:.1f}** |"
    ) in table
    l40s = paper_data.manifest.pools["l40s"]
    assert l40s.runs == 24 + 12  # cross-host, and long-horizon's half on l40s
    assert f"| l40s | {l40s.runs} | {l40s.gpu_seconds / 3600:.1f} |" in table


def test_every_linked_figure_is_a_rendered_png(paper_report: dict[str, bytes]) -> None:
    markdown = paper_report["report.md"].decode()
    linked = {line.split("](")[1].rstrip(")") for line in markdown.splitlines() if "![" in line}
    pngs = {name for name in paper_report if name.endswith(".png")}
    assert linked == pngs
    assert {
        "main-effects.png",
        "stages/screen/effects.png",
        "stages/seeded-screen/effects.png",
        "stages/confirm/variance-shares.png",
        "stages/confirm/anchors.png",
        "stages/bridge/anchors.png",
        "stages/long-horizon/anchors.png",
        "stages/long-horizon/variance-shares.png",
        "stages/cross-host/anchors.png",
        "stages/greedy-10m/search.png",
        "stages/random/search.png",
    } == pngs
    assert all(paper_report[name].startswith(PNG_MAGIC) for name in pngs)


def test_stage_reports_link_figures_beside_them(paper_report: dict[str, bytes]) -> None:
    stage = paper_report["stages/confirm/report.md"].decode()
    assert "# Stage `confirm`" in stage
    assert "(variance-shares.png)" in stage and "(anchors.png)" in stage
    assert "stages/" not in stage.split("-->", 1)[1]


def test_figures_are_deterministic(paper_data: StudyData, paper_report: dict[str, bytes]) -> None:
    stage = next(s for s in paper_data.stages if s.name == "confirm")
    assert stage.outcome is not None
    figure = variance_figure(stage.outcome.variance_shares)
    assert figure is not None
    assert png_bytes(figure) == paper_report["stages/confirm/variance-shares.png"]


def test_a_stage_outcome_of_nothing_but_nulls_renders(paper_data: StudyData) -> None:
    stage = paper_data.study.spec.stage("screen")
    empty = StageOutcome.model_validate(
        {
            "study": "paper",
            "stage": "screen",
            "kind": "screen",
            "metric": "val_bpb",
            "goal": "minimize",
            "runs": {"planned": 0},
            "effects": None,
            "ranking": [
                {"budget_s": 120, "pool": "a100", "condition_id": "c01", "n": 0, "rank": 1}
                | dict.fromkeys(["mean", "sd", "ci_low", "ci_high"], None)
            ],
            "best": None,
        }
    )
    report = render_report(StudyData(paper_data.study, (StageData(stage, empty, None),), None))
    markdown = report.markdown
    assert "| 0 | 0 | 0 | 0 | 0 | 0 |" in markdown
    assert f"| 1 | `c01` | {DASH} | 0 |  | {DASH} | {DASH} | {DASH} |" in markdown
    assert "Not written yet: no `manifest.json`." in markdown
    assert "No stage has a best condition yet." in markdown
    assert [name for name in report.files if name.endswith(".png")] == []


# --- figures --------------------------------------------------------------------------------


def test_main_effects_figure_draws_every_factor_at_every_budget(
    paper_data: StudyData,
) -> None:
    screens = [
        (s.name, s.outcome.effects)
        for s in paper_data.stages
        if s.stage.kind == "screen" and s.outcome is not None
    ]
    figure = effects_figure(screens, study=paper_data.study)
    assert figure is not None
    (axes,) = figure.axes
    series = [line for line in axes.lines if str(line.get_gid()).startswith("effect:")]
    assert len(series) == 5 * 2  # five factors in two screen stages
    assert sum(len(line.get_xdata()) for line in series) == 5 * 3 + 5 * 2
    assert [t.get_text() for t in axes.get_xticklabels()] == ["2m", "5m", "10m"]
    assert any(list(line.get_ydata()) == [0.0, 0.0] for line in axes.lines)  # the zero line
    published = {line.get_gid(): list(line.get_ydata()) for line in series}
    assert published["effect:seeded-screen:D"] == [0.0818, 0.0346]
    assert "main effect on val_bpb" in axes.get_ylabel()


def test_variance_figure_has_one_bar_per_term_largest_first_residual_last(
    paper_data: StudyData,
) -> None:
    shares = stage_data(paper_data, "confirm").outcome.variance_shares  # type: ignore[union-attr]
    assert shares is not None
    figure = variance_figure(shares)
    assert figure is not None
    (axes,) = figure.axes
    assert len(axes.patches) == len(shares) == 5
    widths = [bar.get_width() for bar in sorted(axes.patches, key=lambda b: -b.get_y())]
    labels = [
        t.get_text() for t in sorted(axes.get_yticklabels(), key=lambda t: -t.get_position()[1])
    ]
    assert labels[-1] == "residual"
    assert widths[:-1] == sorted(widths[:-1], reverse=True)
    assert sum(widths) == pytest.approx(1.0)


def test_long_horizon_figure_has_a_panel_per_pool_and_budget_with_every_seed(
    paper_data: StudyData,
) -> None:
    stage = stage_data(paper_data, "long-horizon")
    assert stage.outcome is not None
    figure = anchor_figure(stage.results, stage.outcome.ranking, pools=["a100", "l40s"])
    assert figure is not None
    assert [a.get_title() for a in figure.axes] == [
        "a100, 12h",
        "a100, 24h",
        "l40s, 12h",
        "l40s, 24h",
    ]
    for axes in figure.axes:
        seeds = [c for c in axes.collections if isinstance(c, PathCollection)]
        assert sum(len(c.get_offsets()) for c in seeds) == 3 * 2  # 3 anchors x 2 seeds
        means = [line for line in axes.lines if str(line.get_gid()).startswith("mean:")]
        assert len(means) == 3
        assert all(line.get_color() == "black" for line in means)
    orders = [[t.get_text() for t in axes.get_xticklabels()] for axes in figure.axes]
    assert all(order == orders[0] for order in orders)  # one order in every panel
    assert sorted(label.split("\n")[0] for label in orders[0]) == [
        "bridge-best",
        "control",
        "greedy-winner",
    ]
    # ...best first by the mean in the first pool at the longest budget (a100, 24h).
    reference = {line.get_gid(): line.get_ydata() for line in figure.axes[1].lines}
    shown = [float(np.asarray(reference[f"mean:{label}"])[0]) for label in orders[0]]
    assert shown == sorted(shown)
    # The panels of one budget share their y-axis across pools.
    assert figure.axes[0].get_ylim() == figure.axes[2].get_ylim()
    assert figure.axes[1].get_ylim() == figure.axes[3].get_ylim()


def test_anchors_are_drawn_in_the_ranking_tables_order_with_failures_marked(
    paper_data: StudyData,
) -> None:
    """The bridge control failed on three of four seeds: the table ranks it last whatever its
    mean, the figure too; its three failed runs are marked, and its seed-adjusted mean is a
    hollow diamond the legend names."""
    stage = stage_data(paper_data, "bridge")
    assert stage.outcome is not None and stage.results is not None
    longest = max(r.budget_s for r in stage.outcome.ranking)
    table = sorted(
        (r for r in stage.outcome.ranking if r.budget_s == longest), key=lambda r: r.rank
    )
    # a control whose mean would rank it first, were failures not ranked behind
    ranking = [
        r.model_copy(update={"mean": 0.1}) if r.role == "control" else r
        for r in stage.outcome.ranking
    ]
    figure = anchor_figure(stage.results, ranking)
    assert figure is not None
    axes = figure.axes[-1]
    ticks = [t.get_text() for t in axes.get_xticklabels()]
    assert ticks == [f"{r.role}\n({r.condition_id})" for r in table]
    assert ticks[-1].startswith("control")
    statuses = stage.results["status"].astype(str)
    failed = [c for c in axes.collections if str(c.get_gid()).startswith(("failed:", "diverged:"))]
    assert sum(len(c.get_offsets()) for c in failed) == int(
        statuses[(stage.results["budget_s"] == longest)].isin(["failed", "diverged"]).sum()
    )
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend[:2] == [SEED_LABEL, MEAN_LABEL]
    assert "failed run (no value)" in legend or "diverged run (no value)" in legend
    if any(r.adjusted for r in table):
        assert ADJUSTED_LABEL in legend
        means = [line for line in axes.lines if str(line.get_gid()).startswith("mean:")]
        assert {line.get_marker() for line in means} == {"D"}


def test_anchor_means_come_from_the_outcome_ranking(paper_data: StudyData) -> None:
    stage = stage_data(paper_data, "bridge")
    assert stage.outcome is not None
    # a mean no seed run has: it can only come from the ranking
    ranking = [
        r.model_copy(update={"mean": 1.5}) if r.role == "control" else r
        for r in stage.outcome.ranking
    ]
    control = next(r for r in ranking if r.role == "control")
    figure = anchor_figure(stage.results, ranking)
    assert figure is not None
    means = {line.get_gid(): line.get_ydata()[0] for line in figure.axes[0].lines if line.get_gid()}
    assert means[f"mean:control\n({control.condition_id})"] == 1.5


def test_the_main_effects_figure_fills_what_was_retained_and_says_so() -> None:
    paper = load_study(PAPER)
    families = EffectFamilies(
        families=(published_family(300, PAPER_5M), published_family(600, PAPER_10M))
    )
    figure = effects_figure(
        [("screen", families)], study=paper, retained={"screen": (600, ("A", "D"))}
    )
    assert figure is not None
    (axes,) = figure.axes
    filled = {
        str(line.get_gid()).split(":")[-1]: list(line.get_xdata())
        for line in axes.get_lines()
        if str(line.get_gid()).startswith("retained:")
    }
    assert sorted(filled) == ["A", "D"] and all(len(x) == 1 for x in filled.values())
    hollow = [line for line in axes.get_lines() if str(line.get_gid()).startswith("effect:")]
    assert hollow and all(line.get_markerfacecolor() == "white" for line in hollow)
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert RETAINED_LABEL in legend and NOT_RETAINED_LABEL in legend


def test_no_runs_no_figure() -> None:
    assert anchor_figure(None) is None
    without_metric = pd.DataFrame({"budget_s": [60], "status": ["succeeded"], "val_bpb": [None]})
    assert anchor_figure(without_metric) is None
    assert effects_figure([("screen", None)]) is None
    assert variance_figure([VarianceShare(term="budget", df=1, sum_sq=0.0, eta_sq=None)]) is None


# --- storage --------------------------------------------------------------------------------


def test_read_study_data_finds_what_is_stored_and_none_for_the_rest(
    tmp_path: Path, paper_data: StudyData
) -> None:
    store = LocalStore(tmp_path)
    write_programme(store, PAPER)
    data = read_study_data(store, "paper")
    assert [s.name for s in data.stages if not s.ran] == list(NOT_RUN)
    for stage, stored in zip(data.stages, paper_data.stages, strict=True):
        written = None if stored.outcome is None else stored.outcome.to_json()
        assert (stage.outcome and stage.outcome.to_json()) == written, stage.name
        if stored.results is None:
            assert stage.results is None, stage.name
        else:
            assert stage.results is not None and len(stage.results) == len(stored.results)
    assert stage_data(data, NOT_ANALYSED).outcome is None
    assert data.manifest == paper_data.manifest


def test_a_stored_outcome_that_does_not_validate_is_reported_as_unreadable(
    tmp_path: Path,
) -> None:
    """The report reads the validated model: a broken outcome.json is named, not half-read."""
    store = LocalStore(tmp_path)
    write_programme(store)
    store.put_json(StudyKeys("quickstart").stage("screen", "outcome.json"), {"stage": "screen"})
    data = read_study_data(store, "quickstart")
    screen = stage_data(data, "screen")
    assert screen.outcome is None and screen.unreadable is not None and screen.ran
    markdown = render_report(data).markdown
    assert "**Outcome unreadable**: `outcome.json` does not fit the record (" in markdown
    assert "No stage has a best condition yet." in markdown


def test_write_report_puts_files_beside_the_study_data(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    write_programme(store)
    written = write_report(store, "quickstart")
    study = tmp_path / "quickstart"
    assert written == [
        (study / name).as_uri()
        for name in (
            "report.md",
            "main-effects.png",
            "stages/confirm/report.md",
            "stages/screen/effects.png",
            "stages/screen/report.md",
        )
    ]
    assert (study / "main-effects.png").read_bytes().startswith(PNG_MAGIC)
    markdown = (study / "report.md").read_text()
    assert "**Not run yet**" in markdown.split("### Stage `confirm`")[1]
    assert "Not written yet: no `manifest.json`." in markdown


def test_simulated_results_are_labelled_synthetic_and_real_ones_are_not(
    paper_data: StudyData,
) -> None:
    """A report built from `stagescreen simulate` output must never pass for real runs."""
    assert "SYNTHETIC" not in render_report(paper_data).files["report.md"].decode()
    first = paper_data.stages[0]
    assert first.results is not None
    simulated = StageData(first.stage, first.outcome, first.results.assign(synthetic=True))
    data = StudyData(paper_data.study, (simulated, *paper_data.stages[1:]), paper_data.manifest)
    files = render_report(data).files
    real = render_report(paper_data).files
    assert "**SYNTHETIC**" in files["report.md"].decode()
    for stage in paper_data.stages:
        report = files[f"stages/{stage.name}/report.md"].decode()
        assert "**SYNTHETIC**" in report, stage.name
        for line in report.splitlines():
            if line.startswith("!["):
                assert line.startswith("![SYNTHETIC: "), line
    figures = [name for name in files if name.endswith(".png")]
    assert figures and all(files[name] != real[name] for name in figures)  # watermarked


def test_halving_summary_lists_each_rung_and_the_winner() -> None:
    data = yaml.safe_load(QUICKSTART.read_text())
    data["spec"]["stages"].append(
        {"name": "ladder", "kind": "halving", "budgets": ["10s", "20s", "40s"], "eta": 2}
    )
    study = parse_study(data)
    stage = study.spec.stage("ladder")
    model = synthetic.ResponseModel(effects={"A": 0.10, "B": -0.05, "C": 0.02})
    results = synthetic.simulate_stage(study.spec, "ladder", pd.DataFrame(), model)
    out = stage_outcome(study.spec, stage, results, "quickstart")
    record = out.to_json()
    markdown = render_report(StudyData(study, (StageData(stage, out, results),))).markdown
    halving = markdown[markdown.index("#### Successive halving") : markdown.index("#### Best")]
    rungs = record["halving"]["ladders"][0]["rungs"]
    went_on = ", ".join(f"`{s['condition_id']}` {s['mean']:.4f}" for s in rungs[1]["survivors"])
    assert "| budget | pool | configurations | went on (mean at this budget) |" in halving
    assert f"| 20s | cpu | 4 | {went_on} |" in halving
    assert f"| 40s | cpu | 2 | {DASH} |" in halving
    winner = record["halving"]["ladders"][0]["winner"]
    assert (
        f"Each rung keeps the best 1/2, rounded up. Winner on cpu: `{winner['condition_id']}` "
        f"{fmt_levels(winner['levels'])}, mean {winner['mean']:.4f} at 40s." in halving
    )


def test_baseline_stages_draw_their_incumbent_against_cost() -> None:
    paper = load_study(PAPER)
    model = synthetic.ResponseModel(effects=PLANTED)
    results = pd.DataFrame()
    for stage in ("greedy-10m", "random"):
        results = synthetic.simulate_stage(paper.spec, stage, results, model)
    stages = []
    for name in ("greedy-10m", "random"):
        rows = results[results["stage"] == name]
        record = stage_outcome(paper.spec, paper.spec.stage(name), results, "paper")
        stages.append(StageData(paper.spec.stage(name), record, rows))
    files = render_report(StudyData(paper, tuple(stages))).files
    for name in ("greedy-10m", "random"):
        assert files[f"stages/{name}/search.png"].startswith(PNG_MAGIC)
        assert "search.png" in files[f"stages/{name}/report.md"].decode()
    figure = search_figure(stages[1].outcome, stages[1].results)
    assert figure is not None
    (axes,) = figure.axes
    batches = [line for line in axes.get_lines() if line.get_label().startswith("random batch")]
    assert len(batches) == 5
    for line in batches:
        incumbent = line.get_ydata()
        assert all(np.diff(incumbent) <= 0)  # best so far only improves


def test_a_factor_keeps_its_colour_when_a_stage_fixes_another() -> None:
    paper = load_study(PAPER)
    families = EffectFamilies(families=(published_family(300, PAPER_5M),))
    without_a = EffectFamilies(
        families=(published_family(300, [r for r in PAPER_5M if r[0] != "A"]),)
    )
    colours = []
    for document in (families, without_a):
        figure = effects_figure([("s", document)], study=paper)
        assert figure is not None
        line = next(x for x in figure.axes[0].get_lines() if x.get_gid() == "effect:s:D")
        colours.append(line.get_color())
    assert colours[0] == colours[1]


def _deciding(best: dict[str, Any], **parts: Any) -> StageOutcome:
    """A stage outcome that holds just this best (and `parts`), as the report reads it."""
    return StageOutcome.model_validate(
        {
            "study": "s",
            "stage": "bridge",
            "kind": "bridge",
            "metric": "val_bpb",
            "goal": "minimize",
            "runs": {"planned": 0},
            "best_per_pool": [best],
            **parts,
        }
    )


@pytest.mark.parametrize(
    ("runner_up", "verdict"),
    [
        (
            {"ci_low": -0.001, "ci_high": 0.009, "separated": False},
            "(paired over 3 seeds, 95% CI [-0.0010, +0.0090]);"
            " `c07` wins 7/9 seed pairings: `c07` and `c03-b0` are not distinguishable at 24h.",
        ),
        (
            {"ci_low": 0.002, "ci_high": 0.009, "separated": True},
            "`c07` is ahead of `c03-b0` at 24h.",
        ),
        (
            {
                "ci_low": None,
                "ci_high": None,
                "separated": None,
                "seeds": 1,
                "reason": "fewer than two common seeds",
            },
            "(paired over 1 seed); `c07` wins 7/9 seed pairings: fewer than two common seeds: "
            "no interval, so `c07` and `c03-b0` are not distinguishable at 24h from this stage.",
        ),
    ],
)
def test_the_best_is_named_with_its_runner_up_and_whether_they_are_separated(
    runner_up: dict[str, Any], verdict: str
) -> None:
    best = {
        "condition_id": "c07",
        "role": "best",
        "budget_s": 86400,
        "pool": "a100",
        "mean": 0.9821,
        "ci_low": 0.978,
        "ci_high": 0.986,
        "candidates": 4,
        "selection_ci_low": 0.975,
        "selection_ci_high": 0.989,
        "levels": {"A": -1, "B": 1},
        "hyperparameters": {},
        "runner_up": {
            "condition_id": "c03-b0",
            "mean": 0.9863,
            "difference": 0.0042,
            "seeds": 3,
            "wins": 7,
            "total": 9,
            **runner_up,
        },
    }
    text = best_section(_deciding(best))
    assert text.startswith(
        "- `c07` (best) at 24h on a100: mean 0.9821, 95% CI [0.9750, 0.9890] as the best"
        " of 4 (selection-aware, Bonferroni over the 4; its own [0.9780, 0.9860])"
    )
    assert "Runner-up `c03-b0` 0.9863, difference +0.0042" in text
    assert "`c07` wins 7/9 seed pairings" in text
    assert text.endswith(verdict)


def test_the_best_repeats_its_ranking_tables_precision_from_the_stages_run_noise() -> None:
    """Means print two significant figures of their SE (the stage's run sd over sqrt(n):
    0.0068 / sqrt(2) = 0.0048 -> 4 decimals), in the ranking table and in the best's line."""
    best = {
        "condition_id": "c07",
        "budget_s": 600,
        "pool": "a100",
        "mean": 0.733874,
        "levels": {"A": -1},
        "hyperparameters": {},
    }
    ranked = [
        {"budget_s": 600, "pool": "a100", "condition_id": cid, "n": 2, "mean": mean, "rank": rank}
        for rank, (cid, mean) in enumerate([("c07", 0.733874), ("c03", 0.7411)], 1)
    ]
    floor = {"budget_s": 600, "contrast": "difference", "sd": 0.0068, "df": 2, "se": 0.0068}
    outcome = _deciding(best, ranking=ranked, noise_floor=[floor])
    assert "mean 0.7339, no 95% CI (too few runs to estimate one)" in best_section(outcome)
    ranking = dict(outcome_sections(KINDS["bridge"], outcome, "minimize"))["Ranking"]
    assert "| 0.7339 |" in ranking and "| 0.7411 |" in ranking


def test_a_best_from_an_older_outcome_reads_as_before() -> None:
    """outcome.json written before the selection-aware interval and the paired runner-up."""
    best = {
        "condition_id": "c07",
        "budget_s": 86400,
        "pool": "a100",
        "mean": 0.9821,
        "ci_low": 0.978,
        "ci_high": 0.986,
        "levels": {"A": -1},
        "hyperparameters": {},
        "runner_up": {
            "condition_id": "c03-b0",
            "mean": 0.9863,
            "difference": 0.0042,
            "ci_low": -0.001,
            "ci_high": 0.009,
            "wins": 7,
            "total": 9,
            "separated": False,
        },
    }
    text = best_section(_deciding(best))
    assert "95% CI [0.9780, 0.9860] (not adjusted for having been picked as best)" in text
    assert "difference +0.0042 (95% CI [-0.0010, +0.0090]); `c07` wins 7/9" in text
