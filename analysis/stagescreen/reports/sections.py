"""The sections of a stage report, each rendered from one part of the stage's outcome.

`outcome_sections` lists a stage's titled sections in reading order: run counts, what the
stage's kind found (main effects and the retention they support, the two-factor and pooled
models, relaxation with budget, variance shares), the ranking and what the kind reads beside
it (win counts), anchors and promotions, the kind's search (the baselines' climbs, batches
and ladders), rank stability (when a pair of rankings has a tau or an anchor reversed),
and the best condition with its evidence. The shared sections are rendered
here, the kind's by its module in `stagescreen.kinds`. Only the parts present get a section.
It reads the validated `StageOutcome`; a value the analysis could not compute (None) prints
as a dash.
"""

from __future__ import annotations

from collections.abc import Sequence

from stagescreen.kinds.base import Section, StageKind
from stagescreen.outcomes.model import (
    AnchorRecord,
    Best,
    Promotion,
    RankedCondition,
    StageOutcome,
    StageRuns,
)
from stagescreen.reports.decision import (
    anchor_roles,
    behind_on_failures,
    failure_words,
    ranked_entry,
)
from stagescreen.reports.formatting import (
    DASH,
    best_digits,
    decimals,
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
    ranking_digits,
    se_from_interval,
)
from stagescreen.statistics.noise import NoiseFloor
from stagescreen.statistics.stability import Reversal
from stagescreen.storage.jsonvalues import json_number

RANKING_TOP, RANKING_BOTTOM = 5, 2
MISSING_SHOWN = 10


def outcome_sections(kind: StageKind, outcome: StageOutcome, goal: str) -> list[Section]:
    """(title, markdown) of each section the outcome supports, the best condition last: the
    shared ones here, the kind's (`StageKind.*_sections`) where it reads them."""
    sections: list[Section] = [("Runs", _runs_section(outcome.runs))]
    sections += kind.finding_sections(outcome)
    if outcome.noise_floor:
        sections.append(("Noise floor", _noise_section(outcome.noise_floor)))
    if outcome.ranking:
        sections.append(
            (
                "Ranking",
                _ranking_section(
                    outcome.ranking, ranking_digits(outcome), anchor_roles(outcome.anchors)
                ),
            )
        )
    sections += kind.ranking_sections(outcome, goal)
    if outcome.anchors:
        sections.append(("Anchors", _anchor_rows(outcome.anchors)))
    if outcome.promoted:
        sections.append(("Promoted anchors", _anchor_rows(outcome.promoted)))
    sections += kind.search_sections(outcome)
    if outcome.reversals or any(a.tau is not None for a in outcome.rank_agreement):
        sections.append(("Rank stability", stability_section(outcome)))
    sections.append(("Best condition", best_section(outcome)))
    return sections


def _runs_section(runs: StageRuns) -> str:
    """The stage's runs by state, adding up: planned = succeeded + diverged + failed +
    missing (no record) + pending (recorded, not ended)."""
    missing = runs.missing
    table = md_table(
        ["planned", "succeeded", "diverged", "failed", "missing", "pending"],
        [
            [
                fmt_count(runs.planned),
                fmt_count(runs.succeeded),
                fmt_count(runs.diverged),
                fmt_count(runs.failed),
                str(len(missing)),
                fmt_count(runs.pending),
            ]
        ],
    )
    if missing:
        shown = ", ".join(f"`{m}`" for m in missing[:MISSING_SHOWN])
        more = f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
        table += f"\n\nMissing runs: {shown}{more}."
    return table


