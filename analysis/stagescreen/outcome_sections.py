"""The sections of a stage report, each rendered from one part of the stage's outcome.json.

`outcome_sections` lists a stage's titled sections in reading order, one for each part the
outcome holds: run counts, main effects and the retention they support, the two-factor and
pooled models, relaxation with budget, variance shares, the ranking and win counts, anchors
and promotions, the baselines' climbs, batches and ladders, and the best condition with its
evidence. Only the parts present get a section, so a screen's report has no ranking and a
random search's has no effect table. Every value is read defensively (`stagescreen.formatting`):
a null prints as a dash and never stops the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from stagescreen.formatting import (
    DASH,
    as_list,
    as_mapping,
    families,
    family_budget,
    finite,
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

RANKING_TOP, RANKING_BOTTOM = 5, 2
MISSING_SHOWN = 10


def outcome_sections(outcome: Mapping[str, Any], goal: str) -> list[tuple[str, str]]:
    """(title, markdown) of each section the outcome supports, the best condition last."""
    retained = [str(r) for r in as_list(outcome.get("retained"))]
    sections: list[tuple[str, str]] = [("Runs", _runs_section(outcome))]
    if families(outcome.get("effects")):
        judged = finite(outcome.get("retained_at"))
        sections.append(
            ("Main effects", _effects_tables(outcome["effects"], retained, judged=judged))
        )
        sections.append(("Retained factors", _retained_section(retained, judged)))
    if families(outcome.get("interactions")):
        sections.append(
            ("Two-factor model", _effects_tables(outcome["interactions"], (), judged=None))
        )
    pooled = as_mapping(outcome.get("pooled"))
    if pooled.get("deltas"):
        sections.append(
            (
                "Pooled model: change in each effect against the shortest budget",
                _effects_tables({"families": pooled["deltas"]}, (), judged=None),
            )
        )
    if as_list(outcome.get("relaxation")):
        sections.append(("Relaxation with budget", _relaxation_section(outcome["relaxation"])))
    if as_list(outcome.get("variance_shares")):
        sections.append(("Variance shares", _variance_section(outcome["variance_shares"])))
    if as_list(outcome.get("ranking")):
        sections.append(("Ranking", _ranking_section(outcome["ranking"])))
    if as_list(outcome.get("win_counts")):
        sections.append(("Win counts", _win_section(outcome["win_counts"], goal)))
    if as_list(outcome.get("anchors")):
        sections.append(("Anchors", _anchor_rows(outcome["anchors"], promoted=False)))
    if as_list(outcome.get("promoted")):
        sections.append(("Promoted anchors", _anchor_rows(outcome["promoted"], promoted=True)))
    if as_mapping(outcome.get("greedy")).get("climbs"):
        sections.append(("Greedy climbs", _greedy_section(outcome["greedy"])))
    if as_mapping(outcome.get("random")).get("batches"):
        sections.append(("Random search", _random_section(outcome["random"])))
    if as_mapping(outcome.get("halving")).get("ladders"):
        sections.append(("Successive halving", _halving_section(outcome["halving"])))
    sections.append(("Best condition", best_section(outcome)))
    return sections


def _runs_section(outcome: Mapping[str, Any]) -> str:
    runs = as_mapping(outcome.get("runs"))
    missing = [str(m) for m in as_list(runs.get("missing"))]
    table = md_table(
        ["planned", "succeeded", "failed", "missing"],
        [
            [
                fmt_count(runs.get("planned")),
                fmt_count(runs.get("succeeded")),
                fmt_count(runs.get("failed")),
                str(len(missing)),
            ]
        ],
    )
    if missing:
        shown = ", ".join(f"`{m}`" for m in missing[:MISSING_SHOWN])
        more = f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
        table += f"\n\nMissing runs: {shown}{more}."
    return table


def _group_label(by: Mapping[str, Any]) -> str:
    """A family's heading from its grouping: "budget 10m, pool a100", "vs 2m" for a delta."""
    parts = []
    for key, value in by.items():
        if key in ("budget_s", "budget"):
            parts.append(f"budget {fmt_budget(value)}")
        elif key == "reference":
            parts.append(f"vs {fmt_budget(value)}")
        else:
            parts.append(f"{key} {fmt_text(value)}")
    return ", ".join(parts) or "all runs"


