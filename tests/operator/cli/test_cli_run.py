"""`stagescreen run --workers` and the study's limits.parallelism mean one thing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from stagescreen_operator.cli import app
from stagescreen_operator.cli.run import runs_at_once


@pytest.mark.parametrize(
    ("parallelism", "workers", "gpus", "slots"),
    [
        (1, None, 0, 1),  # the spec's default: one run at a time
        (2, None, 0, 2),  # the quickstart's limits.parallelism, with no flag
        (2, 1, 0, 1),  # --workers overrides it for this machine, down...
        (1, 4, 0, 4),  # ...or up
        (8, None, 2, 2),  # on CUDA a GPU runs one at a time
        (1, 4, 2, 2),
        (1, None, 2, 1),
    ],
)
def test_workers_default_to_the_studys_parallelism_and_override_it(
    parallelism: int, workers: int | None, gpus: int, slots: int
) -> None:
    assert runs_at_once(parallelism, workers, gpus) == slots


def test_run_help_names_the_default() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], terminal_width=200)
    assert "in place of the study's limits.parallelism (the default)" in result.stdout
