"""Categorical two-level factors: `levels: [a, b]` beside low/high, decoded as written, with
no centre (a bridge or a level 0 on one is refused by name), naming a string hyperparameter."""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
import pytest

from stagescreen.planning.ids import decode_levels
from stagescreen.planning.planner import plan_stage
from stagescreen.study.parse import parse_study
from stagescreen.study.spec import Factor, SpecError

WINDOWS = {"name": "WINDOW_PATTERN", "code": "C", "levels": ["L", "SSSL"]}


def base() -> dict[str, Any]:
    """A valid study whose factor C is categorical (the attention window pattern)."""
    return copy.deepcopy(
        {
            "apiVersion": "stagescreen.dev/v1alpha1",
            "kind": "ScreeningStudy",
            "metadata": {"name": "t"},
            "spec": {
                "factors": [
                    {"name": "DEPTH", "code": "A", "low": 6, "high": 8, "scale": "integer"},
                    {"name": "ASPECT_RATIO", "code": "B", "low": 48, "high": 72, "centre": 64},
                    WINDOWS,
                ],
                "design": {"type": "full"},
                "stages": [
                    {"name": "screen", "kind": "screen", "budgets": ["5m", "10m"]},
                    {
                        "name": "confirm",
                        "kind": "confirm",
                        "budgets": ["10m"],
                        "seeds": 2,
                        "select": [
                            {"from": "screen", "rule": "best"},
                            {"from": "screen", "rule": "bridge", "factors": ["B"]},
                            {"rule": "control", "levels": {"A": 1, "B": -1, "C": 1}},
                        ],
                    },
                ],
                "pools": [{"name": "a100"}],
            },
        }
    )


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_study(data)
    return [str(problem) for problem in caught.value.problems]


def with_factor(**fields: Any) -> dict[str, Any]:
    data = base()
    data["spec"]["factors"][2] = {"name": "WINDOW_PATTERN", "code": "C", **fields}
    return data


def test_levels_decode_as_written_first_at_minus_one() -> None:
    factor = Factor.model_validate(WINDOWS)
    assert factor.categorical
    assert (factor.decode(-1), factor.decode(1)) == ("L", "SSSL")


def test_a_categorical_factor_has_no_centre_to_decode() -> None:
    factor = Factor.model_validate(WINDOWS)
    with pytest.raises(ValueError, match=r"WINDOW_PATTERN \(levels L, SSSL\) is categorical"):
        factor.decode(0)


def test_a_categorical_study_parses_dumps_and_reads_back() -> None:
    study = parse_study(base())
    dumped = study.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["spec"]["factors"][2] == WINDOWS  # no numeric default scale beside levels
    assert parse_study(dumped, stored=True) == study


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"levels": ["L", "SSSL"], "low": 1},
            "spec.factors[2].low: give levels (categorical) or low/high (numeric), not both; "
            "remove low",
        ),
        (
            {"levels": ["L"]},
            "spec.factors[2].levels: a categorical factor takes exactly two levels (got 1: "
            "['L']); write levels: [a, b], e.g. [AdamW, Muon]",
        ),
        (
            {"levels": ["L", "S", "SSSL"]},
            "spec.factors[2].levels: a categorical factor takes exactly two levels (got 3: "
            "['L', 'S', 'SSSL']); write levels: [a, b], e.g. [AdamW, Muon]",
        ),
        (
            {"levels": [True, False]},  # YAML's yes/no
            "spec.factors[2].levels: categorical levels are text, but YAML read [True, False] "
            'as bool: quote them, e.g. levels: ["yes", "no"] or ["1", "2"] (a numeric factor '
            "takes low and high)",
        ),
        (
            {"levels": ["L", "L"]},
            "spec.factors[2].levels: the two levels must differ (both 'L')",
        ),
        (
            {"levels": ["L", " "]},
            "spec.factors[2].levels: each level needs a non-empty name (got ['L', ' '])",
        ),
        (
            {"levels": ["L", "SSSL"], "centre": 1},
            "spec.factors[2].centre: a categorical factor (levels L, SSSL) has no centre; "
            "remove centre",
        ),
        (
            {"levels": ["L", "SSSL"], "scale": "float"},
            "spec.factors[2].scale: a categorical factor (levels L, SSSL) has no scale; "
            "remove scale",
        ),
        (
            {},
            "spec.factors[2].low: missing low and high: a numeric factor gives low and high, "
            "a categorical one levels: [a, b] instead",
        ),
        (
            {"low": 1},
            "spec.factors[2].high: missing high: a numeric factor gives low and high, "
            "a categorical one levels: [a, b] instead",
        ),
    ],
)
def test_each_categorical_mistake_is_one_clear_problem(
    fields: dict[str, Any], expected: str
) -> None:
    assert problems(with_factor(**fields)) == [expected]


