"""Stage kinds are plug-ins: a new kind is one class plus one entry in `kinds.KINDS`.

`Corners` below is a whole toy kind, written as a new kind's module would be: registered in
the table (here by a fixture), a spec accepts it, the planner plans it and `plan` prices it,
with no edit to spec.py, the planner or the pricing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pandas as pd
import pytest

from stagescreen import crd
from stagescreen.cost import expected_runs, programme_cost, stage_cost
from stagescreen.ids import condition_name
from stagescreen.kinds import KINDS, kind_of
from stagescreen.kinds.base import StageKind
from stagescreen.planner import plan_stage
from stagescreen.plans import StagePlan, expand_runs
from stagescreen.spec import SpecError, Stage, StudySpec
from stagescreen.studyfile import load_study

# --- the toy kind: what a new kind's module holds ---------------------------------------------


class Corners(StageKind):
    """The all-low and the all-high recipe, each at every budget, seed and pool: the two
    corners of the space, a sanity baseline. It reads `draw_seed` only to show a kind
    claiming a stage field."""

    name = "corners"
    fields = ("draw_seed",)
    baseline = True

    def plan(self, spec: StudySpec, stage: Stage, results: pd.DataFrame) -> StagePlan:
        corners = [dict.fromkeys(spec.codes, level) for level in (-1, 1)]
        conditions = [(condition_name(levels, spec), levels, None) for levels in corners]
        return StagePlan(stage.name, tuple(expand_runs(spec, stage, conditions)))

    def expected_runs(self, spec: StudySpec, stage: Stage) -> int:
        return 2 * self.runs_per_condition(spec, stage)

    def problems(self, stage: Stage, codes: Sequence[str] | None) -> list[tuple[str, str]]:
        if len(stage.seeds) < 2:
            return [("seeds", "a corners stage needs two seeds or more to tell its corners apart")]
        return []


@pytest.fixture
def corners(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The one table entry."""
    monkeypatch.setitem(KINDS, Corners.name, Corners())
    yield


# --- tests -----------------------------------------------------------------------------------


def toy_study(stage: str) -> str:
    return f"""
apiVersion: stagescreen.dev/v1alpha1
kind: ScreeningStudy
metadata: {{name: toy}}
spec:
  factors:
    - {{name: DEPTH, code: A, low: 2, high: 4, scale: integer}}
    - {{name: ASPECT_RATIO, code: B, low: 32, high: 64, scale: integer}}
    - {{name: MATRIX_LR, code: C, low: 0.01, high: 0.04, scale: log}}
  design: {{type: full}}
  stages:
    - {{name: screen, kind: screen, budgets: [60s]}}
    - {stage}
  pools:
    - {{name: gpu, gpus: 2}}
  limits: {{parallelism: 3}}
"""


TOY = "{name: ends, kind: corners, budgets: [60s, 120s], seeds: 2, drawSeed: 3}"


def test_a_registered_kind_is_accepted_planned_and_priced(corners: None) -> None:
    spec = load_study(toy_study(TOY)).spec
    stage = spec.stage("ends")
    assert isinstance(kind_of(stage), Corners)
    plan = plan_stage(spec, stage, pd.DataFrame())
    assert [run.run_id for run in plan.runs] == [
        "ends-c01-1m-s1-gpu",
        "ends-c01-1m-s2-gpu",
        "ends-c01-2m-s1-gpu",
        "ends-c01-2m-s2-gpu",
        "ends-c08-1m-s1-gpu",
        "ends-c08-1m-s2-gpu",
        "ends-c08-2m-s1-gpu",
        "ends-c08-2m-s2-gpu",
    ]
    assert plan.runs[-1].hyperparameters == {"DEPTH": 4, "ASPECT_RATIO": 64, "MATRIX_LR": 0.04}
    assert expected_runs(spec, stage) == len(plan.runs) == 8
    cost = stage_cost(spec, stage)
    # 4 runs of 60 s and 4 of 120 s, two GPUs each; three slots pack them into 240 s.
    assert (cost.kind, cost.runs, cost.gpu_hours, cost.wall_hours) == (
        "corners",
        8,
        {"gpu": pytest.approx(2 * (4 * 60 + 4 * 120) / 3600)},
        pytest.approx(240 / 3600),
    )
    assert [c.stage for c in programme_cost(spec)] == ["screen", "ends"]


def test_a_registered_kind_checks_its_own_fields_and_mistakes(corners: None) -> None:
    with pytest.raises(SpecError) as error:
        load_study(toy_study("{name: ends, kind: corners, budgets: [60s], eta: 2}"))
    assert [str(problem) for problem in error.value.problems] == [
        "spec.stages[1].eta: only for kind halving (stage kind is corners)",
        "spec.stages[1].seeds: a corners stage needs two seeds or more to tell its corners apart",
    ]
    with pytest.raises(SpecError) as error:
        load_study(toy_study("{name: ends, kind: greedy, budgets: [60s], maxRuns: 4, drawSeed: 2}"))
    assert [str(problem) for problem in error.value.problems] == [
        "spec.stages[1].drawSeed: only for kind random or halving or corners (stage kind is greedy)"
    ]


def test_an_unregistered_kind_is_rejected_with_the_registered_names() -> None:
    with pytest.raises(SpecError) as error:
        load_study(toy_study(TOY))
    assert [str(problem) for problem in error.value.problems] == [
        "spec.stages[1].kind: Input should be 'screen', 'confirm', 'followup', 'bridge', "
        "'long-horizon', 'random', 'greedy' or 'halving' (got 'corners')"
    ]


def test_the_crd_enum_is_the_table(corners: None) -> None:
    kind = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    enum = kind["properties"]["stages"]["items"]["properties"]["kind"]["enum"]
    assert enum == list(KINDS) == [*enum[:-1], "corners"]


def test_every_kind_claims_only_stage_fields_and_has_its_table_name() -> None:
    for name, kind in KINDS.items():
        assert kind.name == name
        assert set(kind.fields) <= set(Stage.model_fields), name
