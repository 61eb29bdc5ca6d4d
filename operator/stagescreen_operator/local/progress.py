"""What `stagescreen run` shows while it works: a line per event and a summary line per
stage every few seconds (runs done, running and failed of the total, best so far, elapsed)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime

from stagescreen.records import stage_counts
from stagescreen.runstatus import RunStatus
from stagescreen.spec import Study
from stagescreen_operator.controller import Decision
from stagescreen_operator.local.executor import Child, Events

SUMMARY_EVERY_S = 15.0


def progress_events(study: Study) -> Events:
    started = time.monotonic()
    last = [-math.inf]

    def say(message: str) -> None:
        print(f"{datetime.now():%H:%M:%S} {message}", flush=True)

    def tick(decision: Decision, children: Mapping[str, Child]) -> None:
        now = time.monotonic()
        if now - last[0] < SUMMARY_EVERY_S or decision.results.empty:
            return
        last[0] = now
        for line in stage_lines(study, decision):
            say(line)
        say(f"elapsed {now - started:.0f} s; running: {', '.join(children) or 'none'}")

    return Events(say=say, tick=tick)


def stage_lines(study: Study, decision: Decision) -> list[str]:
    """One line per planned stage: ended/total, running, failed, best condition so far."""
    results = decision.results
    metric = study.spec.metric.name
    lines = []
    for stage in study.spec.stages:
        counts = stage_counts(results, stage.name)
        if not counts.planned:
            continue
        mine = results[results["stage"] == stage.name]
        done = mine[mine["status"] == str(RunStatus.SUCCEEDED)]
        best = ""
        if not done.empty:
            means = done.groupby("condition_id")[metric].mean()
            pick = means.idxmin() if study.spec.metric.goal == "minimize" else means.idxmax()
            best = f", best so far {pick} {means[pick]:.4f}"
        lines.append(
            f"stage {stage.name}: {counts.ended}/{counts.planned} ended, {counts.running} "
            f"running, {counts.failed} failed{best}"
        )
    return lines
