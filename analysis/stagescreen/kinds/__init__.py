"""Stage kinds as plug-ins: one module per kind, registered in one table.

`KINDS` maps the `kind` a stage declares to the object that plans it, prices it, checks
its fields, summarises its outcome and says how its report reads (`base.StageKind`). Its
order is the order the CRD's enum and the spec's error messages list the kinds in. A new kind
is one new module here and one entry below; the spec accepts any registered name
(`study.checks` checks `kind` against this table, and `crd` writes the table's names as the
CRD's enum).
"""

from __future__ import annotations

from stagescreen.kinds.base import StageKind
from stagescreen.kinds.bridge import Bridge
from stagescreen.kinds.confirm import Confirm
from stagescreen.kinds.followup import Followup
from stagescreen.kinds.greedy import Greedy
from stagescreen.kinds.halving import Halving
from stagescreen.kinds.long_horizon import LongHorizon
from stagescreen.kinds.random import Random
from stagescreen.kinds.screen import Screen
from stagescreen.study.spec import Stage

KINDS: dict[str, StageKind] = {
    kind.name: kind
    for kind in (
        Screen(),
        Confirm(),
        Followup(),
        Bridge(),
        LongHorizon(),
        Random(),
        Greedy(),
        Halving(),
    )
}
"""Every stage kind by the name a spec gives it."""


def kind_of(stage: Stage) -> StageKind:
    """The plug-in of a validated stage (the spec only accepts registered kinds)."""
    return KINDS[stage.kind]
