"""The sections of a stage report, each rendered from one part of the stage's outcome.

`outcome_sections` lists a stage's titled sections in reading order, one for each part the
outcome holds: run counts, main effects and the retention they support, the two-factor and
pooled models, relaxation with budget, variance shares, the ranking and win counts, anchors
and promotions, the baselines' climbs, batches and ladders, and the best condition with its
evidence. Only the parts present get a section, so a screen's report has no ranking and a
random search's has no effect table. It reads the validated `StageOutcome`; a value the
analysis could not compute (None) prints as a dash.
"""

from __future__ import annotations

from collections.abc import Sequence

from stagescreen.families import EffectFamilies, Family, Relaxation
from stagescreen.formatting import (
    DASH,
    fmt_budget,
    fmt_count,
    fmt_effect,
    fmt_fixed,
    fmt_interval,
    fmt_levels,
    fmt_mean,
    fmt_p,
    fmt_text,
    md_table,
)
from stagescreen.jsonvalues import Scalar
from stagescreen.means import VarianceShare
from stagescreen.outcome import (
    AnchorRecord,
    Best,
    GreedySummary,
    HalvingSummary,
    PairWins,
    Promotion,
    RandomSummary,
    RankedCondition,
    StageOutcome,
    StageRuns,
)

RANKING_TOP, RANKING_BOTTOM = 5, 2
MISSING_SHOWN = 10


def outcome_sections(outcome: StageOutcome, goal: str) -> list[tuple[str, str]]:
    """(title, markdown) of each section the outcome supports, the best condition last."""
    sections: list[tuple[str, str]] = [("Runs", _runs_section(outcome.runs))]
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
                _effects_tables(EffectFamilies(families=outcome.pooled.deltas), (), judged=None),
            )
        )
    if outcome.relaxation:
        sections.append(("Relaxation with budget", _relaxation_section(outcome.relaxation)))
    if outcome.variance_shares:
        sections.append(("Variance shares", _variance_section(outcome.variance_shares)))
    if outcome.ranking:
        sections.append(("Ranking", _ranking_section(outcome.ranking)))
    if outcome.win_counts:
        sections.append(("Win counts", _win_section(outcome.win_counts, goal)))
    if outcome.anchors:
        sections.append(("Anchors", _anchor_rows(outcome.anchors)))
    if outcome.promoted:
        sections.append(("Promoted anchors", _anchor_rows(outcome.promoted)))
    if outcome.greedy is not None and outcome.greedy.climbs:
        sections.append(("Greedy climbs", _greedy_section(outcome.greedy)))
    if outcome.random is not None and outcome.random.batches:
        sections.append(("Random search", _random_section(outcome.random)))
    if outcome.halving is not None and outcome.halving.ladders:
        sections.append(("Successive halving", _halving_section(outcome.halving)))
    sections.append(("Best condition", best_section(outcome.best_per_pool)))
    return sections


def _runs_section(runs: StageRuns) -> str:
    missing = runs.missing
    table = md_table(
        ["planned", "succeeded", "failed", "missing"],
        [
            [
                fmt_count(runs.planned),
                fmt_count(runs.succeeded),
                fmt_count(runs.failed),
                str(len(missing)),
            ]
        ],
    )
    if missing:
        shown = ", ".join(f"`{m}`" for m in missing[:MISSING_SHOWN])
        more = f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
        table += f"\n\nMissing runs: {shown}{more}."
    return table


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
    document: EffectFamilies, retained: Sequence[str], *, judged: int | None
) -> str:
    """Each family's effects; the `retained` column only in the families retention reads
    (those at budget `judged`, the longest), so a tick is never shown where no decision was
    taken."""
    return "\n\n".join(_family_table(f, retained, judged) for f in document.families)


