"""Reports: the markdown a researcher reads and the paper's figures 1-4, from stored outcomes.

The programme below is the paper's (examples/paper.yaml) with synthetic runs: some stages
carry outcomes fitted by `stagescreen.effects` from planted effects, the seeded screen carries
the paper's own published 5- and 10-minute effect table (section 5.1), and some stages have
not run, as in a study still in progress.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.collections import PathCollection

from stagescreen import synthetic
from stagescreen.effects import (
    condition_means,
    families_to_dict,
    fit_effects,
    relaxation_table,
    variance_shares,
    win_count,
)
from stagescreen.keys import StudyKeys
from stagescreen.outcome import stage_outcome
from stagescreen.report import (
    DASH,
    StageData,
    StudyData,
    anchor_figure,
    effects_figure,
    fmt_budget,
    fmt_effect,
    fmt_interval,
    fmt_levels,
    fmt_p,
    png_bytes,
    read_study_data,
    render_report,
    search_figure,
    variance_figure,
    write_report,
)
from stagescreen.spec import Study
from stagescreen.store import LocalStore, Store
from stagescreen.studyfile import load_study, parse_study

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "examples" / "paper.yaml"
QUICKSTART = ROOT / "tests" / "data" / "quickstart-two-stages.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLANTED = {"A": 0.018, "B": 0.006, "C": -0.0045, "D": 0.035, "E": 0.0}
NOT_RUN = ("followup", "greedy-5m")

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


# --- a synthetic programme ----------------------------------------------------------------


def _metric(levels: dict[str, int], budget: int, seed: int, pool: str) -> float:
    """Lower with budget; planted effects that shrink with budget; small seed noise."""
    relax = math.sqrt(600 / budget)
    value = 1.25 - 0.05 * math.log(budget / 120) + (0.01 if pool == "l40s" else 0.0)
    value += sum(PLANTED[c] * relax * level / 2 for c, level in levels.items())
    return value + np.random.default_rng([seed, budget, len(pool)]).normal(0, 0.002)


def _runs(
    study: Study,
    stage: str,
    anchors: list[tuple[str, str | None, dict[str, int]]],
    budgets: list[int],
    seeds: list[int],
    pools: list[str],
) -> pd.DataFrame:
    rows = []
    for pool in pools:
        for budget in budgets:
            for condition, role, levels in anchors:
                for seed in seeds:
                    noise_seed = seed * 1000 + int(condition.strip("c")[-2:] or 0)
                    rows.append(
                        {
                            "study": study.name,
                            "stage": stage,
                            "run_id": f"{stage}-{condition}-{budget}-{seed}-{pool}",
                            "condition_id": condition,
                            "role": role,
                            "budget_s": budget,
                            "seed": seed,
                            "pool": pool,
                            "status": "succeeded",
                            "val_bpb": _metric(levels, budget, noise_seed, pool),
                            **levels,
                        }
                    )
    return pd.DataFrame(rows)


def _ranking(results: pd.DataFrame) -> list[dict[str, Any]]:
    ranking = []
    means = condition_means(results, "val_bpb", by=["budget_s", "pool", "condition_id"])
    roles = results.groupby("condition_id")["role"].first().to_dict()
    groups: dict[tuple[Any, Any], list[Any]] = {}
    for mean in means:
        groups.setdefault((mean.key["budget_s"], mean.key["pool"]), []).append(mean)
    for members in groups.values():
        for rank, mean in enumerate(sorted(members, key=lambda m: m.mean), start=1):
            ranking.append(
                {**mean.to_dict(), "role": roles[mean.key["condition_id"]], "rank": rank}
            )
    return ranking


def _best(ranking: list[dict[str, Any]], levels: dict[str, dict[str, int]]) -> dict[str, Any]:
    longest = max(r["budget_s"] for r in ranking)
    top = min((r for r in ranking if r["budget_s"] == longest), key=lambda r: r["mean"])
    return {**top, "levels": levels[top["condition_id"]], "hyperparameters": {"DEPTH": 6}}


def _outcome(study: Study, stage: str, kind: str, results: pd.DataFrame) -> dict[str, Any]:
    succeeded = int((results["status"] == "succeeded").sum())
    return {
        "schema_version": 1,
        "study": study.name,
        "stage": stage,
        "kind": kind,
        "metric": "val_bpb",
        "goal": "minimize",
        "runs": {
            "planned": len(results),
            "succeeded": succeeded,
            "failed": len(results) - succeeded,
            "missing": [],
        },
        "effects": None,
        "interactions": None,
        "pooled": None,
        "variance_shares": None,
        "relaxation": None,
        "retained": [],
        "ranking": [],
        "win_counts": [],
        "best": None,
        "anchors": [],
        "promoted": [],
        "greedy": None,
        "random": None,
    }


def _published_family(budget: int, rows: list[tuple]) -> dict[str, Any]:
    effects = [
        {"term": t, "effect": e, "ci_low": lo, "ci_high": hi, "p": p, "q": q}
        for t, e, lo, hi, p, q in rows
    ]
    return {"by": {"budget_s": budget}, "n": 80, "df_resid": 70, "effects": effects}


def programme(study: Study) -> dict[str, tuple[dict[str, Any] | None, pd.DataFrame | None]]:
    """Stage name -> (outcome, results) for the paper's programme, part of it run."""
    design = study.spec.build_design()
    screen_conditions = [
        (cid, None, levels) for cid, levels in zip(design.condition_ids, design.runs(), strict=True)
    ]
    levels_of = {cid: levels for cid, _, levels in screen_conditions}
    out: dict[str, tuple[dict[str, Any] | None, pd.DataFrame | None]] = {}

    screen = _runs(study, "screen", screen_conditions, [120, 300, 600], [1], ["a100"])
    screen.loc[0, "status"] = "failed"
    screen.loc[0, "val_bpb"] = np.nan
    families = fit_effects(screen, "val_bpb", study.spec.codes, by="budget_s")
    outcome = _outcome(study, "screen", "screen", screen)
    outcome["runs"]["missing"] = [screen.loc[0, "run_id"]]
    outcome["effects"] = families_to_dict(families)
    outcome["relaxation"] = [r.to_dict() for r in relaxation_table(families, "budget_s")]
    outcome["retained"] = ["D", "A", "B", "C"]
    outcome["ranking"] = _ranking(screen)
    outcome["best"] = _best(outcome["ranking"], levels_of)
    outcome["promoted"] = [
        {
            "to_stage": "confirm",
            "condition_id": "c07",
            "role": "best-1",
            "rule": "best",
            "levels": levels_of["c07"],
        },
    ]
    out["screen"] = (outcome, screen)

    seeded = _runs(study, "seeded-screen", screen_conditions, [300, 600], [1, 2], ["a100"])
    outcome = _outcome(study, "seeded-screen", "screen", seeded)
    outcome["effects"] = {
        "families": [_published_family(300, PAPER_5M), _published_family(600, PAPER_10M)]
    }
    outcome["retained"] = ["D", "A", "B", "C"]
    out["seeded-screen"] = (outcome, seeded)

    anchors = [
        ("c07", "best-1", levels_of["c07"]),
        ("c14", "worst-1", levels_of["c14"]),
        ("b01", "bridge-1", {**levels_of["c07"], "B": 0}),
    ]
    confirm = _runs(study, "confirm", anchors, [120, 300, 600], [1, 2, 3], ["a100"])
    outcome = _outcome(study, "confirm", "confirm", confirm)
    outcome["variance_shares"] = [
        s.to_dict()
        for s in variance_shares(confirm, "val_bpb", factors=("budget_s", "condition_id"))
    ]
    outcome["ranking"] = _ranking(confirm)
    outcome["anchors"] = [
        {"condition_id": c, "role": r, "rule": r.split("-")[0], "source": "screen", "levels": lv}
        for c, r, lv in anchors
    ]
    at_10m = confirm[confirm["budget_s"] == 600]
    by_role = {role: at_10m[at_10m["role"] == role] for _, role, _ in anchors}
    outcome["win_counts"] = [
        {
            "budget_s": 600,
            "pool": "a100",
            "left": "best-1",
            "right": "worst-1",
            **win_count(by_role["best-1"]["val_bpb"], by_role["worst-1"]["val_bpb"]).to_dict(),
        },
    ]
    outcome["best"] = _best(outcome["ranking"], {c: lv for c, _, lv in anchors})
    out["confirm"] = (outcome, confirm)

    bridge_anchors = [
        ("b01", "bridge-best", {**levels_of["c07"], "B": 0}),
        ("g15", "greedy-winner", levels_of["c03"]),
        ("c07", "screened-best", levels_of["c07"]),
        ("c10", "control", levels_of["c10"]),
    ]
    bridge = _runs(study, "bridge", bridge_anchors, [3600], [1, 2, 3, 4], ["a100"])
    outcome = _outcome(study, "bridge", "bridge", bridge)
    outcome["ranking"] = _ranking(bridge)
    outcome["ranking"][-1]["sd"] = None  # uncomputable values render as a dash
    outcome["best"] = _best(outcome["ranking"], {c: lv for c, _, lv in bridge_anchors})
    out["bridge"] = (outcome, bridge)

    long_anchors = [a for a in bridge_anchors if a[1] != "screened-best"]
    long = _runs(study, "long-horizon", long_anchors, [43200, 86400], [1, 2], ["a100", "l40s"])
    outcome = _outcome(study, "long-horizon", "long-horizon", long)
    outcome["ranking"] = _ranking(long)
    outcome["best"] = _best(outcome["ranking"], {c: lv for c, _, lv in long_anchors})
    out["long-horizon"] = (outcome, long)

    # Runs stored, analysis not yet written.
    cross = _runs(study, "cross-host", bridge_anchors, [600, 3600], [1, 2], ["l40s"])
    out["cross-host"] = (None, cross)

    greedy = _outcome(study, "greedy-10m", "greedy", pd.DataFrame({"status": ["succeeded"] * 20}))
    greedy["greedy"] = {
        "climbs": [
            {
                "budget_s": 600,
                "pool": "a100",
                "accepted": 3,
                "best": 1.090276,
                "best_step": 2,
                "steps": [
                    {
                        "step": 1,
                        "condition_id": "c01",
                        "levels": levels_of["c01"],
                        "mean": 1.12,
                        "accepted": True,
                    },
                    {
                        "step": 2,
                        "condition_id": "c03",
                        "levels": levels_of["c03"],
                        "mean": 1.090276,
                        "accepted": True,
                    },
                ],
            },
        ]
    }
    out["greedy-10m"] = (greedy, None)

    random = _outcome(study, "random", "random", pd.DataFrame({"status": ["succeeded"] * 80}))
    random["random"] = {
        "batches": [
            {
                "batch": b,
                "condition_id": f"full32_c{10 + b}",
                "levels": levels_of["c07"],
                "best": 1.09 + b / 1000,
            }
            for b in range(1, 6)
        ],
        "mean_batch_best": 1.093,
        "median_batch_best": 1.093,
        "min_batch_best": 1.091,
        "max_batch_best": None,
    }
    out["random"] = (random, None)
    return out