def _noise_section(floors: Sequence[NoiseFloor]) -> str:
    """Each budget's run noise and the smallest contrast the stage detects (`statistics.noise`)."""
    pools = any(floor.pool for floor in floors)
    digits = decimals(floor.se for floor in floors)
    rows = [
        [fmt_budget(floor.budget_s)]
        + ([fmt_text(floor.pool)] if pools else [])
        + [
            fmt_mean(floor.sd, digits),
            fmt_count(floor.df),
            floor.contrast,
            fmt_mean(floor.se, digits),
            fmt_mean(floor.detectable, digits),
        ]
        for floor in floors
    ]
    header = ["budget", *(["pool"] if pools else []), "run sd", "df", "contrast", "se"]
    return (
        md_table([*header, "detectable"], rows)
        + "\n\nrun sd: the residual sd of one run under the stage's model (seeds blocked). "
        "detectable: the smallest contrast (a high-minus-low effect, or the difference of two "
        "conditions within seeds) that a two-sided test at alpha 0.05 finds with 80% power, "
        "(t(0.975, df) + t(0.8, df)) × se, before BH across the family; a dash: no residual "
        "df, so no run noise was measured."
    )


def _roles(role: str | None, roles: Sequence[str] | None) -> str:
    """Every role of a condition, listed together ("best, control"); a dash when none."""
    return ", ".join(roles) if roles else fmt_text(role)


def _ranking_section(
    ranking: Sequence[RankedCondition],
    precision: dict[tuple[int, str], int],
    roles: dict[str, list[str]],
) -> str:
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
        digits = precision[(budget, pool)]
        rows = [
            [
                fmt_count(e.rank),
                f"`{fmt_text(e.condition_id)}`",
                _roles(e.role, roles.get(e.condition_id)),
                fmt_count(e.n),
                _lost(e.failed, e.diverged, e.runs),
                fmt_mean(e.mean, digits) + (" †" if e.adjusted else ""),
                fmt_mean(e.sd, digits),
                fmt_interval(e.ci_low, e.ci_high, digits, signed=False),
            ]
            for e in shown
        ]
        if cut:
            rows.insert(RANKING_TOP, ["…"] * 8)
        title = f"budget {fmt_budget(budget)}" + (f", pool {pool}" if pool else "")
        note = f" (top {RANKING_TOP} and bottom {RANKING_BOTTOM} of {len(entries)})" if cut else ""
        header = ["rank", "condition", "role", "n", "lost", "mean", "sd", "95% CI"]
        blocks.append(f"**{title}**{note}\n\n" + md_table(header, rows))
    legend = (
        "lost: a condition's ended runs that diverged or failed, counted as the Runs table "
        "counts them. A condition that failed or diverged on any run ranks behind every "
        "condition with a smaller failure share, then by mean."
    )
    if any(e.adjusted for e in ranking):
        legend += " † seed-adjusted mean: some conditions lost seeds, so means are compared "
        legend += "as if every condition had run every seed."
    return "\n\n".join([*blocks, legend])


def _lost(failed: int, diverged: int, runs: int) -> str:
    """A ranked condition's lost runs by kind, as its stage's Runs table counts them ("1/2
    diverged", "1/3 failed, 1/3 diverged"); `failed` counts both (`RankedCondition`); blank
    when none."""
    crashed = failed - diverged
    parts = [f"{crashed}/{runs} failed"] if crashed else []
    parts += [f"{diverged}/{runs} diverged"] if diverged else []
    return ", ".join(parts)


def _failures(failed: int, runs: int) -> str:
    """`failed/runs` for a condition or anchor with failures, blank when it has none."""
    return f"{failed}/{runs}" if failed else ""


def _anchor_rows(entries: Sequence[AnchorRecord]) -> str:
    """Anchors of this stage (with their source) or promotions (with the stage they go to)."""
    promoted = any(isinstance(entry, Promotion) for entry in entries)
    rows = []
    for entry in entries:
        first = [fmt_text(entry.to_stage)] if isinstance(entry, Promotion) else []
        rows.append(
            first
            + [
                _roles(entry.role, anchor_roles([entry]).get(entry.condition_id)),
                f"`{fmt_text(entry.condition_id)}`",
                fmt_text(entry.rule),
            ]
            + ([] if promoted else [fmt_text(entry.source)])
            + [fmt_levels(entry.levels), _failures(entry.failed, entry.runs)]
        )
    header = (["to stage"] if promoted else []) + ["role", "condition", "rule"]
    header += ([] if promoted else ["source"]) + ["levels", "failed or diverged at source"]
    text = md_table(header, rows)
    if any(entry.failed for entry in entries):
        text += "\n\nAn anchor with failures at its source was promoted despite them."
    predictions = [_prediction(entry) for entry in entries if entry.rule == "predicted"]
    if predictions:
        text += "\n\n" + "\n".join(f"- {line}" for line in predictions)
    return text


