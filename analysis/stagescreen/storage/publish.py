"""Writing a stage's records to storage: results table, outcome, manifest, spec.

The one place where analysis meets the store (docs/architecture.md "Storage"), shared by the
analysis Job, the local executor and `stagescreen simulate`; everything it writes is computed by the
pure `stagescreen.outcomes.analyse` and `stagescreen.outcomes.manifest` functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

import pandas as pd
import yaml
from pydantic import BaseModel, ValidationError

from stagescreen.outcomes.analyse import stage_outcome
from stagescreen.outcomes.manifest import manifest
from stagescreen.outcomes.model import StageOutcome
from stagescreen.storage.keys import OUTCOME, RESULT, RESULTS, StudyKeys, UnreadableObject
from stagescreen.study.spec import Study
from stagescreen_contract.record import RunRecord

if TYPE_CHECKING:
    from stagescreen.storage.store import Store


def publish_spec(store: Store, study: Study) -> None:
    """The spec the study ran with, as YAML, so a report can be rebuilt from storage alone."""
    document = study.model_dump(mode="json", by_alias=True, exclude_none=True)
    store.put_text(StudyKeys(study.metadata.name).spec(), yaml.safe_dump(document, sort_keys=False))


def publish_stage(store: Store, study: Study, stage: str, results: pd.DataFrame) -> StageOutcome:
    """Write the stage's results.parquet, refresh the manifest, then write outcome.json.

    The outcome goes last because its presence is what marks a stage analysed: a publish cut
    short anywhere leaves the stage unanalysed, and the controller analyses it again.
    """
    name = study.metadata.name
    keys = StudyKeys(name)
    spec = study.spec
    mine = results[results["stage"] == stage].reset_index(drop=True)
    record = stage_outcome(spec, spec.stage(stage), results, name)
    store.put_frame(keys.stage(stage, RESULTS), mine)
    store.put_json(keys.manifest(), manifest(spec, results, name).model_dump(mode="json"))
    store.put_json(keys.stage(stage, OUTCOME), record.to_json())
    return record


def publish_record(store: Store, record: RunRecord) -> None:
    """A run record an executor writes for a run whose trainer could not (killed, lost with
    its Job), where the trainer would have written it: the controller never starts it again."""
    store.put_json(
        StudyKeys(record.study).run(record.run_id, RESULT), record.model_dump(mode="json")
    )


Model = TypeVar("Model", bound=BaseModel)


def read_record(store: Store, key: str, model: type[Model]) -> tuple[Model | None, str | None]:
    """The record stored at `key` validated as `model`, else None with why: None when nothing
    is stored there, the validation error's first line when what is stored does not fit,
    where it is and why when it is not JSON.

    Every reader of a stored outcome or manifest goes through here, so a record an older or
    broken writer left is reported the same way everywhere instead of failing one reader.
    """
    if not store.exists(key):
        return None, None
    try:
        return model.model_validate(store.get_json(key)), None
    except UnreadableObject as error:
        return None, f"at {error.uri} cannot be read: {error.reason}"
    except ValidationError as error:
        count = error.error_count()
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        return None, f"does not fit the record ({count} error(s); first at {where}: {first['msg']})"


def read_outcomes(
    store: Store, study: Study, stages: Iterable[str]
) -> tuple[dict[str, StageOutcome], dict[str, str]]:
    """The published outcomes of `stages` by stage name, and why each one that does not
    validate cannot be read."""
    keys = StudyKeys(study.metadata.name)
    outcomes: dict[str, StageOutcome] = {}
    unreadable: dict[str, str] = {}
    for stage in stages:
        outcome, why = read_record(store, keys.stage(stage, OUTCOME), StageOutcome)
        if outcome is not None:
            outcomes[stage] = outcome
        elif why is not None:
            unreadable[stage] = why
    return outcomes, unreadable
