"""`stagescreen manifests`: the Jobs the operator would create for a stage, without a cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from stagescreen_contract.variables import CORPUS_VOCAB
from stagescreen_operator.cli.app import fail
from stagescreen_operator.cli.study_file import StudyFile, load_or_exit

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


def manifests(
    study_file: StudyFile,
    stage: Annotated[
        str | None,
        typer.Option(metavar="STAGE", help="Stage whose Jobs to print. Default: the first."),
    ] = None,
    namespace: Annotated[
        str, typer.Option(metavar="NAMESPACE", help="Namespace the study is applied in.")
    ] = "default",
    vocab: Annotated[
        int,
        typer.Option(
            metavar="N", help="Vocabulary of the prepared corpus, when the spec names none."
        ),
    ] = CORPUS_VOCAB,
) -> None:
    """Print, as YAML, the training Jobs the operator creates for one stage: what to read
    before `kubectl apply` and what a reviewer diffs. Stages that select anchors from earlier
    stages have Jobs only once those have run; ask for the first stage, or a screen.

    The owner reference's uid is a placeholder: the operator fills in the study's own.

    Example: stagescreen manifests examples/paper.yaml --stage screen > screen-jobs.yaml
    """
    import pandas as pd
    import yaml

    from stagescreen.planning.planner import plan_stage
    from stagescreen.planning.plans import PlanError
    from stagescreen_operator.corpus import corpus_uris
    from stagescreen_operator.kube.jobs import run_job

    study = load_or_exit(study_file)
    spec = study.spec
    chosen = (
        spec.stages[0] if stage is None else next((s for s in spec.stages if s.name == stage), None)
    )
    if chosen is None:
        names = ", ".join(s.name for s in spec.stages)
        raise fail(f"--stage {stage!r}: no such stage (stages: {names})")
    try:
        plan = plan_stage(spec, chosen, pd.DataFrame())
    except PlanError as error:
        raise fail(
            f"--stage {chosen.name!r}: its Jobs depend on earlier results: {error}"
        ) from None
    root = spec.storage.root().rstrip("/")
    corpus = corpus_uris(study, lambda key: f"{root}/{key}", vocab)
    jobs = [
        run_job(
            study,
            run,
            namespace=namespace,
            uid=PLACEHOLDER_UID,
            corpus=corpus,
        )
        for run in plan.runs
    ]
    typer.echo(yaml.safe_dump_all(jobs, sort_keys=False), nl=False)
