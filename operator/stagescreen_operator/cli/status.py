"""`stagescreen status`: where a study stands, from its store alone."""

from __future__ import annotations

import typer

from stagescreen_operator.cli.app import fail
from stagescreen_operator.cli.report import StudyFolder, split_study_uri


def status(
    uri: StudyFolder,
) -> None:
    """Stage table (runs ended, failed, waiting of those planned, and each analysed stage's
    outcome), the best condition so far, compute spent per pool, and the runs started but
    not ended (stopped with a checkpoint to resume from).

    Example: stagescreen status runs/demo/quickstart
    """
    import yaml

    from stagescreen.storage.keys import SPEC, StoreError, StudyKeys
    from stagescreen.storage.store import open_store
    from stagescreen.study.parse import parse_study
    from stagescreen_operator.local.progress import status_lines
    from stagescreen_operator.snapshot import snapshot

    try:
        root, name = split_study_uri(uri)
        store = open_store(root)
        keys = StudyKeys(name)
        if not store.exists(keys.spec()):
            raise fail(f"no study at {uri!r} (expected {SPEC} there)")
        study = parse_study(yaml.safe_load(store.get_text(keys.spec())))
    except (ValueError, StoreError) as error:
        raise fail(f"DIR_OR_S3_URI {uri!r}: {error}") from None
    seen = snapshot(store, study)
    for line in status_lines(study.spec, seen.status):
        typer.echo(line)
    unfinished = sorted(seen.observed.interrupted)
    typer.echo("started, not ended: " + (", ".join(unfinished) if unfinished else "none"))
