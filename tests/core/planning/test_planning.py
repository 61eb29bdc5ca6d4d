"""Stage planning: run ids, condition names, anchors, baselines, replay and cost.

Condition ids and anchors follow the paper's numbering (arXiv 2606.05186, section 4.3): in
the 2^(5-1) screen with E=ABCD, c07 is A-,B+,C+,D-,E+ and the control c10 is A+,B-,C-,D+,E+.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from stagescreen.kinds.greedy import greedy_climb, greedy_climbs
from stagescreen.kinds.halving import halving_configurations, halving_ladders, halving_rungs
from stagescreen.kinds.random import random_draws
from stagescreen.planning.cost import expected_runs, programme_cost, stage_cost
from stagescreen.planning.ids import condition_name, format_budget, full_space_id, run_id
from stagescreen.planning.planner import plan_stage
from stagescreen.planning.plans import Anchor, NotReady, Unplannable, stage_pools
from stagescreen.planning.ranking import select_anchors, unique_anchors
from stagescreen.statistics import synthetic
from stagescreen.study.parse import load_study, parse_study
from stagescreen.study.spec import Stage, Study, StudySpec

ROOT = Path(__file__).resolve().parents[3]
PAPER = load_study(ROOT / "examples" / "paper.yaml").spec
CODES = ("A", "B", "C", "D", "E")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# High-minus-low effects under which the paper's c07 is the best screen condition and c10
# the worst (minimising): A-, B+, C+, D-, E+ lowers the metric.
C07_BEST = {"A": 0.10, "B": -0.05, "C": -0.04, "D": 0.20, "E": -0.01}


def levels(text: str) -> dict[str, int]:
    """'-++-+' -> {A: -1, B: 1, C: 1, D: -1, E: 1}; '0' is the centre."""
    return {code: {"-": -1, "+": 1, "0": 0}[sign] for code, sign in zip(CODES, text, strict=True)}


def study(text: str) -> Study:
    return load_study(text)


def small_spec(stages_yaml: str, *, parallelism: int = 2, gpus: int = 1) -> StudySpec:
    """Two integer factors (B has a centre) on one pool, with the given stages."""
    return study(
        f"""
apiVersion: stagescreen.dev/v1alpha1
kind: ScreeningStudy
metadata: {{name: small}}
spec:
  factors:
    - {{name: DEPTH, code: A, low: 2, high: 4, scale: integer}}
    - {{name: ASPECT_RATIO, code: B, low: 32, high: 64, centre: 48, scale: integer}}
  design: {{type: full}}
  stages:
{stages_yaml}
  pools:
    - {{name: gpu, gpus: {gpus}}}
  limits: {{parallelism: {parallelism}}}
"""
    ).spec


def noiseless(effects: Mapping[str, float]) -> synthetic.ResponseModel:
    return synthetic.ResponseModel(effects=effects, seed_sd=0.0, noise_sd=0.0)


@pytest.fixture(scope="module")
def paper_results() -> pd.DataFrame:
    """Every stage of the paper's programme simulated on paper-like planted effects."""
    model = synthetic.ResponseModel(effects=synthetic.default_effects(PAPER))
    results = pd.DataFrame()
    for stage in PAPER.stages:
        results = synthetic.simulate_stage(PAPER, stage.name, results, model)
    return results


@pytest.fixture(scope="module")
def screen_results() -> pd.DataFrame:
    """A noise-free paper screen in which c07 is best, c05 second, c10 worst, c12 next."""
    return synthetic.simulate_stage(PAPER, "screen", pd.DataFrame(), noiseless(C07_BEST))


# --- naming -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (120, "2m"),
        (90, "90s"),
        (59, "59s"),
        (61, "61s"),
        (300, "5m"),
        (3600, "1h"),
        (5400, "90m"),
        (43200, "12h"),
        (86400, "24h"),
    ],
)
def test_budget_is_spelled_in_its_largest_exact_unit(seconds: int, text: str) -> None:
    assert format_budget(seconds) == text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("screen", "c07", 300, 1, "a100"), "screen-c07-5m-s1-a100"),
        (("screen", "c01", 90, 3, "cpu"), "screen-c01-90s-s3-cpu"),
        (("bridge", "c03-b0", 3600, 2, "l40s"), "bridge-c03-b0-1h-s2-l40s"),
        (("long-horizon", "f32-06", 86400, 2, "a100"), "long-horizon-f32-06-24h-s2-a100"),
        (("random", "f32-14", 600, 1, "a100", "b1d03"), "random-b1d03-f32-14-10m-s1-a100"),
    ],
)
def test_run_id_is_deterministic_and_dns_safe(args: tuple, expected: str) -> None:
    assert run_id(*args) == expected
    assert DNS_LABEL.match(run_id(*args))


@pytest.mark.parametrize(
    ("point", "codes", "expected"),
    [
        ("-----", CODES, "f32-01"),
        ("+++++", CODES, "f32-32"),
        ("-++-+", CODES, "f32-14"),
        ("-0+-+", CODES, "f32-06-b0"),
        ("-0+0+", CODES, "f32-06-b0d0"),
        ("+++", ("A", "B", "C"), "f8-08"),
        ("+0+", ("A", "B", "C"), "f8-06-b0"),
    ],
)
def test_full_space_id_numbers_like_the_paper_and_suffixes_centred_factors(
    point: str, codes: tuple[str, ...], expected: str
) -> None:
    coded = {code: {"-": -1, "+": 1, "0": 0}[s] for code, s in zip(codes, point, strict=True)}
    assert full_space_id(coded, codes) == expected


def test_full_space_ids_are_label_safe_and_never_read_as_a_screen_id() -> None:
    """`f32-06` beside the screen's `c06` (another condition): no full-space id has the
    screen's `c<nn>` shape, and each is a Kubernetes label value as it stands."""
    for indices in np.ndindex(*(3,) * len(CODES)):
        point = {code: index - 1 for code, index in zip(CODES, indices, strict=True)}
        cid = full_space_id(point, CODES)
        assert DNS_LABEL.match(cid) and not re.match(r"^c\d", cid), cid


