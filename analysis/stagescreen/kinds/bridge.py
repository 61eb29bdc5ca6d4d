"""`bridge`: anchors with factors moved to their centre level (rule bridge) (paper 4.6)."""

from __future__ import annotations

from stagescreen.kinds.anchored import AnchorKind


class Bridge(AnchorKind):
    """Anchors from `select` rules; see `anchored`."""

    name = "bridge"