def _effects_tables(document: Any, retained: Sequence[str], *, judged: float | None) -> str:
    """Each family's effects; the `retained` column only in the families retention reads
    (those at budget `judged`, the longest), so a tick is never shown where no decision was
    taken."""
    blocks = []
    for family in families(document):
        by = as_mapping(family.get("by"))
        df = family.get("df_resid")
        header = (
            f"**{_group_label(by)}** (n = {fmt_count(family.get('n'))}, "
            f"residual df = {fmt_count(df)})"
        )
        mark = judged is not None and family_budget(by) == judged
        columns = ["term", "effect", "95% CI", "p", "q"] + (["retained"] if mark else [])
        rows = []
        for effect in as_list(family.get("effects")):
            effect = as_mapping(effect)
            row = [
                f"`{fmt_text(effect.get('term'))}`",
                fmt_effect(effect.get("effect")),
                fmt_interval(effect.get("ci_low"), effect.get("ci_high")),
                fmt_p(effect.get("p")),
                fmt_p(effect.get("q")),
            ]
            if mark:
                row.append("✓" if effect.get("term") in retained else "")
            rows.append(row)
        block = [header, "", md_table(columns, rows)]
        missing = [str(m) for m in as_list(family.get("missing"))]
        if missing:
            block.append(f"\nMissing from this fit: {', '.join(missing)}.")
        excluded = as_list(family.get("excluded"))
        if excluded:
            block.append(f"\n{len(excluded)} run(s) excluded (failed status or no value).")
        for note in as_list(family.get("notes")):
            block.append(f"\nNote: {fmt_text(note)}")
        blocks.append("\n".join(block))
    return "\n\n".join(blocks)


def _retained_section(retained: Sequence[str], judged: float | None) -> str:
    at = f" at {fmt_budget(judged)}" if judged is not None else ""
    rule = f"interval excludes zero and q ≤ 0.05{at}"
    if not retained:
        return f"No factor retained: no main effect has its {rule}."
    return ", ".join(f"`{r}`" for r in retained) + f" ({rule})."


def _relaxation_section(rows: Any) -> str:
    entries = [as_mapping(r) for r in as_list(rows)]
    if not entries:
        return ""
    budgets = sorted({b for r in entries if (b := finite(r.get("budget"))) is not None})
    groups: dict[tuple[str, str], dict[float, Mapping[str, Any]]] = {}
    for r in entries:
        budget = finite(r.get("budget"))
        if budget is None:
            continue
        group = ", ".join(
            f"{k} {fmt_text(v)}"
            for k, v in r.items()
            if k not in ("term", "budget", "effect", "ratio", "reason")
        )
        groups.setdefault((group, str(r.get("term"))), {})[budget] = r
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
            ratio = finite(cell.get("ratio"))
            suffix = "" if ratio is None else f" (×{ratio:.2f})"
            row.append(fmt_effect(cell.get("effect")) + suffix)
        table.append(row)
    return (
        "Effect at each budget and its ratio to the effect at the shortest budget:\n\n"
        + md_table(header, table)
        + "\n\nA ratio is given only for an effect whose interval at the shortest budget "
        "excludes zero."
    )


def _variance_section(shares: Any) -> str:
    rows = [as_mapping(r) for r in as_list(shares)]
    return md_table(
        ["term", "df", "sum of squares", "η²"],
        [
            [
                fmt_text(r.get("term")),
                fmt_fixed(r.get("df"), 0),
                fmt_fixed(r.get("sum_sq"), 6),
                fmt_fixed(r.get("eta_sq"), 4),
            ]
            for r in rows
        ],
    )


