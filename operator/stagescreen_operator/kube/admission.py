"""What `kubectl apply` may not do to a ScreeningStudy: the checks of the validating webhook.

Pure: a new object (and, on update, the old one) in, every problem out, each naming its field
path in the words `stagescreen validate` uses. On update, work already done must keep its
meaning: factors and design never change once the study exists, and a stage that has started
keeps its kind, budgets, seeds and pools; limits (parallelism, maxFailedRuns, maxGpuHours)
may change at any time, and stages not yet started may be edited or added.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stagescreen.study.parse import parse_resource
from stagescreen.study.spec import Problem, SpecError

LOCAL_STORAGE = Problem(
    "spec.storage",
    "a cluster study needs storage.s3: its Jobs run on other nodes (local is for `stagescreen "
    "run`)",
)
FROZEN = ("factors", "design")
STAGE_FROZEN = ("kind", "budgets", "seeds", "pools", "select", "fix")


def admission_problems(new: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> list[str]:
    """Every reason to refuse `new` (and the change from `old`), as `path: message` lines."""
    try:
        study = parse_resource(new)
    except SpecError as error:
        return [str(problem) for problem in error.problems]
    if study.spec.storage.s3 is None:
        return [str(LOCAL_STORAGE)]
    if old is None:
        return []
    before, after = old.get("spec") or {}, new.get("spec") or {}
    problems = [
        f"spec.{name}: cannot change once the study exists (its runs were planned from it); "
        "create a new study instead (another name or storage prefix)"
        for name in FROZEN
        if before.get(name) != after.get(name)
    ]
    started = _started(old)
    stages = {stage.get("name"): stage for stage in after.get("stages") or []}
    for index, stage in enumerate(before.get("stages") or []):
        name = stage.get("name")
        if name not in started:
            continue
        now = stages.get(name)
        if now is None:
            problems.append(
                f"spec.stages[{index}]: stage {name!r} has started; it cannot be removed"
            )
            continue
        problems += [
            f"spec.stages[{index}].{field}: stage {name!r} has started; its {field} cannot change"
            for field in STAGE_FROZEN
            if stage.get(field) != now.get(field)
        ]
    return problems


def _started(old: Mapping[str, Any]) -> set[str]:
    """Stages with runs, by the status the operator wrote."""
    stages = (old.get("status") or {}).get("stages") or {}
    return {
        name for name, stage in stages.items() if ((stage or {}).get("runs") or {}).get("total")
    }
