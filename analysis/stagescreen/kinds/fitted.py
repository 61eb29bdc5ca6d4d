"""What screen and followup share: an outcome that fits factorial effects (paper 4.4, 5.1,
5.3), the factors those effects retain, and the report sections that read them.

The kinds differ in how they plan (the spec's design, or a full factorial over the factors a
follow-up leaves free) and in that a follow-up with `interactions` adds the two-factor and
pooled budget models; the effect tables, retention and relaxation with budget read the same.
"""

from __future__ import annotations

from collections.abc import Sequence

from stagescreen.kinds.base import Section, StageKind, StageResults
from stagescreen.outcomes.model import StageOutcome
from stagescreen.reports.formatting import (
    DASH,
    effect_digits,
    fmt_budget,
    fmt_count,
    fmt_effect,
    fmt_interval,
    fmt_p,
    fmt_text,
    md_table,
)
from stagescreen.statistics import families as fx
from stagescreen.statistics.noise import effect_floors
from stagescreen.statistics.retention import (
    free_factors,
    judged_budget,
    retained_factors,
    stage_families,
)
from stagescreen.storage.jsonvalues import Scalar


class EffectKind(StageKind):
    """A stage whose outcome fits main effects per budget (and pool) and retains factors."""

    fits_effects = True
    figures = ("effects.png",)

    def summarise(self, at: StageResults, out: StageOutcome) -> None:
        """Main effects per budget, the factors they retain, relaxation with budget."""
        factors = free_factors(at.spec, at.stage)
        families = stage_families(at.spec, at.stage, at.usable, factors)
        out.effects = fx.EffectFamilies(families=tuple(families))
        out.retained = retained_factors(families)
        out.retained_at = judged_budget(families)
        out.noise_floor = effect_floors(families, at.usable, at.spec.metric.name, factors)
        if at.usable["budget_s"].nunique() > 1:
            out.relaxation = fx.relaxation_table(families, "budget_s")

    def finding_sections(self, outcome: StageOutcome) -> list[Section]:
        sections: list[Section] = []
        if outcome.effects is not None and outcome.effects.families:
            judged = outcome.retained_at
            sections.append(
                ("Main effects", _effects_tables(outcome.effects, outcome.retained, judged=judged))
            )
            sections.append(("Retained factors", _retained_section(outcome.retained, judged)))
        if outcome.interactions is not None and outcome.interactions.families:
            sections.append(
                ("Two-factor model", _effects_tables(outcome.interactions, (), judged=None))
            )
        if outcome.pooled is not None and outcome.pooled.deltas:
            sections.append(
                (
                    "Pooled model: change in each effect against the shortest budget",
                    _effects_tables(
                        fx.EffectFamilies(families=outcome.pooled.deltas), (), judged=None
                    ),
                )
            )
        if outcome.relaxation:
            digits = effect_digits(outcome.effects.families if outcome.effects else ())
            sections.append(
                ("Relaxation with budget", _relaxation_section(outcome.relaxation, digits))
            )
        return sections


# --- report sections -------------------------------------------------------------------------


def _group_label(by: dict[str, Scalar]) -> str:
    """A family's heading from its grouping: "budget 10m, pool a100", "vs 2m" for a delta."""
    parts = []
    for key, value in by.items():
        if key in ("budget_s", "budget") and not isinstance(value, str):
            parts.append(f"budget {fmt_budget(value)}")
        elif key == "reference" and not isinstance(value, str):
            parts.append(f"vs {fmt_budget(value)}")
        else:
            parts.append(f"{key} {fmt_text(value)}")
    return ", ".join(parts) or "all runs"


def _effects_tables(
    document: fx.EffectFamilies, retained: Sequence[str], *, judged: int | None
) -> str:
    """Each family's effects; the `retained` column only in the families retention reads
    (those at budget `judged`, the longest), so a tick is never shown where no decision was
    taken."""
    return "\n\n".join(_family_table(f, retained, judged) for f in document.families)


def _family_table(family: fx.Family, retained: Sequence[str], judged: int | None) -> str:
    header = (
        f"**{_group_label(family.by)}** (n = {fmt_count(family.n)}, "
        f"residual df = {fmt_count(family.df_resid)})"
    )
    mark = judged is not None and family.budget == judged
    columns = ["term", "effect", "95% CI", "p", "q"] + (["retained"] if mark else [])
    digits = effect_digits([family])
    rows = []
    for effect in family.effects:
        row = [
            f"`{fmt_text(effect.term)}`",
            fmt_effect(effect.effect, digits),
            fmt_interval(effect.ci_low, effect.ci_high, digits),
            fmt_p(effect.p),
            fmt_p(effect.q),
        ]
        if mark:
            row.append("✓" if effect.term in retained else "")
        rows.append(row)
    block = [header, "", md_table(columns, rows)]
    if family.missing:
        block.append(f"\nMissing from this fit: {', '.join(family.missing)}.")
    if family.excluded:
        block.append(f"\n{len(family.excluded)} run(s) excluded (failed status or no value).")
    if family.q_scope != "family":
        block.append(f"\nq: {fmt_text(family.q_scope)}.")
    for note in family.notes:
        block.append(f"\nNote: {fmt_text(note)}")
    return "\n".join(block)


def _retained_section(retained: Sequence[str], judged: int | None) -> str:
    at = f" at {fmt_budget(judged)}" if judged is not None else ""
    if not retained:
        return (
            f"No factor retained: no main effect{at} has an interval excluding zero with q ≤ 0.05."
        )
    return ", ".join(f"`{r}`" for r in retained) + f" (interval excludes zero and q ≤ 0.05{at})."


def _relaxation_section(rows: Sequence[fx.Relaxation], digits: int) -> str:
    budgets = sorted({r.budget for r in rows if isinstance(r.budget, int | float)})
    groups: dict[tuple[str, str], dict[float, fx.Relaxation]] = {}
    for r in rows:
        if not isinstance(r.budget, int | float):
            continue
        group = ", ".join(f"{k} {fmt_text(v)}" for k, v in r.group.items())
        groups.setdefault((group, r.term), {})[r.budget] = r
    has_group = any(group for group, _ in groups)
    header = (["group"] if has_group else []) + ["term"] + [fmt_budget(b) for b in budgets]
    table = []
    for (group, term), cells in groups.items():
        row = ([group or DASH] if has_group else []) + [f"`{term}`"]
        for budget in budgets:
            cell = cells.get(budget)
            if cell is None:
                row.append(DASH)
                continue
            suffix = "" if cell.ratio is None else f" (×{cell.ratio:.2f})"
            row.append(fmt_effect(cell.effect, digits) + suffix)
        table.append(row)
    return (
        "Effect at each budget and its ratio to the effect at the shortest budget:\n\n"
        + md_table(header, table)
        + "\n\nA ratio is given only for an effect whose interval at the shortest budget "
        "excludes zero."
    )