@pytest.mark.parametrize(
    ("point", "name"),
    [
        ("-++-+", "c07"),
        ("+--++", "c10"),
        ("++-+-", "c14"),
        ("-++--", "f32-13"),  # not in the E=ABCD half fraction
        ("-0+-+", "f32-06-b0"),
    ],
)
def test_condition_name_is_the_screen_id_inside_the_fraction(point: str, name: str) -> None:
    assert condition_name(levels(point), PAPER) == name


# --- screen and follow-up ---------------------------------------------------------------------


def test_paper_screen_is_16_conditions_at_3_budgets_with_decoded_hyperparameters() -> None:
    plan = plan_stage(PAPER, PAPER.stage("screen"), pd.DataFrame())
    assert len(plan.runs) == 48
    assert len({run.run_id for run in plan.runs}) == 48
    assert plan.finished
    assert Counter(run.budget_s for run in plan.runs) == {120: 16, 300: 16, 600: 16}
    assert {run.condition_id for run in plan.runs} == {f"c{i:02d}" for i in range(1, 17)}
    c07 = next(run for run in plan.runs if run.condition_id == "c07")
    assert dict(c07.levels) == levels("-++-+")
    assert c07.run_id == "screen-c07-2m-s1-a100"
    assert c07.hyperparameters["DEPTH"] == 6
    assert isinstance(c07.hyperparameters["DEPTH"], int)
    assert c07.hyperparameters["ASPECT_RATIO"] == 72
    c10 = next(run for run in plan.runs if run.condition_id == "c10")
    assert (c10.hyperparameters["DEPTH"], c10.hyperparameters["ASPECT_RATIO"]) == (8, 48)
    assert c10.hyperparameters["TOTAL_BATCH_SIZE"] == 524288
    assert all(DNS_LABEL.match(run.run_id) and len(run.run_id) <= 63 for run in plan.runs)


def test_followup_fixes_d_and_runs_the_full_factorial_of_the_rest() -> None:
    stage = PAPER.stage("followup")
    plan = plan_stage(PAPER, stage, pd.DataFrame())
    assert len(plan.runs) == 16 * 2 * 2
    assert {run.levels["D"] for run in plan.runs} == {-1}
    assert {run.hyperparameters["TOTAL_BATCH_SIZE"] for run in plan.runs} == {262144}
    corners = {tuple(run.levels[c] for c in "ABCE") for run in plan.runs}
    assert len(corners) == 16
    assert Counter((run.budget_s, run.seed) for run in plan.runs) == {
        (300, 1): 16,
        (300, 2): 16,
        (600, 1): 16,
        (600, 2): 16,
    }
    assert len({run.run_id for run in plan.runs}) == 64


# --- anchors ----------------------------------------------------------------------------------


def confirm_anchors(results: pd.DataFrame) -> list[Anchor]:
    return list(plan_stage(PAPER, PAPER.stage("confirm"), results).anchors)


def test_confirm_takes_best_and_worst_k_at_the_longest_budget(
    screen_results: pd.DataFrame,
) -> None:
    anchors = confirm_anchors(screen_results)
    by_role = {anchor.role: anchor for anchor in anchors}
    assert [by_role[r].condition_id for r in ("best-1", "best-2")] == ["c07", "c05"]
    assert [by_role[r].condition_id for r in ("worst-1", "worst-2")] == ["c10", "c12"]
    assert by_role["best-1"].rule == "best"
    assert by_role["best-1"].source == "screen"
    assert dict(by_role["worst-1"].levels) == levels("+--++")


def test_longest_budget_decides_the_ranking_not_the_shorter_ones(
    screen_results: pd.DataFrame,
) -> None:
    flipped = screen_results.copy()
    short = flipped["budget_s"] < 600
    flipped.loc[short & (flipped["condition_id"] == "c10"), "val_bpb"] = 0.0
    assert confirm_anchors(flipped)[0].condition_id == "c07"
    flipped.loc[~short & (flipped["condition_id"] == "c10"), "val_bpb"] = 0.0
    assert confirm_anchors(flipped)[0].condition_id == "c10"


def test_bridge_moves_the_named_factors_to_their_centre(screen_results: pd.DataFrame) -> None:
    plan = plan_stage(PAPER, PAPER.stage("confirm"), screen_results)
    bridge = [anchor for anchor in plan.anchors if anchor.rule == "bridge"]
    assert [(a.condition_id, a.role) for a in bridge] == [
        ("c07-b0", "bridge-1"),
        ("c05-b0", "bridge-2"),
    ]
    assert dict(bridge[0].levels) == levels("-0+-+")
    runs = [run for run in plan.runs if run.condition_id == "c07-b0"]
    assert {run.hyperparameters["ASPECT_RATIO"] for run in runs} == {64}
    assert {run.hyperparameters["DEPTH"] for run in runs} == {6}
    assert {run.role for run in runs} == {"bridge-1"}
    assert len(runs) == 3 * 5
    assert len(plan.runs) == 6 * 3 * 5


def test_control_comes_from_predeclared_levels_and_gets_the_screen_id() -> None:
    control = next(s for s in PAPER.stage("bridge").select if s.rule == "control")
    (anchor,) = select_anchors(PAPER, control, pd.DataFrame())
    assert (anchor.condition_id, anchor.role, anchor.rule, anchor.source) == (
        "c10",
        "control",
        "control",
        None,
    )
    assert dict(anchor.levels) == levels("+--++")


CONFIRM_WITH_CONTROL = """
    - {name: screen, kind: screen, budgets: [1m], seeds: 1}
    - name: confirm
      kind: confirm
      budgets: [1m]
      seeds: 2
      select:
        - {from: screen, rule: best}
        - {rule: control, levels: {A: -1, B: -1}}
        - {from: screen, rule: worst}
"""
"""A screen, then a confirm of its best, a predeclared control (A-, B-) and its worst."""


