"""The validating webhook's checks: a bad spec, or a change to work already done, is refused
with every problem and its field path; limits may change at any time."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from bad_specs import BROKEN, base, broken

from stagescreen_operator.kube.admission import admission_problems

ROOT = Path(__file__).resolve().parents[3]


def test_the_corpus_is_large_and_its_base_is_valid() -> None:
    assert len(BROKEN) >= 60
    assert admission_problems(base()) == []


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_spec_is_refused_naming_its_field(name: str) -> None:
    problems = admission_problems(broken(name))
    assert problems, name
    assert any(BROKEN[name][1] in problem for problem in problems), problems


def started(study: dict) -> dict:
    """The study as the operator left it once its screen had runs."""
    old = copy.deepcopy(study)
    old["status"] = {"stages": {"screen": {"phase": "Running", "runs": {"total": 4}}}}
    return old


def test_factors_design_and_a_started_stage_cannot_change() -> None:
    old = started(base())
    new = copy.deepcopy(old)
    new["spec"]["factors"][1]["high"] = 0.08
    new["spec"]["stages"][0]["budgets"] = ["60s"]
    new["spec"]["design"] = {"type": "full", "resolution": None}
    problems = admission_problems(new, old)
    assert any(p.startswith("spec.factors: cannot change") for p in problems)
    assert any(p.startswith("spec.design: cannot change") for p in problems)
    assert (
        "spec.stages[0].budgets: stage 'screen' has started; its budgets cannot change" in problems
    )


def test_removing_a_started_stage_is_refused() -> None:
    old = started(base())
    new = copy.deepcopy(old)
    new["spec"]["stages"] = [{**new["spec"]["stages"][0], "name": "renamed"}]
    problems = admission_problems(new, old)
    assert any("stage 'screen' has started; it cannot be removed" in p for p in problems)


def test_limits_and_stages_not_started_may_change() -> None:
    old = started(base())
    new = copy.deepcopy(old)
    new["spec"]["limits"] = {"parallelism": 8, "maxFailedRuns": 5, "maxGpuHours": 10}
    new["spec"]["stages"][1]["seeds"] = [1, 2, 3]
    assert admission_problems(new, old) == []


def test_a_study_pool_takes_what_it_leaves_unset_from_the_cluster_pool() -> None:
    from stagescreen.study.parse import parse_study
    from stagescreen_operator.kube.pools import cluster_pools, with_cluster_pools

    cluster = cluster_pools(
        '[{"name": "cpu", "nodeSelector": {"pool": "cluster"}, "queueName": "q", "gpus": 4},'
        ' {"name": "other", "gpus": 8}]'
    )
    study = parse_study(base())  # its pool cpu sets gpus: 0 and nodeSelector {pool: cpu}
    pool = with_cluster_pools(study, cluster).spec.pools[0]
    assert pool.node_selector == {"pool": "cpu"}  # the study's own wins
    assert pool.gpus == 0
    assert pool.queue_name == "q"  # the study left it unset
    assert [p.name for p in with_cluster_pools(study, cluster).spec.pools] == ["cpu"]


POOL_MISTAKES = sorted(
    name for name, (_, path) in BROKEN.items() if path.startswith("spec.pools[0]")
)


@pytest.mark.parametrize("name", POOL_MISTAKES)
def test_a_pool_the_model_refuses_is_refused_by_the_charts_values_schema_too(name: str) -> None:
    """The cluster's pools (chart value `pools`) are read by the operator at start-up with the
    same model: Helm must refuse at install what would crash-loop the operator."""
    schema = json.loads((ROOT / "charts" / "stagescreen" / "values.schema.json").read_text())
    pool = broken(name)["spec"]["pools"][0]
    errors = list(jsonschema.Draft7Validator(schema["properties"]["pools"]).iter_errors([pool]))
    assert errors, f"{name}: the chart would accept {pool}"


def test_there_are_pool_mistakes_to_check() -> None:
    assert len(POOL_MISTAKES) >= 15
