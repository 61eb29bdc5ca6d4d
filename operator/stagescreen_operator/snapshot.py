"""One look at a study: observe its store, decide, read its outcomes, build its status.

    snapshot(store, study, running=...) -> Snapshot(observed, decision, outcomes, status)

`stagescreen status`, `stagescreen analyse`, the local executor and the Kubernetes operator
all see a study through this one function, so what each reports (the phase, the waiting
lines, the stage table) comes from the same steps in the same order. What is running, and on
Kubernetes which analyses failed, come from each executor's own processes or Jobs and are
passed in; everything else is read from storage here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from stagescreen.outcomes.model import StageOutcome
from stagescreen.outcomes.status import StudyStatus, study_status
from stagescreen.storage.publish import read_outcomes
from stagescreen.storage.store import Store
from stagescreen.study.spec import Study
from stagescreen_contract.record import RunRecord
from stagescreen_operator.controller import Decision, Observed, decide
from stagescreen_operator.observe import observe_store


@dataclass(frozen=True)
class Snapshot:
    """A study as seen now: what was observed, what the controller decided, the published
    outcomes by stage, and the status built from them."""

    observed: Observed
    decision: Decision
    outcomes: Mapping[str, StageOutcome]
    status: StudyStatus


def snapshot(
    store: Store,
    study: Study,
    *,
    running: frozenset[str] = frozenset(),
    failed_analyses: Mapping[str, str] | None = None,
    records: dict[str, RunRecord] | None = None,
    outcomes: dict[str, StageOutcome] | None = None,
    report_uri: str | None = None,
    generation: int | None = None,
) -> Snapshot:
    """Observe, decide and build the status once.

    `running`: run ids with a live process or Job (they are not interrupted, whatever their
    checkpoints say). `failed_analyses`: stage -> why its analysis ended without an outcome.
    `records` and `outcomes` are caches kept by a caller that looks again and again (a
    written record or published outcome never changes); both are updated in place.
    """
    stored = observe_store(store, study, records)
    observed = replace(
        stored,
        running=running,
        interrupted=stored.interrupted - running,
        failed_analyses=dict(failed_analyses or {}),
    )
    decision = decide(study.spec, observed)
    outcomes = {} if outcomes is None else outcomes
    readable, unreadable = read_outcomes(store, study, sorted(observed.analysed - set(outcomes)))
    outcomes.update(readable)
    waiting = [
        *decision.waiting,
        *(
            f"stage {stage}: its outcome.json {why}; remove it to have the stage analysed again"
            for stage, why in unreadable.items()
        ),
    ]
    status = study_status(
        study.spec,
        decision.phase,
        decision.results,
        outcomes,
        reason=decision.reason,
        waiting=waiting,
        report_uri=report_uri,
        generation=generation,
    )
    return Snapshot(observed, decision, outcomes, status)