def test_a_control_that_is_also_the_best_runs_once_and_keeps_both_roles() -> None:
    spec = small_spec(CONFIRM_WITH_CONTROL)
    # A- and B- lower the metric: the best screen condition is the predeclared control.
    screen = synthetic.simulate_stage(spec, "screen", pd.DataFrame(), noiseless({"A": 1, "B": 1}))
    plan = plan_stage(spec, spec.stage("confirm"), screen)
    best, worst = plan.anchors
    assert (best.role, best.also, best.rule) == ("best", ("control",), "best")
    assert dict(best.levels) == {"A": -1, "B": -1}
    assert (worst.role, worst.also) == ("worst", ())
    # one recipe, one id: the control is not run twice
    assert len(plan.runs) == 2 * 2


def test_two_bridges_that_reach_the_same_levels_run_once_under_the_first_id() -> None:
    spec = small_spec(
        """
    - {name: screen, kind: screen, budgets: [1m], seeds: 1}
    - name: confirm
      kind: confirm
      budgets: [1m]
      seeds: 2
      select:
        - {from: screen, rule: bridge, k: 2, factors: [B]}
"""
    )
    # A- is far better than A+, B barely matters: the two best differ only in B, so centring
    # B on each reaches one point, A-,B0.
    screen = synthetic.simulate_stage(spec, "screen", pd.DataFrame(), noiseless({"A": 1, "B": 0.1}))
    plan = plan_stage(spec, spec.stage("confirm"), screen)
    (anchor,) = plan.anchors
    best = screen.sort_values("val_bpb")["condition_id"].iloc[0]
    assert (anchor.condition_id, anchor.role, anchor.also) == (
        f"{best}-b0",
        "bridge-1",
        ("bridge-2",),
    )
    assert dict(anchor.levels) == {"A": -1, "B": 0}
    # the first pick's runs keep the ids they had before the second was merged into them, so
    # a study under way loses only the duplicate's runs
    assert [run.run_id for run in plan.runs] == [
        run_id("confirm", f"{best}-b0", 60, seed, "gpu") for seed in (1, 2)
    ]
    assert {run.also for run in plan.runs} == {("bridge-2",)}


@pytest.mark.parametrize(
    ("anchors", "expected"),
    [
        # the paper's bridge stage: c07 with B centred is the greedy winner f32-06-b0
        (
            [
                Anchor("c07-b0", levels("-0+-+"), "bridge-best", "best", "confirm"),
                Anchor("f32-06-b0", levels("-0+-+"), "greedy-winner", "greedy-winner", "g"),
                Anchor("c03", levels("--+--"), "screened-best", "best", "seeded-screen"),
            ],
            [("c07-b0", "bridge-best", ("greedy-winner",)), ("c03", "screened-best", ())],
        ),
        # roles held at the source come along; a role already held is not repeated
        (
            [
                Anchor("c03", levels("--+--"), "screened-best", "best", "s", also=("control",)),
                Anchor("c03", levels("--+--"), "control", "control", None),
                Anchor("f32-01", levels("--+--"), "best", "best", "s", also=("worst", "control")),
            ],
            [("c03", "screened-best", ("control", "best", "worst"))],
        ),
        # other levels, other anchors, in the order given
        (
            [
                Anchor("c10", levels("+--++"), "control", "control", None),
                Anchor("c07", levels("-++-+"), "best", "best", "screen"),
            ],
            [("c10", "control", ()), ("c07", "best", ())],
        ),
    ],
)  # fmt: skip
def test_unique_anchors_keep_one_per_levels_with_the_first_id_and_every_role(
    anchors: list[Anchor], expected: list[tuple[str, str, tuple[str, ...]]]
) -> None:
    assert [(a.condition_id, a.role, a.also) for a in unique_anchors(anchors)] == expected


def test_a_control_running_under_another_role_is_still_a_control_to_later_stages() -> None:
    spec = small_spec(
        CONFIRM_WITH_CONTROL
        + """    - name: longer
      kind: long-horizon
      budgets: [2m]
      seeds: 1
      select:
        - {from: confirm, rule: best, k: 2}
    - name: controls
      kind: long-horizon
      budgets: [2m]
      seeds: 1
      select:
        - {from: confirm, rule: best, among: [control]}
"""
    )
    model = noiseless({"A": 1, "B": 1})  # the best screen condition is the control's
    results = synthetic.simulate_stage(spec, "screen", pd.DataFrame(), model)
    results = synthetic.simulate_stage(spec, "confirm", results, model)
    confirm = results[results["stage"] == "confirm"]
    assert set(zip(confirm["role"], confirm["also"].fillna(""), strict=True)) == {
        ("best", "control"),
        ("worst", ""),
    }
    # a rule without a role of its own keeps every role the anchor held
    longer = plan_stage(spec, spec.stage("longer"), results)
    assert [(a.role, a.also) for a in longer.anchors] == [("best", ("control",)), ("worst", ())]
    assert {run.also for run in longer.runs} == {("control",), ()}
    # `among: [control]` finds the control under its other role
    (anchor,) = plan_stage(spec, spec.stage("controls"), results).anchors
    assert dict(anchor.levels) == {"A": -1, "B": -1}
    assert (anchor.role, anchor.also) == ("best", ("control",))


def test_among_ranks_only_the_anchors_with_those_roles(screen_results: pd.DataFrame) -> None:
    confirm = synthetic.simulate_stage(PAPER, "confirm", screen_results, noiseless(C07_BEST))
    among_bridge = PAPER.stage("bridge").select[0]
    (anchor,) = select_anchors(PAPER, among_bridge, confirm)
    # c07 itself (role best-1) is better, but only bridge-1 / bridge-2 may be picked.
    assert (anchor.condition_id, anchor.role) == ("c07-b0", "bridge-best")
    # A role that merely starts with "bridge" is another role.
    renamed = confirm.assign(role=confirm["role"].replace({"bridge-1": "bridge-best"}))
    (anchor,) = select_anchors(PAPER, among_bridge, renamed)
    assert anchor.condition_id == "c05-b0"


