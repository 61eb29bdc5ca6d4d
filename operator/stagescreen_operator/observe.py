"""What a study's store shows the controller: run records, runs stopped with a checkpoint and
no record (they resume), stages whose outcome is published. Shared by the local executor,
`stagescreen status` and the Kubernetes operator; what is running comes from each executor's
own processes or Jobs, never from here."""

from __future__ import annotations

from stagescreen.storage.keys import CKPT, OUTCOME, RESULT, StudyKeys
from stagescreen.storage.store import Store, open_store
from stagescreen.study.spec import SpecError, Study
from stagescreen_contract.record import RunRecord
from stagescreen_operator.controller import Observed
from stagescreen_operator.kube.admission import LOCAL_STORAGE


def observe_store(
    store: Store, study: Study, records: dict[str, RunRecord] | None = None
) -> Observed:
    """A study as its store shows it: run records, runs stopped with a checkpoint and no
    record (they resume), stages whose outcome is published. Nothing about processes.

    `records` caches records read before (a written record never changes) and is updated.
    """
    records = {} if records is None else records
    keys = StudyKeys(study.metadata.name)
    prefix = keys.runs_prefix()
    checkpointed = set()
    for key in store.list(prefix):
        run_id, _, name = key[len(prefix) :].partition("/")
        if name == RESULT and run_id not in records:
            records[run_id] = RunRecord.model_validate(store.get_json(key))
        elif name.startswith(CKPT):
            checkpointed.add(run_id)
    analysed = {
        stage.name for stage in study.spec.stages if store.exists(keys.stage(stage.name, OUTCOME))
    }
    return Observed(
        records=dict(records),
        interrupted=frozenset(checkpointed - set(records)),
        analysed=frozenset(analysed),
    )


def study_store(study: Study) -> Store:
    """The S3 store a cluster study names; credentials from this process's environment
    (AWS_* variables: the operator's, or the analysis Job's from the spec's Secret)."""
    s3 = study.spec.storage.s3
    if s3 is None:
        raise SpecError([LOCAL_STORAGE])
    return open_store(study.spec.storage.root(), endpoint_url=s3.endpoint, region=s3.region)
