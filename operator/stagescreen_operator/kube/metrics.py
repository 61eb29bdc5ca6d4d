"""The operator's Prometheus metrics, served on the metrics port (/metrics).

Every value is set from what a reconcile observed (the results table, the study's Jobs, the
status it builds), so a restarted operator reports the same gauges after its first pass;
counters and the duration histogram start again from zero, as Prometheus expects of a new
process. Labels are bounded: namespace, study, stage, pool, status, phase, handler; never a
run id. The alerts in charts/stagescreen/files/alerts.yaml are written against these names.

One `Metrics` per operator, in kopf's memo: it holds its own registry (with the process, GC
and platform collectors the default registry would have), its series, and what it has
counted, so nothing lives in module globals and two operators in one process do not mix.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

import pandas as pd
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from stagescreen.outcomes.status import PHASES, StudyStatus
from stagescreen.study.spec import StudySpec
from stagescreen_contract.record import RunRecord
from stagescreen_contract.status import TERMINAL, RunStatus

STUDY = ("namespace", "study")
RUN_BUCKETS = (30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400, 172800)


@dataclass(frozen=True)
class StudySample:
    """What one reconcile observed of a study, for its metrics."""

    namespace: str
    study: str
    spec: StudySpec
    status: StudyStatus
    results: pd.DataFrame = field(compare=False, repr=False)
    records: Mapping[str, RunRecord] = field(repr=False)
    new: frozenset[str]  # run ids whose records this reconcile read first
    pending_by_pool: Mapping[str, int]
    waiting_by_reason: Mapping[tuple[str, str], int]  # (pool, reason) -> runs not started
    longest_running_s: float
    failed_analyses: tuple[str, ...]  # stages whose analysis Job failed for good
    reversals: Mapping[str, int] = field(default_factory=dict)  # stage -> its outcome's reversals


class Metrics:
    """The operator's metrics and the series it has set, per study (to forget them)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.runs = Gauge(
            "stagescreen_runs",
            "Planned runs by state.",
            [*STUDY, "stage", "pool", "status"],
            registry=self.registry,
        )
        self.run_seconds = Histogram(
            "stagescreen_run_duration_seconds",
            "Wall time of ended runs (start-up, training, evaluation).",
            ["pool"],
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.gpu_seconds = Gauge(
            "stagescreen_study_gpu_seconds",
            "GPU-seconds spent by ended runs.",
            [*STUDY, "pool"],
            registry=self.registry,
        )
        self.gpu_hours_limit = Gauge(
            "stagescreen_study_gpu_hours_limit",
            "The study's maxGpuHours.",
            STUDY,
            registry=self.registry,
        )
        self.transitions = Counter(
            "stagescreen_stage_transitions_total",
            "Stages entering a phase.",
            [*STUDY, "stage", "phase"],
            registry=self.registry,
        )
        self.best = Gauge(
            "stagescreen_study_best",
            "Mean metric of the study's best condition.",
            [*STUDY, "metric"],
            registry=self.registry,
        )
        self.last_progress = Gauge(
            "stagescreen_study_last_progress_timestamp_seconds",
            "When the study's last run ended.",
            STUDY,
            registry=self.registry,
        )
        self.longest_running = Gauge(
            "stagescreen_study_longest_running_budget_seconds",
            "The longest budget among the study's running runs.",
            STUDY,
            registry=self.registry,
        )
        self.phase = Gauge(
            "stagescreen_study_phase",
            "1 for the study's current phase.",
            [*STUDY, "phase"],
            registry=self.registry,
        )
        self.pending = Gauge(
            "stagescreen_jobs_pending",
            "Run Jobs whose pod is not ready (queued by Kueue, or no node can take it yet).",
            [*STUDY, "pool"],
            registry=self.registry,
        )
        self.waiting = Gauge(
            "stagescreen_runs_waiting",
            "Run Jobs whose pod has not started, by pool and reason (Unschedulable, "
            "ImagePullBackOff, FailedCreate, Queued, ...).",
            [*STUDY, "pool", "reason"],
            registry=self.registry,
        )
        self.analysis_failed = Gauge(
            "stagescreen_analysis_failed",
            "1 when a stage's analysis Job failed for good.",
            [*STUDY, "stage"],
            registry=self.registry,
        )
        self.reversals = Gauge(
            "stagescreen_rank_reversals",
            "Rank reversals of an analysed stage: pairs of an anchor and a condition its source "
            "stage ranked behind it, where the anchor loses (the outcome's reversals).",
            [*STUDY, "stage"],
            registry=self.registry,
        )
        self.errors = Counter(
            "stagescreen_reconcile_errors_total",
            "Reconciles that raised.",
            ["handler"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stagescreen_reconcile_duration_seconds",
            "Time one reconcile takes.",
            ["handler"],
            registry=self.registry,
        )
        self.last_reconcile = Gauge(
            "stagescreen_last_reconcile_timestamp_seconds",
            "When the operator last reconciled a study.",
            registry=self.registry,
        )
        self._server: WSGIServer | None = None
        self._phases: dict[tuple[str, str, str], str] = {}  # stage phases counted so far
        self._series: dict[tuple[str, str], set[tuple[Any, tuple[str, ...]]]] = {}

    def serve(self, port: int) -> None:
        """Start the /metrics endpoint (once)."""
        if self._server is None:
            self._server, _ = start_http_server(port, registry=self.registry)

    def stop(self) -> None:
        """Stop the /metrics endpoint, so the port is free for the next operator."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def record_study(self, sample: StudySample) -> None:
        """Set every metric of one study from one reconcile's observations."""
        spec, status, results, records = sample.spec, sample.status, sample.results, sample.records
        labels = {"namespace": sample.namespace, "study": sample.study}
        for record in (records[run_id] for run_id in sorted(sample.new)):
            if record.status in TERMINAL and record.wall_s:
                self.run_seconds.labels(pool=record.pool).observe(record.wall_s)
        if not results.empty:
            counts = results.groupby(["stage", "pool", "status"]).size()
            for stage in spec.stages:
                for pool in {str(p) for p in results.loc[results["stage"] == stage.name, "pool"]}:
                    for state in RunStatus:
                        value = int(counts.get((stage.name, pool, str(state)), 0))
                        self._set(
                            self.runs,
                            value,
                            **labels,
                            stage=stage.name,
                            pool=pool,
                            status=str(state),
                        )
        for pool, seconds in status.gpu_seconds.items():
            self._set(self.gpu_seconds, seconds, **labels, pool=pool)
        if spec.limits.max_gpu_hours is not None:
            self._set(self.gpu_hours_limit, spec.limits.max_gpu_hours, **labels)
        for name, now in status.stages.items():
            key = (sample.namespace, sample.study, name)
            if self._phases.get(key) != now.phase:  # a phase not counted yet
                self._phases[key] = now.phase
                self.transitions.labels(**labels, stage=name, phase=now.phase).inc()
                self._remember(self.transitions, **labels, stage=name, phase=now.phase)
        if status.best is not None:
            self._set(self.best, status.best.mean, **labels, metric=spec.metric.name)
        for phase in PHASES:
            self._set(self.phase, 1 if phase == status.phase else 0, **labels, phase=phase)
        for pool, count in sample.pending_by_pool.items():
            self._set(self.pending, count, **labels, pool=pool)
        for series, values in self._series.get((sample.namespace, sample.study), set()):
            if series is self.waiting:  # a reason seen before falls back to zero
                series.labels(*values).set(0)
        for (pool, reason), count in sample.waiting_by_reason.items():
            self._set(self.waiting, count, **labels, pool=pool, reason=reason)
        self._set(self.longest_running, sample.longest_running_s, **labels)
        failed = set(sample.failed_analyses)
        for stage in spec.stages:
            self._set(
                self.analysis_failed, 1 if stage.name in failed else 0, **labels, stage=stage.name
            )
        for stage in spec.stages:
            count = sample.reversals.get(stage.name, 0)
            self._set(self.reversals, count, **labels, stage=stage.name)
        ended = [pd.Timestamp(r.finished_at).timestamp() for r in records.values() if r.finished_at]
        if ended:
            self._set(self.last_progress, max(ended), **labels)
        self.last_reconcile.set(time.time())

    def forget_study(self, namespace: str, study: str) -> None:
        """Drop every series of a deleted study, so no alert fires for a study that is gone."""
        for series, values in self._series.pop((namespace, study), set()):
            series.remove(*values)
        for key in [key for key in self._phases if key[:2] == (namespace, study)]:
            del self._phases[key]

    def _remember(self, series: Any, **labels: str) -> None:
        values = tuple(labels.values())
        self._series.setdefault((labels["namespace"], labels["study"]), set()).add((series, values))

    def _set(self, gauge: Gauge, value: float, **labels: str) -> None:
        gauge.labels(**labels).set(value)
        self._remember(gauge, **labels)
