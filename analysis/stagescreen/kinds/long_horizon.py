"""`long-horizon`: anchors rerun at long training budgets (paper 4.6)."""

from __future__ import annotations

from stagescreen.kinds.anchored import AnchorKind


class LongHorizon(AnchorKind):
    """Anchors from `select` rules; see `anchored`."""

    name = "long-horizon"
