"""A study's status: what the operator writes to a ScreeningStudy's `status`, what
`stagescreen status` prints and what `stagescreen run` shows while it works.

One builder, `study_status`, makes it from the controller's view of the study (its phase and
reason, the results table of planned runs joined with their records) and the published stage
outcomes, so the resource, the command line and the progress display cannot disagree. The
models also generate the CRD's status schema (stagescreen.study.crd). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from stagescreen.kinds import KINDS, kind_of
from stagescreen.outcomes.model import StageOutcome
from stagescreen.planning.results import compute_seconds
from stagescreen.study.spec import StudySpec
from stagescreen_contract.status import TERMINAL, RunStatus

Phase = Literal["Pending", "Running", "Analyzing", "Succeeded", "Degraded", "Failed"]
PHASES: tuple[Phase, ...] = get_args(Phase)
ENDED: frozenset[Phase] = frozenset({"Succeeded", "Degraded", "Failed"})
"""Phases after which nothing more starts (running runs may still end)."""


class _Status(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
    )


class RunCounts(_Status):
    """How many planned runs are in each state."""

    total: int = Field(default=0, description="Runs planned so far.")
    pending: int = Field(default=0, description="Runs not started, or waiting to resume.")
    running: int = Field(default=0, description="Runs executing now.")
    succeeded: int = Field(default=0, description="Runs with a result.")
    failed: int = Field(default=0, description="Runs that failed.")
    diverged: int = Field(default=0, description="Runs stopped because the loss diverged.")

    @property
    def ended(self) -> int:
        return self.succeeded + self.failed + self.diverged


class BestCondition(_Status):
    """A stage's best condition at its longest budget: the outcome's `best`, and its stage.

    The interval is the one decisions quote (`Best.decision_interval`): selection-aware over
    the `candidates` it was picked from.
    """

    condition_id: str = Field(description="Condition id, e.g. c07.")
    stage: str = Field(description="Stage it was measured in.")
    role: str | None = Field(default=None, description="Anchor role, e.g. best or bridge.")
    budget_s: int = Field(description="Training budget of the measurement, in seconds.")
    pool: str = Field(description="Pool the runs ran on.")
    mean: float = Field(description="Mean metric over its seeds.")
    candidates: int | None = Field(
        default=None, description="How many conditions with results it was picked from."
    )
    ci_low: float | None = Field(
        default=None,
        description="Lower end of its 95% interval, selection-aware over the candidates.",
    )
    ci_high: float | None = Field(
        default=None,
        description="Upper end of its 95% interval, selection-aware over the candidates.",
    )


class StageStatus(_Status):
    """Progress and outcome of one stage."""

    phase: Phase = Field(default="Pending", description="Where the stage is.")
    runs: RunCounts = Field(default_factory=RunCounts, description="Run counts of this stage.")
    summary: str | None = Field(
        default=None, description="One-line outcome: retained factors, best, promoted anchors."
    )
    best: BestCondition | None = Field(default=None, description="The stage's best condition.")


class StatusCondition(_Status):
    """A Kubernetes-style condition."""

    type: str = Field(description="Condition type: Ready, Progressing, Degraded or Stalled.")
    status: Literal["True", "False", "Unknown"] = Field(description="Whether it holds.")
    reason: str | None = Field(default=None, description="CamelCase reason code.")
    message: str | None = Field(default=None, description="Human-readable detail.")
    last_transition_time: str | None = Field(
        default=None, description="When status last changed (RFC 3339)."
    )


class StudyStatus(_Status):
    """What the operator reports on a ScreeningStudy."""

    phase: Phase = Field(default="Pending", description="Where the study is.")
    message: str | None = Field(default=None, description="Why it is Degraded or Failed.")
    current_stage: str | None = Field(default=None, description="Stage running or analysed now.")
    progress: str | None = Field(default=None, description="Runs ended over planned, e.g. 12/48.")
    runs: RunCounts = Field(default_factory=RunCounts, description="Run counts of the study.")
    stages: dict[str, StageStatus] = Field(
        default_factory=dict, description="Per-stage progress, by stage name."
    )
    best: BestCondition | None = Field(
        default=None,
        description=(
            "The study's answer: the best of the last analysed stage (baselines only when no "
            "other stage has one)."
        ),
    )
    gpu_seconds: dict[str, float] = Field(
        default_factory=dict, description="GPU-seconds spent by ended runs, by pool."
    )
    run_seconds: dict[str, float] = Field(
        default_factory=dict, description="Wall-seconds of ended runs, by pool (CPU pools too)."
    )
    waiting: list[str] = Field(
        default_factory=list, description="Why stages or runs are held back, one line each."
    )
    report_uri: str | None = Field(default=None, description="Where the study report is.")
    conditions: list[StatusCondition] = Field(
        default_factory=list, description="Kubernetes-style conditions."
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation this status describes."
    )


REASONS = {"Degraded": "TooManyFailedRuns", "Failed": "StageUnplannable"}


def study_conditions(
    phase: Phase,
    message: str | None,
    *,
    stalled: str | None,
    previous: Sequence[StatusCondition],
    now: str,
    reason: str | None = None,
) -> list[StatusCondition]:
    """Ready, Progressing, Degraded and Stalled, each True or False with a reason; a
    condition keeps its lastTransitionTime while its status stays the same. `stalled` is
    why the study looks stalled, if it does; `reason` overrides the Degraded reason code."""
    ended = phase in ENDED
    wanted = [
        ("Ready", phase == "Succeeded", "Succeeded" if phase == "Succeeded" else phase, None),
        ("Progressing", not ended, "RunsInProgress" if not ended else phase, None),
        (
            "Degraded",
            phase in REASONS,
            (reason or REASONS[phase]) if phase in REASONS else "AsPlanned",
            message if phase in REASONS else None,
        ),
        ("Stalled", stalled is not None, "NoRunFinished" if stalled else "Progressing", stalled),
    ]
    before = {condition.type: condition for condition in previous}
    out = []
    for kind, holds, code, text in wanted:
        status: Literal["True", "False"] = "True" if holds else "False"
        old = before.get(kind)
        since = old.last_transition_time if old is not None and old.status == status else now
        out.append(
            StatusCondition(
                type=kind, status=status, reason=code, message=text, last_transition_time=since
            )
        )
    return out


def run_counts(status: pd.Series) -> RunCounts:
    """Counts of a results table's `status` column."""
    count = {state: int((status == str(state)).sum()) for state in RunStatus}
    return RunCounts(
        total=len(status),
        pending=count[RunStatus.PENDING] + count[RunStatus.INTERRUPTED],
        running=count[RunStatus.RUNNING],
        succeeded=count[RunStatus.SUCCEEDED],
        failed=count[RunStatus.FAILED],
        diverged=count[RunStatus.DIVERGED],
    )


