"""Writing a stage's records to storage: results table, outcome, manifest, spec.

The one place where analysis meets the store (DESIGN.md "Storage"), shared by the analysis
Job, the local executor and `stagescreen simulate`; everything it writes is computed by the
pure `stagescreen.outcome` functions.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import yaml

from stagescreen import outcome
from stagescreen.spec import Study
from stagescreen.store import OUTCOME, RESULTS, Store, StudyKeys


def publish_spec(store: Store, study: Study) -> None:
    """The spec the study ran with, as YAML, so a report can be rebuilt from storage alone."""
    document = study.model_dump(mode="json", by_alias=True, exclude_none=True)
    store.put_text(StudyKeys(study.metadata.name).spec(), yaml.safe_dump(document, sort_keys=False))


def publish_stage(store: Store, study: Study, stage: str, results: pd.DataFrame) -> dict[str, Any]:
    """Write the stage's results.parquet and outcome.json and refresh the manifest."""
    name = study.metadata.name
    keys = StudyKeys(name)
    spec = study.spec
    mine = results[results["stage"] == stage].reset_index(drop=True)
    store.put_frame(keys.stage(stage, RESULTS), mine)
    record = outcome.stage_outcome(spec, spec.stage(stage), results, name)
    store.put_json(keys.stage(stage, OUTCOME), record)
    store.put_json(keys.manifest(), outcome.manifest(spec, results, name))
    return record