def _family_table(family: Family, retained: Sequence[str], judged: int | None) -> str:
    header = (
        f"**{_group_label(family.by)}** (n = {fmt_count(family.n)}, "
        f"residual df = {fmt_count(family.df_resid)})"
    )
    mark = judged is not None and family.budget == judged
    columns = ["term", "effect", "95% CI", "p", "q"] + (["retained"] if mark else [])
    rows = []
    for effect in family.effects:
        row = [
            f"`{fmt_text(effect.term)}`",
            fmt_effect(effect.effect),
            fmt_interval(effect.ci_low, effect.ci_high),
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
    for note in family.notes:
        block.append(f"\nNote: {fmt_text(note)}")
    return "\n".join(block)


def _retained_section(retained: Sequence[str], judged: int | None) -> str:
    at = f" at {fmt_budget(judged)}" if judged is not None else ""
    rule = f"interval excludes zero and q ≤ 0.05{at}"
    if not retained:
        return f"No factor retained: no main effect has its {rule}."
    return ", ".join(f"`{r}`" for r in retained) + f" ({rule})."


def _relaxation_section(rows: Sequence[Relaxation]) -> str:
    budgets = sorted({r.budget for r in rows if isinstance(r.budget, int | float)})
    groups: dict[tuple[str, str], dict[float, Relaxation]] = {}
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
            row.append(fmt_effect(cell.effect) + suffix)
        table.append(row)
    return (
        "Effect at each budget and its ratio to the effect at the shortest budget:\n\n"
        + md_table(header, table)
        + "\n\nA ratio is given only for an effect whose interval at the shortest budget "
        "excludes zero."
    )


def _variance_section(shares: Sequence[VarianceShare]) -> str:
    return md_table(
        ["term", "df", "sum of squares", "η²"],
        [
            [
                fmt_text(r.term),
                fmt_fixed(r.df, 0),
                fmt_fixed(r.sum_sq, 6),
                fmt_fixed(r.eta_sq, 4),
            ]
            for r in shares
        ],
    )


def _ranking_section(ranking: Sequence[RankedCondition]) -> str:
    groups: dict[tuple[int, str], list[RankedCondition]] = {}
    for entry in ranking:
        groups.setdefault((entry.budget_s, entry.pool), []).append(entry)
    blocks = []
    for (budget, pool), entries in sorted(groups.items()):
        entries.sort(key=lambda e: e.rank)
        shown = entries
        cut = len(entries) > RANKING_TOP + RANKING_BOTTOM
        if cut:
            shown = entries[:RANKING_TOP] + entries[-RANKING_BOTTOM:]
        rows = [
            [
                fmt_count(e.rank),
                f"`{fmt_text(e.condition_id)}`",
                fmt_text(e.role),
                fmt_count(e.n),
                _failures(e.failed, e.runs),
                fmt_mean(e.mean) + (" †" if e.adjusted else ""),
                fmt_mean(e.sd),
                fmt_interval(e.ci_low, e.ci_high, digits=6, signed=False),
            ]
            for e in shown
        ]
        if cut:
            rows.insert(RANKING_TOP, ["…"] * 8)
        title = f"budget {fmt_budget(budget)}" + (f", pool {pool}" if pool else "")
        note = f" (top {RANKING_TOP} and bottom {RANKING_BOTTOM} of {len(entries)})" if cut else ""
        header = ["rank", "condition", "role", "n", "failed", "mean", "sd", "95% CI"]
        blocks.append(f"**{title}**{note}\n\n" + md_table(header, rows))
    legend = (
        "A condition that failed or diverged on any run ranks behind every condition with a "
        "smaller failure share, then by mean."
    )
    if any(e.adjusted for e in ranking):
        legend += " † seed-adjusted mean: some conditions lost seeds, so means are compared "
        legend += "as if every condition had run every seed."
    return "\n\n".join([*blocks, legend])


def _failures(failed: int, runs: int) -> str:
    """`failed/runs` for a condition or anchor with failures, blank when it has none."""
    return f"{failed}/{runs}" if failed else ""


def _win_section(wins: Sequence[PairWins], goal: str) -> str:
    better = "<" if goal != "maximize" else ">"
    rows = [
        [
            fmt_budget(entry.budget_s),
            fmt_text(entry.pool),
            f"{fmt_text(entry.left)} {better} {fmt_text(entry.right)}",
            f"{entry.wins}/{entry.total}",
            fmt_count(entry.ties),
        ]
        for entry in wins
    ]
    return (
        md_table(["budget", "pool", "comparison", "wins", "ties"], rows)
        + "\n\nDescriptive cross-seed pairings (n_left × n_right), not independent trials."
    )


def _anchor_rows(entries: Sequence[AnchorRecord]) -> str:
    """Anchors of this stage (with their source) or promotions (with the stage they go to)."""
    promoted = any(isinstance(entry, Promotion) for entry in entries)
    rows = []
    for entry in entries:
        first = [fmt_text(entry.to_stage)] if isinstance(entry, Promotion) else []
        rows.append(
            first
            + [fmt_text(entry.role), f"`{fmt_text(entry.condition_id)}`", fmt_text(entry.rule)]
            + ([] if promoted else [fmt_text(entry.source)])
            + [fmt_levels(entry.levels), _failures(entry.failed, entry.runs)]
        )
    header = (["to stage"] if promoted else []) + ["role", "condition", "rule"]
    header += ([] if promoted else ["source"]) + ["levels", "failed at source"]
    text = md_table(header, rows)
    if any(entry.failed for entry in entries):
        text += "\n\nAn anchor with failures at its source was promoted despite them."
    return text


def _greedy_section(greedy: GreedySummary) -> str:
    rows = []
    for climb in greedy.climbs:
        at_best = next((s for s in climb.steps if s.step == climb.best_step), None)
        incumbent = (
            f"`{DASH}` {DASH}"
            if at_best is None
            else f"`{fmt_text(at_best.condition_id)}` {fmt_levels(at_best.levels)}"
        )
        rows.append(
            [
                fmt_budget(climb.budget_s),
                fmt_text(climb.pool),
                str(len(climb.steps)),
                fmt_count(climb.accepted),
                fmt_mean(climb.best),
                fmt_count(climb.best_step),
                incumbent,
            ]
        )
    return md_table(["budget", "pool", "steps", "accepted", "best", "best step", "incumbent"], rows)


def _random_section(random: RandomSummary) -> str:
    rows = [
        [
            fmt_count(b.batch),
            f"`{fmt_text(b.condition_id)}`",
            fmt_levels(b.levels),
            fmt_mean(b.best),
        ]
        for b in random.batches
    ]
    summary = (
        f"Batch best: mean {fmt_mean(random.mean_batch_best)}, "
        f"median {fmt_mean(random.median_batch_best)}, "
        f"min {fmt_mean(random.min_batch_best)}, "
        f"max {fmt_mean(random.max_batch_best)}."
    )
    return md_table(["batch", "winner", "levels", "best"], rows) + "\n\n" + summary


def _halving_section(halving: HalvingSummary) -> str:
    rows = []
    winners = []
    for ladder in halving.ladders:
        for rung in ladder.rungs:
            went_on = ", ".join(
                f"`{fmt_text(s.condition_id)}` {fmt_mean(s.mean)}" for s in rung.survivors
            )
            rows.append(
                [
                    fmt_budget(rung.budget_s),
                    fmt_text(ladder.pool),
                    fmt_count(rung.configurations),
                    went_on or DASH,
                ]
            )
        winner = ladder.winner
        if winner is not None:
            winners.append(
                f"Winner on {fmt_text(ladder.pool)}: "
                f"`{fmt_text(winner.condition_id)}` {fmt_levels(winner.levels)}, "
                f"mean {fmt_mean(winner.mean)} at {fmt_budget(winner.budget_s)}."
            )
    header = ["budget", "pool", "configurations", "went on (mean at this budget)"]
    keep = f"Each rung keeps the best 1/{fmt_count(halving.eta)}, rounded up."
    return "\n\n".join([md_table(header, rows), " ".join([keep, *winners])])


def _best_line(best: Best) -> str:
    """One best condition with its evidence: interval (not adjusted for the pick), failures,
    and the runner-up with the difference, its interval, the win count and, in words,
    whether the two are separated."""
    name = fmt_text(best.condition_id)
    role = f" ({best.role})" if best.role else ""
    pool = f" on {best.pool}" if best.pool else ""
    budget = fmt_budget(best.budget_s)
    settings = ", ".join(f"{k}={fmt_text(v)}" for k, v in best.hyperparameters.items())
    text = (
        f"`{name}`{role} at {budget}{pool}: mean {fmt_mean(best.mean)}"
        + (" (seed-adjusted)" if best.adjusted else "")
        + ", 95% CI "
        f"{fmt_interval(best.ci_low, best.ci_high, digits=6, signed=False)} "
        "(not adjusted for having been picked as best)"
        f"; levels {fmt_levels(best.levels)}" + (f"; {settings}" if settings else "")
    )
    if best.failed:
        failures = _failures(best.failed, best.runs).replace("/", " of ")
        text += f". It failed or diverged on {failures} runs"
    runner = best.runner_up
    if runner is None:
        return text + ". No other condition to compare with."
    other = fmt_text(runner.condition_id)
    gap = f"Runner-up `{other}` {fmt_mean(runner.mean)}, difference {fmt_effect(runner.difference)}"
    if runner.separated is None:
        verdict = f"fewer than two runs on a side: no interval, so `{name}` and `{other}` are not "
        verdict += f"distinguishable at {budget} from this stage"
    else:
        gap += f" (95% CI {fmt_interval(runner.ci_low, runner.ci_high)})"
        verdict = (
            f"`{name}` is ahead of `{other}` at {budget}"
            if runner.separated
            else f"`{name}` and `{other}` are not distinguishable at {budget}"
        )
    return f"{text}. {gap}; `{name}` wins {runner.wins}/{runner.total} seed pairings: {verdict}."


def best_section(bests: Sequence[Best]) -> str:
    """The best condition on each pool (`StageOutcome.best_per_pool`): the stage section's
    last part, and the study report's answer when this stage decides it."""
    return "\n".join(f"- {_best_line(best)}" for best in bests) or DASH