def study_status(
    spec: StudySpec,
    phase: Phase,
    results: pd.DataFrame,
    outcomes: Mapping[str, StageOutcome],
    *,
    reason: str = "",
    waiting: Sequence[str] = (),
    report_uri: str | None = None,
    generation: int | None = None,
) -> StudyStatus:
    """The status of a study from the controller's phase (decided there alone, Pending and
    Analyzing included) and results table (planned runs joined with their records) and the
    outcomes published so far, by stage name."""
    status = results["status"] if not results.empty else pd.Series(dtype=object)
    stages = {
        stage.name: _stage_status(
            stage.name, status[results["stage"] == stage.name], outcomes.get(stage.name)
        )
        for stage in spec.stages
        if not results.empty and (results["stage"] == stage.name).any()
    }
    runs = run_counts(status)
    active = [name for name, s in stages.items() if s.phase in ("Running", "Analyzing")]
    analysed = [name for name in stages if name in outcomes]
    deciding = deciding_outcome(spec, outcomes)
    best = stages[deciding.stage].best if deciding and deciding.stage in stages else None
    run_seconds = compute_seconds(results)
    gpus = {pool.name: pool.gpus for pool in spec.pools}
    return StudyStatus(
        phase=phase,
        message=reason or None,
        current_stage=active[0] if active else (analysed[-1] if analysed else None),
        progress=f"{runs.ended}/{runs.total}",
        runs=runs,
        stages=stages,
        best=best,
        gpu_seconds={pool: s * gpus.get(pool, 1) for pool, s in run_seconds.items()},
        run_seconds=run_seconds,
        waiting=list(dict.fromkeys(waiting)),
        report_uri=report_uri,
        observed_generation=generation,
    )