def test_best_without_a_role_keeps_the_role_the_anchor_had_at_its_source(
    paper_results: pd.DataFrame,
) -> None:
    bridge_roles = {
        row.condition_id: row.role
        for row in paper_results[paper_results["stage"] == "bridge"].itertuples()
    }
    plan = plan_stage(PAPER, PAPER.stage("cross-host"), paper_results)
    assert {a.condition_id: a.role for a in plan.anchors} == bridge_roles
    # the greedy winner is the screened best here: one recipe, one anchor, the first role
    assert sorted(bridge_roles.values()) == ["bridge-best", "control", "greedy-winner"]


def test_long_horizon_picks_among_named_roles_on_both_pools(paper_results: pd.DataFrame) -> None:
    plan = plan_stage(PAPER, PAPER.stage("long-horizon"), paper_results)
    assert sorted(a.role for a in plan.anchors) == ["bridge-best", "control", "greedy-winner"]
    assert Counter(run.pool for run in plan.runs) == {"a100": 12, "l40s": 12}


def test_no_anchor_stage_of_the_paper_plans_one_recipe_twice(paper_results: pd.DataFrame) -> None:
    for stage in (stage for stage in PAPER.stages if stage.select):
        plan = plan_stage(PAPER, stage, paper_results)
        points = [tuple(sorted(a.levels.items())) for a in plan.anchors]
        assert len(points) == len(set(points)), stage.name
        assert {run.condition_id for run in plan.runs} == {a.condition_id for a in plan.anchors}


def test_a_stage_whose_source_has_no_results_is_not_ready_yet() -> None:
    with pytest.raises(NotReady, match=r"stage 'confirm' waits for stage 'screen': 48 of"):
        plan_stage(PAPER, PAPER.stage("confirm"), pd.DataFrame())


def test_a_source_with_only_failed_runs_cannot_be_planned(screen_results: pd.DataFrame) -> None:
    failed = screen_results.assign(status="failed")
    with pytest.raises(Unplannable, match=r"rule 'best' from stage 'screen'.*at 600 s"):
        plan_stage(PAPER, PAPER.stage("confirm"), failed)


def test_anchors_wait_for_the_whole_source_stage_not_the_runs_done_so_far(
    screen_results: pd.DataFrame,
) -> None:
    """With only the short budgets of the screen done, ranking them would pick other anchors
    than the whole screen does and orphan the confirm runs already launched for them."""
    short_only = screen_results[screen_results["budget_s"] < 600]
    with pytest.raises(NotReady, match=r"16 of its 48 planned runs have not ended"):
        plan_stage(PAPER, PAPER.stage("confirm"), short_only)
    running = screen_results.assign(status=lambda f: f["status"].where(f.index != 5, "running"))
    with pytest.raises(NotReady, match=r"1 of its 48"):
        plan_stage(PAPER, PAPER.stage("confirm"), running)


def test_anchors_rank_at_the_longest_budget_the_source_declares(
    screen_results: pd.DataFrame,
) -> None:
    """`at: longest` is the source's longest declared budget: when every 10-minute run
    failed there is nothing to rank, not a silent fall-back to the 5-minute ranking."""
    failed_long = screen_results.assign(
        status=lambda f: f["status"].where(f["budget_s"] < 600, "failed")
    )
    with pytest.raises(Unplannable, match=r"at 600 s"):
        plan_stage(PAPER, PAPER.stage("confirm"), failed_long)


def test_planned_run_ids_never_change_as_results_arrive(paper_results: pd.DataFrame) -> None:
    """For any prefix of the recorded results (in the order they ended, and shuffled), every
    stage is either not ready or planned as the whole programme plans it."""
    final = {
        stage.name: {run.run_id for run in plan_stage(PAPER, stage, paper_results).runs}
        for stage in PAPER.stages
    }
    rng = np.random.default_rng(0)
    orders = [np.arange(len(paper_results))] + [
        rng.permutation(len(paper_results)) for _ in range(2)
    ]
    for order in orders:
        rows = paper_results.iloc[order].reset_index(drop=True)
        for cut in range(0, len(rows) + 1, 37):
            for stage in PAPER.stages:
                try:
                    plan = plan_stage(PAPER, stage, rows.iloc[:cut])
                except NotReady:
                    continue
                assert {run.run_id for run in plan.runs} <= final[stage.name], (stage.name, cut)


# --- random baseline --------------------------------------------------------------------------


def test_random_draws_are_reproducible_from_the_draw_seed_and_use_replacement() -> None:
    stage = PAPER.stage("random")
    first = plan_stage(PAPER, stage, pd.DataFrame())
    again = plan_stage(PAPER, stage, pd.DataFrame())
    assert first == again
    other = plan_stage(PAPER, stage.model_copy(update={"draw_seed": 1}), pd.DataFrame())
    assert [r.condition_id for r in other.runs] != [r.condition_id for r in first.runs]
    assert len(first.runs) == 80
    assert Counter(run.batch for run in first.runs) == {b: 16 for b in range(1, 6)}
    # one recipe, one id: a draw inside the screen's half fraction carries the screen's id
    screen_ids = set(PAPER.build_design().condition_ids)
    for run in first.runs:
        inside = condition_name(run.levels, PAPER) in screen_ids
        assert (run.condition_id in screen_ids) is inside
        assert inside or run.condition_id.startswith("f32-")
    assert {r.condition_id for r in first.runs} & screen_ids  # some draws do land inside
    repeats = Counter((run.batch, run.condition_id) for run in first.runs)
    assert max(repeats.values()) > 1  # with replacement: a condition recurs within a batch
    assert len({run.run_id for run in first.runs}) == 80
    assert first.runs[0].run_id.startswith("random-b1d01-")


