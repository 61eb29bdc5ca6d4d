"""The environment a training run is started with: the run contract's input, from one place.

A pure function of the spec, the planned run and where the study's records live; the local
executor passes it to a subprocess and the Kubernetes Job builder to a container, so a run
gets the same variables wherever it runs. The trainer reads every hyperparameter by name
(docs/architecture.md, run contract) and passes the identity variables through into its record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from stagescreen.planning.plans import PlannedRun
from stagescreen.storage.keys import CKPT, StudyKeys
from stagescreen.study.spec import StudySpec


def run_environment(
    spec: StudySpec,
    study: str,
    run: PlannedRun,
    result_uri: str,
    corpus: Mapping[str, str],
) -> dict[str, str]:
    """Every variable of the run: fixed hyperparameters, the condition's decoded levels, the
    budget and seed, where its data, tokenizer, results and checkpoints are, and who it is.

    `result_uri` is the run's folder in the study's store (`Store.uri(run_folder(...))`);
    `corpus` holds DATA_URI and TOKENIZER_URI, the spec's own or
    those of a corpus the executor prepared.
    """
    variables: dict[str, object] = {**spec.trainer.hyperparameters, **run.hyperparameters}
    env = {name: _spelled(value) for name, value in variables.items()}
    result = result_uri.rstrip("/")
    env.update(
        TIME_BUDGET=str(run.budget_s),
        RUN_SEED=str(run.seed),
        DATA_URI=corpus["DATA_URI"],
        TOKENIZER_URI=corpus["TOKENIZER_URI"],
        RESULT_URI=result,
        CHECKPOINT_URI=f"{result}/{CKPT.rstrip('/')}",
        STUDY=study,
        STAGE=run.stage,
        RUN_ID=run.run_id,
        CONDITION_ID=run.condition_id,
        POOL=run.pool,
        CODED_LEVELS=json.dumps(dict(run.levels), sort_keys=True),
    )
    return {**spec.trainer.env, **env}


def run_folder(study: str, run: PlannedRun) -> str:
    """The store key of the folder a run's records live in (its RESULT_URI, via Store.uri)."""
    return StudyKeys(study).run_prefix(run.run_id).rstrip("/")


def _spelled(value: object) -> str:
    """A value as the trainer parses it: whole floats as integers (2.0 -> 2), booleans as 0/1."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
