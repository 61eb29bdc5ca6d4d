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

from collections.abc import Iterable

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

MAX_RUNS = 10_000
"""Runs of a study: every stage's most runs (conditions x budgets x seeds x pools) summed,
priced by the stage kinds before any plan is made. 17 times the paper's; the controller
re-plans every stage at each reconcile, which takes about a second per 5,000 runs of a
paper-shaped study (measured on 2 busy cores), so this also bounds a reconcile."""

MAX_PROBLEMS = 100
"""Problems listed for one spec: a spec with more (a map of 100,000 unknown keys) is refused
naming its largest part, as listing every problem would cost more than checking the spec."""

MAX_FILE_BYTES = 256 * 1024
"""Bytes of a study file `stagescreen validate` reads (a real one is a few KiB; the paper's
is 6 KiB)."""

MAX_VALUES = 200_000
"""Values of a study file once its YAML aliases are expanded: more than a file of
`MAX_FILE_BYTES` can spell out, so only an alias bomb reaches it."""

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
    "problems listed per spec": MAX_PROBLEMS,
    "bytes per study file": MAX_FILE_BYTES,
}
"""Every bound by what it counts, for the field reference (docs/spec.md)."""


def largest_part(document: object, enough: int) -> tuple[tuple[int | str, ...], int]:
    """The path and the number of entries of the first list or map in a parsed document
    holding more than `enough` entries, else of its largest; found in one walk without
    recursion (any depth is safe). A path is kept as a chain of (parent, key) links and
    spelled out only for the part found."""
    best: tuple[_Link, int] = (None, 0)
    stack: list[tuple[_Link, object]] = [(None, document)]
    while stack:
        link, node = stack.pop()
        if isinstance(node, dict):
            entries: Iterable[tuple[object, object]] = node.items()
        elif isinstance(node, list):
            entries = enumerate(node)
        else:
            continue
        if len(node) > best[1]:
            best = (link, len(node))
        if len(node) > enough:
            break
        for key, value in entries:
            if isinstance(value, dict | list):
                stack.append(((link, key if isinstance(key, int) else str(key)), value))
    path: list[int | str] = []
    link = best[0]
    while link is not None:
        link, key = link
        path.append(key)
    return tuple(reversed(path)), best[1]


_Link = tuple["_Link", int | str] | None
"""A path as (parent's path, key), so a walk need not copy a path for every part."""


def count_values(document: object, cap: int) -> int:
    """Values in a parsed document (every map entry, list item and scalar), counting a part
    shared by YAML aliases each time it is used; the walk stops once past `cap`, so a
    document that expands to billions of values costs no more than one of `cap`."""
    count = 0
    stack = [document]
    while stack and count <= cap:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack += node.values()
        elif isinstance(node, list):
            stack += node
    return count + len(stack)


class TooLarge(ValueError):
    """A size over its bound; the spec is not checked further (its size is the problem)."""

    def __init__(self, size: int, bound: int, what: str, unit: str = "") -> None:
        # With a unit, the value as written follows in the problem (`(got '100000h')`).
        got = f"this one is {size} {unit}" if unit else f"got {size}"
        super().__init__(f"at most {bound} {what} ({got})")
        self.size, self.bound = size, bound
