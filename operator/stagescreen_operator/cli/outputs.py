"""Opening where a command writes (`--out`, `--store`): refused before any work is done when
a file stands where the folder would be or the folder cannot be written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stagescreen_operator.cli.app import fail

if TYPE_CHECKING:
    from collections.abc import Callable

    from stagescreen.storage.store import Store


def output_store(
    option: str,
    uri: str,
    *,
    endpoint_url: str | None = None,
    refuse: Callable[[Store], None] | None = None,
) -> Store:
    """The store at `uri`, its folder created, or exit 2 with one `error: OPTION 'URI': ...`
    line saying what to give instead (a folder, an s3://bucket/prefix). `refuse` is the
    command's own check of the place (it exits to refuse), run before anything is created."""
    from stagescreen.storage.keys import StoreError
    from stagescreen.storage.store import open_store, ready_to_write

    try:
        store = open_store(uri, endpoint_url=endpoint_url)
    except StoreError as error:
        raise fail(f"{option} {uri!r}: {error}") from None
    if refuse is not None:
        refuse(store)
    problem = ready_to_write(store)
    if problem is not None:
        raise fail(f"{option} {uri!r}: {problem}")
    return store
