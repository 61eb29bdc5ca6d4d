"""Stage kinds are plug-ins: a new kind is one class plus one entry in `kinds.KINDS`.

`Corners` below is a whole toy kind, written as a new kind's module would be: registered in
the table (here by a fixture), a spec accepts it, the planner plans it and `plan` prices it,
the analysis adds its own part to the stage outcome and the report reads that part in its
own section, with no edit to spec.py, the planner, the pricing, the outcome model, the
analysis or the report.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pandas as pd
import pytest
from pydantic import BaseModel

from stagescreen.kinds import KINDS, kind_of
from stagescreen.kinds.base import Section, StageKind, StageResults
from stagescreen.outcomes.analyse import stage_outcome
from stagescreen.outcomes.model import StageOutcome
from stagescreen.outcomes.status import deciding_outcome
from stagescreen.planning.cost import expected_runs, programme_cost, stage_cost
from stagescreen.planning.ids import condition_name
from stagescreen.planning.planner import plan_stage
from stagescreen.planning.plans import StagePlan, expand_runs
from stagescreen.reports.formatting import fmt_budget, fmt_effect
from stagescreen.reports.report import StageData, StudyData, render_report
from stagescreen.statistics import synthetic
from stagescreen.study import crd
from stagescreen.study.parse import load_study
from stagescreen.study.spec import SpecError, Stage, StudySpec

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

    def summarise(self, at: StageResults, out: StageOutcome) -> None:
        """The all-high corner's mean minus the all-low corner's, at each budget."""
        means = at.usable.groupby(["budget_s", "condition_id"])[at.spec.metric.name].mean()
        low, high = (condition_name(dict.fromkeys(at.spec.codes, v), at.spec) for v in (-1, 1))
        gaps = {int(b): float(means[b, high] - means[b, low]) for b in at.stage.budgets}
        out.parts[self.name] = CornerGaps(gaps=gaps).model_dump(mode="json")

    def plan_details(self, stage: Stage) -> list[str]:
        return ["the all-low and the all-high corner"]

    def search_sections(self, outcome: StageOutcome) -> list[Section]:
        gaps = CornerGaps.model_validate(outcome.parts[self.name]).gaps
        line = ", ".join(f"{fmt_budget(b)} {fmt_effect(gap)}" for b, gap in gaps.items())
        return [("Corners", f"All-high minus all-low: {line}.")]


class CornerGaps(BaseModel):
    """The toy kind's part of the outcome, typed by its own module."""

    gaps: dict[int, float]


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
        "spec.stages[1].kind: expected 'screen', 'confirm', 'followup', 'bridge', "
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


def test_a_registered_kind_adds_its_part_to_the_outcome_and_its_section_to_the_report(
    corners: None,
) -> None:
    study = load_study(toy_study(TOY))
    spec = study.spec
    model = synthetic.ResponseModel(effects={"A": 0.10, "B": -0.05, "C": 0.02})
    results = synthetic.simulate_stage(spec, "screen", pd.DataFrame(), model)
    results = synthetic.simulate_stage(spec, "ends", results, model)
    screen = stage_outcome(spec, spec.stage("screen"), results, "toy")
    ends = stage_outcome(spec, spec.stage("ends"), results, "toy")

    # Its part, through stage_outcome, computed from the runs it planned.
    rows = results[results["stage"] == "ends"]
    means = rows.groupby(["budget_s", "condition_id"])["val_bpb"].mean()
    expected = {b: means[b, "c08"] - means[b, "c01"] for b in (60, 120)}
    assert CornerGaps.model_validate(ends.parts["corners"]).gaps == pytest.approx(expected)
    # planted: A + B + C = +0.07, so the all-high corner scores higher, i.e. worse
    assert all(gap > 0 for gap in expected.values())
    assert [best.condition_id for best in ends.best_per_pool] == ["c01"]
    # Stored and read back as outcome.json holds it; kinds that add no part write no key.
    assert StageOutcome.model_validate(ends.to_json()).parts == ends.parts
    assert "parts" in ends.to_json() and "parts" not in screen.to_json()
    # A baseline answers the study only when nothing else does.
    assert deciding_outcome(spec, {"screen": screen, "ends": ends}) is screen

    report = render_report(
        StudyData(
            study,
            (
                StageData(spec.stage("screen"), screen, results[results["stage"] == "screen"]),
                StageData(spec.stage("ends"), ends, rows),
            ),
        )
    )
    section = report.files["stages/ends/report.md"].decode()
    line = ", ".join(f"{fmt_budget(b)} {fmt_effect(gap)}" for b, gap in expected.items())
    plan = "Kind **corners**; budgets 1m, 2m; seeds 1, 2; the all-low and the all-high corner."
    assert plan in section
    assert f"## Corners\n\nAll-high minus all-low: {line}.\n" in section
    titles = [text for text in section.splitlines() if text.startswith("## ")]
    assert titles == ["## Runs", "## Ranking", "## Corners", "## Best condition"]
    assert f"### Corners\n\nAll-high minus all-low: {line}." in report.markdown
    assert [name for name in report.files if name.startswith("stages/ends/")] == [
        "stages/ends/report.md"
    ]