def test_random_draws_cover_batches_and_draws_from_one() -> None:
    draws = random_draws(("A", "B"), batches=2, draws_per_batch=3, seed=7)
    assert [(b, d) for b, d, _ in draws] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert all(set(point.values()) <= {-1, 1} for _, _, point in draws)
    assert draws == random_draws(("A", "B"), batches=2, draws_per_batch=3, seed=7)


# --- greedy baseline --------------------------------------------------------------------------

LOW_LOW, HIGH_LOW, LOW_HIGH, HIGH_HIGH = (-1, -1), (1, -1), (-1, 1), (1, 1)
TWO_LEVELS = {"A": [-1, 1], "B": [-1, 1]}


GREEDY_CASES = pytest.mark.parametrize(
    ("evaluated", "goal", "max_steps", "next_point", "incumbent", "accepted"),
    [
        # Nothing ran yet: the start point is next.
        ({}, "minimize", 10, LOW_LOW, None, []),
        # Start evaluated: try A's other level first.
        ({LOW_LOW: 1.0}, "minimize", 10, HIGH_LOW, LOW_LOW, [True]),
        # A strictly better point becomes the incumbent and the climb moves on to B.
        ({LOW_LOW: 1.0, HIGH_LOW: 0.9}, "minimize", 10, HIGH_HIGH, HIGH_LOW, [True, True]),
        # Under maximize the same values are a worse point.
        ({LOW_LOW: 1.0, HIGH_LOW: 0.9}, "maximize", 10, LOW_HIGH, LOW_LOW, [True, False]),
        # A tie is not an improvement.
        ({LOW_LOW: 1.0, HIGH_LOW: 1.0}, "minimize", 10, LOW_HIGH, LOW_LOW, [True, False]),
        # A full pass over every factor without improvement stops.
        ({LOW_LOW: 1.0, HIGH_LOW: 1.1, LOW_HIGH: 1.2}, "minimize", 10, None, LOW_LOW,
         [True, False, False]),
        # After an accepted move, a pass that only finds worse or seen points stops.
        ({LOW_LOW: 1.0, HIGH_LOW: 0.9, HIGH_HIGH: 0.95}, "minimize", 10, None, HIGH_LOW,
         [True, True, False]),
        # The step limit stops the climb even though B is untried.
        ({LOW_LOW: 1.0, HIGH_LOW: 1.1}, "minimize", 2, None, LOW_LOW, [True, False]),
        ({LOW_LOW: 1.0}, "minimize", 1, None, LOW_LOW, [True]),
        # A failed point (None) is never accepted, even against a worse incumbent.
        ({LOW_LOW: 9.0, HIGH_LOW: None}, "minimize", 10, LOW_HIGH, LOW_LOW, [True, False]),
        # A failed start is beaten by any point that ran.
        ({LOW_LOW: None, HIGH_LOW: 5.0}, "minimize", 10, HIGH_HIGH, HIGH_LOW, [True, True]),
    ],
)  # fmt: skip


def as_point(levels: Mapping[str, int] | None) -> tuple[int, int] | None:
    return None if levels is None else (levels["A"], levels["B"])


@GREEDY_CASES
def test_greedy_climb_replays_one_factor_at_a_time(
    evaluated: dict[tuple[int, ...], float | None],
    goal: str,
    max_steps: int,
    next_point: tuple[int, int] | None,
    incumbent: tuple[int, int] | None,
    accepted: list[bool],
) -> None:
    climb = greedy_climb(("A", "B"), TWO_LEVELS, {"A": -1, "B": -1}, evaluated, goal, max_steps)
    assert as_point(climb.next_levels) == next_point
    assert as_point(climb.incumbent) == incumbent
    assert [step.accepted for step in climb.steps] == accepted


def test_greedy_tries_the_centre_before_the_far_level() -> None:
    options = {"A": [-1, 0, 1], "B": [-1, 1]}
    start = {"A": -1, "B": -1}
    climb = greedy_climb(("A", "B"), options, start, {LOW_LOW: 1.0}, "minimize", 10)
    assert climb.next_levels == {"A": 0, "B": -1}
    climb = greedy_climb(("A", "B"), options, start, {LOW_LOW: 1.0, (0, -1): 1.1}, "minimize", 10)
    assert climb.next_levels == {"A": 1, "B": -1}
    assert climb.best == 1.0


GREEDY = """\
    - name: climb
      kind: greedy
      budgets: [10s]
      seeds: 2
      maxRuns: 12"""


def test_greedy_plan_adds_one_point_per_climb_at_a_time() -> None:
    spec = small_spec(GREEDY)
    stage = spec.stage("climb")
    plan = plan_stage(spec, stage, pd.DataFrame())
    assert not plan.finished
    assert {run.condition_id for run in plan.runs} == {"c01"}  # the full design's own id
    assert [run.seed for run in plan.runs] == [1, 2]
    assert plan.runs[0].run_id == "climb-c01-10s-s1-gpu"
    # One seed recorded is not yet an evaluated point: the plan does not move on.
    half = synthetic.simulate_runs(plan.runs[:1], noiseless({"B": -0.1}), "val_bpb")
    assert plan_stage(spec, stage, half) == plan
    results = synthetic.simulate_runs(plan.runs, noiseless({"B": -0.1}), "val_bpb")
    second = plan_stage(spec, stage, results)
    assert [run.condition_id for run in second.runs] == ["c01"] * 2 + ["c03"] * 2
    assert second.runs[2].levels == {"A": 1, "B": -1}  # A has no centre: its other level


