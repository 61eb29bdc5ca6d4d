"""The decision a report opens with (`reports.decision`): what the study found, what to run
next and how far to trust it, from hand-made outcomes of the quickstart's three stages."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from stagescreen.kinds import kind_of
from stagescreen.outcomes.model import (
    AnchorRecord,
    Best,
    RankedCondition,
    RunnerUp,
    StageOutcome,
    StageRuns,
)
from stagescreen.reports.decision import Decision, decide, decision_section, failure_words
from stagescreen.reports.formatting import fmt_effect, fmt_mean
from stagescreen.reports.sections import best_section, outcome_sections
from stagescreen.statistics import noise
from stagescreen.statistics.families import Effect, EffectFamilies, Family
from stagescreen.statistics.noise import NoiseFloor
from stagescreen.statistics.stability import Reversal
from stagescreen.study.parse import load_study

ROOT = Path(__file__).resolve().parents[3]
QUICKSTART = load_study(ROOT / "examples" / "quickstart.yaml")
SPEC = QUICKSTART.spec


def outcome(stage: str, **parts: Any) -> StageOutcome:
    return StageOutcome(
        study="quickstart",
        stage=stage,
        kind=SPEC.stage(stage).kind,
        metric="val_bpb",
        goal=parts.pop("goal", "minimize"),
        runs=parts.pop("runs", StageRuns(planned=4, succeeded=4)),
        **parts,
    )


def screen(retained: list[str], effects: dict[str, float], **parts: Any) -> StageOutcome:
    family = Family(
        by={"budget_s": 15},
        n=8,
        df_resid=4,
        effects=tuple(Effect(term=term, effect=value) for term, value in effects.items()),
    )
    return outcome(
        "screen",
        effects=EffectFamilies(families=(family,)),
        retained=retained,
        retained_at=15,
        noise_floor=[NoiseFloor(budget_s=15, contrast="effect", sd=0.006, df=4, detectable=0.0165)],
        runs=StageRuns(planned=16, succeeded=16),
        **parts,
    )


def best(
    condition: str = "c02", mean: float = 1.1613, runner: RunnerUp | None = None, **more: Any
) -> Best:
    parts = {
        "levels": {"A": -1, "B": -1, "C": 1},
        "hyperparameters": {"DEPTH": 1, "ASPECT_RATIO": 32, "MATRIX_LR": 0.04},
        "runs": 2,
    }
    return Best(
        condition_id=condition, budget_s=45, pool="cpu", mean=mean, runner_up=runner,
        **(parts | more),
    )  # fmt: skip


def runner_up(
    separated: bool | None, condition: str = "c01", mean: float = 1.17, seeds: int = 4
) -> RunnerUp:
    return RunnerUp(
        condition_id=condition, mean=mean, difference=0.01, seeds=seeds, wins=seeds,
        total=seeds, separated=separated,
    )  # fmt: skip


def longer(*bests: Best, **parts: Any) -> StageOutcome:
    return outcome("longer", best_per_pool=list(bests), **parts)


def the_decision(*outcomes: StageOutcome, rehearsal: str | None = None) -> Decision:
    return decide(SPEC, "quickstart", {o.stage: o for o in outcomes}, rehearsal=rehearsal)


@pytest.mark.parametrize(
    ("goal", "effect", "better", "value"),
    [
        ("minimize", 0.03, "low", "1"),  # high minus low raises the metric: low is better
        ("minimize", -0.03, "high", "2"),
        ("maximize", 0.03, "high", "2"),
        ("maximize", -0.03, "low", "1"),
        ("minimize", 0.0, None, None),
    ],
)
def test_a_retained_factor_says_which_level_is_better(
    goal: str, effect: float, better: str | None, value: str | None
) -> None:
    decision = the_decision(screen(["A"], {"A": effect, "B": 0.001}, goal=goal))
    (finding,) = decision.findings
    (factor,) = finding.retained
    assert (factor.code, factor.name, factor.effect) == ("A", "DEPTH", effect)
    assert (factor.better, factor.better_value) == (better, value)
    assert finding.detectable == 0.0165


def test_retained_factors_are_named_with_their_direction_in_words() -> None:
    text = decision_section(the_decision(screen(["A", "C"], {"A": 0.0316, "C": -0.0157})))
    assert (
        f"- `screen` retained 2 factors at 15s (high minus low): `DEPTH` (A) {fmt_effect(0.0316)}, "
        f"so DEPTH=1 gives the lower val_bpb; `MATRIX_LR` (C) {fmt_effect(-0.0157)}, so "
        "MATRIX_LR=0.04 gives the lower "
        "val_bpb." in text
    )


def test_retained_effects_print_at_their_effects_tables_precision() -> None:
    # SE 0.017 on 4 df (interval +-0.047): three decimals, as the screen's effects table
    family = Family(
        by={"budget_s": 15}, n=8, df_resid=4,
        effects=(Effect(term="A", effect=0.11253, ci_low=0.06533, ci_high=0.15973),),
    )  # fmt: skip
    stage = screen(["A"], {}).model_copy(update={"effects": EffectFamilies(families=(family,))})
    decision = the_decision(stage)
    assert decision.findings[0].digits == 3
    assert "`DEPTH` (A) +0.113, so DEPTH=1" in decision_section(decision)
    tables = dict(outcome_sections(kind_of(SPEC.stage("screen")), stage, "minimize"))
    assert "| `A` | +0.113 |" in tables["Main effects"]


def test_a_screen_that_retains_nothing_says_what_that_means() -> None:
    text = decision_section(the_decision(screen([], {"A": 0.001})))
    assert "`screen` retained no factor at 15s: no main effect's interval excludes zero" in text
    assert "so none stands out from run noise. That is not evidence that the factors" in text
    assert (
        f"an effect on val_bpb smaller than {fmt_mean(0.0165)} (high minus low) would likely be"
        in text
    )


@pytest.mark.parametrize(
    ("runner", "verdict", "words"),
    [
        (runner_up(True), "ahead", f"ahead of `c01` ({fmt_mean(1.17)}; the paired interval"),
        (runner_up(False), "tied", f"Tied with `c01` ({fmt_mean(1.17)}, not distinguishable "
         "over 4 seeds): choose on cost."),
        (runner_up(False, seeds=2), "inconclusive", f"Not separated from `c01` "
         f"({fmt_mean(1.17)}) over 2 seeds, but inconclusive: only 2 seeds in common (1 df for "
         "the paired test). Rerun `c02` and `c01` with more seeds before choosing."),
        (runner_up(None, seeds=1), "inconclusive", "inconclusive: only 1 seed in common (no "
         "paired test). Rerun"),
        (None, "alone", ": the only condition with a result."),
    ],
)  # fmt: skip
def test_the_pick_is_ahead_of_its_runner_up_tied_inconclusive_or_alone(
    runner: RunnerUp | None, verdict: str, words: str
) -> None:
    decision = the_decision(longer(best(runner=runner)))
    assert decision.stage == "longer"
    (pick,) = decision.picks
    assert (pick.condition_id, pick.verdict) == ("c02", verdict)
    text = decision_section(decision)
    assert "- From stage `longer`:\n  - On cpu: `c02`, levels A-,B-,C+" in text
    assert words in text


ISSUE_LONGER = [
    # The issue's synthetic quickstart: c05 ranks first although c02's mean is lower,
    # because c02 diverged on one of its two runs.
    RankedCondition(
        budget_s=45, pool="cpu", condition_id="c05", role="worst", runs=2, failed=0, n=2,
        mean=1.112167, rank=1,
    ),
    RankedCondition(
        budget_s=45, pool="cpu", condition_id="c02", role="best", runs=2, failed=1, diverged=1,
        n=1, mean=1.111639, rank=2,
    ),
]  # fmt: skip


def issue_longer() -> StageOutcome:
    first = best(
        "c05", 1.112167, runner_up(None, "c02", 1.111639), role="worst", candidates=2, failed=0
    )
    return longer(first, ranking=ISSUE_LONGER)


def test_a_better_mean_that_ranks_behind_on_failures_is_explained() -> None:
    decision = the_decision(issue_longer())
    (pick,) = decision.picks
    # one lost run, counted once: it diverged, it did not also fail
    assert [(b.condition_id, b.failed, b.diverged, b.runs) for b in pick.behind] == [
        ("c02", 0, 1, 2)
    ]
    why = (
        f"`c02` has the lower mean ({fmt_mean(1.111639)}) but ranks behind `c05` because it "
        "diverged on 1 of its 2 runs"
    )
    assert why in decision_section(decision)
    # the stage's own best sentence says the same
    assert why in best_section(issue_longer())
    # the ranking's lost column says what the Runs table says: diverged, not failed
    sections = dict(outcome_sections(kind_of(SPEC.stage("longer")), issue_longer(), "minimize"))
    assert "| 2 | `c02` | best | 1 | 1/2 diverged |" in sections["Ranking"]


def test_a_tie_the_comparison_could_not_break_is_inconclusive_not_a_choice_on_cost() -> None:
    # four seeds in common, yet the runner-up is the predeclared control and lost a run, and
    # the best was carried as the worst: rerun, do not choose on cost
    anchors = [
        AnchorRecord(condition_id="c05", role="worst", rule="worst"),
        AnchorRecord(condition_id="c02", role="control", rule="fixed"),
    ]
    ranking = [
        ISSUE_LONGER[0],
        ISSUE_LONGER[1].model_copy(update={"role": "control", "failed": 1, "diverged": 0}),
    ]
    first = best("c05", 1.112167, runner_up(False, "c02", 1.2), role="worst")
    decision = the_decision(longer(first, anchors=anchors, ranking=ranking))
    (pick,) = decision.picks
    assert pick.verdict == "inconclusive"
    assert pick.because == [
        "`c02` is the predeclared control",
        "`c02` failed or diverged on 1 of its 2 runs",
        "`c05` was carried as the worst",
    ]
    text = decision_section(decision)
    assert "choose on cost" not in text
    assert "Rerun `c05` and `c02` with more seeds before choosing." in text


def test_the_pick_prints_its_means_at_its_ranking_tables_precision() -> None:
    ranking = [
        RankedCondition(
            budget_s=45, pool="cpu", condition_id="c02", runs=4, n=4, mean=2.0297123, sd=0.05,
            rank=1,
        ),
        RankedCondition(
            budget_s=45, pool="cpu", condition_id="c01", runs=4, n=4, mean=2.0712345, sd=0.06,
            rank=2,
        ),
    ]  # fmt: skip
    stage = longer(best(mean=2.0297123, runner=runner_up(False, mean=2.0712345)), ranking=ranking)
    (pick,) = the_decision(stage).picks
    assert pick.digits == 3  # SE 0.05 / 2 = 0.025: two significant figures
    text = decision_section(the_decision(stage))
    assert "val_bpb 2.030 at 45s" in text and "`c01` (2.071," in text
    assert "mean 2.030" in best_section(stage)


def test_a_pick_against_any_stages_retained_factor_says_so_a_centre_level_included() -> None:
    # screen found B's high level better, a later fitted stage found A's low level better:
    # the pick's centre level of B goes against the screen, its A- agrees with the later stage
    later = screen(["A"], {"A": 0.03}).model_copy(update={"stage": "confirm"})
    levels = {"A": -1, "B": 0, "C": 1}
    decision = the_decision(
        screen(["B"], {"B": -0.02}), later, longer(best(runner=runner_up(True), levels=levels))
    )
    (pick,) = decision.picks
    assert pick.against == ["B"]
    assert (
        "Its levels are not the ones found better for `ASPECT_RATIO` (64 in `screen` at 15s)"
        in decision_section(decision)
    )


def test_the_best_says_whether_its_own_lost_runs_diverged_or_failed() -> None:
    ranking = [ISSUE_LONGER[0].model_copy(update={"runs": 3, "failed": 1, "diverged": 1})]
    stage = longer(best("c05", 1.112167, role="worst", runs=3, failed=1), ranking=ranking)
    assert ". It diverged on 1 of its 3 runs." in best_section(stage)


@pytest.mark.parametrize(
    ("failed", "diverged", "runs", "words"),
    [
        (1, 1, 2, "diverged on 1 of its 2 runs"),
        (2, 0, 3, "failed or diverged on 2 of its 3 runs"),  # an outcome without `diverged`
        (2, 1, 3, "failed on 1 and diverged on 1 of its 3 runs"),
        (1, 1, 1, "diverged on 1 of its 1 run"),
    ],
)
def test_failures_are_worded_by_kind(failed: int, diverged: int, runs: int, words: str) -> None:
    assert failure_words(failed, diverged, runs) == words


def test_a_condition_with_a_worse_mean_or_no_failures_is_not_explained() -> None:
    ranking = [
        ISSUE_LONGER[0],
        ISSUE_LONGER[1].model_copy(update={"failed": 0, "diverged": 0}),
    ]
    assert not the_decision(longer(best("c05", 1.112167), ranking=ranking)).picks[0].behind


def test_a_condition_with_several_roles_keeps_all_of_them() -> None:
    anchors = [
        AnchorRecord(condition_id="c02", role="best", also=["control"], rule="best"),
        AnchorRecord(condition_id="c07", role="worst", rule="worst"),
    ]
    ranking = [
        RankedCondition(
            budget_s=45, pool="cpu", condition_id="c02", role="best", runs=2, n=2, mean=1.1,
            rank=1,
        ),
        RankedCondition(
            budget_s=45, pool="cpu", condition_id="c07", role="worst", runs=2, n=2, mean=1.2,
            rank=2,
        ),
    ]  # fmt: skip
    stage = longer(best(role="best"), anchors=anchors, ranking=ranking)
    (pick,) = the_decision(stage).picks
    assert pick.roles == ["best", "control"]
    sections = dict(outcome_sections(kind_of(SPEC.stage("longer")), stage, "minimize"))
    assert "| 1 | `c02` | best, control | 2 |" in sections["Ranking"]
    assert "| 2 | `c07` | worst | 2 |" in sections["Ranking"]
    assert "| best, control | `c02` | best |" in sections["Anchors"]
    assert sections["Best condition"].startswith("- `c02` (best, control) at 45s on cpu")


def test_runs_add_up_and_trust_names_seeds_noise_and_the_rehearsal() -> None:
    runs = StageRuns(planned=5, succeeded=2, failed=1, diverged=1, missing=["r5"])
    floor = NoiseFloor(budget_s=45, pool="cpu", contrast="difference", detectable=0.0123)
    decision = the_decision(
        screen(["A"], {"A": 0.03}),
        longer(best(runner=runner_up(False)), runs=runs, noise_floor=[floor]),
        rehearsal="SYNTHETIC",
    )
    tally = decision.trust.runs
    assert tally.model_dump() == {
        "planned": 21,
        "succeeded": 18,
        "diverged": 1,
        "failed": 1,
        "missing": 1,
        "pending": 0,
    }
    assert (decision.trust.analysed, decision.trust.stages, decision.trust.seeds) == (2, 3, 2)
    text = decision_section(decision)
    assert "21 runs planned (18 succeeded, 1 diverged, 1 failed, 1 missing)" in text
    assert "2 of 3 stages analysed; `longer` ran 2 seeds" in text
    assert decision.trust.waiting == ["confirm"]
    assert "- Not analysed yet: `confirm`. This answer is provisional until they finish." in text
    assert f"{fmt_mean(0.0165)} for an effect in `screen`" in text
    assert f"{fmt_mean(0.0123)} between two conditions in `longer` on cpu" in text
    assert "**SYNTHETIC**" in text


def test_a_pick_from_a_single_seed_screen_quotes_the_difference_of_two_runs() -> None:
    """The screen decides (nothing later ran): its floor is an effect's, a high-minus-low mean
    over half the runs a side; two conditions of one run each differ with se sd * sqrt(2)."""
    pick = best("c03").model_copy(update={"budget_s": 15, "runs": 1})
    decision = the_decision(screen(["A"], {"A": 0.03}, best_per_pool=[pick]))
    assert decision.stage == "screen"
    (finding,) = decision.findings
    assert finding.detectable == 0.0165
    (chosen,) = decision.picks
    assert chosen.detectable == pytest.approx(noise.detectable(0.006 * math.sqrt(2), 4))
    text = decision_section(decision)
    assert "smallest difference detectable at 80% power: " in text
    assert f"{fmt_mean(0.0165)} for an effect in `screen`" in text
    assert f"{fmt_mean(chosen.detectable)} between two conditions in `screen` on cpu" in text


def test_a_pending_run_is_counted_as_pending() -> None:
    runs = StageRuns(planned=4, succeeded=1, failed=1, missing=["r4"])
    assert runs.pending == 1
    assert runs.planned == runs.succeeded + runs.diverged + runs.failed + 1 + runs.pending


def test_reversals_between_stages_are_listed() -> None:
    reversal = Reversal(
        pool="cpu", budget_s=45, source="confirm", source_budget_s=15, ahead="c02",
        ahead_rank=1, behind="c07", behind_rank=3, difference=0.02, ci_low=0.01, ci_high=0.03,
        level=0.95, seeds=2,
    )  # fmt: skip
    decision = the_decision(longer(best(), reversals=[reversal]))
    assert [(r.stage, r.reversal.ahead) for r in decision.reversals] == [("longer", "c02")]
    assert (
        "1 rank reversal between stages: `c02`, ranked ahead of `c07` by `confirm` at 15s, "
        f"loses to it in `longer` at 45s on cpu (difference {fmt_effect(0.02)})"
        in decision_section(decision)
    )


def test_a_study_with_nothing_analysed_says_to_run_its_next_stage() -> None:
    decision = the_decision()
    assert (decision.stage, decision.picks, decision.findings) == (None, [], [])
    text = decision_section(decision)
    assert "No stage has a best condition yet: run the study's next stage." in text
    assert "No stage that fits factor effects has been analysed yet." in text
    assert "Nothing has run yet: 0 of 3 stages analysed." in text
