"""A study with a planted rank reversal, which the outcome, report and operator tests share:
its C effect changes sign between the screen's budget and the confirmation's longer one, so
the anchor the screen promoted as best loses at the longer budget."""

from __future__ import annotations

import dataclasses

import pandas as pd

from stagescreen.outcomes.analyse import stage_outcome
from stagescreen.outcomes.model import StageOutcome
from stagescreen.statistics import synthetic
from stagescreen.study.parse import load_study

FLIP = load_study(
    """
apiVersion: stagescreen.dev/v1alpha1
kind: ScreeningStudy
metadata: {name: flip}
spec:
  factors:
    - {name: DEPTH, code: A, low: 1, high: 2, scale: integer}
    - {name: ASPECT_RATIO, code: B, low: 32, high: 64, scale: integer}
    - {name: MATRIX_LR, code: C, low: 0.02, high: 0.04}
  design: {type: full}
  stages:
    - {name: screen, kind: screen, budgets: [10s, 20s], seeds: [1]}
    - name: long
      kind: confirm
      budgets: [20s, 80s]
      seeds: 4
      select:
        - {from: screen, rule: best, k: 2, role: best}
        - {from: screen, rule: worst, role: worst}
  pools: [{name: cpu, gpus: 0}]
  storage: {local: {path: ./runs}}
"""
)
SPEC = FLIP.spec
# Lower is better. At 20 s C's high level costs 0.02, so c01 (A-,B-,C-) ranks first and c02
# (A-,B-,C+) second; at 80 s C's high level gains 0.02, so c02 beats c01 by 0.02 on every seed.
FLIPPING = synthetic.ResponseModel(
    effects={"A": 0.05, "B": 0.03, "C": 0.02},
    effect_points={20: {"A": 0.05, "B": 0.03, "C": 0.02}, 80: {"A": 0.05, "B": 0.03, "C": -0.02}},
    noise_sd=0.001,
)


STEADY = dataclasses.replace(
    FLIPPING, effect_points={budget: {"A": 0.05, "B": 0.03, "C": 0.02} for budget in (20, 80)}
)
"""The same study with C's effect held: c01 stays ahead of c02 at 80 s."""


def planted_study(
    model: synthetic.ResponseModel = FLIPPING,
) -> tuple[pd.DataFrame, StageOutcome, StageOutcome]:
    """The study simulated on `model`: its results and the screen's and long's outcomes."""
    results = synthetic.simulate_stage(SPEC, "screen", pd.DataFrame(), model)
    results = synthetic.simulate_stage(SPEC, "long", results, model)
    screen = stage_outcome(SPEC, SPEC.stage("screen"), results, "flip")
    long = stage_outcome(SPEC, SPEC.stage("long"), results, "flip")
    return results, screen, long
