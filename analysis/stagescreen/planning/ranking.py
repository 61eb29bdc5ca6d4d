"""Ranking conditions and choosing anchors: the one ranking every decision reads.

`rank_conditions` orders a stage's conditions at one budget; `select_anchors` applies a
`select` rule to that ranking (rule `predicted` reads the source's fitted model instead,
`planning.predicted`, and the ranking only for its fallback and the best run condition).
Ties break on condition id, so a ranking and everything promoted from it are reproducible.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from stagescreen.planning.ids import condition_name
from stagescreen.planning.plans import Anchor, Unplannable
from stagescreen.planning.predicted import kept_terms, predicted_corners
from stagescreen.statistics.coding import EffectsError
from stagescreen.statistics.means import ConditionMean, adjusted_means, condition_means
from stagescreen.study.spec import WINNER_RULES, Selection, StudySpec
from stagescreen_contract.status import TERMINAL, RunStatus, reads_succeeded


def succeeded(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows that count for ranking: status succeeded and a finite metric."""
    if results.empty:
        return results
    ok = results["status"].map(reads_succeeded).astype(bool) & np.isfinite(
        pd.to_numeric(results[metric], errors="coerce")
    )
    return results[ok]


BLOCKS = ("seed", "pool")
"""What shifts every condition alike within one budget: the seed, and the host a run ran on."""


def rank_conditions(
    results: pd.DataFrame, metric: str, goal: str, at: int | str = "longest", level: float = 0.95
) -> pd.DataFrame:
    """Conditions at one budget, best first, the one ranking every decision reads.

    Columns: condition_id, role, budget_s, runs (ended runs), failed (of those, failed or
    diverged), diverged (of those, diverged), n (succeeded with a finite metric), mean, sd,
    ci_low, ci_high, adjusted.
    - The mean is the raw mean with its Student-t interval (paper 4.4) when every condition
      ran every seed and pool the others did; when some lost runs, it is the seed- and
      pool-adjusted mean (`effects.adjusted_means`), so a condition is not flattered by the
      seeds it happened to keep; `adjusted` says which.
    - A condition that failed or diverged on any run ranks behind every condition with a
      smaller failure share: a recipe that diverges on some seeds is not the one to bet long
      runs on, however good its survivors look. Then by mean; ties break on condition id, so
      the ranking and everything promoted from it are reproducible.
    `level` is the intervals' confidence; it does not change the order.
    """
    if results.empty:
        return pd.DataFrame()
    ended = results[results["status"].isin(list(TERMINAL))]
    if ended.empty:
        return pd.DataFrame()
    budget = ended["budget_s"].max() if at == "longest" else at
    ended = ended[ended["budget_s"] == budget]
    if ended.empty:
        return pd.DataFrame()
    good = succeeded(ended, metric)
    table = ended.groupby("condition_id", sort=True).agg(
        role=("role", "first"),
        runs=("status", "size"),
        failed=("status", lambda status: int((~status.map(reads_succeeded).astype(bool)).sum())),
        diverged=("status", lambda status: int((status == RunStatus.DIVERGED).sum())),
    )
    table["n"] = good.groupby("condition_id").size().reindex(table.index, fill_value=0)
    blocks = [b for b in BLOCKS if b in good.columns and good[b].nunique() > 1]
    cells = (
        good.groupby("condition_id")[blocks].apply(
            lambda rows: frozenset(map(tuple, rows.to_numpy()))
        )
        if blocks and not good.empty
        else pd.Series(dtype=object)
    )
    adjusted = bool(cells.nunique() > 1)
    means: list[ConditionMean] = []
    if adjusted:
        try:
            means = adjusted_means(good, metric, "condition_id", blocks, level=level)
        except EffectsError:
            adjusted = False  # no seeds in common to adjust through: the raw means are all
    if not adjusted and not good.empty:
        means = condition_means(good, metric, "condition_id", level=level)
    stats = pd.DataFrame(
        [
            {
                "condition_id": m.key["condition_id"],
                "mean": m.mean,
                "sd": m.sd,
                "ci_low": m.ci_low,
                "ci_high": m.ci_high,
            }
            for m in means
        ],
        columns=["condition_id", "mean", "sd", "ci_low", "ci_high"],
    ).set_index("condition_id")
    table = table.join(stats).reset_index()
    table["adjusted"] = adjusted
    table["budget_s"] = budget
    table["_share"] = table["failed"] / table["runs"]
    table["_key"] = table["mean"] if goal == "minimize" else -table["mean"]
    table = table.sort_values(["_share", "_key", "condition_id"], na_position="last")
    return table.drop(columns=["_share", "_key"]).reset_index(drop=True)


