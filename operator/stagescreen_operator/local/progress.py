"""What `stagescreen run` shows while it works.

On a terminal, a live panel (rich): per stage its phase, runs ended, running and failed of
those planned, and its outcome once analysed; the best so far; elapsed and an ETA; per
running run its step, loss and how far through its budget it is, read from the trainer's
progress lines. Events (a run started or ended, a stage analysed) print above the panel.
When stdout is not a terminal (CI, a log file) the same facts come as plain timestamped
lines, a summary every SUMMARY_EVERY_S seconds.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from stagescreen.outcomes.status import StudyStatus
from stagescreen.planning.cost import RUN_OVERHEAD_S, stage_cost
from stagescreen.planning.ids import format_budget
from stagescreen.study.spec import Study, StudySpec
from stagescreen_operator.controller import Decision
from stagescreen_operator.local.executor import Child, Events
from stagescreen_operator.tables import text_table

SUMMARY_EVERY_S = 15.0

_PROGRESS = re.compile(
    r"step (?P<step>\d+) \| training (?P<done>[\d.]+)s/(?P<budget>[\d.]+)s .*?"
    r"\| loss (?P<loss>[\d.]+|nan|inf)"
)


@dataclass(frozen=True)
class RunProgress:
    """Where a running trainer is, from its latest progress line."""

    step: int
    loss: float
    fraction: float  # of its training budget


def run_progress(log_text: str) -> RunProgress | None:
    """The last progress line in a trainer's log text, or None before its first step."""
    lines = list(_PROGRESS.finditer(log_text))
    if not lines:
        return None
    last = lines[-1]
    budget = float(last["budget"])
    return RunProgress(
        step=int(last["step"]),
        loss=float(last["loss"]),
        fraction=min(1.0, float(last["done"]) / budget) if budget else 0.0,
    )


def eta_seconds(
    study: Study, decision: Decision, ages: Mapping[str, float], slots: int
) -> float | None:
    """Seconds until the study ends, if the planned runs and the stages not yet planned take
    their budget plus the measured overhead each, `slots` at a time; None once it has ended."""
    if decision.ended:
        return None
    results = decision.results
    spec = study.spec
    per_run = RUN_OVERHEAD_S
    left = 0.0
    planned = set()
    if not results.empty:
        planned = set(results["stage"])
        for row in results.itertuples():
            cost = float(row.budget_s) + per_run
            if row.status == "pending":
                left += cost
            elif row.status == "running":
                left += max(0.0, cost - ages.get(str(row.run_id), 0.0))
    later = sum(
        stage_cost(spec, stage, per_run).wall_hours * 3600
        for stage in spec.stages
        if stage.name not in planned
    )
    return left / max(1, slots) + later


def progress_events(study: Study, slots: int, console: Console | None = None) -> Events:
    """Events for the executor: a live panel on a terminal, plain lines otherwise."""
    console = console or Console()
    started = time.monotonic()
    if not console.is_terminal:
        return _plain(study, slots, started)
    live = Live(console=console, refresh_per_second=2, transient=False)

    def say(message: str) -> None:
        live.console.print(f"{datetime.now():%H:%M:%S} {message}", highlight=False)

    def tick(decision: Decision, current: StudyStatus, children: Mapping[str, Child]) -> None:
        if not live.is_started:
            live.start()
        elapsed = time.monotonic() - started
        live.update(panel(study, decision, current, children, elapsed, slots))

    return Events(say=say, tick=tick, close=live.stop)


def _plain(study: Study, slots: int, started: float) -> Events:
    last = [-math.inf]

    def say(message: str) -> None:
        print(f"{datetime.now():%H:%M:%S} {message}", flush=True)

    def tick(decision: Decision, current: StudyStatus, children: Mapping[str, Child]) -> None:
        now = time.monotonic()
        if now - last[0] < SUMMARY_EVERY_S or decision.results.empty:
            return
        last[0] = now
        for line in status_lines(study.spec, current):
            say(line)
        ages = {run_id: now - child.started for run_id, child in children.items()}
        say(_clock_line(now - started, eta_seconds(study, decision, ages, slots)))
        for run_id, child in children.items():
            say(f"running {run_id}: {_run_text(child, now)}")

    return Events(say=say, tick=tick)


def panel(
    study: Study,
    decision: Decision,
    current: StudyStatus,
    children: Mapping[str, Child],
    elapsed: float,
    slots: int,
) -> Group:
    """The live display: the status lines, the clock and a table of running runs."""
    now = time.monotonic()
    ages = {run_id: now - child.started for run_id, child in children.items()}
    lines = [
        *status_lines(study.spec, current),
        _clock_line(elapsed, eta_seconds(study, decision, ages, slots)),
    ]
    running = Table("running", "step", "loss", "budget done", box=None, pad_edge=False)
    for run_id, child in children.items():
        seen = run_progress(_tail(child.log.name))
        if seen is None:
            running.add_row(run_id, "-", "-", f"starting ({ages[run_id]:.0f} s)")
        else:
            running.add_row(run_id, str(seen.step), f"{seen.loss:.4f}", f"{seen.fraction:.0%}")
    return Group(*lines, running)


def _clock_line(elapsed: float, eta: float | None) -> str:
    left = f", about {_duration(eta)} left" if eta is not None else ""
    return f"elapsed {_duration(elapsed)}{left}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _run_text(child: Child, now: float) -> str:
    seen = run_progress(_tail(child.log.name))
    if seen is None:
        return f"starting ({now - child.started:.0f} s)"
    return f"step {seen.step}, loss {seen.loss:.4f}, {seen.fraction:.0%} of its budget"


def _tail(path: str, size: int = 4096) -> str:
    """The end of a log file (the latest progress line is there)."""
    try:
        with Path(path).open("rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - size))
            return log.read().decode("utf-8", "replace")
    except OSError:
        return ""


def status_lines(spec: StudySpec, current: StudyStatus) -> list[str]:
    """The study's phase, its stage table, best so far, compute spent and why it waits."""
    lines = [
        f"study phase {current.phase}, {current.progress} runs ended"
        + (f" ({current.message})" if current.message else "")
    ]
    rows, outcomes = [], []
    for stage in spec.stages:
        mine = current.stages.get(stage.name)
        if mine is None:
            rows.append([stage.name, stage.kind, "Pending", "-", "-", "-", "-", "-"])
            continue
        runs = mine.runs
        numbers = (runs.total, runs.ended, runs.diverged, runs.failed, runs.running)
        rows.append([stage.name, stage.kind, mine.phase, *(str(n) for n in numbers)])
        if mine.summary:
            outcomes.append(f"  {stage.name}: {mine.summary}")
    header = ["stage", "kind", "phase", "planned", "ended", "diverged", "failed", "running"]
    lines += text_table(header, rows, left=3).splitlines()
    lines += outcomes
    if current.best is not None:
        best = current.best
        lines.append(
            f"best so far: {best.condition_id} {spec.metric.name} {best.mean:.4f} at "
            f"{format_budget(best.budget_s)} on {best.pool} (stage {best.stage})"
        )
    gpus = {pool.name: pool.gpus for pool in spec.pools}
    spent = [
        f"{pool} {current.gpu_seconds[pool] / 3600:.2f} GPU-h"
        if gpus.get(pool, 1)
        else f"{pool} {seconds / 3600:.2f} CPU run-h"
        for pool, seconds in current.run_seconds.items()
    ]
    lines.append("compute: " + (", ".join(spent) or "none yet"))
    lines += [f"waiting: {line}" for line in current.waiting]
    return lines