def test_greedy_stage_replays_identically_from_its_results() -> None:
    spec = small_spec(GREEDY)
    model = noiseless({"A": -0.2, "B": -0.1})
    results = synthetic.simulate_stage(spec, "climb", pd.DataFrame(), model)
    plan = plan_stage(spec, spec.stage("climb"), results)
    assert plan.finished
    # A restarted controller sees the same rows in any order and plans exactly the same.
    shuffled = results.sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert plan_stage(spec, spec.stage("climb"), shuffled) == plan
    assert sorted(run.run_id for run in plan.runs) == sorted(results["run_id"])
    ((_, climb),) = greedy_climbs(spec, spec.stage("climb"), results).items()
    assert climb.incumbent == {"A": 1, "B": 1}
    # From A-,B-: A+ wins; B's centre wins; A- loses; B+ wins; A- loses; nothing left.
    assert [(step.levels["A"], step.levels["B"]) for step in climb.steps] == [
        (-1, -1), (1, -1), (1, 0), (-1, 0), (1, 1), (-1, 1),
    ]  # fmt: skip
    assert [step.accepted for step in climb.steps] == [True, True, True, False, True, False]


def test_greedy_replays_from_levels_read_back_as_floats() -> None:
    # A results table rebuilt from storage may hold coded levels as -1.0 / 0.0 / 1.0.
    spec = small_spec(GREEDY)
    results = synthetic.simulate_stage(spec, "climb", pd.DataFrame(), noiseless({"A": -0.2}))
    as_floats = results.astype({"A": float, "B": float})
    expected = plan_stage(spec, spec.stage("climb"), results)
    assert plan_stage(spec, spec.stage("climb"), as_floats) == expected


def test_greedy_stops_at_its_run_limit() -> None:
    spec = small_spec(GREEDY.replace("maxRuns: 12", "maxRuns: 4"))
    results = synthetic.simulate_stage(spec, "climb", pd.DataFrame(), noiseless({"A": -0.2}))
    assert len(results) == 4  # two points x two seeds
    assert plan_stage(spec, spec.stage("climb"), results).finished


# --- halving baseline -------------------------------------------------------------------------

HALVING: dict[str, Any] = {
    "name": "halving",
    "kind": "halving",
    "budgets": ["2m", "5m", "10m"],
    "seeds": 2,
    "pools": ["a100"],
}


def paper_with(*extra: Mapping[str, Any]) -> StudySpec:
    """The paper's programme with stages appended, parsed so every check runs."""
    data = yaml.safe_load((ROOT / "examples" / "paper.yaml").read_text())
    data["spec"]["stages"] += [dict(stage) for stage in extra]
    return parse_study(data).spec


def by_mean(rows: pd.DataFrame) -> list[str]:
    """Condition ids by mean val_bpb over seeds, best first, ties by id."""
    means = rows.groupby("condition_id")["val_bpb"].mean().reset_index()
    return list(means.sort_values(["val_bpb", "condition_id"])["condition_id"])


@pytest.mark.parametrize(
    ("rungs", "eta", "initial", "sizes"),
    [
        (3, 3, None, [32, 11, 4]),
        (5, 3, None, [32, 11, 4, 2, 1]),
        (4, 2, None, [32, 16, 8, 4]),
        (4, 3, 10, [10, 4, 2, 1]),
        (3, 4, 5, [5, 2, 1]),
    ],
)
def test_each_rung_keeps_the_best_1_over_eta_rounded_up(
    rungs: int, eta: int, initial: int | None, sizes: list[int]
) -> None:
    budgets = [f"{2**rung}m" for rung in range(rungs)]
    stage = Stage(name="h", kind="halving", budgets=budgets, eta=eta, initial=initial)
    assert halving_rungs(stage, len(CODES)) == sizes


def test_halving_plans_each_rung_once_the_rung_before_has_ended() -> None:
    spec = paper_with(HALVING)
    stage = spec.stage("halving")
    model = synthetic.ResponseModel(effects=synthetic.default_effects(spec))
    first = plan_stage(spec, stage, pd.DataFrame())
    assert not first.finished
    assert len(first.runs) == 32 * 2 and {run.budget_s for run in first.runs} == {120}
    # A-,B-,C-,D-,E- lies outside the E=ABCD fraction: its full-space id.
    assert first.runs[0].run_id == "halving-f32-01-2m-s1-a100"
    assert first.runs[1].condition_id == "f32-01" and first.runs[1].seed == 2
    rung_1 = synthetic.simulate_runs(first.runs, model, "val_bpb")
    # One run still to end holds the ladder at its first rung.
    assert plan_stage(spec, stage, rung_1.iloc[:-1]) == first
    second = plan_stage(spec, stage, rung_1)
    assert not second.finished and second.runs[: len(first.runs)] == first.runs
    promoted = second.runs[len(first.runs) :]
    assert len(promoted) == 11 * 2 and {run.budget_s for run in promoted} == {300}
    assert [run.condition_id for run in promoted[::2]] == by_mean(rung_1)[:11]
    rung_2 = synthetic.simulate_runs(promoted, model, "val_bpb")
    third = plan_stage(spec, stage, pd.concat([rung_1, rung_2]))
    assert third.finished
    last = third.runs[len(second.runs) :]
    assert len(last) == 4 * 2 and {run.budget_s for run in last} == {600}
    assert [run.condition_id for run in last[::2]] == by_mean(rung_2)[:4]


def test_halving_replays_identically_and_draws_reproducibly() -> None:
    spec = paper_with(HALVING)
    stage = spec.stage("halving")
    model = synthetic.ResponseModel(effects=synthetic.default_effects(spec))
    results = synthetic.simulate_stage(spec, "halving", pd.DataFrame(), model)
    plan = plan_stage(spec, stage, results)
    shuffled = results.sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert plan_stage(spec, stage, shuffled) == plan
    assert sorted(run.run_id for run in plan.runs) == sorted(results["run_id"])
    drawn = halving_configurations(CODES, 10, seed=7)
    assert drawn == halving_configurations(CODES, 10, seed=7)
    assert len({tuple(point.values()) for point in drawn}) == 10  # without replacement
    assert drawn != halving_configurations(CODES, 10, seed=8)
    whole = halving_configurations(CODES, None, seed=7)
    assert whole == halving_configurations(CODES, 32, seed=0) and len(whole) == 32


