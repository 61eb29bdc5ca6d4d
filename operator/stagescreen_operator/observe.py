"""What a study's store shows the controller: run records, runs stopped with a checkpoint and
no record (they resume), stages whose outcome is published. Shared by the local executor,
`stagescreen status` and the Kubernetes operator; what is running comes from each executor's
own processes or Jobs, never from here."""

from __future__ import annotations

from stagescreen.planning.results import with_image_digest
from stagescreen.storage.keys import CKPT, IMAGE, OUTCOME, RESULT, StudyKeys
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
    A record read here without an image digest takes the one the kube operator wrote beside
    it (`IMAGE`), if any: the trainer cannot see its own image.
    """
    records = {} if records is None else records
    keys = StudyKeys(study.metadata.name)
    prefix = keys.runs_prefix()
    checkpointed, imaged, new = set(), set(), {}
    for key in store.list(prefix):
        run_id, _, name = key[len(prefix) :].partition("/")
        if name == RESULT and run_id not in records:
            new[run_id] = key
        elif name == IMAGE:
            imaged.add(run_id)
        elif name.startswith(CKPT):
            checkpointed.add(run_id)
    for run_id, key in new.items():
        record = RunRecord.model_validate(store.get_json(key))
        if run_id in imaged:
            record = with_image_digest(record, store.get_text(keys.run(run_id, IMAGE)).strip())
        records[run_id] = record
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
