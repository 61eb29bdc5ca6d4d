"""`stagescreen operator` and `stagescreen analyse`: the two commands of the operator image."""

from __future__ import annotations

from typing import Annotated

import typer

from stagescreen_operator.cli.app import fail


def operator(
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAMESPACE",
            help="Namespace to watch (repeat for several). Default: all namespaces.",
        ),
    ] = None,
    analysis_image: Annotated[
        str | None,
        typer.Option(metavar="IMAGE", help="Image of the analysis Jobs (this operator's image)."),
    ] = None,
    analysis_service_account: Annotated[
        str | None, typer.Option(metavar="NAME", help="ServiceAccount the analysis Jobs run as.")
    ] = None,
    liveness: Annotated[
        str | None,
        typer.Option(
            metavar="URL", help="Serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz"
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option(help="Debug logging.")] = False,
) -> None:
    """Run the Kubernetes operator (what `helm install` deploys).

    It reconciles every ScreeningStudy into training Jobs on its pools, analysis Jobs after
    each stage, and status.

    S3 credentials come from AWS_* variables; the cluster from the pod's ServiceAccount, or
    KUBECONFIG outside a cluster.

    Example: stagescreen operator --namespace ml-research
    """
    import dataclasses
    import os

    import kopf

    from stagescreen_operator.kube.cluster import NoCluster, load_config
    from stagescreen_operator.kube.handlers import operator_registry
    from stagescreen_operator.kube.settings import Settings

    try:  # once, here: kopf itself would retry its login forever
        load_config()
    except NoCluster as error:
        raise fail(str(error)) from None
    settings = Settings.from_env(os.environ)  # the chart's STAGESCREEN_* variables; flags win
    settings = dataclasses.replace(
        settings,
        analysis_image=analysis_image or settings.analysis_image,
        analysis_service_account=analysis_service_account or settings.analysis_service_account,
    )
    kopf.configure(verbose=verbose)
    kopf.run(
        registry=operator_registry(settings),
        standalone=True,
        clusterwide=not namespace,
        namespaces=namespace or [],
        liveness_endpoint=liveness,
    )


def analyse(
    study: Annotated[str, typer.Argument(metavar="STUDY", help="ScreeningStudy name.")],
    stage: Annotated[str, typer.Argument(metavar="STAGE", help="Stage whose runs have all ended.")],
    namespace: Annotated[
        str, typer.Option(metavar="NAMESPACE", help="Namespace of the study.")
    ] = "default",
) -> None:
    """Analyse a finished stage of a cluster study (its analysis Job).

    Reads its runs from S3, writes results.parquet, outcome.json and the report there, and
    patches the stage's outcome into the study's status.

    Example: stagescreen analyse paper screen --namespace ml-research
    """
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import MaxRetryError

    from stagescreen.outcomes.status import stage_summary
    from stagescreen.planning.results import stage_counts
    from stagescreen.reports.report import write_report
    from stagescreen.storage.publish import publish_stage
    from stagescreen.study.parse import parse_resource
    from stagescreen.study.spec import SpecError
    from stagescreen_contract.record import RunRecord
    from stagescreen_operator.kube.cluster import Cluster, NoCluster, load_config
    from stagescreen_operator.observe import study_store
    from stagescreen_operator.snapshot import snapshot

    try:
        load_config()
        cluster = Cluster()
        body = cluster.study(namespace, study)
    except NoCluster as error:
        raise fail(str(error)) from None
    except ApiException as error:
        if error.status == 404:
            raise fail(
                f"STUDY {study!r}: no ScreeningStudy of that name in namespace {namespace!r} "
                "(kubectl get screeningstudies -A lists them; --namespace picks another)"
            ) from None
        raise fail(
            f"reading ScreeningStudy {study!r}: the API server answered {error.status} "
            f"{error.reason}",
            1,
        ) from None
    except MaxRetryError as error:
        raise fail(
            f"cannot reach the Kubernetes API server ({error.reason}); check KUBECONFIG's "
            "server address or the cluster",
            1,
        ) from None
    try:
        parsed = parse_resource(body)
        store = study_store(parsed)
    except SpecError as error:
        raise fail(f"study {study!r}: {error}") from None
    if stage not in {s.name for s in parsed.spec.stages}:
        raise fail(f"STAGE {stage!r}: study {study!r} has no such stage")
    records: dict[str, RunRecord] = {}  # read once for both looks
    results = snapshot(store, parsed, records=records).decision.results
    counts = stage_counts(results, stage)
    if not counts.planned or counts.ended < counts.planned:
        raise fail(
            f"stage {stage!r} is not finished: {counts.ended} of {counts.planned} runs ended"
        )
    outcome = publish_stage(store, parsed, stage, results)
    report = write_report(store, study)[0]
    published = snapshot(store, parsed, records=records).status  # with the stage's outcome
    stage_status = published.stages[stage].model_dump(mode="json", exclude_none=True)
    cluster.patch_status(namespace, study, {"stages": {stage: stage_status}, "reportUri": report})
    typer.echo(f"stage {stage}: {stage_summary(outcome)}")
    typer.echo(f"report: {report}")
