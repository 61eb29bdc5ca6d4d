"""Bounded work for any spec: every size over its bound is refused in well under a second,
by `stagescreen validate`'s parser and by the webhook alike, with one problem naming the
field, the size and the bound; specs as large as the bounds allow are answered as fast."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from stagescreen.study import bounds
from stagescreen.study.crd import crd
from stagescreen.study.parse import load_study, parse_study
from stagescreen.study.spec import SpecError
from stagescreen_operator.kube.admission import admission_problems

ROOT = Path(__file__).resolve().parents[3]
SECOND = 1.0
"""Generous: each answer here takes milliseconds."""

Spec = dict[str, Any]
Edit = Callable[[Spec], Any]

# 16 trainer hyperparameters no cross-check fails on, each with a declared centre: every
# combination of their levels is 3^16 (43 million); the trainer's checks try only the
# combinations of the factors each check reads.
SIXTEEN = [
    ("DEPTH", 2, 4, 3, "integer"),
    ("ASPECT_RATIO", 32, 64, 48, "integer"),
    ("HEAD_DIM", 32, 64, 48, "integer"),
    ("MATRIX_LR", 0.02, 0.06, 0.04, "float"),
    ("EMBEDDING_LR", 0.2, 0.6, 0.4, "float"),
    ("UNEMBEDDING_LR", 0.002, 0.006, 0.004, "float"),
    ("SCALAR_LR", 0.2, 0.6, 0.4, "float"),
    ("WEIGHT_DECAY", 0.0, 0.2, 0.1, "float"),
    ("ADAM_BETA1", 0.7, 0.9, 0.8, "float"),
    ("ADAM_BETA2", 0.9, 0.99, 0.95, "float"),
    ("WARMUP_RATIO", 0.0, 0.2, 0.1, "float"),
    ("WARMDOWN_RATIO", 0.3, 0.5, 0.4, "float"),
    ("FINAL_LR_FRAC", 0.0, 0.2, 0.1, "float"),
    ("MUON_MOMENTUM_START", 0.8, 0.9, 0.85, "float"),
    ("MUON_MOMENTUM_END", 0.9, 0.99, 0.95, "float"),
    ("MUON_MOMENTUM_STEPS", 100, 300, 200, "integer"),
]
# A 2^(16-11) fraction of resolution III: 32 conditions.
GENERATORS = [
    "F=ABCDE", "G=ABCD", "H=ABCE", "J=ABDE", "K=ACDE", "L=BCDE",
    "M=ABC", "N=ABD", "O=ABE", "P=ACD", "Q=ACE",
]  # fmt: skip


def quickstart() -> Spec:
    """The quickstart study, stored on S3 as a cluster study must be."""
    study = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    study["spec"]["storage"] = {"s3": {"bucket": "studies"}}
    return dict(study)


def edited(edit: Edit) -> Spec:
    study = copy.deepcopy(quickstart())
    edit(study["spec"])
    return study


def factors(count: int) -> list[dict[str, Any]]:
    """`count` factors; their names need not be trainer variables for a size to be judged."""
    return [{"name": f"X{index}", "low": 1, "high": 2} for index in range(count)]


def sixteen(spec: Spec) -> None:
    spec["factors"] = [
        {"name": name, "low": low, "high": high, "centre": centre, "scale": scale}
        for name, low, high, centre, scale in SIXTEEN
    ]
    spec["design"] = {"type": "fractional", "generators": GENERATORS}
    spec["stages"] = [{"name": "screen", "kind": "screen", "budgets": ["5s", "15s"]}]
    spec["trainer"]["hyperparameters"] = {
        "SEQ_LEN": 128,
        "TOTAL_BATCH_SIZE": 2048,
        "DEVICE_BATCH_SIZE": 16,
        "EVAL_TOKENS": 32768,
    }


def stage(spec: Spec, index: int = 0) -> Spec:
    return dict(spec["stages"][index])


def seconds(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    answer = call()
    return answer, time.perf_counter() - start


def refusals(study: Spec) -> tuple[list[str], list[str]]:
    """The problems `validate` (the parser) and the webhook find, each in under a second."""

    def parsed() -> list[str]:
        with pytest.raises(SpecError) as refused:
            parse_study(study)
        return [str(problem) for problem in refused.value.problems]

    problems, parse_s = seconds(parsed)
    webhook, webhook_s = seconds(lambda: admission_problems(study))
    assert parse_s < SECOND, f"validate took {parse_s:.2f} s"
    assert webhook_s < SECOND, f"the webhook took {webhook_s:.2f} s"
    return problems, webhook


# (what, the edit, the problem's start: field path and bound, the size it must name)
OVER: list[tuple[str, Edit, str, str]] = [
    (
        "a 25-factor full factorial",
        lambda s: s.update(factors=factors(25), design={"type": "full"}),
        f"spec.factors: at most {bounds.MAX_FACTORS} factors",
        "got 25",
    ),
    (
        "a 16-factor full factorial (65,536 conditions)",
        lambda s: s.update(factors=factors(16), design={"type": "full"}),
        f"spec.design.type: at most {bounds.MAX_DESIGN_RUNS} conditions per design",
        "got 65536",
    ),
    (
        "a fraction of 16 factors with one generator (32,768 conditions)",
        lambda s: s.update(
            factors=factors(16), design={"type": "fractional", "generators": ["Q=ABC"]}
        ),
        f"spec.design.generators: at most {bounds.MAX_DESIGN_RUNS} conditions per design",
        "got 32768",
    ),
    (
        "a follow-up of 13 free factors",
        lambda s: s.update(
            factors=factors(14),
            design={"type": "fractional", "resolution": 3},
            stages=[{"name": "f", "kind": "followup", "budgets": ["5s"], "fix": {"A": 1}}],
        ),
        f"spec.stages[0].fix: at most {bounds.MAX_DESIGN_RUNS} conditions per design",
        "got 8192",
    ),
    (
        "a million seeds as a count",
        lambda s: s["stages"][0].update(seeds=1_000_000),
        f"spec.stages[0].seeds: at most {bounds.MAX_SEEDS} seeds per stage",
        "got 1000000",
    ),
    (
        "a million seeds as a list",
        lambda s: s["stages"][0].update(seeds=list(range(1, 1_000_001))),
        f"spec.stages[0].seeds: at most {bounds.MAX_SEEDS} seeds per stage",
        "got 1000000",
    ),
    (
        "5,000 budgets",
        lambda s: s["stages"][0].update(budgets=list(range(1, 5001))),
        f"spec.stages[0].budgets: at most {bounds.MAX_BUDGETS} budgets per stage",
        "got 5000",
    ),
    (
        "a 100,000-hour budget",
        lambda s: s["stages"][0].update(budgets=["100000h"]),
        f"spec.stages[0].budgets[0]: at most {bounds.MAX_BUDGET_S} seconds per budget",
        "360000000",
    ),
    (
        "2,001 stages",
        lambda s: s.update(
            stages=[{"name": f"s{i}", "kind": "screen", "budgets": ["5s"]} for i in range(2001)]
        ),
        f"spec.stages: at most {bounds.MAX_STAGES} stages per study",
        "got 2001",
    ),
    (
        "100,000 pools",
        lambda s: s.update(pools=[{"name": f"p{i}", "gpus": 0} for i in range(100_000)]),
        f"spec.pools: at most {bounds.MAX_POOLS} pools per study",
        "got 100000",
    ),
    (
        "a stage on 100,000 pools",
        lambda s: s["stages"][0].update(pools=["cpu"] * 100_000),
        f"spec.stages[0].pools: at most {bounds.MAX_POOLS} pools per stage",
        "got 100000",
    ),
    (
        "100,000 selection rules",
        lambda s: s["stages"][1].update(select=[{"from": "screen", "rule": "best"}] * 100_000),
        f"spec.stages[1].select: at most {bounds.MAX_SELECTIONS} selection rules per stage",
        "got 100000",
    ),
    (
        "100,000 generators",
        lambda s: s.update(design={"type": "fractional", "generators": ["C=AB"] * 100_000}),
        f"spec.design.generators: at most {bounds.MAX_FACTORS} generators",
        "got 100000",
    ),
    (
        "100,000 fixed hyperparameters",
        lambda s: s["trainer"]["hyperparameters"].update({f"H{i}": 1 for i in range(100_000)}),
        f"spec.trainer.hyperparameters: at most {bounds.MAX_HYPERPARAMETERS} fixed",
        "got 100008",
    ),
    (
        "a stage fixing 100,000 factors",
        lambda s: s["stages"][0].update(fix={f"k{i}": 1 for i in range(100_000)}),
        f"spec.stages[0].fix: at most {bounds.MAX_FACTORS} factors",
        "got 100000",
    ),
    (
        "100,000 unknown fields in a factor (one problem each)",
        lambda s: s["factors"][0].update({f"f{i}": 1 for i in range(100_000)}),
        f"spec.factors[0]: at most {bounds.MAX_PROBLEMS} problems per spec are listed",
        "got 100000",
    ),
    (
        "100,000 environment variables of the wrong type (one problem each)",
        lambda s: s["trainer"].update(env={f"E{i}": [i] for i in range(100_000)}),
        f"spec.trainer.env: at most {bounds.MAX_PROBLEMS} problems per spec are listed",
        "holds 100000 entries",
    ),
    (
        "runs from many moderate sizes: 8 conditions x 8 budgets x 200 seeds x 2 pools",
        lambda s: (
            s["pools"].append({"name": "gpu", "gpus": 1}),
            s["stages"][0].update(
                budgets=["5s", "10s", "15s", "20s", "25s", "30s", "35s", "40s"],
                seeds=200,
                pools=["cpu", "gpu"],
            ),
        ),
        f"spec.stages: at most {bounds.MAX_RUNS} runs per study",
        "got 25",  # 25,600 of the screen, plus the later stages
    ),
    (
        "a random stage of a billion draws",
        lambda s: s["stages"].append(
            {
                "name": "rnd",
                "kind": "random",
                "budgets": ["5s"],
                "batches": 10**6,
                "drawsPerBatch": 1000,
            }
        ),
        f"spec.stages: at most {bounds.MAX_RUNS} runs per study",
        "stages[3] (rnd) 1000000000",
    ),
    (
        "a greedy climb of a trillion runs",
        lambda s: s["stages"].append(
            {"name": "g", "kind": "greedy", "budgets": ["5s"], "maxRuns": 10**12}
        ),
        f"spec.stages: at most {bounds.MAX_RUNS} runs per study",
        "stages[3] (g) 1000000000000",
    ),
]


@pytest.mark.parametrize(("what", "edit", "refusal", "size"), OVER, ids=[o[0] for o in OVER])
def test_a_size_over_its_bound_is_refused_at_once_naming_field_size_and_bound(
    what: str, edit: Edit, refusal: str, size: str
) -> None:
    problems, webhook = refusals(edited(edit))
    for found in (problems, webhook):
        named = [problem for problem in found if problem.startswith(refusal)]
        assert named, (what, found)
        assert size in named[0], (what, named[0])


@pytest.mark.parametrize(
    ("what", "edit", "path"),
    [
        ("a 1.5 MB factor name", lambda s: s["factors"][0].update(name="A" * 1_500_000), "name"),
        ("a 1.4 MB budget", lambda s: s["stages"][0].update(budgets=["1s" * 700_000]), "budgets"),
        (
            "a generator of a million spaces",
            lambda s: s.update(design={"type": "fractional", "generators": ["C=" + " " * 10**6]}),
            "generators",
        ),
        ("a million-digit level", lambda s: s["factors"][0].update(low="9" * 10**6), "low"),
        ("an infinite level", lambda s: s["factors"][0].update(low=float("inf")), "low"),
        ("an infinite budget", lambda s: s["stages"][0].update(budgets=["1e400"]), "budgets"),
    ],
)
def test_huge_and_infinite_values_are_refused_at_once_without_echoing_them(
    what: str, edit: Edit, path: str
) -> None:
    problems, webhook = refusals(edited(edit))
    assert any(path in problem for problem in problems), (what, problems)
    assert all(len(problem) < 1200 for problem in problems + webhook), what


def test_a_spec_as_large_as_the_bounds_allow_is_answered_at_once() -> None:
    """16 centred factors (3^16 level combinations for the trainer's checks), a chain of
    stages each picking best and worst from the one before (2^31 walks of its anchors'
    roles, once), 150 seeds on a stage, near the runs' bound: valid, and judged in well under
    a second."""

    def large(spec: Spec) -> None:
        sixteen(spec)
        spec["stages"][0]["seeds"] = 150  # 32 conditions x 2 budgets x 150: 9,600 runs
        spec["stages"] += [
            {
                "name": f"c{i}",
                "kind": "confirm",
                "budgets": ["15s"],
                "select": [
                    {"from": "screen" if i == 0 else f"c{i - 1}", "rule": "best"},
                    {"from": "screen" if i == 0 else f"c{i - 1}", "rule": "worst"},
                ],
            }
            for i in range(bounds.MAX_STAGES - 1)
        ]

    study = edited(large)
    parsed, parse_s = seconds(lambda: parse_study(study))
    webhook, webhook_s = seconds(lambda: admission_problems(study))
    assert len(parsed.spec.stages) == bounds.MAX_STAGES
    assert webhook == []
    assert parse_s < SECOND and webhook_s < SECOND, (parse_s, webhook_s)


def test_the_trainer_checks_still_find_a_combination_among_sixteen_factors() -> None:
    """Trying only the factors a check reads finds the same first failing combination as
    trying every combination: the other factors at their first level."""

    def narrow(spec: Spec) -> None:
        sixteen(spec)
        spec["factors"][11].update(low=0.8, high=0.9, centre=0.85)  # WARMDOWN_RATIO

    problems, _ = refusals(edited(narrow))
    assert problems == [
        "spec.factors[11]: WARMDOWN_RATIO=0.9: WARMUP_RATIO + WARMDOWN_RATIO = 1.1 must be <= 1 "
        "when "
        + ", ".join(
            f"{name}={value} ({field})"
            for name, value, field in [
                *((name, low, "low") for name, low, *_ in SIXTEEN[:10]),
                ("WARMUP_RATIO", 0.2, "high"),
                ("WARMDOWN_RATIO", 0.9, "high"),
                *((name, low, "low") for name, low, *_ in SIXTEEN[12:]),
            ]
        )
    ]


def test_a_circle_of_sources_is_refused_not_followed_forever() -> None:
    def circle(spec: Spec) -> None:
        spec["stages"] = [
            {
                "name": name,
                "kind": "confirm",
                "budgets": ["5s"],
                "select": [{"from": source, "rule": "best"}],
            }
            for name, source in (("a", "b"), ("b", "a"))
        ]

    problems, _ = refusals(edited(circle))
    assert any(
        p.startswith("spec.stages[0].select[0].from: stage 'b' comes later") for p in problems
    )


def test_every_example_is_within_the_bounds() -> None:
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        load_study(example)


def test_the_crd_states_the_list_bounds_so_the_api_server_refuses_first() -> None:
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    stage = spec["properties"]["stages"]["items"]["properties"]
    assert spec["properties"]["factors"]["maxItems"] == bounds.MAX_FACTORS
    assert spec["properties"]["stages"]["maxItems"] == bounds.MAX_STAGES
    assert spec["properties"]["pools"]["maxItems"] == bounds.MAX_POOLS
    assert spec["properties"]["design"]["properties"]["generators"]["maxItems"] == (
        bounds.MAX_FACTORS
    )
    assert stage["budgets"]["maxItems"] == bounds.MAX_BUDGETS
    assert stage["pools"]["maxItems"] == bounds.MAX_POOLS
    assert stage["select"]["maxItems"] == bounds.MAX_SELECTIONS


BILLION_LAUGHS = """\
apiVersion: stagescreen.dev/v1alpha1
kind: ScreeningStudy
metadata: {name: laughs}
spec:
  a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
  i: [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


@pytest.mark.parametrize(
    ("what", "text", "refusal"),
    [
        (
            "a file of 2 MiB",
            (ROOT / "examples" / "quickstart.yaml").read_text() + "#" * 2**21 + "\n",
            f"(document): at most {bounds.MAX_FILE_BYTES} bytes per study file",
        ),
        (
            "a billion values from nine aliases",
            BILLION_LAUGHS,
            f"(document): at most {bounds.MAX_VALUES} values per spec once its aliases",
        ),
        (
            "lists nested 100,000 deep",
            "spec: " + "[" * 100_000 + "]" * 100_000 + "\n",
            "nest",  # libyaml: exceeded maximum nesting depth (1000); PyYAML: nested too deeply
        ),
    ],
)
def test_a_study_file_too_large_to_read_is_refused_at_once(
    what: str, text: str, refusal: str
) -> None:
    def loaded() -> list[str]:
        with pytest.raises(SpecError) as refused:
            load_study(text)
        return [str(problem) for problem in refused.value.problems]

    problems, took = seconds(loaded)
    assert took < SECOND, (what, took)
    assert refusal in problems[0], (what, problems)
