"""Names of runs and conditions: deterministic, so a restarted controller re-derives them.

A run id is a pure function of (stage, condition, budget, seed, pool), and a condition has one
name across the study (the screen design's id when it is one of its runs, else its id in the
full 2^k space), so one id always means one set of levels. A bridge point is named after the
condition it centres (`c07-b0`), so one set of levels can have two ids across stages; within
a stage `ranking.unique_anchors` keeps one, the first rule's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from stagescreen import design as designs
from stagescreen.study.spec import StudySpec


def format_budget(seconds: int) -> str:
    """Shortest exact spelling: 120 -> "2m", 90 -> "90s", 43200 -> "12h"."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def run_id(
    stage: str, condition_id: str, budget_s: int, seed: int, pool: str, batch: str = ""
) -> str:
    """Deterministic, DNS-safe run id, e.g. `screen-c07-5m-s1-a100`."""
    parts = [stage, batch, condition_id, format_budget(budget_s), f"s{seed}", pool]
    text = "-".join(part for part in parts if part).lower()
    return re.sub(r"[^a-z0-9-]+", "-", text)


def full_space_id(levels: Mapping[str, int], codes: Sequence[str]) -> str:
    """Id of a point of the full 2^k space: `f32-14` is the paper's full32_c14.

    The screen's ids are `c<nn>` in its fraction; a point outside it is `f<2^k>-<nn>`, its
    number in the full space, so `f32-06` (a follow-up's corner) never reads as the screen's
    `c06` (another condition). Lowercase letters, digits and '-' only: the id is a Kubernetes
    label value and part of DNS-safe run ids as it stands. Factors at their centre (0) are
    named after the low-level point with a suffix, so a bridge point with B centred reads
    `f32-06-b0`.
    """
    corner = {code: -1 if levels[code] == 0 else levels[code] for code in codes}
    number = designs.condition_id(corner, codes).removeprefix("c")
    centred = "".join(f"{code.lower()}0" for code in codes if levels[code] == 0)
    return f"f{2 ** len(codes)}-{number}" + (f"-{centred}" if centred else "")


def condition_name(levels: Mapping[str, int], spec: StudySpec) -> str:
    """The screen design's id when the point is one of its runs, else its full-space id."""
    codes = spec.codes
    screen = spec.build_design()
    for cid, run in zip(screen.condition_ids, screen.runs(), strict=True):
        if all(run[code] == levels[code] for code in codes):
            return str(cid)
    return full_space_id(levels, codes)


def decode_levels(levels: Mapping[str, int], spec: StudySpec) -> dict[str, int | float | str]:
    """Coded levels to the trainer's hyperparameters, by factor name (a categorical factor's
    level as written)."""
    return {factor.name: factor.decode(levels[factor.code or ""]) for factor in spec.factors}