SMALL_HALVING = """    - name: ladder
      kind: halving
      budgets: [10s, 20s, 40s]
      seeds: 2
      eta: 2"""


def test_a_configuration_whose_runs_failed_ranks_last_and_the_rung_sizes_hold() -> None:
    spec = small_spec(SMALL_HALVING)
    stage = spec.stage("ladder")
    first = plan_stage(spec, stage, pd.DataFrame())
    rung_1 = synthetic.simulate_runs(first.runs, noiseless({"A": -0.2, "B": -0.1}), "val_bpb")
    # The best point (A+,B+ is c04) and two others fail on both seeds; c01 fails one seed.
    failed = rung_1["condition_id"].isin(["c02", "c03", "c04"]) | (
        rung_1["run_id"] == "ladder-c01-10s-s2-gpu"
    )
    rung_1.loc[failed, ["status", "val_bpb"]] = ["failed", np.nan]
    (ladder,) = halving_ladders(spec, stage, rung_1).values()
    ranked = ladder[0].entries
    assert [(entry.condition_id, entry.mean is None) for entry in ranked] == [
        ("c01", False),  # ranked by the seed that succeeded
        ("c02", True),
        ("c03", True),
        ("c04", True),
    ]
    # Two still go on, as priced: the failed configurations fill in by condition id.
    assert ladder[0].survivors == 2
    assert [entry.condition_id for entry in ladder[1].entries] == ["c01", "c02"]
    assert not ladder[1].complete and ladder[1].budget_s == 20


def test_halving_prices_its_whole_ladder_and_runs_it() -> None:
    spec = paper_with(HALVING | {"pools": ["a100", "l40s"]})
    stage = spec.stage("halving")
    assert expected_runs(spec, stage) == (32 + 11 + 4) * 2 * 2
    model = synthetic.ResponseModel(effects=synthetic.default_effects(spec))
    results = synthetic.simulate_stage(spec, "halving", pd.DataFrame(), model)
    assert len(results) == expected_runs(spec, stage)
    assert results.groupby(["pool", "budget_s"]).size().to_dict() == {
        (pool, budget): count
        for pool in ("a100", "l40s")
        for budget, count in ((120, 64), (300, 22), (600, 8))
    }
    cost = stage_cost(spec, stage)
    hours = (64 * 120 + 22 * 300 + 8 * 600) / 3600
    assert cost.gpu_hours == {"a100": pytest.approx(hours), "l40s": pytest.approx(hours)}


def test_halving_matched_to_the_papers_random_stage_costs_about_as_much() -> None:
    """docs/analysis.md: 5 seeds x (32 x 2m + 11 x 5m + 4 x 10m) = 795 GPU-minutes against
    random search's 80 x 10m = 800."""
    spec = paper_with(HALVING | {"seeds": 5})
    halving = stage_cost(spec, spec.stage("halving"))
    random = stage_cost(spec, spec.stage("random"))
    assert halving.gpu_hours["a100"] * 60 == pytest.approx(795)
    assert random.gpu_hours["a100"] * 60 == pytest.approx(800)


def test_each_halving_rung_waits_for_the_one_before() -> None:
    spec = small_spec(SMALL_HALVING, parallelism=8)
    cost = stage_cost(spec, spec.stage("ladder"))
    assert cost.runs == (4 + 2 + 1) * 2
    # Every rung fits on the eight slots at once; the rungs follow one another.
    assert cost.wall_hours * 3600 == pytest.approx(10 + 20 + 40)


def test_halving_winner_is_the_best_of_the_last_rung_once_the_ladder_has_ended() -> None:
    check = {
        "name": "check",
        "kind": "bridge",
        "budgets": ["60m"],
        "pools": ["a100"],
        "select": [{"from": "halving", "rule": "halving-winner", "role": "halving-winner"}],
    }
    spec = paper_with(HALVING, check)
    model = synthetic.ResponseModel(effects=synthetic.default_effects(spec))
    first = plan_stage(spec, spec.stage("halving"), pd.DataFrame())
    partway = synthetic.simulate_runs(first.runs, model, "val_bpb")
    with pytest.raises(NotReady, match="waits for stage 'halving'"):
        plan_stage(spec, spec.stage("check"), partway)
    results = synthetic.simulate_stage(spec, "halving", pd.DataFrame(), model)
    (ladder,) = halving_ladders(spec, spec.stage("halving"), results).values()
    plan = plan_stage(spec, spec.stage("check"), results)
    assert [(a.condition_id, a.role, a.rule) for a in plan.anchors] == [
        (ladder[-1].entries[0].condition_id, "halving-winner", "halving-winner")
    ]
    assert expected_runs(spec, spec.stage("check")) == len(plan.runs) == 1


# --- cost -------------------------------------------------------------------------------------


def test_expected_runs_match_the_plans_of_the_paper_programme(
    paper_results: pd.DataFrame,
) -> None:
    for stage in PAPER.stages:
        plan = plan_stage(PAPER, stage, paper_results)
        pools = stage_pools(PAPER, stage)
        per_condition = len(stage.budgets) * len(stage.seeds) * len(pools)
        if stage.kind == "greedy":
            assert len(plan.runs) <= expected_runs(PAPER, stage), stage.name
        elif stage.select:  # one condition per distinct anchor, at most one per pick
            assert len(plan.runs) == len(plan.anchors) * per_condition, stage.name
            assert len(plan.runs) <= expected_runs(PAPER, stage), stage.name
        else:
            assert len(plan.runs) == expected_runs(PAPER, stage), stage.name


