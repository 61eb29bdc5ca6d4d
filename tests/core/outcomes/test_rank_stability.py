"""Rank stability through the simulate path: a study whose planted C effect changes sign
between the screen's budget and the confirmation's longer one, so the anchor promoted as best
loses there, is flagged in the outcome and in the stage and study reports."""

from __future__ import annotations

import pandas as pd
import pytest
from planted import FLIP, SPEC, STEADY, planted_study

from stagescreen.outcomes.model import StageOutcome
from stagescreen.outcomes.status import stage_summary
from stagescreen.reports.report import StageData, StudyData, render_report


@pytest.fixture(scope="module")
def study() -> tuple[pd.DataFrame, StageOutcome, StageOutcome]:
    return planted_study()


def test_the_planted_reversal_is_flagged_in_the_outcome(
    study: tuple[pd.DataFrame, StageOutcome, StageOutcome],
) -> None:
    _, screen, long = study
    assert [(p.condition_id, p.role) for p in screen.promoted] == [
        ("c01", "best-1"),
        ("c02", "best-2"),
        ("c08", "worst"),
    ]
    assert screen.reversals == []  # a screen takes no anchors
    (reversal,) = long.reversals
    assert (reversal.source, reversal.source_budget_s, reversal.budget_s, reversal.pool) == (
        "screen",
        20,
        80,
        "cpu",
    )
    assert (reversal.ahead, reversal.ahead_role, reversal.ahead_rank) == ("c01", "best-1", 1)
    assert (reversal.behind, reversal.behind_role, reversal.behind_rank) == ("c02", "best-2", 2)
    assert reversal.difference == pytest.approx(0.02, abs=0.003)  # C planted -0.02 at 80 s
    assert 0 < reversal.ci_low < reversal.difference < reversal.ci_high
    assert reversal.seeds == 4
    assert reversal.level == pytest.approx(1 - 0.05 / 3)  # c01-c02, c01-c08, c02-c08 tested
    assert "; reversal: c01 loses to c02" in stage_summary(long)  # the status line says it
    # Stored and read back as outcome.json holds it.
    assert StageOutcome.model_validate(long.to_json()).reversals == long.reversals


def test_without_the_planted_flip_no_reversal_is_flagged() -> None:
    """The same study with C's effect held: the screen's order stands at 80 s."""
    _, screen, long = planted_study(STEADY)
    assert [p.condition_id for p in screen.promoted] == ["c01", "c02", "c08"]
    assert long.reversals == []


def test_rank_agreement_across_budgets_and_against_the_source(
    study: tuple[pd.DataFrame, StageOutcome, StageOutcome],
) -> None:
    _, screen, long = study
    (budgets,) = screen.rank_agreement  # 10 s and 20 s rank the 8 conditions nearly alike
    assert (budgets.earlier, budgets.earlier_budget_s, budgets.later_budget_s) == (
        "screen",
        10,
        20,
    )
    assert budgets.n == 8 and budgets.tau is not None and budgets.tau > 0.7
    assert budgets.ci_low is not None and budgets.ci_low > 0
    pairs = {
        (a.earlier, a.earlier_budget_s, a.later, a.later_budget_s): a for a in long.rank_agreement
    }
    assert set(pairs) == {("long", 20, "long", 80), ("screen", 20, "long", 80)}
    against = pairs["screen", 20, "long", 80]  # c01, c02 swapped, c08 last: one of 3 pairs
    assert (against.n, against.tau, against.ci_low) == (3, pytest.approx(1 / 3), None)
    assert against.reason == "3 conditions ranked by both; an interval needs 5"


def test_the_reversal_is_in_the_stage_report_and_the_study_report(
    study: tuple[pd.DataFrame, StageOutcome, StageOutcome],
) -> None:
    results, screen, long = study
    report = render_report(
        StudyData(
            FLIP,
            (
                StageData(SPEC.stage("screen"), screen, results[results["stage"] == "screen"]),
                StageData(SPEC.stage("long"), long, results[results["stage"] == "long"]),
            ),
        )
    )
    section = report.files["stages/long/report.md"].decode()
    assert "## Rank stability" in section
    assert "| `screen` 20s → `long` 80s | cpu | 3 | 0.33 | — |" in section
    assert (
        "- **Reversal**: `c01` (best-1), ranked 1 by `screen` at 20s, ahead of `c02` (best-2, "
        "ranked 2), loses to it at 80s on cpu: difference +0.0"
    ) in section
    assert "paired over 4 seeds)." in section
    assert (
        "**Rank reversals: 1** (`c01` loses to `c02` in `long` at 80s; each stage's Rank "
        "stability)."
    ) in report.markdown
    screen_section = report.files["stages/screen/report.md"].decode()
    assert "| `screen` 10s → `screen` 20s | cpu | 8 |" in screen_section
    assert "**Reversal**" not in screen_section