def quickstart_programme(study: Study) -> dict[str, tuple[dict[str, Any] | None, pd.DataFrame]]:
    """The quickstart with its screen analysed and its confirm stage not run yet."""
    design = study.spec.build_design()
    conditions = [
        (cid, None, levels) for cid, levels in zip(design.condition_ids, design.runs(), strict=True)
    ]
    screen = _runs(
        study, "screen", conditions, list(study.spec.stage("screen").budgets), [1], ["cpu"]
    )
    families = fit_effects(screen, "val_bpb", study.spec.codes, by="budget_s")
    outcome = _outcome(study, "screen", "screen", screen)
    outcome["effects"] = families_to_dict(families)
    outcome["retained"] = ["A", "B"]
    outcome["ranking"] = _ranking(screen)
    outcome["best"] = _best(outcome["ranking"], {cid: lv for cid, _, lv in conditions})
    return {"screen": (outcome, screen)}


MANIFEST = {
    "schema_version": 1,
    "study": "paper",
    "stages": [
        {
            "stage": "screen",
            "kind": "screen",
            "pool": "a100",
            "budgets_s": [120, 300, 600],
            "planned": 48,
            "succeeded": 47,
            "failed": 1,
            "diverged": 0,
            "gpu_seconds": 16200.0,
        },
        {
            "stage": "long-horizon",
            "kind": "long-horizon",
            "pool": "l40s",
            "budgets_s": [43200, 86400],
            "planned": 12,
            "succeeded": 12,
            "failed": 0,
            "diverged": 0,
            "gpu_seconds": 777600.0,
        },
    ],
    "total": {"planned": 613, "succeeded": 612, "failed": 1, "gpu_seconds": 1908000.0},
    "pools": {
        "a100": {"runs": 569, "gpu_seconds": 1130400.0},
        "l40s": {"runs": 44, "gpu_seconds": 777600.0},
    },
}


