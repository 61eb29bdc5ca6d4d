"""The response the study screens: on the quickstart corpus a longer budget gives lower val_bpb."""

from __future__ import annotations

import subprocess
from pathlib import Path

from trainer_support import Prepared, read_record, tiny_env, trainer_command


def test_five_times_the_budget_gives_a_clearly_lower_val_bpb(
    quickstart: Prepared, tmp_path: Path
) -> None:
    runs = {}
    for budget in (5, 25):  # side by side, one thread each: the budget counts training time only
        env = tiny_env(
            quickstart,
            str(tmp_path / f"b{budget}"),
            TIME_BUDGET=budget,
            EVAL_TOKENS=16384,
            RUN_SEED=1,
        )
        runs[budget] = subprocess.Popen(trainer_command(), env=env, stdout=subprocess.DEVNULL)
    assert [process.wait(timeout=150) for process in runs.values()] == [0, 0]
    short, long = (read_record(tmp_path / f"b{budget}") for budget in (5, 25))
    assert short["training_s"] >= 5 and long["training_s"] >= 25
    assert long["steps"] > 2 * short["steps"]
    assert long["val_bpb"] < short["val_bpb"] - 0.1
