"""`stagescreen status`: where a study stands, from its store alone."""

from __future__ import annotations

import typer

from stagescreen_operator.cli.app import fail
from stagescreen_operator.cli.report import StudyFolder, open_study


def status(
    uri: StudyFolder,
) -> None:
    """Stage table (runs ended, failed, waiting of those planned, and each analysed stage's
    outcome), the best condition so far, compute spent per pool, and the runs started but
    not ended (stopped with a checkpoint to resume from).

    Example: stagescreen status runs/demo/quickstart
    """
    from stagescreen.storage.keys import StoreError
    from stagescreen_operator.local.progress import status_lines
    from stagescreen_operator.snapshot import snapshot

    try:
        store, study = open_study(uri)
    except (ValueError, StoreError) as error:
        raise fail(f"no study at {uri!r}: {error}") from None
    seen = snapshot(store, study)
    for line in status_lines(study.spec, seen.status):
        typer.echo(line)
    unfinished = sorted(seen.observed.interrupted)
    typer.echo("started, not ended: " + (", ".join(unfinished) if unfinished else "none"))