def test_paper_programme_is_584_runs() -> None:
    """Paper Table 1 totals 613 runs; paper.yaml leaves out the 2-minute extreme replication
    (20 runs) and the centre probes (9 runs), which its confirm stage covers (see its comments).
    """
    counts = {cost.stage: cost.runs for cost in programme_cost(PAPER)}
    assert counts == {
        "screen": 48,
        "followup": 64,
        "greedy-5m": 50,
        "greedy-10m": 20,
        "random": 80,
        "confirm": 90,
        "seeded-screen": 160,
        "bridge": 16,
        "cross-host": 32,
        "long-horizon": 24,
    }
    assert sum(counts.values()) == 613 - 20 - 9


def test_long_horizon_gpu_hours_per_pool() -> None:
    cost = stage_cost(PAPER, PAPER.stage("long-horizon"))
    # 3 anchors x 2 seeds x (12 h + 24 h) on each pool.
    assert cost.gpu_hours == {"a100": pytest.approx(216.0), "l40s": pytest.approx(216.0)}
    with_overhead = stage_cost(PAPER, PAPER.stage("long-horizon"), overhead_s=3600)
    assert with_overhead.gpu_hours["a100"] == pytest.approx(216.0 + 12)


RANDOM_3 = """\
    - name: draws
      kind: random
      budgets: [10s]
      batches: 1
      drawsPerBatch: 3"""


@pytest.mark.parametrize(
    ("parallelism", "overhead_s", "wall_s"),
    [(1, 0, 30), (2, 0, 20), (3, 0, 10), (8, 0, 10), (2, 5, 30)],
)
def test_wall_clock_packs_runs_onto_the_parallel_slots(
    parallelism: int, overhead_s: int, wall_s: int
) -> None:
    spec = small_spec(RANDOM_3, parallelism=parallelism)
    cost = stage_cost(spec, spec.stage("draws"), overhead_s)
    assert cost.runs == 3
    assert cost.wall_hours * 3600 == pytest.approx(wall_s)


def test_packing_puts_the_longest_runs_first() -> None:
    # 4 conditions x (10 s, 40 s) on 3 slots. Longest first: 40+40 | 40+10+10 | 40+10+10
    # = 80 s; in condition order (10, 40, 10, 40, ...) the last 40 s run would end at 90 s.
    spec = small_spec(
        """\
    - name: screen
      kind: screen
      budgets: [10s, 40s]""",
        parallelism=3,
    )
    cost = stage_cost(spec, spec.stage("screen"))
    assert cost.runs == 8
    assert cost.wall_hours * 3600 == pytest.approx(80)


@pytest.mark.parametrize(("gpus", "hours"), [(0, 0.0), (1, 30 / 3600), (4, 120 / 3600)])
def test_gpu_hours_count_the_pool_gpus_per_run(gpus: int, hours: float) -> None:
    spec = small_spec(RANDOM_3, gpus=gpus)
    assert stage_cost(spec, spec.stage("draws")).gpu_hours == {"gpu": pytest.approx(hours)}


def test_a_greedy_climb_waits_for_each_step() -> None:
    spec = small_spec(GREEDY, parallelism=8)
    cost = stage_cost(spec, spec.stage("climb"))
    assert cost.runs == 12
    # Two seeds run side by side; the six points of the climb follow one another.
    assert cost.wall_hours * 3600 == pytest.approx(60)


def test_followup_points_keep_the_names_they_have_elsewhere_in_the_study() -> None:
    """One id, one set of levels: a follow-up point inside the screen fraction keeps its
    screen id (c03 is A-,B-,C+,D-,E-), the others take their full-space id."""
    plan = plan_stage(PAPER, PAPER.stage("followup"), pd.DataFrame())
    names = {run.condition_id: dict(run.levels) for run in plan.runs}
    assert names["c03"] == {"A": -1, "B": -1, "C": 1, "D": -1, "E": -1}
    outside = {"A": -1, "B": -1, "C": 1, "D": -1, "E": 1}
    assert names[full_space_id(outside, PAPER.codes)] == outside
    assert len(names) == 16


def test_a_greedy_climb_does_not_step_past_a_point_still_pending() -> None:
    """The results table lists planned runs before they end (status pending or running):
    those are not evaluated points, so the climb stays where it is."""
    from stagescreen.planning.results import results_table

    spec = small_spec(GREEDY)
    stage = spec.stage("climb")
    plan = plan_stage(spec, stage, pd.DataFrame())
    listed = results_table(plan.runs, {}, "val_bpb", running=[plan.runs[0].run_id]).table
    assert set(listed["status"]) == {"pending", "running"}
    assert plan_stage(spec, stage, listed) == plan


def test_a_records_image_digest_is_joined_from_its_executor_where_it_has_none() -> None:
    """The trainer cannot see its image; the kube operator writes the digest its pod ran
    beside the record, and the join puts it in the record's provenance and the results
    table's `provenance.image_digest` column. A digest the record carries stays."""
    from stagescreen.planning.results import results_table, with_image_digest
    from stagescreen_contract.record import Provenance, RunRecord

    digest = "registry.example/stagescreen-trainer@sha256:" + "c" * 64
    own = "registry.example/other@sha256:" + "d" * 64
    trainers = RunRecord(status="succeeded", provenance=Provenance(device="H100", torch="2.9"))
    cases = [
        (RunRecord(status="succeeded"), digest, digest),
        (trainers, digest, digest),
        (trainers, "", None),
        (RunRecord(status="failed", provenance=Provenance(image_digest=own)), digest, own),
    ]
    for record, seen, expected in cases:
        joined = with_image_digest(record, seen)
        assert (joined.provenance.image_digest if joined.provenance else None) == expected
    joined = with_image_digest(trainers, digest)
    assert joined.provenance is not None and joined.provenance.device == "H100"
    assert trainers.provenance is not None and trainers.provenance.image_digest is None
    plan = plan_stage(PAPER, PAPER.stage("screen"), pd.DataFrame())
    table = results_table(plan.runs[:1], {plan.runs[0].run_id: joined}, "val_bpb").table
    assert table.loc[0, "provenance.image_digest"] == digest
