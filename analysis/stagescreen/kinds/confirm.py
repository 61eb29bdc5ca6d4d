"""`confirm`: the screen's best (and contrasts) rerun with more seeds (paper 4.6)."""

from __future__ import annotations

from stagescreen.kinds.anchored import AnchorKind


class Confirm(AnchorKind):
    """Anchors from `select` rules; see `anchored`."""

    name = "confirm"
