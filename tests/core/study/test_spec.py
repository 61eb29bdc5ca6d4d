"""The ScreeningStudy model: budgets, decoding, and problems named by field path."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from stagescreen.study.parse import PATTERN_WORDS, load_study, parse_study
from stagescreen.study.spec import (
    Factor,
    Problem,
    SpecError,
    Study,
    default_codes,
    parse_duration,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("120s", 120),
        ("5m", 300),
        ("10m", 600),
        ("60m", 3600),
        ("12h", 43200),
        ("24h", 86400),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2d", 172800),
        ("300", 300),
        (" 10m ", 600),
        (300, 300),
    ],
)
def test_parse_duration(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10 min", "", "m", "0s", "-5", 0, -5, "1.5s", True, "10m5"])
def test_parse_duration_rejects(text: Any) -> None:
    with pytest.raises(ValueError, match=r"duration|positive whole number"):
        parse_duration(text)


def factor(**fields: Any) -> Factor:
    return Factor.model_validate({"name": "X", "code": "A", **fields})


@pytest.mark.parametrize(
    ("fields", "level", "value"),
    [
        ({"low": 6, "high": 8, "scale": "integer"}, -1, 6),
        ({"low": 6, "high": 8, "scale": "integer"}, 0, 7),
        ({"low": 6, "high": 8, "scale": "integer"}, 1, 8),
        ({"low": 1, "high": 2, "scale": "integer"}, 0, 2),
        ({"low": 6, "high": 9, "scale": "integer"}, 0, 8),  # halves round up
        ({"low": 48, "high": 72, "scale": "integer"}, 0, 60),
        ({"low": 48, "high": 72, "centre": 64, "scale": "integer"}, 0, 64),
        ({"low": 48, "high": 72, "centre": 64, "scale": "integer"}, 0.5, 68),
        ({"low": 48, "high": 72, "centre": 64, "scale": "integer"}, -0.5, 56),
        ({"low": 0.25, "high": 0.5}, 0, 0.375),
        ({"low": 0.03, "high": 0.05}, 1, 0.05),
        ({"low": 262144, "high": 524288, "scale": "log"}, 0, 370728),
        ({"low": 262144, "high": 524288, "scale": "log"}, 1, 524288),
        ({"low": 0.001, "high": 0.1, "scale": "log"}, 0, 0.01),
        ({"low": "1e-3", "high": "1e-1", "scale": "log"}, -1, 0.001),
    ],
)
def test_decode(fields: dict[str, Any], level: float, value: float) -> None:
    decoded = factor(**fields).decode(level)
    assert decoded == pytest.approx(value)
    whole = fields.get("scale") == "integer" or isinstance(fields["low"], int)
    assert isinstance(decoded, int) == whole


def test_decode_rejects_levels_outside_the_coded_range() -> None:
    with pytest.raises(ValueError, match=r"\[-1, \+1\] \(got 2\)"):
        factor(low=6, high=8).decode(2)


def test_integer_levels_written_as_whole_floats_stay_integers() -> None:
    depth = factor(low=6.0, high=8.0, scale="integer")
    assert (depth.low, depth.high) == (6, 8)
    assert all(isinstance(depth.decode(level), int) for level in (-1, 0, 1))


def test_factor_codes_default_to_letters_by_position_skipping_taken_ones() -> None:
    data = base()
    for entry in data["spec"]["factors"]:
        entry.pop("code")
    data["spec"]["factors"][0]["code"] = "B"
    data["spec"]["design"] = {"type": "full"}
    assert parse_study(data).spec.codes == ["B", "A", "C", "D", "E"]


# --------------------------------------------------------------------------------------------
# A valid study, then one mistake at a time


CONTROL = {"A": 1, "B": -1, "C": -1, "D": 1, "E": 1}


def base() -> dict[str, Any]:
    return copy.deepcopy(
        {
            "apiVersion": "stagescreen.dev/v1alpha1",
            "kind": "ScreeningStudy",
            "metadata": {"name": "t"},
            "spec": {
                "factors": [
                    {"name": "DEPTH", "code": "A", "low": 6, "high": 8, "scale": "integer"},
                    {"name": "ASPECT_RATIO", "code": "B", "low": 48, "high": 72, "centre": 64},
                    {"name": "MATRIX_LR", "code": "C", "low": 0.03, "high": 0.05},
                    {"name": "TOTAL_BATCH_SIZE", "code": "D", "low": 2**18, "high": 2**19},
                    {"name": "WARMDOWN_RATIO", "code": "E", "low": 0.25, "high": 0.5},
                ],
                "design": {"type": "fractional", "generators": ["E=ABCD"]},
                "stages": [
                    {"name": "screen", "kind": "screen", "budgets": ["120s", "5m", "10m"]},
                    {"name": "greedy", "kind": "greedy", "budgets": ["10m"], "maxRuns": 20},
                    {
                        "name": "confirm",
                        "kind": "confirm",
                        "budgets": ["5m", "10m"],
                        "seeds": 3,
                        "pools": ["a100"],
                        "select": [
                            {"from": "screen", "rule": "best", "k": 2, "at": "10m"},
                            {"from": "screen", "rule": "bridge", "factors": ["B"]},
                            {"from": "greedy", "rule": "greedy-winner"},
                            {
                                "rule": "control",
                                "levels": {"A": 1, "B": -1, "C": -1, "D": 1, "E": 1},
                            },
                        ],
                    },
                ],
                "pools": [{"name": "a100"}, {"name": "l40s", "gpus": 1}],
                "trainer": {"hyperparameters": {"SEQ_LEN": 2048}},
            },
        }
    )


def problems_of(data: dict[str, Any]) -> list[Problem]:
    with pytest.raises(SpecError) as caught:
        parse_study(data)
    return caught.value.problems


def test_base_study_is_valid_and_parsed() -> None:
    study = parse_study(base())
    spec = study.spec
    assert study.name == "t"
    assert spec.stages[0].budgets == [120, 300, 600]
    assert spec.stages[0].seeds == [1]
    assert spec.stages[2].seeds == [1, 2, 3]
    assert spec.stages[2].select[0].from_ == "screen"
    assert spec.stages[2].select[0].at == 600
    assert spec.stages[2].select[1].at == "longest"
    assert spec.storage.local is not None and spec.storage.local.path == "./runs"
    assert spec.build_design().resolution == 5


def test_dump_uses_yaml_names_and_parses_back_to_the_same_study() -> None:
    study = parse_study(base())
    dumped = study.model_dump()
    assert dumped["spec"]["stages"][1]["maxRuns"] == 20
    assert dumped["spec"]["stages"][2]["select"][0]["from"] == "screen"
    assert parse_study(dumped, stored=True) == study


def mutate(path: str, value: Any) -> dict[str, Any]:
    """base() with the value at a dotted path (list indices as numbers) replaced."""
    data = base()
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "spec.factors.2.high",
            0.03,
            "spec.factors[2].high: must differ from low (both 0.03)",
        ),
        (
            "spec.factors.2.name",
            "DEPTH",
            "spec.factors[2].name: duplicate of factors[0].name ('DEPTH')",
        ),
        (
            "spec.factors.0.low",
            6.5,
            "spec.factors[0].low: an integer factor needs a whole number (got 6.5)",
        ),
        (
            "spec.factors.3",
            {"name": "TOTAL_BATCH_SIZE", "code": "D", "low": 0, "high": 2**19, "scale": "log"},
            "spec.factors[3].low: a log-scale factor needs a positive value (got 0)",
        ),
        (
            "spec.factors.1.centre",
            80,
            "spec.factors[1].centre: must lie strictly between low and high (48 and 72; got 80)",
        ),
        (
            "spec.design.generators",
            ["E=ABCZ"],
            "spec.design.generators[0]: unknown factor code Z in 'E=ABCZ' (codes: A, B, C, D, E)",
        ),
        (
            "spec.design.generators",
            ["E ABCD"],
            "spec.design.generators[0]: expected a generator such as E=ABCD or E=-ABCD "
            "(got 'E ABCD')",
        ),
        (
            "spec.design.generators",
            ["E=ABCD", "E=ABC"],
            "spec.design.generators[1]: E is generated twice ('E=ABCD' and 'E=ABC'); give each "
            "generated factor one generator",
        ),
        (
            "spec.design.generators",
            ["E=ABCD", "D=ABC"],
            "spec.design.generators[0]: 'E=ABCD' uses D, which is itself generated by 'D=ABC'; "
            "write every generator in the base factors (A, B, C)",
        ),
        (
            "spec.design",
            {"type": "fractional", "resolution": 6},
            "spec.design.resolution: no fraction of 5 factors reaches resolution VI (6): the "
            "best is resolution V, the 2^(5-1) half fraction (16 runs); ask for resolution 5 or "
            "less, or use the full factorial (all 32 runs, nothing aliased)",
        ),
        (
            "spec.design",
            {"type": "full", "generators": ["E=ABCD"]},
            "spec.design.generators: only for type fractional (got ['E=ABCD'])",
        ),
        (
            "spec.design",
            {"type": "fractional"},
            "spec.design.type: fractional needs exactly one of generators (e.g. [E=ABCD]) "
            "or resolution",
        ),
        (
            "spec.stages.0.budgets",
            ["120s", "10m", "5m"],
            "spec.stages[0].budgets[2]: budgets must increase within a stage "
            "(got 300 s after 600 s)",
        ),
        (
            "spec.stages.0.budgets",
            ["10m", "600s"],
            "spec.stages[0].budgets[1]: budgets must increase within a stage "
            "(got 600 s after 600 s)",
        ),
        (
            "spec.stages.0.seeds",
            [1, 2, 1],
            "spec.stages[0].seeds[2]: duplicate seed 1",
        ),
        (
            "spec.stages.0.seeds",
            [-1, 2],
            "spec.stages[0].seeds[0]: seeds are RUN_SEED values >= 0 (got -1)",
        ),
        (
            "spec.stages.2.pools",
            ["a100", "h100"],
            "spec.stages[2].pools[1]: no pool named 'h100' (declared: a100, l40s)",
        ),
        (
            "spec.stages.2.select.0.from",
            "scren",
            "spec.stages[2].select[0].from: no stage named 'scren' "
            "(stages: screen, greedy, confirm)",
        ),
        (
            "spec.stages.2.select.0.from",
            "confirm",
            "spec.stages[2].select[0].from: stage 'confirm' is this stage; "
            "a selection can only use earlier stages (screen, greedy)",
        ),
        (
            "spec.stages.2.select.2.from",
            "screen",
            "spec.stages[2].select[2].from: rule greedy-winner needs a greedy stage "
            "('screen' is screen)",
        ),
        (
            "spec.stages.2.select.0.at",
            "60m",
            "spec.stages[2].select[0].at: 3600 s is not a budget of stage 'screen' "
            "(its budgets: 120 s, 300 s, 600 s, or longest)",
        ),
        (
            "spec.stages.2.select.1.factors",
            ["B", "Q"],
            "spec.stages[2].select[1].factors: unknown factor code Q (codes: A, B, C, D, E)",
        ),
        (
            "spec.stages.2.select.3.levels",
            {"A": 1, "B": -1, "C": -1},
            "spec.stages[2].select[3].levels: missing factor D, E; "
            "a control gives every factor a level",
        ),
        (
            "spec.stages.2.select.1.factors",
            [],
            "spec.stages[2].select[1].factors: rule bridge needs the codes of the factors "
            "to centre",
        ),
        (
            "spec.stages.2.select.0.levels",
            CONTROL,
            "spec.stages[2].select[0].levels: only for rule control (rule is best)",
        ),
        (
            "spec.stages.0.fix",
            {"D": -1},
            "spec.stages[0].fix: only for kind followup (stage kind is screen)",
        ),
        (
            "spec.stages.0.eta",
            2,
            "spec.stages[0].eta: only for kind halving (stage kind is screen)",
        ),
        (
            "spec.stages.1.drawSeed",
            7,
            "spec.stages[1].drawSeed: only for kind random or halving (stage kind is greedy)",
        ),
        (
            "spec.stages.2.select.2.rule",
            "halving-winner",
            "spec.stages[2].select[2].from: rule halving-winner needs a halving stage "
            "('greedy' is greedy)",
        ),
        (
            "spec.stages.2.select",
            [],
            "spec.stages[2].select: a confirm stage needs at least one selection rule",
        ),
        (
            "spec.stages.1.maxRuns",
            DELETE,
            "spec.stages[1].maxRuns: a greedy stage needs its run limit per budget",
        ),
        (
            "spec.stages.2.name",
            "screen",
            "spec.stages[2].name: duplicate of stages[0] ('screen')",
        ),
        (
            "spec.pools.1.name",
            "a100",
            "spec.pools[1].name: duplicate of pools[0] ('a100')",
        ),
        (
            "spec.trainer.hyperparameters",
            {"DEPTH": 8},
            "spec.trainer.hyperparameters.DEPTH: DEPTH is a factor (factors[0]); "
            "remove it from the fixed hyperparameters",
        ),
        (
            "spec.trainer.hyperparameters",
            {"SEQ_LEN": [2048]},
            "spec.trainer.hyperparameters.SEQ_LEN: must be a string, number or boolean (got list)",
        ),
        (
            "spec.trainer.hyperparameters",
            {"seq_len": 2048},
            "spec.trainer.hyperparameters.seq_len: names are trainer variables such as SEQ_LEN",
        ),
        (
            "spec.stages.0.seeds",
            [],
            "spec.stages[0].seeds: needs at least one seed, e.g. [1], or a count such as 3",
        ),
        (
            "spec.storage",
            {},
            "spec.storage: set exactly one of s3 or local (got neither)",
        ),
        (
            "spec.storage",
            {"s3": {"bucket": "runs"}, "local": {"path": "x"}},
            "spec.storage: set exactly one of s3 or local (got both)",
        ),
    ],
)
def test_each_mistake_is_named_by_its_path(path: str, value: Any, expected: str) -> None:
    assert [str(problem) for problem in problems_of(mutate(path, value))] == [expected]


def halving_study(**fields: Any) -> dict[str, Any]:
    """base() with a halving stage in place of the greedy one, and its winner confirmed."""
    stage = {"name": "halving", "kind": "halving", "budgets": ["2m", "5m", "10m"], **fields}
    data = mutate("spec.stages.1", stage)
    data["spec"]["stages"][2]["select"][2] = {"from": "halving", "rule": "halving-winner"}
    return data


def test_a_halving_stage_reads_its_rungs_eta_initial_and_draw_seed() -> None:
    stage = parse_study(halving_study(eta=2, initial=32, drawSeed=4, seeds=3)).spec.stages[1]
    assert (stage.budgets, stage.eta, stage.initial, stage.draw_seed, stage.seeds) == (
        [120, 300, 600],
        2,
        32,
        4,
        [1, 2, 3],
    )
    defaults = parse_study(halving_study()).spec.stages[1]
    assert (defaults.eta, defaults.initial) == (3, None)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"eta": 1}, "spec.stages[1].eta: must be at least 2 (got 1)"),
        (
            {"initial": 0},
            "spec.stages[1].initial: must be at least 1 (got 0)",
        ),
        (
            {"initial": 33},
            "spec.stages[1].initial: more configurations than the full 2^5 space holds "
            "(32; got 33)",
        ),
        (
            {"budgets": ["10m"]},
            "spec.stages[1].budgets: a halving stage needs at least two budgets, one per rung "
            "(got 1)",
        ),
        (
            {"maxRuns": 20},
            "spec.stages[1].maxRuns: only for kind greedy (stage kind is halving)",
        ),
        (
            {"batches": 2},
            "spec.stages[1].batches: only for kind random (stage kind is halving)",
        ),
    ],
)
def test_halving_mistakes_are_named_by_their_path(fields: dict[str, Any], expected: str) -> None:
    assert [str(problem) for problem in problems_of(halving_study(**fields))] == [expected]


def test_a_duplicate_code_is_named_and_so_are_the_references_it_orphans() -> None:
    assert [str(problem) for problem in problems_of(mutate("spec.factors.1.code", "A"))] == [
        "spec.factors[1].code: 'A' is already the code of factors[0] (DEPTH); "
        "each factor needs its own letter",
        "spec.stages[2].select[1].factors: unknown factor code B (codes: A, C, D, E)",
        "spec.stages[2].select[3].levels: unknown factor code B (codes: A, C, D, E)",
    ]


def test_every_malformed_generator_is_named_by_its_index() -> None:
    data = mutate("spec.design.generators", ["E=ABCZ", "D=AB", "C=A-B"])
    assert [str(problem) for problem in problems_of(data)] == [
        "spec.design.generators[0]: unknown factor code Z in 'E=ABCZ' (codes: A, B, C, D, E)",
        "spec.design.generators[2]: expected a generator such as E=ABCD or E=-ABCD (got 'C=A-B')",
    ]


def test_generators_that_alias_two_main_effects_are_refused() -> None:
    data = mutate("spec.design.generators", ["D=AB", "E=AB"])
    [problem] = problems_of(data)
    assert problem.path == "spec.design.generators"
    assert "main effect D with main effect E" in problem.message


def test_a_selection_from_a_later_stage_is_refused() -> None:
    data = base()
    data["spec"]["stages"].append({"name": "late", "kind": "screen", "budgets": ["5m"]})
    data["spec"]["stages"][2]["select"][0]["from"] = "late"
    assert [str(problem) for problem in problems_of(data)] == [
        "spec.stages[2].select[0].from: stage 'late' comes later (stages[3]); "
        "a selection can only use earlier stages (screen, greedy)"
    ]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "spec.factors.0.low",
            "x",
            "spec.factors[0].low: expected a number, e.g. 0.02 (got 'x')",
        ),
        ("spec.factors.0.name", DELETE, "spec.factors[0].name: required field is missing"),
        (
            "spec.factors.0.name",
            "depth",
            (
                "spec.factors[0].name: expected capital letters, digits and '_', starting "
                "with a letter, e.g. MATRIX_LR (the variable the trainer reads) (got 'depth')"
            ),
        ),
        (
            "spec.factors.0.scale",
            "int",
            "spec.factors[0].scale: expected 'integer', 'float' or 'log' (got 'int')",
        ),
        (
            "spec.stages.0.budgets",
            ["2 min"],
            "spec.stages[0].budgets[0]: expected a duration such as 120s, 10m, 24h or 1h30m "
            "(got '2 min')",
        ),
        (
            "spec.stages.0.kind",
            "scren",
            "spec.stages[0].kind: expected 'screen', 'confirm', 'followup', 'bridge', "
            "'long-horizon', 'random', 'greedy' or 'halving' (got 'scren')",
        ),
        (
            "spec.stages.1.drawPerBatch",
            4,
            "spec.stages[1].drawPerBatch: unknown field; accepted: name, kind, budgets, seeds, "
            "pools, select, fix, interactions, batches, drawsPerBatch, drawSeed, maxRuns, start, "
            "eta, initial",
        ),
        (
            "spec.stages.2.select.3.levels",
            {**CONTROL, "A": 2},
            "spec.stages[2].select[3].levels.A: must be at most 1 (got 2)",
        ),
        (
            "spec.pools.0.gpus",
            -1,
            "spec.pools[0].gpus: must be at least 0 (got -1)",
        ),
        (
            "apiVersion",
            "stagescreen.dev/v1",
            "apiVersion: expected 'stagescreen.dev/v1alpha1' (got 'stagescreen.dev/v1')",
        ),
    ],
)
def test_type_errors_read_as_path_message_and_bad_value(
    path: str, value: Any, expected: str
) -> None:
    assert [str(problem) for problem in problems_of(mutate(path, value))] == [expected]


def test_every_problem_is_reported_in_one_pass() -> None:
    data = base()
    data["spec"]["trainer"] = {"hyperparameter": {}}
    data["spec"]["stages"][0]["pools"] = ["gpu"]
    data["spec"]["stages"][2]["select"][0]["from"] = "nowhere"
    data["spec"]["limits"] = {"parallelism": 0}
    assert [p.path for p in problems_of(data)] == [
        "spec.trainer.hyperparameter",
        "spec.limits.parallelism",
        "spec.stages[0].pools[0]",
        "spec.stages[2].select[0].from",
    ]


def test_a_broken_stage_or_factor_does_not_hide_the_cross_section_problems() -> None:
    """Budgets out of order and low == high are a model's own checks; the duplicate code, the
    undeclared pool and the unknown source stage still show in the same pass."""
    data = base()
    data["spec"]["factors"][1]["high"] = data["spec"]["factors"][1]["low"]
    data["spec"]["factors"][2]["code"] = data["spec"]["factors"][0]["code"]
    data["spec"]["stages"][0]["budgets"] = ["10m", "5m"]
    data["spec"]["stages"][0]["pools"] = ["h100"]
    data["spec"]["stages"][2]["select"][0]["from"] = "later"
    assert [p.path for p in problems_of(data)] == [
        "spec.factors[1].high",
        "spec.stages[0].budgets[1]",
        "spec.factors[2].code",
        "spec.stages[0].pools[0]",
        "spec.stages[2].select[0].from",
        "spec.stages[2].select[3].levels",  # names C, which factors[2] no longer is
    ]


def test_spec_error_lists_one_problem_per_line() -> None:
    data = mutate("spec.factors.2.high", 0.03)
    data["spec"]["stages"][0]["budgets"] = ["10m", "5m"]
    with pytest.raises(SpecError) as caught:
        parse_study(data)
    assert str(caught.value).splitlines() == [
        "spec.factors[2].high: must differ from low (both 0.03)",
        "spec.stages[0].budgets[1]: budgets must increase within a stage (got 300 s after 600 s)",
    ]


def test_cluster_metadata_and_status_are_accepted_and_ignored() -> None:
    data = base()
    data["metadata"].update(
        uid="1234", resourceVersion="7", creationTimestamp="2026-01-01T00:00:00Z"
    )
    data["status"] = {"phase": "Running", "anything": True}
    study = parse_study(data)
    assert study.metadata.name == "t"
    assert "status" not in study.model_dump()


def test_load_study_reads_a_path_or_yaml_text(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "quickstart.yaml").read_text()
    copy_path = tmp_path / "q.yaml"
    copy_path.write_text(text)
    assert load_study(text) == load_study(copy_path) == load_study(str(copy_path))


def test_load_study_names_yaml_line_and_column() -> None:
    with pytest.raises(SpecError) as caught:
        load_study("apiVersion: x\nspec: [1\nkind: y\n")
    [problem] = caught.value.problems
    assert problem.path == "line 3, column 5"
    assert problem.message.startswith("YAML syntax error: ")
    assert "expected ',' or ']'" in problem.message  # libyaml: "did not find expected ..."


def test_load_study_names_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as caught:
        load_study(missing)
    assert caught.value.problems == [Problem(str(missing), "no such file")]


def test_a_list_is_not_a_study() -> None:
    with pytest.raises(SpecError, match=r"expected a ScreeningStudy mapping \(got list\)"):
        load_study("- 1\n- 2\n")


def test_paper_example_encodes_the_papers_programme() -> None:
    study = load_study(ROOT / "examples" / "paper.yaml")
    spec = study.spec
    assert [(f.code, f.name, f.low, f.high) for f in spec.factors] == [
        ("A", "DEPTH", 6, 8),
        ("B", "ASPECT_RATIO", 48, 72),
        ("C", "MATRIX_LR", 0.03, 0.05),
        ("D", "TOTAL_BATCH_SIZE", 262144, 524288),
        ("E", "WARMDOWN_RATIO", 0.25, 0.5),
    ]
    assert spec.factor("B").decode(0) == 64
    assert spec.design.generators == ["E=ABCD"]
    assert spec.stage("screen").budgets == [120, 300, 600]
    assert spec.stage("seeded-screen").seeds == [1, 2, 3, 4, 5]
    assert spec.stage("long-horizon").budgets == [12 * 3600, 24 * 3600]
    assert spec.stage("long-horizon").pools == ["a100", "l40s"]
    assert spec.stage("bridge").select[3].levels == {"A": 1, "B": -1, "C": -1, "D": 1, "E": 1}
    assert spec.trainer.hyperparameters["EVAL_TOKENS"] == 40 * 524288
    assert spec.storage.uri(study.name) == "s3://stagescreen/studies/paper"
    assert [pool.name for pool in spec.pools] == ["a100", "l40s"]


def test_quickstart_example_is_small_and_local() -> None:
    spec = load_study(ROOT / "examples" / "quickstart.yaml").spec
    assert len(spec.factors) == 3
    assert max(budget for stage in spec.stages for budget in stage.budgets) <= 60
    assert [pool.gpus for pool in spec.pools] == [0]
    assert spec.storage.uri("quickstart") == "runs/quickstart"
    assert math.prod(2 for _ in spec.factors) == len(spec.build_design().matrix)


def test_references_are_checked_even_when_a_factor_is_broken() -> None:
    data = mutate("spec.factors.0.low", "x")
    data["spec"]["stages"][2]["pools"] = ["h100"]
    assert [str(problem) for problem in problems_of(data)] == [
        "spec.factors[0].low: expected a number, e.g. 0.02 (got 'x')",
        "spec.stages[2].pools[0]: no pool named 'h100' (declared: a100, l40s)",
    ]


def test_the_spec_is_frozen_so_a_decision_cannot_change_it() -> None:
    study = load_study(ROOT / "examples" / "paper.yaml")
    with pytest.raises(ValidationError, match="frozen"):
        study.spec.stages[0].name = "renamed"
    with pytest.raises(ValidationError, match="frozen"):
        study.spec.factors[0].high = 99


def test_factors_without_codes_get_the_next_free_letter_by_position() -> None:
    assert default_codes([None, "A", None]) == ["B", "A", "C"]
    text = (ROOT / "examples" / "quickstart.yaml").read_text()
    for code in "ABC":
        text = text.replace(f"code: {code}, ", "")
    assert load_study(text).spec.codes == ["A", "B", "C"]


def test_a_computed_centre_is_a_value_a_person_would_write() -> None:
    factor = Factor.model_validate({"name": "MATRIX_LR", "low": 0.02, "high": 0.04, "scale": "log"})
    assert factor.centre_value == 0.0283  # not 0.0282842712474619
    assert factor.decode(0) == 0.0283
    declared = Factor.model_validate(
        {"name": "MATRIX_LR", "low": 0.02, "high": 0.04, "centre": 0.02828, "scale": "log"}
    )
    assert declared.centre_value == 0.02828  # a declared centre is kept as written


def test_every_pattern_a_field_must_match_is_described_in_words() -> None:
    """A message quotes `parse.PATTERN_WORDS`, never the regular expression: every pattern
    pydantic enforces anywhere in the model has its words."""
    patterns: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "str" and "pattern" in node:
                patterns.add(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list | tuple):
            for value in node:
                walk(value)

    walk(Study.__pydantic_core_schema__)
    assert patterns and patterns <= set(PATTERN_WORDS)