def write_programme(store: Store, spec_path: Path = QUICKSTART) -> Study:
    """Write spec.yaml, each stored stage's outcome.json/results.parquet, the paper's manifest."""
    study = load_study(spec_path)
    keys = StudyKeys(study.name)
    store.put_text(keys.spec(), spec_path.read_text())
    stored = programme(study) if study.name == "paper" else quickstart_programme(study)
    for stage, (outcome, results) in stored.items():
        if outcome is not None:
            store.put_json(keys.stage(stage, "outcome.json"), outcome)
        if results is not None:
            store.put_frame(keys.stage(stage, "results.parquet"), results)
    if study.name == "paper":
        store.put_json(keys.manifest(), MANIFEST)
    return study


@pytest.fixture(scope="module")
def paper_data() -> StudyData:
    """The programme as the report reads it, without going through storage."""
    study = load_study(PAPER)
    stored = programme(study)
    stages = tuple(StageData(s, *stored.get(s.name, (None, None))) for s in study.spec.stages)
    return StudyData(study, stages, MANIFEST)


@pytest.fixture(scope="module")
def paper_report(paper_data: StudyData) -> dict[str, bytes]:
    return render_report(paper_data).files


def section(markdown: str, stage: str) -> str:
    """The study report's section of one stage."""
    start = markdown.index(f"### Stage `{stage}`")
    end = markdown.find("\n### Stage ", start + 1)
    return markdown[start : end if end != -1 else markdown.index("## Run manifest")]


