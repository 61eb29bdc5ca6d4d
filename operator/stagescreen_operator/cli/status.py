"""`stagescreen status`: where a study stands, from its store alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from stagescreen_operator.cli.app import fail
from stagescreen_operator.cli.report import StudyFolder, open_study

if TYPE_CHECKING:
    import pandas as pd

    from stagescreen.storage.store import Store
    from stagescreen.study.spec import Study


def status(
    uri: StudyFolder,
) -> None:
    """Where a study stands: stages, best so far, compute spent.

    The stage table (runs ended, failed, waiting of those planned, and each analysed stage's
    outcome), the best condition so far, compute spent per pool, and the runs started but not
    ended (stopped with a checkpoint to resume from). A study `simulate` wrote shows its
    simulated runs and stages, every line marked SYNTHETIC (REPLAY for `simulate --table`).

    Example: stagescreen status runs/demo/quickstart
    """
    from stagescreen.outcomes.status import rehearsal, rehearsed_status
    from stagescreen.storage.keys import StoreError
    from stagescreen.storage.publish import read_outcomes
    from stagescreen_operator.local.progress import status_lines
    from stagescreen_operator.snapshot import snapshot

    try:
        store, study = open_study(uri)
        seen = snapshot(store, study)
        word = rehearsal(seen.outcomes)
        if word is None or seen.observed.records:
            for line in status_lines(study.spec, seen.status):
                typer.echo(line)
            unfinished = sorted(seen.observed.interrupted)
            typer.echo("started, not ended: " + (", ".join(unfinished) or "none"))
            return
        lost = [stage.name for stage in study.spec.stages if stage.name not in seen.outcomes]
        _, unreadable = read_outcomes(store, study, lost)
        simulated = rehearsed_status(
            study.spec, _stage_results(store, study), seen.outcomes, unreadable
        )
    except (ValueError, StoreError) as error:
        raise fail(f"no study at {uri!r}: {error}") from None
    typer.echo(
        f"{word}: `stagescreen simulate` wrote this study; no model was trained "
        f"(`stagescreen report {uri}` renders it)"
    )
    for line in status_lines(study.spec, simulated):
        typer.echo(f"{word} {line}")


def _stage_results(store: Store, study: Study) -> pd.DataFrame:
    """Every stage's published results table, one after another: a simulated study's runs."""
    import pandas as pd

    from stagescreen.storage.keys import RESULTS, StudyKeys

    keys = StudyKeys(study.metadata.name)
    tables = [
        store.get_frame(keys.stage(stage.name, RESULTS))
        for stage in study.spec.stages
        if store.exists(keys.stage(stage.name, RESULTS))
    ]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
