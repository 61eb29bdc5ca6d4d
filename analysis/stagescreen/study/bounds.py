"""How large a study may be: every size a spec can ask for, bounded, in one place.

`stagescreen validate`, the admission webhook and every reconcile parse the spec the same
way (`study.parse.parse_study`), the last two under a webhook timeout and a 1 GiB limit. A
size that is only found out by building it (a 2^25 design matrix, a million seeds checked
pairwise, 2^k combinations of factor levels) could take any of them down, so each size is
checked by arithmetic on the spec before anything it sizes is built, and a spec over a bound
is refused with one problem naming the field, the size and the bound.

The bounds sit far above a real screening study (the paper's: 5 factors, a 16-run design,
10 stages of at most 5 seeds and 3 budgets, 584 runs, a longest budget of 24 h) and far below
what would make validation or planning slow: any spec the API server would store (about
1.5 MiB of YAML) is answered in well under a second. The model states the list bounds as
`maxItems` too, so the API server refuses such a spec before the webhook sees it.
"""

from __future__ import annotations

MAX_FACTORS = 16
"""Factors of a study (a resolution III fraction of 15 factors screens in 16 runs)."""

MAX_DESIGN_RUNS = 4096
"""Conditions of a two-level design (the screen's, a follow-up's): 2^12, a full factorial of
12 factors; more factors need a fraction."""

MAX_SEEDS = 1000
"""Seeds of one stage, as a list or a count."""

MAX_BUDGETS = 16
"""Budgets of one stage."""

MAX_BUDGET_S = 7 * 86400
"""Seconds of one budget: a week of training."""

MAX_STAGES = 32
"""Stages of a study."""

MAX_POOLS = 32
"""Pools of a study, and pools one stage names."""

MAX_SELECTIONS = 32
"""Selection rules of one stage."""

MAX_HYPERPARAMETERS = 64
"""Hyperparameters a study fixes (the trainer reads fewer variables than that)."""

MAX_NAME = 64
"""Characters of a factor's name (a trainer variable)."""

MAX_RUNS = 20_000
"""Runs of a study: every stage's most runs (conditions x budgets x seeds x pools) summed,
priced by the stage kinds before any plan is made."""

BOUNDS: dict[str, int] = {
    "factors per study": MAX_FACTORS,
    "conditions per design": MAX_DESIGN_RUNS,
    "stages per study": MAX_STAGES,
    "budgets per stage": MAX_BUDGETS,
    "seconds per budget (7 days)": MAX_BUDGET_S,
    "seeds per stage": MAX_SEEDS,
    "pools per study and per stage": MAX_POOLS,
    "selection rules per stage": MAX_SELECTIONS,
    "fixed hyperparameters": MAX_HYPERPARAMETERS,
    "runs per study": MAX_RUNS,
}
"""Every bound by what it counts, for the field reference (docs/spec.md)."""


class TooLarge(ValueError):
    """A size over its bound; the spec is not checked further (its size is the problem)."""

    def __init__(self, size: int, bound: int, what: str, unit: str = "") -> None:
        # With a unit, the value as written follows in the problem (`(got '100000h')`).
        got = f"this one is {size} {unit}" if unit else f"got {size}"
        super().__init__(f"at most {bound} {what} ({got})")
        self.size, self.bound = size, bound
