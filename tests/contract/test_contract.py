"""A study is checked against the trainer's contract before anything runs, with the code the
trainer validates its own configuration with (stagescreen_contract)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from stagescreen.study.parse import parse_study
from stagescreen.study.spec import SpecError
from stagescreen_contract.checks import CROSS_CHECKS, defaults
from stagescreen_contract.status import RunStatus, reads_succeeded, status_of_exit
from stagescreen_contract.variables import VARIABLES

STUDY = """
apiVersion: stagescreen.dev/v1alpha1
kind: ScreeningStudy
metadata: {name: contract}
spec:
  factors:
    - {name: DEPTH, code: A, low: 2, high: 4, scale: integer}
    - {name: ASPECT_RATIO, code: B, low: 32, high: 64, centre: 48, scale: integer}
  design: {type: full}
  stages:
    - {name: screen, kind: screen, budgets: [10s], seeds: [1]}
    - name: confirm
      kind: confirm
      budgets: [20s]
      seeds: [1, 2]
      select:
        - {rule: best, from: screen, k: 1}
        - {rule: bridge, from: screen, factors: [A]}
  pools: [{name: cpu}]
  trainer:
    hyperparameters: {HEAD_DIM: 32, SEQ_LEN: 64, DEVICE_BATCH_SIZE: 8, TOTAL_BATCH_SIZE: 512}
