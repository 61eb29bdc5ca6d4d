"""Screens the statistics tests and the `effects` command tests share: the textbook tables in
tests/data and the paper's seeded full screen with planted effects."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from stagescreen.design import fractional_factorial

DATA = Path(__file__).resolve().parent / "data"

PLANTED = {"A": 0.0568, "B": 0.0441, "C": -0.0165, "D": 0.0818, "E": 0.0}


def paper_like_screen(seed: int = 11) -> pd.DataFrame:
    """The paper's seeded full screen: 2^(5-1) (E=ABCD) x 5 seeds x 2 budgets, real levels
    for DEPTH-like A, planted main effects, a seed shift and noise sd 0.02."""
    design = fractional_factorial(list("ABCDE"), ["E=ABCD"])
    rng = np.random.default_rng(seed)
    rows = []
    for budget, seed_value, (cid, levels) in itertools.product(
        (300, 600), range(1, 6), zip(design.condition_ids, design.matrix, strict=True)
    ):
        mean = 1.2 + sum(PLANTED[f] / 2 * x for f, x in zip("ABCDE", levels, strict=True))
        rows.append(
            {
                "run_id": f"b{budget}-{cid}-s{seed_value}",
                "condition_id": cid,
                "budget_s": budget,
                "seed": seed_value,
                "status": "succeeded",
                "val_bpb": mean + 0.004 * seed_value + rng.normal(0, 0.02),
                **dict(zip("ABCDE", levels.tolist(), strict=True)),
            }
        )
    data = pd.DataFrame(rows)
    data["A"] = data["A"].map({-1: 6, 1: 8})
    return data
