"""A measured table and the study replayed on it, which the replay tests share.

Every row's value is distinct (a row number in its last digits), so a recorded metric names
the one row it was taken from; the seed adds a shift shared by that seed's rows, and a little
noise keeps the paired intervals of the decisions open.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from stagescreen.study.parse import load_study

SWEEP_FILE = Path(__file__).parent / "data" / "replay-sweep.yaml"
SWEEP = load_study(SWEEP_FILE, trains=False)
FACTORS = ["WIDTH", "LEARNING_RATE", "DROPOUT"]


def measured_table(replicates: int = 4, seeded: bool = True) -> pd.DataFrame:
    """WIDTH and LEARNING_RATE as values, DROPOUT as codes (centre 0 included), budgets as
    durations, `replicates` runs per condition and budget: seeds 1..n, or replicates."""
    noise = np.random.default_rng(5)
    rows = []
    combinations = itertools.product(
        [16, 64], [0.001, 0.01], [-1, 0, 1], ["10m", "30m"], range(1, replicates + 1)
    )
    for number, (width, rate, dropout, budget, replicate) in enumerate(combinations):
        value = (
            1.0
            + 0.1 * (width == 64)
            - 0.05 * (rate == 0.01)
            + 0.02 * dropout
            + (0.2 if budget == "10m" else 0.0)
            + 0.003 * replicate
            + round(float(noise.normal(0, 0.002)), 4)
            + number * 1e-7
        )
        rows.append(
            {
                "WIDTH": width,
                "LEARNING_RATE": rate,
                "DROPOUT": dropout,
                "budget": budget,
                ("seed" if seeded else "replicate"): replicate,
                "val_loss": value,
            }
        )
    return pd.DataFrame(rows)