# --- formatting -----------------------------------------------------------------------------


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
        ("n/a", DASH),
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
        StageData(s, outcome.to_json() if s.name == "screen" else None, None)
        for s in study.spec.stages
    )
    markdown = render_report(StudyData(study, stages)).markdown
    assert "#### Retained factors\n\nNo factor retained: no main effect has its interval " in (
        markdown
    )


def test_stages_not_run_say_so_and_stages_without_analysis_say_that(
    paper_report: dict[str, bytes],
) -> None:
    markdown = paper_report["report.md"].decode()
    for stage in NOT_RUN:
        assert "**Not run yet**" in section(markdown, stage)
        assert f"stages/{stage}/report.md" in paper_report
    assert "**Not run yet**" not in section(markdown, "screen")
    cross = section(markdown, "cross-host")
    assert "**Analysis not run yet**: 16 run(s)" in cross
    assert "![" in cross  # its seed runs are still drawn


def test_screen_section_has_runs_ranking_relaxation_promotions_and_best(
    paper_report: dict[str, bytes],
) -> None:
    screen = section(paper_report["report.md"].decode(), "screen")
    assert "| 48 | 47 | 1 | 1 |" in screen
    assert "Missing runs: `screen-c01-120-1-a100`." in screen
    assert "**budget 10m, pool a100** (top 5 and bottom 2 of 16)" in screen
    assert screen.count("| … " * 7 + "|") == 3  # one cut per budget
    assert "(×1.00)" in screen and "Relaxation with budget" in screen
    assert "| confirm | best-1 | `c07` | best | A-,B+,C+,D-,E+ |" in screen
    assert "Retained factors" in screen and "`D`, `A`, `B`, `C`" in screen
    assert "![Main effects on val_bpb by budget (screen)](stages/screen/effects.png)" in screen


