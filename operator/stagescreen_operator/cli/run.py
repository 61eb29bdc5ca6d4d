"""`stagescreen run`: a whole study on this machine, resumable, with progress."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from stagescreen_contract.variables import CORPUS_VOCAB, CORPUS_VOCAB_MIN
from stagescreen_operator.cli.app import fail
from stagescreen_operator.cli.outputs import output_store
from stagescreen_operator.cli.study_file import StudyFile, load_or_exit

if TYPE_CHECKING:
    from stagescreen.study.spec import Study


def run(
    study_file: StudyFile,
    store: Annotated[
        str | None,
        typer.Option(
            metavar="DIR_OR_S3_URI",
            help="Where records go: a directory or s3://bucket/prefix. Default: the spec's "
            "storage, else ./runs.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            min=1,
            help="Runs at once on this machine, in place of the study's limits.parallelism "
            "(the default). On CPU they share the cores; on CUDA each takes one visible GPU, "
            "so at most that many run.",
        ),
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            metavar="cpu|cuda", help="cpu, or cuda (one run per visible GPU, bf16, compiled)."
        ),
    ] = "cpu",
    vocab: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=CORPUS_VOCAB_MIN,
            help="Vocabulary of the corpus prepared when the spec names none.",
        ),
    ] = CORPUS_VOCAB,
) -> None:
    """Train every stage of a study on this machine, then report.

    Plans each stage, runs the trainers, analyses the stage, promotes its anchors, and
    writes the report.

    Kill it at any point (Ctrl-C checkpoints the running trainers; even SIGKILL loses at most
    a checkpoint interval) and run the same command again: finished runs are kept, interrupted
    ones resume, and the study ends with the same runs as an uninterrupted one.

    Example: stagescreen run examples/quickstart.yaml
    """
    from datetime import UTC, datetime

    from stagescreen.storage.keys import StoreError
    from stagescreen.storage.ownership import claim_folder
    from stagescreen_operator.corpus import corpus_for
    from stagescreen_operator.local.executor import LocalExecutor
    from stagescreen_operator.local.progress import progress_events

    study = load_or_exit(study_file)
    spec = study.spec
    if device not in ("cpu", "cuda"):
        raise fail(f"--device={device!r}: expected cpu or cuda")
    root, endpoint = (store, None) if store else _storage(study)
    opened = output_store("--store", root, endpoint_url=endpoint)
    try:
        refusal = claim_folder(opened, study, uid=None, now=datetime.now(UTC))
    except StoreError as error:
        raise fail(f"--store={root!r}: {error}") from None
    if refusal is not None:  # another spec's runs: nothing of the folder is read
        raise fail(f"--store={root!r}: {refusal}")
    gpus = _visible_gpus() if device == "cuda" else []
    if device == "cuda" and not gpus:
        raise fail("--device=cuda: no CUDA device is visible; use --device cpu")
    slots = runs_at_once(spec.limits.parallelism, workers, len(gpus))
    events = progress_events(study, slots)
    corpus = corpus_for(study, opened, vocab, events.say)
    limits = spec.limits.model_copy(update={"parallelism": slots})
    executor = LocalExecutor(
        study.model_copy(update={"spec": spec.model_copy(update={"limits": limits})}),
        opened,
        corpus,
        workers=slots,
        device=device,
        gpus=gpus,
        events=events,
        extra_env={"AWS_ENDPOINT_URL": endpoint} if endpoint else {},
    )
    try:
        decision = executor.run()
    finally:
        events.close()
    reason = f" ({decision.reason})" if decision.reason else ""
    typer.echo(f"study {study.metadata.name}: {decision.phase}{reason}")
    if decision.phase in ("Failed", "Degraded"):
        raise typer.Exit(1)
    if not decision.ended:  # stopped by Ctrl-C
        typer.echo(f"stopped; run the same command again to resume: stagescreen run {study_file}")
        raise typer.Exit(130)


def runs_at_once(parallelism: int, workers: int | None, gpus: int) -> int:
    """One meaning of "runs at once": the study's limits.parallelism unless --workers sets
    another number for this machine; on CUDA (`gpus` visible, else 0) a GPU runs one at a
    time, so never more than there are."""
    wanted = parallelism if workers is None else workers
    return min(wanted, gpus) if gpus else wanted


def _visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ids for CUDA_VISIBLE_DEVICES."""
    import os

    import torch

    count = torch.cuda.device_count()
    listed = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def _storage(study: Study) -> tuple[str, str | None]:
    """The store root the spec names and its S3 endpoint, if any."""
    storage = study.spec.storage
    return storage.root(), storage.s3.endpoint if storage.s3 is not None else None