def _prediction(entry: AnchorRecord) -> str:
    """What the `predicted` rule saw for one anchor: the metric the source's model predicts
    and whether the source ran the corner, or why it fell back to the best run condition."""
    name = f"{fmt_text(entry.role)} `{fmt_text(entry.condition_id)}`"
    if entry.note:
        return f"{name}: {entry.note}."
    ran = "run there" if entry.ran else "never run there"
    source = fmt_text(entry.source)
    return f"{name}: the model of {source} predicts {fmt_mean(entry.predicted)} ({ran})."


def _best_interval(best: Best, digits: int) -> str:
    """The best's 95% interval as the decision reads it: selection-aware over its `candidates`
    (Bonferroni), its own beside it; the own one alone, said to be unadjusted, in outcomes
    written before the selection-aware one existed. Without an interval (one run, or a
    seed-adjusted mean with no residual df) it says so in words."""
    if json_number(best.ci_low) is None or json_number(best.ci_high) is None:
        return "no 95% CI (too few runs to estimate one)"
    own = fmt_interval(best.ci_low, best.ci_high, digits, signed=False)
    if best.candidates is None:
        return f"95% CI {own} (not adjusted for having been picked as best)"
    if best.candidates == 1:
        return f"95% CI {own} (the only condition with a result)"
    aware = fmt_interval(best.selection_ci_low, best.selection_ci_high, digits, signed=False)
    return (
        f"95% CI {aware} as the best of {best.candidates} "
        f"(selection-aware, Bonferroni over the {best.candidates}; its own {own})"
    )


def _best_line(best: Best, outcome: StageOutcome, ranking: dict[tuple[int, str], int]) -> str:
    """One best condition with its evidence: its selection-aware interval, failures, and the
    runner-up with the paired difference, its interval, the win count and, in words, whether
    the two are separated; then each condition with a better mean that ranks behind it on
    failures, and why."""
    name = fmt_text(best.condition_id)
    roles = anchor_roles(outcome.anchors).get(best.condition_id)
    role = f" ({_roles(best.role, roles)})" if roles or best.role else ""
    pool = f" on {best.pool}" if best.pool else ""
    budget = fmt_budget(best.budget_s)
    settings = ", ".join(f"{k}={fmt_text(v)}" for k, v in best.hyperparameters.items())
    digits, gap_digits = best_digits(best, ranking)
    text = (
        f"`{name}`{role} at {budget}{pool}: mean {fmt_mean(best.mean, digits)}"
        + (" (seed-adjusted)" if best.adjusted else "")
        + f", {_best_interval(best, digits)}"
        f"; levels {fmt_levels(best.levels)}" + (f"; {settings}" if settings else "")
    )
    if best.failed:
        own = ranked_entry(outcome, best.budget_s, best.pool, best.condition_id)
        diverged = 0 if own is None else own.diverged
        text += f". It {failure_words(best.failed, diverged, best.runs)}"
    runner = best.runner_up
    if runner is None:
        return text + ". No other condition to compare with."
    better = "lower" if outcome.goal == "minimize" else "higher"
    why = "".join(
        f" `{fmt_text(e.condition_id)}` has the {better}"
        f" mean ({fmt_mean(e.mean, digits)}) but ranks behind `{name}` because it "
        f"{failure_words(e.failed, e.diverged, e.runs)}: a condition that failed or diverged "
        "ranks behind every condition with a smaller failure share."
        for e in behind_on_failures(best, outcome.ranking, outcome.goal)
    )
    other = fmt_text(runner.condition_id)
    gap = (
        f"Runner-up `{other}` {fmt_mean(runner.mean, digits)}, "
        f"difference {fmt_effect(runner.difference, gap_digits)}"
    )
    seeds = runner.seeds
    paired = "" if seeds is None else f"paired over {seeds} seed{'s' * (seeds != 1)}, "
    if runner.separated is None:
        reason = runner.reason or "fewer than two runs on a side"
        gap += f" ({paired.removesuffix(', ')})" if paired else ""
        verdict = f"{reason}: no interval, so `{name}` and `{other}` are not "
        verdict += f"distinguishable at {budget} from this stage"
    else:
        gap += f" ({paired}95% CI {fmt_interval(runner.ci_low, runner.ci_high, gap_digits)})"
        verdict = (
            f"`{name}` is ahead of `{other}` at {budget}"
            if runner.separated
            else f"`{name}` and `{other}` are not distinguishable at {budget}"
        )
    wins = f"`{name}` wins {runner.wins}/{runner.total} seed pairings"
    return f"{text}. {gap}; {wins}: {verdict}.{why}"


