"""The `predicted` select rule: a half fraction confirms the corner its model predicts best."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import pytest

from stagescreen.planning.planner import plan_stage
from stagescreen.planning.ranking import select_anchors
from stagescreen.statistics import synthetic
from stagescreen.study.parse import load_study
from stagescreen.study.spec import StudySpec

# Minimising, every factor's high level raises the metric: the best corner is all low,
# A-B-C-D-E-, whose ABCDE product is -1, so the half fraction E=ABCD never runs it.
RISING = {"A": 0.20, "B": 0.10, "C": 0.15, "D": 0.06, "E": 0.12}


def half_fraction(select: str, *, followup: str = "") -> StudySpec:
    return load_study(
        f"""
apiVersion: stagescreen.dev/v1alpha1
kind: ScreeningStudy
metadata: {{name: half}}
spec:
  factors:
    - {{name: DEPTH, code: A, low: 6, high: 8, scale: integer}}
    - {{name: ASPECT_RATIO, code: B, low: 48, high: 72, scale: integer}}
    - {{name: MATRIX_LR, code: C, low: 0.03, high: 0.05}}
    - {{name: TOTAL_BATCH_SIZE, code: D, low: 262144, high: 524288, scale: log}}
    - {{name: WARMDOWN_RATIO, code: E, low: 0.25, high: 0.5}}
  design: {{type: fractional, generators: [E=ABCD]}}
  metric: {{name: val_bpb, goal: minimize}}
  stages:
    - {{name: screen, kind: screen, budgets: [60s, 120s], seeds: 3}}
{followup}
    - name: confirm
      kind: confirm
      budgets: [120s]
      seeds: 2
      select:
        - {select}
  pools:
    - {{name: gpu, gpus: 1}}
"""
    ).spec


def screened(
    spec: StudySpec, effects: Mapping[str, float], noise_sd: float = 0.004
) -> pd.DataFrame:
    model = synthetic.ResponseModel(effects=effects, seed_sd=0.002, noise_sd=noise_sd)
    return synthetic.simulate_stage(spec, "screen", pd.DataFrame(), model)


def test_a_half_fraction_promotes_the_best_corner_it_never_ran() -> None:
    spec = half_fraction("{from: screen, rule: predicted}")
    results = screened(spec, RISING)
    (anchor,) = plan_stage(spec, spec.stage("confirm"), results).anchors
    assert dict(anchor.levels) == dict.fromkeys("ABCDE", -1)
    assert anchor.condition_id == "f32-01"
    assert (anchor.ran, anchor.runs, anchor.note) == (False, 0, None)
    assert anchor.role == "predicted" and anchor.rule == "predicted"
    # the prediction: every retained effect at its low level, below every run condition
    screen = results[results["budget_s"] == 120]
    assert anchor.predicted == pytest.approx(screen["val_bpb"].min() - 0.06, abs=0.02)
    assert anchor.predicted < screen["val_bpb"].min()
    # `best` can only return a run condition
    (best,) = select_anchors(
        spec, spec.stage("confirm").select[0].model_copy(update={"rule": "best"}), results
    )
    assert best.condition_id != anchor.condition_id


def test_k_two_gives_two_distinct_corners_best_first() -> None:
    spec = half_fraction("{from: screen, rule: predicted, k: 2}")
    first, second = select_anchors(spec, spec.stage("confirm").select[0], screened(spec, RISING))
    assert (first.role, second.role) == ("predicted-1", "predicted-2")
    assert dict(first.levels) == dict.fromkeys("ABCDE", -1)
    # the runner-up moves the smallest effect, D, to its high level: a corner the screen ran
    assert dict(second.levels) == dict.fromkeys("ABCDE", -1) | {"D": 1}
    assert (first.ran, second.ran) == (False, True)
    assert second.runs == 3 and second.condition_id.startswith("c")
    assert first.predicted is not None and second.predicted is not None
    assert first.predicted < second.predicted


def test_factors_with_no_retained_effect_keep_the_best_run_conditions_levels() -> None:
    spec = half_fraction("{from: screen, rule: predicted}")
    results = screened(spec, {"A": 0.20, "B": 0.0, "C": 0.0, "D": 0.0, "E": 0.0})
    (anchor,) = select_anchors(spec, spec.stage("confirm").select[0], results)
    (best,) = select_anchors(
        spec, spec.stage("confirm").select[0].model_copy(update={"rule": "best"}), results
    )
    assert anchor.levels["A"] == -1
    # only A is retained and the best run condition already has A low: it is the pick
    assert dict(anchor.levels) == dict(best.levels)
    assert anchor.condition_id == best.condition_id and anchor.ran is True


def test_nothing_retained_falls_back_to_the_best_run_condition() -> None:
    spec = half_fraction("{from: screen, rule: predicted, k: 2}")
    # no planted effect and no run noise: every effect is exactly zero, none retained
    results = screened(spec, dict.fromkeys("ABCDE", 0.0), noise_sd=0.0)
    anchors = select_anchors(spec, spec.stage("confirm").select[0], results)
    best = select_anchors(
        spec, spec.stage("confirm").select[0].model_copy(update={"rule": "best"}), results
    )
    assert [a.condition_id for a in anchors] == [b.condition_id for b in best]
    assert all(a.ran and a.predicted is None for a in anchors)
    assert anchors[0].note == "no effect retained at 120 s: the best run condition instead"


def test_a_followup_with_interactions_predicts_with_the_interactions_that_hold() -> None:
    followup = (
        "    - {name: followup, kind: followup, fix: {E: -1}, interactions: true,"
        " budgets: [120s], seeds: 2}"
    )
    spec = half_fraction("{from: followup, rule: predicted}", followup=followup)
    # A+ alone lowers the metric, but A:B is strong: with B high, A+ raises it.
    model = synthetic.ResponseModel(
        effects={"A": -0.04, "B": -0.10, "C": 0.0, "D": 0.0, "E": 0.0},
        interactions={"A:B": 0.16},
        seed_sd=0.002,
        noise_sd=0.004,
    )
    results = synthetic.simulate_stage(spec, "screen", pd.DataFrame(), model)
    results = synthetic.simulate_stage(spec, "followup", results, model)
    (anchor,) = select_anchors(spec, spec.stage("confirm").select[0], results)
    # A-B+: -0.02 - 0.05 - 0.08 = -0.15 beats A+B-: +0.02 + 0.05 - 0.08 = -0.01 and A+B+
    assert (anchor.levels["A"], anchor.levels["B"], anchor.levels["E"]) == (-1, 1, -1)
    assert anchor.ran is True


def test_on_two_pools_and_a_shorter_budget_the_pick_is_the_same_corner() -> None:
    spec = half_fraction("{from: screen, rule: predicted, at: 60s}")
    two_pools = spec.model_copy(
        update={
            "pools": [*spec.pools, spec.pools[0].model_copy(update={"name": "gpu2"})],
            "stages": [
                spec.stages[0].model_copy(update={"pools": ["gpu", "gpu2"]}),
                *spec.stages[1:],
            ],
        }
    )
    results = screened(two_pools, RISING)
    assert set(results["pool"]) == {"gpu", "gpu2"}
    (anchor,) = select_anchors(two_pools, two_pools.stage("confirm").select[0], results)
    assert anchor.condition_id == "f32-01" and anchor.ran is False
    at_60 = results[results["budget_s"] == 60]["val_bpb"]
    assert anchor.predicted is not None and anchor.predicted < at_60.min()