def test_confirm_section_has_variance_shares_win_counts_and_anchor_rules(
    paper_report: dict[str, bytes],
) -> None:
    confirm = section(paper_report["report.md"].decode(), "confirm")
    assert "- best k=2 from `screen` as **best**" in confirm
    assert "- bridge k=2 from `screen`, centring B as **bridge**" in confirm
    for term in ("budget_s", "condition_id", "budget_s:condition_id", "seed", "residual"):
        assert f"| {term} |" in confirm
    assert "| 10m | a100 | best-1 < worst-1 | 9/9 | 0 |" in confirm
    assert "| best-1 | `c07` | best | screen | A-,B+,C+,D-,E+ |" in confirm
    assert "(stages/confirm/variance-shares.png)" in confirm
    assert "(stages/confirm/anchors.png)" in confirm


def test_greedy_and_random_summaries(paper_report: dict[str, bytes]) -> None:
    markdown = paper_report["report.md"].decode()
    greedy = section(markdown, "greedy-10m")
    assert "| 10m | a100 | 2 | 3 | 1.090276 | 2 | `c03` A-,B-,C+,D-,E- |" in greedy
    random = section(markdown, "random")
    assert "| 3 | `full32_c13` | A-,B+,C+,D-,E+ | 1.093000 |" in random
    assert f"min 1.091000, max {DASH}." in random


def test_null_ranking_values_are_dashes(paper_report: dict[str, bytes]) -> None:
    bridge = section(paper_report["report.md"].decode(), "bridge")
    last = [line for line in bridge.splitlines() if line.startswith("| 4 |")]
    assert len(last) == 1 and f"| {DASH} |" in last[0]


def test_the_study_is_answered_by_its_last_analysed_stage_that_is_not_a_baseline(
    paper_report: dict[str, bytes],
) -> None:
    """long-horizon is the last analysed stage with a best; random, after it, is a baseline."""
    markdown = paper_report["report.md"].decode()
    answer = markdown.split("## Best condition")[1].split("##")[0]
    assert "From stage `long-horizon`:\n\n- `b01` (bridge-best) at 24h on a100: mean " in answer
    assert "(not adjusted for having been picked as best)" in answer


def test_manifest_is_table_one_with_totals_and_pools(paper_report: dict[str, bytes]) -> None:
    manifest = paper_report["report.md"].decode().split("## Run manifest")[1]
    assert "| `screen` | screen | a100 | 2m, 5m, 10m | 48 | 47 | 1 | 0 | 4.5 |" in manifest
    assert "| **total** |  |  |  | **613** | **612** | **1** |  | **530.0** |" in manifest
    assert "| l40s | 44 | 216.0 |" in manifest


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
        "stages/cross-host/anchors.png",
        "stages/greedy-10m/search.png",
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
    figure = variance_figure(stage.outcome["variance_shares"])
    assert figure is not None
    assert png_bytes(figure) == paper_report["stages/confirm/variance-shares.png"]


def test_a_stage_outcome_of_nothing_but_nulls_renders(paper_data: StudyData) -> None:
    stage = paper_data.study.spec.stage("screen")
    empty: dict[str, Any] = {
        "stage": "screen",
        "runs": None,
        "effects": {"families": None},
        "ranking": [{"budget_s": None, "mean": None}],
        "best": None,
    }
    report = render_report(StudyData(paper_data.study, (StageData(stage, empty, None),), None))
    markdown = report.markdown
    assert f"| {DASH} | {DASH} | {DASH} | 0 |" in markdown
    assert "Not written yet: no `manifest.json`." in markdown
    assert "No stage has a best condition yet." in markdown
    assert [name for name in report.files if name.endswith(".png")] == []