def best_section(outcome: StageOutcome) -> str:
    """The best condition on each pool (`StageOutcome.best_per_pool`), at the precision of its
    ranking table: the stage section's last part, and the study report's answer when this
    stage decides it."""
    ranking = ranking_digits(outcome)
    return (
        "\n".join(f"- {_best_line(best, outcome, ranking)}" for best in outcome.best_per_pool)
        or DASH
    )


def stability_section(outcome: StageOutcome) -> str:
    """Kendall's tau of each pair of rankings the stage compares, then its reversals, each
    in words (`StageOutcome.rank_agreement`, `.reversals`)."""
    rows = [
        [
            f"`{fmt_text(a.earlier)}` {fmt_budget(a.earlier_budget_s)} → "
            f"`{fmt_text(a.later)}` {fmt_budget(a.later_budget_s)}",
            fmt_text(a.pool),
            fmt_count(a.n),
            fmt_fixed(a.tau, 2),
            fmt_interval(a.ci_low, a.ci_high, digits=2),
            fmt_p(a.p) if a.reason is None else fmt_text(a.reason),
        ]
        for a in outcome.rank_agreement
    ]
    text = md_table(["rankings", "pool", "conditions", "tau", "95% CI", "p / why not"], rows)
    text += (
        "\n\nKendall's tau on the conditions both rankings hold; its interval is Fisher's z "
        "with the variance 0.437/(n-4) (from 5 conditions). A reversal: an anchor its source "
        "ranked ahead loses here by the paired t over the seeds both ran, its interval "
        "(Bonferroni over every such pair of the stage) excluding zero."
    )
    if outcome.reversals:
        return text + "\n\n" + "\n".join(f"- {reversal_line(r)}" for r in outcome.reversals)
    if outcome.anchors:
        text += "\n\nNo anchor lost here to a condition its source ranked behind it."
    return text


def reversal_line(reversal: Reversal) -> str:
    """One reversal in words, with the difference and its interval."""
    r = reversal
    ahead = f"`{fmt_text(r.ahead)}`" + (f" ({r.ahead_role})" if r.ahead_role else "")
    behind = f"`{fmt_text(r.behind)}` (" + (f"{r.behind_role}, " if r.behind_role else "")
    digits = decimals([se_from_interval(r.ci_low, r.ci_high, r.seeds - 1, r.level)])
    return (
        f"**Reversal**: {ahead}, ranked {r.ahead_rank} by `{fmt_text(r.source)}` at "
        f"{fmt_budget(r.source_budget_s)}, ahead of {behind}ranked {r.behind_rank}), loses to "
        f"it at {fmt_budget(r.budget_s)} on {fmt_text(r.pool)}: difference "
        f"{fmt_effect(r.difference, digits)} ({r.level:.2%} CI "
        f"{fmt_interval(r.ci_low, r.ci_high, digits)}, "
        f"paired over {r.seeds} seeds)."
    )