"""


def study(**changes: Any) -> dict[str, Any]:
    """The valid study above with `changes` applied at dotted paths under spec."""
    data: dict[str, Any] = yaml.safe_load(STUDY)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node: Any = data["spec"]
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return data


def screening(index: int, **factor: Any) -> dict[str, Any]:
    """The study with factor `index` replaced, screening a variable fixed until now."""
    data = study()
    data["spec"]["factors"][index] = factor
    data["spec"]["trainer"]["hyperparameters"].pop(factor["name"])
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_study(data)
    return [str(problem) for problem in caught.value.problems]


def test_a_study_the_trainer_accepts_is_valid() -> None:
    parse_study(study())


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"factors__0__name": "DEPHT"},
            "spec.factors[0].name: DEPHT is not a variable the trainer reads; did you mean DEPTH?",
        ),
        (
            {"trainer__hyperparameters__HEAD_DIMM": 32},
            "spec.trainer.hyperparameters.HEAD_DIMM: HEAD_DIMM is not a variable the trainer "
            "reads; did you mean HEAD_DIM?",
        ),
        (
            {"trainer__hyperparameters__SEQ_LEN": "long"},
            "spec.trainer.hyperparameters.SEQ_LEN: SEQ_LEN takes an integer (got 'long')",
        ),
        (
            {"trainer__hyperparameters__HEAD_DIM": 33},
            "spec.trainer.hyperparameters.HEAD_DIM: HEAD_DIM=33: must be a positive even "
            "integer (rotary embeddings)",
        ),
        (
            {"trainer__hyperparameters__RESULT_URI": "/tmp/x"},
            "spec.trainer.hyperparameters.RESULT_URI: RESULT_URI is set for each run by "
            "StageScreen, not by the study",
        ),
        (
            {"factors__0__name": "THREADS"},
            "spec.factors[0].name: THREADS is a run setting, not a hyperparameter",
        ),
        (
            {
                "factors__0__name": "MATRIX_LR",
                "factors__0__low": -0.01,
                "factors__0__high": 0.04,
                "factors__0__scale": "float",
            },
            "spec.factors[0].low: MATRIX_LR=-0.01: must be a number >= 0",
        ),
        (
            {"factors__0__high": 3},  # DEPTH 2..3: the bridge's centre rounds onto a level
            "spec.factors[0].centre: DEPTH's centre comes out as 3, equal to a level: a bridge "
            "point would repeat a corner; declare a centre between the levels",
        ),
    ],
)
def test_what_the_trainer_would_refuse_is_named_by_its_path(
    changes: dict[str, Any], expected: str
) -> None:
    assert problems(study(**changes)) == [expected]


def test_cross_checks_run_on_every_combination_of_levels() -> None:
    """DEVICE_BATCH_SIZE 8 or 12 as a factor: 512 tokens a step is a multiple of 8*64 but
    not of 12*64, which half the design reaches; the fixed value is what to change."""
    data = screening(1, name="DEVICE_BATCH_SIZE", code="B", low=8, high=12, scale="integer")
    assert problems(data) == [
        "spec.trainer.hyperparameters.TOTAL_BATCH_SIZE: TOTAL_BATCH_SIZE=512: must be a "
        "positive multiple of "
        "DEVICE_BATCH_SIZE*SEQ_LEN = 12*64 = 768 when DEPTH=2 (low), DEVICE_BATCH_SIZE=12 (high)"
    ]


def test_a_log_scale_batch_whose_centre_breaks_the_multiple_is_caught() -> None:
    """TOTAL_BATCH_SIZE between 2^18 and 2^19 on a log scale centres at 370728, which no
    micro-batch divides; only the bridge rule runs it, so only that is reported."""
    data = screening(0, name="TOTAL_BATCH_SIZE", code="A", low=262144, high=524288, scale="log")
    (found,) = problems(data)
    assert found.startswith("spec.factors[0]: TOTAL_BATCH_SIZE=370728: must be a positive")
    assert "TOTAL_BATCH_SIZE=370728 (centre)" in found


def test_the_defaults_pass_every_cross_check() -> None:
    assert [check.problem(defaults()) for check in CROSS_CHECKS] == [None] * len(CROSS_CHECKS)


def test_the_warmup_limit_is_said_as_the_check_reads_it() -> None:
    """The core once wrote "must be <= 1" beside a check that read its limit from data; the
    message now comes from the check itself, for the study and the trainer alike."""
    data = study()
    data["spec"]["factors"][0] = dict(name="WARMUP_RATIO", code="A", low=0.2, high=0.6)
    (found,) = problems(data)
    assert found == (
        "spec.trainer.hyperparameters.WARMDOWN_RATIO: WARMDOWN_RATIO=0.5: WARMUP_RATIO + "
        "WARMDOWN_RATIO = 1.1 must be <= 1 when WARMUP_RATIO=0.6 (high), ASPECT_RATIO=32 (low)"
    )


def test_every_cross_check_blames_a_variable_a_study_can_set() -> None:
    for check in CROSS_CHECKS:
        assert VARIABLES[check.blames].metadata["kind"] == "hyper", check.name


class _Reads(dict[str, Any]):
    """Every variable at its default, recording which ones a check looks up."""

    def __init__(self) -> None:
        super().__init__(defaults())
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        self.read.add(name)
        return super().__getitem__(name)


def test_every_cross_check_reads_only_the_variables_it_declares() -> None:
    """A study tries only the combinations of the factors a check reads, so a check that
    read an undeclared variable would miss combinations."""
    for check in CROSS_CHECKS:
        values = _Reads()
        check.failure(values)
        assert values.read <= set(check.reads), check.name
        assert check.blames in check.reads, check.name


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (0, RunStatus.SUCCEEDED),
        (2, RunStatus.FAILED),  # bad configuration: recorded as failed by the trainer
        (3, RunStatus.DIVERGED),
        (4, RunStatus.FAILED),
        (75, RunStatus.INTERRUPTED),  # checkpointed on SIGTERM: started again, it resumes
        (-9, RunStatus.FAILED),  # killed before it could write a record
        (1, RunStatus.FAILED),
    ],
)
def test_how_a_trainer_exit_code_reads(code: int, status: RunStatus) -> None:
    assert status_of_exit(code) == status


@pytest.mark.parametrize(
    ("value", "succeeded"),
    [
        ("succeeded", True),
        (" Succeeded ", True),  # results tables also come from users' CSV files
        (RunStatus.SUCCEEDED, True),
        ("failed", False),
        (None, False),  # no record
        (float("nan"), False),
        (1, False),
    ],
)
def test_what_reads_succeeded(value: object, succeeded: bool) -> None:
    assert reads_succeeded(value) is succeeded
