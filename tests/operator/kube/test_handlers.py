"""What the kopf handlers do around a reconcile, without an API server."""

from __future__ import annotations

import logging

import kopf

from stagescreen_operator.kube.handlers import _reconcile, _unfinished
from stagescreen_operator.kube.metrics import Metrics


def test_a_study_being_deleted_is_not_reconciled_and_leaves_no_memo() -> None:
    """A Job event or a tick racing the deletion must not set the metrics the delete handler
    drops, nor keep a memo entry for a study that is going."""
    memo = kopf.Memo()
    memo.studies = {}
    memo.metrics = Metrics()
    body = {
        "metadata": {
            "name": "tiny",
            "namespace": "ml",
            "deletionTimestamp": "2026-12-06T09:00:00Z",
        },
        "spec": {"this": "is never parsed"},
    }
    assert _reconcile(body, memo, logging.getLogger("test"), "job_changed") == ({}, False)
    assert memo.studies == {}


def test_an_operator_restart_looks_again_only_at_studies_not_finished_for_their_spec() -> None:
    def study(phase: str | None, observed: int | None, generation: int = 2) -> kopf.Body:
        status = {"phase": phase, "observedGeneration": observed} if phase else {}
        return kopf.Body({"metadata": {"generation": generation}, "status": status})

    assert not _unfinished(study("Succeeded", 2))
    assert not _unfinished(study("Failed", 2))
    assert _unfinished(study("Succeeded", 1))  # its spec changed while no operator ran
    assert _unfinished(study("Running", 2))
    assert _unfinished(study("Degraded", 2))  # may still analyse what has ended
    assert _unfinished(study(None, None))