def _levels_of(results: pd.DataFrame, condition: str, codes: Sequence[str]) -> dict[str, int]:
    row = results[results["condition_id"] == condition].iloc[0]
    return {code: int(row[code]) for code in codes}


def _held_roles(role: object, also: object) -> tuple[str, ...]:
    """Every role one row of a results table holds: its `role`, then its `also` roles."""
    first = () if pd.isna(role) else (str(role),)
    more = () if pd.isna(also) else tuple(str(also).split(","))
    return first + more


def _source_roles(results: pd.DataFrame, condition: str) -> tuple[str, ...]:
    """The roles an anchor already had in its source stage (first the one it ran under), so
    it keeps its names onwards: a control that ran as the screened best stays a control."""
    rows = results[results["condition_id"] == condition]
    return _held_roles(rows["role"].iloc[0], rows["also"].iloc[0]) if len(rows) else ()


def _roles(selection: Selection, count: int) -> list[str]:
    role = selection.role or selection.rule
    return [role] if count == 1 else [f"{role}-{i}" for i in range(1, count + 1)]


def _among(results: pd.DataFrame, roles: Sequence[str]) -> pd.DataFrame:
    """The rows of conditions holding one of `roles` (numbered role-1, role-2 count), under
    the role they ran under or among their `also` roles."""
    if not roles:
        return results
    pattern = re.compile("(?:" + "|".join(re.escape(r) for r in roles) + ")(?:-[0-9]+)?")
    held = [
        any(pattern.fullmatch(name) for name in _held_roles(role, also))
        for role, also in zip(results["role"], results["also"], strict=True)
    ]
    return results[pd.Series(held, index=results.index, dtype=bool)]


def select_anchors(spec: StudySpec, selection: Selection, results: pd.DataFrame) -> list[Anchor]:
    """The anchors one `select` rule picks from the results of its source stage."""
    codes = spec.codes
    if selection.rule == "control":
        levels = {code: int(selection.levels[code]) for code in codes}
        cid = condition_name(levels, spec)
        return [Anchor(cid, levels, _roles(selection, 1)[0], "control", None)]
    source = selection.from_ or ""
    rows = _among(results[results["stage"] == source], selection.among)
    # `longest` is the longest budget the source declares, never merely the longest that
    # happens to have results: a ranking must not move as the source's runs come in.
    at = max(spec.stage(source).budgets) if selection.at == "longest" else selection.at
    ranking = rank_conditions(rows, spec.metric.name, spec.metric.goal, at)
    if not ranking.empty:
        ranking = ranking[ranking["n"] > 0]
    if ranking.empty:
        raise Unplannable(
            f"select rule {selection.rule!r} from stage {source!r}: no succeeded runs to rank "
            f"at {at} s"
        )
    if selection.rule == "predicted":
        return _predicted_anchors(spec, selection, rows, ranking, int(at))
    if selection.rule == "worst":
        # the worst recipe by its metric, a contrast for the best: failures do not enter
        worst_first = ranking["mean"] if spec.metric.goal == "maximize" else -ranking["mean"]
        picked = list(
            ranking.assign(_key=worst_first).sort_values(["_key", "condition_id"])["condition_id"][
                : selection.k
            ]
        )
    elif selection.rule in WINNER_RULES:
        picked = list(ranking["condition_id"].iloc[:1])
    else:
        picked = list(ranking["condition_id"].iloc[: selection.k])
    record = ranking.set_index("condition_id")
    anchors: list[Anchor] = []
    for role, cid in zip(_roles(selection, len(picked)), picked, strict=True):
        levels = _levels_of(rows, cid, codes)
        also: tuple[str, ...] = ()
        if selection.role is None and selection.rule in ("best", "worst"):
            role, *rest = _source_roles(rows, cid) or (role,)
            also = tuple(rest)
        if selection.rule == "bridge":
            levels = {
                code: 0 if code in selection.factors else level for code, level in levels.items()
            }
            suffix = "".join(f"{code.lower()}0" for code in codes if code in selection.factors)
            cid = f"{cid}-{suffix}"
        source_row = record.loc[picked[len(anchors)]]
        anchors.append(
            Anchor(
                cid,
                levels,
                role,
                selection.rule,
                source,
                runs=int(source_row["runs"]),
                failed=int(source_row["failed"]),
                also=also,
            )
        )
    return anchors


