"""The operator's Prometheus metrics, served on STAGESCREEN_METRICS_PORT (/metrics).

Every value is set from what a reconcile observed (the results table, the study's Jobs, the
status it builds), so a restarted operator reports the same gauges after its first pass;
counters and the duration histogram start again from zero, as Prometheus expects of a new
process. Labels are bounded: namespace, study, stage, pool, status, phase, handler; never a
run id. The alerts in charts/stagescreen/files/alerts.yaml are written against these names.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from stagescreen.spec import StudySpec
from stagescreen.status import Phase, StudyStatus
from stagescreen_contract.record import RunRecord
from stagescreen_contract.status import TERMINAL, RunStatus

PHASES: tuple[Phase, ...] = ("Pending", "Running", "Analyzing", "Succeeded", "Degraded", "Failed")
STUDY = ("namespace", "study")

RUNS = Gauge("stagescreen_runs", "Planned runs by state.", [*STUDY, "stage", "pool", "status"])
RUN_SECONDS = Histogram(
    "stagescreen_run_duration_seconds",
    "Wall time of ended runs (start-up, training, evaluation).",
    ["pool"],
    buckets=(30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400, 172800),
)
GPU_SECONDS = Gauge(
    "stagescreen_study_gpu_seconds", "GPU-seconds spent by ended runs.", [*STUDY, "pool"]
)
GPU_HOURS_LIMIT = Gauge("stagescreen_study_gpu_hours_limit", "The study's maxGpuHours.", STUDY)
TRANSITIONS = Counter(
    "stagescreen_stage_transitions_total", "Stages entering a phase.", [*STUDY, "stage", "phase"]
)
BEST = Gauge(
    "stagescreen_study_best", "Mean metric of the study's best condition.", [*STUDY, "metric"]
)
LAST_PROGRESS = Gauge(
    "stagescreen_study_last_progress_timestamp_seconds", "When the study's last run ended.", STUDY
)
LONGEST_RUNNING = Gauge(
    "stagescreen_study_longest_running_budget_seconds",
    "The longest budget among the study's running runs.",
    STUDY,
)
PHASE = Gauge("stagescreen_study_phase", "1 for the study's current phase.", [*STUDY, "phase"])
PENDING = Gauge(
    "stagescreen_jobs_pending",
    "Run Jobs whose pod is not ready (queued by Kueue, or no node can take it yet).",
    [*STUDY, "pool"],
)
ANALYSIS_FAILED = Gauge(
    "stagescreen_analysis_failed",
    "1 when a stage's analysis Job failed for good.",
    [*STUDY, "stage"],
)
ERRORS = Counter("stagescreen_reconcile_errors_total", "Reconciles that raised.", ["handler"])
LATENCY = Histogram(
    "stagescreen_reconcile_duration_seconds", "Time one reconcile takes.", ["handler"]
)
LAST_RECONCILE = Gauge(
    "stagescreen_last_reconcile_timestamp_seconds", "When the operator last reconciled a study."
)

_serving: list[int] = []
_phases: dict[tuple[str, str, str], str] = {}  # the stage phases this process last counted
_series: dict[tuple[str, str], set[tuple[Any, tuple[str, ...]]]] = {}  # per study, to forget


def serve(port: int) -> None:
    """Start the /metrics endpoint once per process."""
    if not _serving:
        start_http_server(port)
        _serving.append(port)


def record_study(
    namespace: str,
    spec: StudySpec,
    status: StudyStatus,
    results: pd.DataFrame,
    records: Mapping[str, RunRecord],
    new: Iterable[str],
    pending_by_pool: Mapping[str, int],
    longest_running_s: float,
    failed_analyses: Iterable[str],
    study: str,
) -> None:
    """Set every metric of one study from one reconcile's observations."""
    labels = {"namespace": namespace, "study": study}
    for record in (records[run_id] for run_id in new):
        if record.status in TERMINAL and record.wall_s:
            RUN_SECONDS.labels(pool=record.pool).observe(record.wall_s)
    if not results.empty:
        counts = results.groupby(["stage", "pool", "status"]).size()
        for stage in spec.stages:
            for pool in {str(p) for p in results.loc[results["stage"] == stage.name, "pool"]}:
                for state in RunStatus:
                    value = int(counts.get((stage.name, pool, str(state)), 0))
                    _set(RUNS, value, **labels, stage=stage.name, pool=pool, status=str(state))
    for pool, seconds in status.gpu_seconds.items():
        _set(GPU_SECONDS, seconds, **labels, pool=pool)
    if spec.limits.max_gpu_hours is not None:
        _set(GPU_HOURS_LIMIT, spec.limits.max_gpu_hours, **labels)
    for name, now in status.stages.items():
        key = (namespace, study, name)
        if _phases.get(key) != now.phase:  # a phase this process has not counted yet
            _phases[key] = now.phase
            TRANSITIONS.labels(**labels, stage=name, phase=now.phase).inc()
            _remember(TRANSITIONS, **labels, stage=name, phase=now.phase)
    if status.best is not None:
        _set(BEST, status.best.mean, **labels, metric=spec.metric.name)
    for phase in PHASES:
        _set(PHASE, 1 if phase == status.phase else 0, **labels, phase=phase)
    for pool, count in pending_by_pool.items():
        _set(PENDING, count, **labels, pool=pool)
    _set(LONGEST_RUNNING, longest_running_s, **labels)
    failed = set(failed_analyses)
    for stage in spec.stages:
        _set(ANALYSIS_FAILED, 1 if stage.name in failed else 0, **labels, stage=stage.name)
    ended = [pd.Timestamp(r.finished_at).timestamp() for r in records.values() if r.finished_at]
    if ended:
        _set(LAST_PROGRESS, max(ended), **labels)
    LAST_RECONCILE.set(time.time())


def forget_study(namespace: str, study: str) -> None:
    """Drop every series of a deleted study, so no alert fires for a study that is gone."""
    for series, values in _series.pop((namespace, study), set()):
        series.remove(*values)
    for key in [key for key in _phases if key[:2] == (namespace, study)]:
        del _phases[key]


def _remember(series: Any, **labels: str) -> None:
    values = tuple(labels.values())
    _series.setdefault((labels["namespace"], labels["study"]), set()).add((series, values))


def _set(gauge: Gauge, value: float, **labels: str) -> None:
    gauge.labels(**labels).set(value)
    _remember(gauge, **labels)