def _ranking_section(ranking: Any) -> str:
    groups: dict[tuple[Any, Any], list[Mapping[str, Any]]] = {}
    for entry in as_list(ranking):
        entry = as_mapping(entry)
        groups.setdefault((finite(entry.get("budget_s")), entry.get("pool")), []).append(entry)
    blocks = []
    for (budget, pool), entries in sorted(
        groups.items(), key=lambda item: (item[0][0] or 0, str(item[0][1] or ""))
    ):
        entries.sort(key=lambda e: finite(e.get("rank")) or math.inf)
        shown = entries
        cut = len(entries) > RANKING_TOP + RANKING_BOTTOM
        if cut:
            shown = entries[:RANKING_TOP] + entries[-RANKING_BOTTOM:]
        rows = [
            [
                fmt_count(e.get("rank")),
                f"`{fmt_text(e.get('condition_id'))}`",
                fmt_text(e.get("role")),
                fmt_count(e.get("n")),
                _failures(e),
                fmt_mean(e.get("mean")) + (" †" if e.get("adjusted") else ""),
                fmt_mean(e.get("sd")),
                fmt_interval(e.get("ci_low"), e.get("ci_high"), digits=6, signed=False),
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
    if any(as_mapping(e).get("adjusted") for e in as_list(ranking)):
        legend += " † seed-adjusted mean: some conditions lost seeds, so means are compared "
        legend += "as if every condition had run every seed."
    return "\n\n".join([*blocks, legend])


def _failures(entry: Mapping[str, Any]) -> str:
    """`failed/runs` for a condition or anchor with failures, blank when it has none."""
    failed, runs = finite(entry.get("failed")), finite(entry.get("runs"))
    if not failed:
        return ""
    return f"{fmt_count(failed)}/{fmt_count(runs)}"


def _win_section(wins: Any, goal: str) -> str:
    better = "<" if goal != "maximize" else ">"
    rows = []
    for entry in as_list(wins):
        entry = as_mapping(entry)
        rows.append(
            [
                fmt_budget(entry.get("budget_s")),
                fmt_text(entry.get("pool")),
                f"{fmt_text(entry.get('left'))} {better} {fmt_text(entry.get('right'))}",
                f"{fmt_count(entry.get('wins'))}/{fmt_count(entry.get('total'))}",
                fmt_count(entry.get("ties")),
            ]
        )
    return (
        md_table(["budget", "pool", "comparison", "wins", "ties"], rows)
        + "\n\nDescriptive cross-seed pairings (n_left × n_right), not independent trials."
    )


def _anchor_rows(entries: Any, *, promoted: bool) -> str:
    rows = []
    for entry in as_list(entries):
        entry = as_mapping(entry)
        first = [fmt_text(entry.get("to_stage"))] if promoted else []
        rows.append(
            first
            + [
                fmt_text(entry.get("role")),
                f"`{fmt_text(entry.get('condition_id'))}`",
                fmt_text(entry.get("rule")),
            ]
            + ([] if promoted else [fmt_text(entry.get("source"))])
            + [fmt_levels(entry.get("levels")), _failures(entry)]
        )
    header = (["to stage"] if promoted else []) + ["role", "condition", "rule"]
    header += ([] if promoted else ["source"]) + ["levels", "failed at source"]
    text = md_table(header, rows)
    if any(_failures(as_mapping(e)) for e in as_list(entries)):
        text += "\n\nAn anchor with failures at its source was promoted despite them."
    return text


def _greedy_section(greedy: Any) -> str:
    rows = []
    for climb in as_list(as_mapping(greedy).get("climbs")):
        climb = as_mapping(climb)
        steps = [as_mapping(s) for s in as_list(climb.get("steps"))]
        best_step = climb.get("best_step")
        at_best = next((s for s in steps if s.get("step") == best_step), {})
        rows.append(
            [
                fmt_budget(climb.get("budget_s")),
                fmt_text(climb.get("pool")),
                str(len(steps)),
                fmt_count(climb.get("accepted")),
                fmt_mean(climb.get("best")),
                fmt_count(best_step),
                f"`{fmt_text(at_best.get('condition_id'))}` {fmt_levels(at_best.get('levels'))}",
            ]
        )
    return md_table(["budget", "pool", "steps", "accepted", "best", "best step", "incumbent"], rows)


def _random_section(random: Any) -> str:
    random = as_mapping(random)
    rows = [
        [
            fmt_count(as_mapping(b).get("batch")),
            f"`{fmt_text(as_mapping(b).get('condition_id'))}`",
            fmt_levels(as_mapping(b).get("levels")),
            fmt_mean(as_mapping(b).get("best")),
        ]
        for b in as_list(random.get("batches"))
    ]
    summary = (
        f"Batch best: mean {fmt_mean(random.get('mean_batch_best'))}, "
        f"median {fmt_mean(random.get('median_batch_best'))}, "
        f"min {fmt_mean(random.get('min_batch_best'))}, "
        f"max {fmt_mean(random.get('max_batch_best'))}."
    )
    return md_table(["batch", "winner", "levels", "best"], rows) + "\n\n" + summary


def _halving_section(halving: Any) -> str:
    halving = as_mapping(halving)
    rows = []
    winners = []
    for ladder in as_list(halving.get("ladders")):
        ladder = as_mapping(ladder)
        for rung in as_list(ladder.get("rungs")):
            rung = as_mapping(rung)
            survivors = [as_mapping(s) for s in as_list(rung.get("survivors"))]
            went_on = ", ".join(
                f"`{fmt_text(s.get('condition_id'))}` {fmt_mean(s.get('mean'))}" for s in survivors
            )
            rows.append(
                [
                    fmt_budget(rung.get("budget_s")),
                    fmt_text(ladder.get("pool")),
                    fmt_count(rung.get("configurations")),
                    went_on or DASH,
                ]
            )
        winner = as_mapping(ladder.get("winner"))
        if winner:
            winners.append(
                f"Winner on {fmt_text(ladder.get('pool'))}: "
                f"`{fmt_text(winner.get('condition_id'))}` {fmt_levels(winner.get('levels'))}, "
                f"mean {fmt_mean(winner.get('mean'))} at {fmt_budget(winner.get('budget_s'))}."
            )
    header = ["budget", "pool", "configurations", "went on (mean at this budget)"]
    keep = f"Each rung keeps the best 1/{fmt_count(halving.get('eta'))}, rounded up."
    return "\n\n".join([md_table(header, rows), " ".join([keep, *winners])])


def _best_line(best: Any) -> str:
    """One best condition with its evidence: interval (not adjusted for the pick), failures,
    and the runner-up with the difference, its interval, the win count and, in words,
    whether the two are separated."""
    best = as_mapping(best)
    if not best:
        return DASH
    name = fmt_text(best.get("condition_id"))
    role = f" ({best['role']})" if best.get("role") else ""
    pool = f" on {best['pool']}" if best.get("pool") else ""
    budget = fmt_budget(best.get("budget_s"))
    hyper = as_mapping(best.get("hyperparameters"))
    settings = ", ".join(f"{k}={fmt_text(v)}" for k, v in hyper.items())
    text = (
        f"`{name}`{role} at {budget}{pool}: mean {fmt_mean(best.get('mean'))}"
        + (" (seed-adjusted)" if best.get("adjusted") else "")
        + ", 95% CI "
        f"{fmt_interval(best.get('ci_low'), best.get('ci_high'), digits=6, signed=False)} "
        "(not adjusted for having been picked as best)"
        f"; levels {fmt_levels(best.get('levels'))}" + (f"; {settings}" if settings else "")
    )
    if finite(best.get("failed")):
        text += f". It failed or diverged on {_failures(best).replace('/', ' of ')} runs"
    runner = as_mapping(best.get("runner_up"))
    if not runner:
        return text + ". No other condition to compare with."
    other = fmt_text(runner.get("condition_id"))
    gap = (
        f"Runner-up `{other}` {fmt_mean(runner.get('mean'))}, "
        f"difference {fmt_effect(runner.get('difference'))}"
    )
    if runner.get("separated") is None:
        verdict = f"fewer than two runs on a side: no interval, so `{name}` and `{other}` are not "
        verdict += f"distinguishable at {budget} from this stage"
    else:
        gap += f" (95% CI {fmt_interval(runner.get('ci_low'), runner.get('ci_high'))})"
        verdict = (
            f"`{name}` is ahead of `{other}` at {budget}"
            if runner.get("separated")
            else f"`{name}` and `{other}` are not distinguishable at {budget}"
        )
    wins = f"{fmt_count(runner.get('wins'))}/{fmt_count(runner.get('total'))}"
    return f"{text}. {gap}; `{name}` wins {wins} seed pairings: {verdict}."


def best_section(outcome: Mapping[str, Any]) -> str:
    """The best condition on each pool (`best_per_pool`), else the stage's single best: the
    stage section's last part, and the study report's answer when this stage decides it."""
    bests = as_list(outcome.get("best_per_pool")) or [outcome.get("best")]
    lines = [f"- {_best_line(best)}" for best in bests if as_mapping(best)]
    return "\n".join(lines) or DASH