def rehearsal(outcomes: Mapping[str, StageOutcome]) -> str | None:
    """SYNTHETIC when a stage's results came from `stagescreen simulate`'s planted model,
    REPLAY when from a table of measured runs (`simulate --table`); None for a study that
    trained. Printed before anything a rehearsal shows, so no line of it reads as real."""
    if any(outcome.synthetic for outcome in outcomes.values()):
        return "SYNTHETIC"
    if any(outcome.replay for outcome in outcomes.values()):
        return "REPLAY"
    return None


def rehearsed_status(
    spec: StudySpec,
    results: pd.DataFrame,
    outcomes: Mapping[str, StageOutcome],
    unreadable: Mapping[str, str],
) -> StudyStatus:
    """The status of a study `stagescreen simulate` wrote. It has no run records: every
    stage's results table and outcome were written at once, so its runs are the tables'
    rows and it has ended: Succeeded once every stage has its outcome, else Failed, naming
    each stage without one (`unreadable`: why a stage's outcome.json cannot be read)."""
    missing = [
        f"stage {stage.name}: "
        + (
            f"its outcome.json {unreadable[stage.name]}"
            if stage.name in unreadable
            else "no outcome"
        )
        for stage in spec.stages
        if stage.name not in outcomes
    ]
    reason = "; ".join(missing) + "; simulate the study again" if missing else ""
    return study_status(
        spec, "Failed" if missing else "Succeeded", results, outcomes, reason=reason
    )


def stage_phase(status: pd.Series, analysed: bool) -> Phase:
    """A stage's phase from its runs' states: Succeeded once analysed; Analyzing when every
    run has ended and it waits for its outcome; Running once a run started or ended."""
    if analysed:
        return "Succeeded"
    ended = status.isin([str(s) for s in TERMINAL])
    if len(status) and bool(ended.all()):
        return "Analyzing"
    if bool(ended.any()) or bool((status == str(RunStatus.RUNNING)).any()):
        return "Running"
    return "Pending"


def _stage_status(name: str, status: pd.Series, outcome: StageOutcome | None) -> StageStatus:
    runs = run_counts(status)
    phase = stage_phase(status, outcome is not None)
    best = None
    if outcome is not None and outcome.best is not None:
        low, high = outcome.best.decision_interval
        best = BestCondition(
            stage=name,
            ci_low=low,
            ci_high=high,
            **outcome.best.model_dump(
                include={"condition_id", "role", "budget_s", "pool", "mean", "candidates"}
            ),
        )
    return StageStatus(
        phase=phase,
        runs=runs,
        summary=stage_summary(outcome) if outcome is not None else None,
        best=best,
    )


def stage_summary(outcome: StageOutcome) -> str:
    """One line for a status table: retained factors (for a kind that fits effects), best,
    rank reversals, promoted anchors; the notes when it has none of these."""
    parts = []
    kind = KINDS.get(outcome.kind)
    if kind is not None and kind.fits_effects:
        parts.append("retained " + (", ".join(outcome.retained) or "none"))
    if outcome.best is not None:
        parts.append(f"best {outcome.best.condition_id} {outcome.best.mean:.4f}")
    for reversal in outcome.reversals:
        parts.append(f"reversal: {reversal.ahead} loses to {reversal.behind}")
    promoted = sorted({(p.role or "", p.condition_id) for p in outcome.promoted})
    if promoted:
        parts.append("promoted " + ", ".join(f"{r} {c}".strip() for r, c in promoted))
    return "; ".join(parts) or "; ".join(outcome.notes)


def deciding_outcome(spec: StudySpec, outcomes: Mapping[str, StageOutcome]) -> StageOutcome | None:
    """The outcome whose best answers the study: the last analysed stage, in spec order,
    that has a best. Later stages are chosen from earlier evidence and run longer; baselines
    (random, greedy, halving: `StageKind.baseline`) are comparisons, so they answer only when
    nothing else does. The status, the report and the command line all read the study's best
    from here."""
    analysed = [(s, outcomes[s.name]) for s in spec.stages if s.name in outcomes]
    with_best = [(s, o) for s, o in analysed if o.best is not None]
    preferred = [o for s, o in with_best if not kind_of(s).baseline]
    chosen = preferred or [o for _, o in with_best]
    return chosen[-1] if chosen else None
