"""`stagescreen manifests`: the Jobs the operator would create for a stage, without a cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from stagescreen_contract.variables import CORPUS_VOCAB, CORPUS_VOCAB_MIN
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
        str | None,
        typer.Option(
            metavar="NAMESPACE",
            help=(
                "Namespace the study is applied in. Default: the study's metadata.namespace, "
                "else default."
            ),
        ),
    ] = None,
    vocab: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=CORPUS_VOCAB_MIN,
            help="Vocabulary of the prepared corpus, when the spec names none.",
        ),
    ] = CORPUS_VOCAB,
) -> None:
    """Preview, as YAML, the Jobs the operator creates for a stage.

    What to read before applying the study and what a reviewer diffs; not for `kubectl
    apply`: the owner reference's uid is a placeholder (the operator fills in the study's
    own), and the output opens with a comment saying so. Stages that select anchors from
    earlier stages have Jobs only once those have run; ask for the first stage, or a screen.

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
    namespace = _namespace(namespace, study.metadata.namespace)
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
    typer.echo(
        f"# PREVIEW of the {len(jobs)} Jobs the StageScreen operator creates for stage "
        f"{chosen.name!r} of study {study.metadata.name!r} in namespace {namespace!r}.\n"
        f"# Not for `kubectl apply`: each Job's owner uid is a placeholder ({PLACEHOLDER_UID})"
        " that the operator replaces\n# with its ScreeningStudy's; apply the study itself and "
        "the operator creates these Jobs."
    )
    typer.echo(yaml.safe_dump_all(jobs, sort_keys=False), nl=False)


def _namespace(option: str | None, declared: str | None) -> str:
    """The namespace the Jobs land in: the study's own (metadata.namespace) unless --namespace
    names one, and the two must agree, as `kubectl apply` refuses an object whose namespace
    differs from its --namespace. Either must be a namespace Kubernetes accepts."""
    if option is not None and declared is not None and option != declared:
        raise fail(
            f"--namespace {option!r}: the study declares metadata.namespace {declared!r}; "
            "leave --namespace out, or change the study's namespace"
        )
    chosen, source = (
        (option, "--namespace")
        if option is not None
        else (declared or "default", "metadata.namespace")
    )
    from stagescreen.study.kube_rules import namespace

    try:
        return namespace(chosen)
    except ValueError as error:
        raise fail(f"{source}: {error}") from None