def _predicted_anchors(
    spec: StudySpec, selection: Selection, rows: pd.DataFrame, ranking: pd.DataFrame, at: int
) -> list[Anchor]:
    """The k corners the source's model predicts best (`planning.predicted`), each with its
    prediction and whether the source ran it; with no effect retained at `at`, the k best
    run conditions, each saying so in its note."""
    source = spec.stage(selection.from_ or "")
    codes = spec.codes
    usable = succeeded(rows, spec.metric.name)
    terms = kept_terms(spec, source, usable, at)
    record = ranking.set_index("condition_id")
    roles = _roles(selection, selection.k)
    if not terms:
        note = f"no effect retained at {at} s: the best run condition instead"
        picked = list(ranking["condition_id"].iloc[: selection.k])
        return [
            Anchor(
                cid,
                _levels_of(rows, cid, codes),
                role,
                selection.rule,
                source.name,
                runs=int(record.loc[cid, "runs"]),
                failed=int(record.loc[cid, "failed"]),
                ran=True,
                note=note,
            )
            for role, cid in zip(roles, picked, strict=False)
        ]
    best = _levels_of(rows, str(ranking["condition_id"].iloc[0]), codes)
    ran = {
        tuple(int(level) for level in point): str(cid)
        for *point, cid in rows[[*codes, "condition_id"]].drop_duplicates().itertuples(index=False)
    }
    anchors = []
    corners = predicted_corners(spec, source, usable, at, best, terms)
    for role, corner in zip(roles, corners, strict=False):
        key = tuple(corner.levels[code] for code in codes)
        cid = ran.get(key) or condition_name(corner.levels, spec)
        counted = cid in record.index
        anchors.append(
            Anchor(
                cid,
                dict(corner.levels),
                role,
                selection.rule,
                source.name,
                runs=int(record.loc[cid, "runs"]) if counted else 0,
                failed=int(record.loc[cid, "failed"]) if counted else 0,
                predicted=corner.predicted,
                ran=key in ran,
            )
        )
    return anchors


def unique_anchors(anchors: Sequence[Anchor]) -> list[Anchor]:
    """One anchor per recipe: anchors reaching the same levels (two rules picking one
    condition, or two centred points that meet, as `c07-b0` and the greedy winner
    `f32-06-b0`) run once, under the first anchor's id, role, rule and source, keeping every
    further role in `also`; a control that is also the best is reported as both. The first
    id survives so that the runs of a study under way keep their ids."""
    unique: dict[tuple[tuple[str, int], ...], Anchor] = {}
    for anchor in anchors:
        key = tuple(sorted((code, int(level)) for code, level in anchor.levels.items()))
        first = unique.setdefault(key, anchor)
        if first is anchor:
            continue
        held = (first.role, *first.also)
        more = [role for role in dict.fromkeys((anchor.role, *anchor.also)) if role not in held]
        unique[key] = replace(first, also=(*first.also, *more))
    return list(unique.values())