# --- figures --------------------------------------------------------------------------------


def test_main_effects_figure_draws_every_factor_at_every_budget(
    paper_data: StudyData,
) -> None:
    screens = [
        (s.name, s.outcome["effects"])
        for s in paper_data.stages
        if s.stage.kind == "screen" and s.outcome
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
    shares = paper_data.stages[[s.name for s in paper_data.stages].index("confirm")].outcome
    assert shares is not None
    figure = variance_figure(shares["variance_shares"])
    assert figure is not None
    (axes,) = figure.axes
    assert len(axes.patches) == 5
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
    stage = next(s for s in paper_data.stages if s.name == "long-horizon")
    assert stage.outcome is not None
    figure = anchor_figure(stage.results, stage.outcome["ranking"], pools=["a100", "l40s"])
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
        order = [t.get_text().split("\n")[0] for t in axes.get_xticklabels()]
        assert order == ["bridge-best", "greedy-winner", "control"]  # same order in each panel


def test_anchor_means_come_from_the_outcome_ranking(paper_data: StudyData) -> None:
    stage = next(s for s in paper_data.stages if s.name == "bridge")
    assert stage.outcome is not None
    ranking = [dict(r) for r in stage.outcome["ranking"]]
    control = next(r for r in ranking if r["role"] == "control")
    control["mean"] = 1.5  # a value no seed run has: it can only come from the ranking
    figure = anchor_figure(stage.results, ranking)
    assert figure is not None
    means = {line.get_gid(): line.get_ydata()[0] for line in figure.axes[0].lines if line.get_gid()}
    assert means["mean:control\n(c10)"] == 1.5


def test_no_runs_no_figure() -> None:
    assert anchor_figure(None) is None
    without_metric = pd.DataFrame({"budget_s": [60], "status": ["succeeded"], "val_bpb": [None]})
    assert anchor_figure(without_metric) is None
    assert effects_figure([("screen", None)]) is None
    assert variance_figure([{"term": "budget", "eta_sq": None}]) is None


# --- storage --------------------------------------------------------------------------------


def test_read_study_data_finds_what_is_stored_and_none_for_the_rest(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    write_programme(store, PAPER)
    data = read_study_data(store, "paper")
    assert [s.name for s in data.stages if not s.ran] == list(NOT_RUN)
    cross = next(s for s in data.stages if s.name == "cross-host")
    assert cross.outcome is None and cross.results is not None and len(cross.results) == 16
    assert data.manifest == MANIFEST


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
    record = stage_outcome(study.spec, stage, results, "quickstart").to_json()
    markdown = render_report(StudyData(study, (StageData(stage, record, results),))).markdown
    halving = markdown[markdown.index("#### Successive halving") : markdown.index("#### Best")]
    rungs = record["halving"]["ladders"][0]["rungs"]
    went_on = ", ".join(f"`{s['condition_id']}` {s['mean']:.6f}" for s in rungs[1]["survivors"])
    assert "| budget | pool | configurations | went on (mean at this budget) |" in halving
    assert f"| 20s | cpu | 4 | {went_on} |" in halving
    assert f"| 40s | cpu | 2 | {DASH} |" in halving
    winner = record["halving"]["ladders"][0]["winner"]
    assert (
        f"Each rung keeps the best 1/2, rounded up. Winner on cpu: `{winner['condition_id']}` "
        f"{fmt_levels(winner['levels'])}, mean {winner['mean']:.6f} at 40s." in halving
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
        record = stage_outcome(paper.spec, paper.spec.stage(name), results, "paper").to_json()
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
    families = {"families": [_published_family(300, PAPER_5M)]}
    without_a = {"families": [_published_family(300, [r for r in PAPER_5M if r[0] != "A"])]}
    colours = []
    for document in (families, without_a):
        figure = effects_figure([("s", document)], study=paper)
        assert figure is not None
        line = next(x for x in figure.axes[0].get_lines() if x.get_gid() == "effect:s:D")
        colours.append(line.get_color())
    assert colours[0] == colours[1]