NO_CENTRE = (
    "factor WINDOW_PATTERN (levels L, SSSL) is categorical: it has no centre, so {what} cannot "
    "set it to 0; {fix}"
)


def test_a_bridge_on_a_categorical_factor_is_refused_by_name() -> None:
    data = base()
    data["spec"]["stages"][1]["select"][1]["factors"] = ["B", "C"]
    assert problems(data) == [
        "spec.stages[1].select[1].factors: "
        + NO_CENTRE.format(what="rule bridge", fix="bridge numeric factors only")
    ]


def test_a_control_at_level_0_of_a_categorical_factor_is_refused() -> None:
    data = base()
    data["spec"]["stages"][1]["select"][2]["levels"]["C"] = 0
    assert problems(data) == [
        "spec.stages[1].select[2].levels.C: "
        + NO_CENTRE.format(what="rule control", fix="use -1 or +1")
    ]


def test_a_followup_or_greedy_start_at_level_0_of_a_categorical_factor_is_refused() -> None:
    data = base()
    data["spec"]["stages"][1:1] = [
        {"name": "follow", "kind": "followup", "budgets": ["5m"], "fix": {"C": 0}},
        {"name": "climb", "kind": "greedy", "budgets": ["5m"], "maxRuns": 8, "start": {"C": 0}},
    ]
    assert problems(data) == [
        "spec.stages[1].fix.C: " + NO_CENTRE.format(what="fix", fix="use -1 or +1"),
        "spec.stages[2].start.C: " + NO_CENTRE.format(what="start", fix="use -1 or +1"),
    ]


def test_a_categorical_factor_must_name_a_string_hyperparameter() -> None:
    data = base()
    data["spec"]["factors"][0] = {"name": "DEPTH", "code": "A", "levels": ["6", "8"]}
    assert problems(data) == [
        "spec.factors[0].levels: factor DEPTH (levels 6, 8) is categorical but DEPTH takes an "
        "integer; a categorical factor needs a string hyperparameter (the trainer's string "
        "hyperparameters: WINDOW_PATTERN), or give DEPTH low and high"
    ]


def test_a_numeric_factor_on_a_string_hyperparameter_is_told_to_use_levels() -> None:
    assert problems(with_factor(low=1, high=2)) == [
        "spec.factors[2].name: WINDOW_PATTERN takes a string; give the factor levels: [a, b] "
        "(categorical) instead of low and high"
    ]


def test_a_level_the_trainer_refuses_is_named_by_its_index() -> None:
    assert problems(with_factor(levels=["L", "XL"])) == [
        "spec.factors[2].levels[1]: WINDOW_PATTERN='XL': must be a non-empty string of S "
        "(half context) and L (full context), e.g. SSSL"
    ]


def test_planned_runs_carry_the_level_as_written_and_ids_stay_coded() -> None:
    spec = parse_study(base()).spec
    assert decode_levels({"A": -1, "B": 1, "C": 1}, spec) == {
        "DEPTH": 6,
        "ASPECT_RATIO": 72,
        "WINDOW_PATTERN": "SSSL",
    }
    plan = plan_stage(spec, spec.stages[0], pd.DataFrame())
    patterns = {run.condition_id: run.hyperparameters["WINDOW_PATTERN"] for run in plan.runs}
    assert set(patterns.values()) == {"L", "SSSL"}
    assert all(run.levels["C"] in (-1, 1) for run in plan.runs)
    assert all(
        run.hyperparameters["WINDOW_PATTERN"] == ("SSSL" if run.levels["C"] == 1 else "L")
        for run in plan.runs
    )
