"""Numbers and tables as the report prints them.

The report reads validated outcome models (`stagescreen.outcomes.model`), so a value is a number
or None (the analysis could not compute it); every formatter prints DASH for None and for
what is not finite, so one missing value costs one cell of a table, never the report. The
precision of each table (`ranking_digits`, `effect_digits`, `best_digits`) lives here, so
the stage sections and the decision print a number alike. Pure text: no figures, no
storage.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from scipy import stats

from stagescreen.outcomes.model import Best, RankedCondition, StageOutcome
from stagescreen.planning.ids import format_budget
from stagescreen.statistics.families import Family
from stagescreen.statistics.noise import NoiseFloor
from stagescreen.storage.jsonvalues import json_number

DASH = "—"

# Precision. A reported mean, effect or interval is only as exact as its standard error, so it
# prints two significant figures of that SE (SE 0.0034 -> 4 decimals: 0.7339, not 0.733874).
# One precision per table, from its *smallest* SE (the finest rule), so every row keeps two
# figures of its own SE and a column lines up; never more than MAX_DECIMALS. A sentence
# prints the means it names at their table's precision (the best condition's line: its
# ranking table's) and a difference at its own paired SE's. A number with no SE at all (a
# single run, a baseline's batch best) prints FALLBACK_DECIMALS, the paper's tables' four. A
# value that rounds to zero prints as an unsigned zero ("0.0000", never "-0.0000" or
# "+0.0000"): at this precision it is zero, and a sign would claim a direction the digits do
# not show.
MAX_DECIMALS = 6
FALLBACK_DECIMALS = 4


def decimals(ses: Iterable[float | None]) -> int:
    """Decimals that show two significant figures of the smallest finite positive SE in
    `ses` (0.0034 -> 4, 0.034 -> 3, 0.34 -> 2, 3.4 -> 1, 34 -> 0), at most MAX_DECIMALS;
    FALLBACK_DECIMALS when none is known."""
    known = [se for se in map(json_number, ses) if se is not None and se > 0]
    if not known:
        return FALLBACK_DECIMALS
    return min(MAX_DECIMALS, max(0, 1 - math.floor(math.log10(min(known)))))


def mean_se(entry: RankedCondition, floors: Sequence[NoiseFloor]) -> float | None:
    """The standard error a ranked mean prints at: the larger of its own sd (two runs or
    more) and the stage's run sd at its budget and pool, over sqrt(n). The run sd is seed
    blocked, so it leaves out the seed shifts a mean carries (a condition whose seeds differ
    by 0.05 would print five decimals on a 0.0003 run sd), and two runs' own sd can be small
    by chance; the larger of the two keeps a mean at the precision of the spread its row
    shows. A screen's single-run means print at the run noise they carry."""
    own = [entry.sd] if entry.n >= 2 else []
    pooled = [f.sd for f in floors if f.budget_s == entry.budget_s and f.pool in (None, entry.pool)]
    sds = [sd for sd in map(json_number, [*own, *pooled[:1]]) if sd is not None and sd > 0]
    return None if not sds or entry.n < 1 else max(sds) / math.sqrt(entry.n)


def ranking_digits(outcome: StageOutcome) -> dict[tuple[int, str], int]:
    """One precision per ranking table (a budget and pool): the means', sds' and intervals',
    which the best condition's sentence and the decision's pick repeat."""
    groups: dict[tuple[int, str], list[float | None]] = {}
    for entry in outcome.ranking:
        groups.setdefault((entry.budget_s, entry.pool), []).append(
            mean_se(entry, outcome.noise_floor)
        )
    return {group: decimals(ses) for group, ses in groups.items()}


def best_digits(best: Best, ranking: dict[tuple[int, str], int]) -> tuple[int, int]:
    """The precisions of a best's sentence (and of the decision's pick): its means at its
    ranking table's (else its own interval's), its difference to the runner-up at the paired
    interval's (else the means')."""
    runs = best.runs - best.failed
    own = se_from_interval(best.ci_low, best.ci_high, runs - 1 if runs > 1 else None)
    means = ranking.get((best.budget_s, best.pool), decimals([own]))
    runner = best.runner_up
    if runner is None or se_from_interval(runner.ci_low, runner.ci_high) is None:
        return means, means
    seeds = runner.seeds
    paired = se_from_interval(runner.ci_low, runner.ci_high, seeds - 1 if seeds else None)
    return means, decimals([paired])


def effect_digits(families: Sequence[Family]) -> int:
    """One precision for effects from these families: their SEs, read back from the stored
    95% intervals on each family's residual df (`decimals`): an effects table's, and
    the decision's retained effects'."""
    return decimals(
        se_from_interval(e.ci_low, e.ci_high, family.df_resid)
        for family in families
        for e in family.effects
    )


def se_from_interval(
    low: float | None, high: float | None, df: float | None = None, level: float = 0.95
) -> float | None:
    """The standard error behind a two-sided interval at `level`: its half-width over the t
    quantile on df (the normal's when df is unknown), for records that keep the interval,
    not the SE."""
    a, b = json_number(low), json_number(high)
    if a is None or b is None:
        return None
    upper = (1 + level) / 2
    quantile = stats.norm.ppf(upper) if df is None or df <= 0 else stats.t.ppf(upper, df)
    return abs(b - a) / 2 / float(quantile)


def fmt_number(value: float | None, digits: int = FALLBACK_DECIMALS, signed: bool = False) -> str:
    """A number at `digits` decimals (`signed`: "+" before positives); what rounds to zero
    prints as an unsigned zero."""
    number = json_number(value)
    if number is None:
        return DASH
    text = f"{number:{'+' if signed else ''}.{digits}f}"
    return text.lstrip("+-") if not text.strip("+-0.") else text


def fmt_effect(value: float | None, digits: int = FALLBACK_DECIMALS) -> str:
    """Effects and differences on the metric scale: signed, `digits` decimals."""
    return fmt_number(value, digits, signed=True)


def fmt_interval(
    low: float | None, high: float | None, digits: int = FALLBACK_DECIMALS, signed: bool = True
) -> str:
    """An interval at the precision of the value it brackets."""
    if json_number(low) is None or json_number(high) is None:
        return DASH
    return f"[{fmt_number(low, digits, signed)}, {fmt_number(high, digits, signed)}]"


def fmt_p(value: float | None) -> str:
    """p and q: three significant figures, e-notation below 0.001 (1.98e-11, 0.00319)."""
    number = json_number(value)
    if number is None:
        return DASH
    if number == 0:
        return "0"
    return f"{number:.2e}" if abs(number) < 1e-3 else f"{number:.3g}"


def fmt_mean(value: float | None, digits: int = FALLBACK_DECIMALS) -> str:
    """Metric means (and sds): unsigned, `digits` decimals."""
    return fmt_number(value, digits)


def fmt_fixed(value: float | None, digits: int) -> str:
    """A number that is no estimate of the metric (GPU-hours, tau, a share) at fixed decimals."""
    return fmt_number(value, digits)


def fmt_significant(value: float | None, figures: int = 3) -> str:
    """A magnitude with no SE to set its precision (a sum of squares) at `figures` significant
    figures in plain decimals, never more than MAX_DECIMALS: 0.0142, 0.000681, 14.2,
    0.000033; zero prints as 0."""
    number = json_number(value)
    if number is None:
        return DASH
    if number == 0:
        return "0"
    digits = max(0, figures - 1 - math.floor(math.log10(abs(number))))
    return fmt_number(number, min(digits, MAX_DECIMALS))


def fmt_percent(value: float | None, digits: int = 1) -> str:
    """A share of a whole (0.538) as a percentage at `digits` decimals (53.8%)."""
    number = json_number(value)
    return DASH if number is None else f"{fmt_number(number * 100, digits)}%"


def fmt_count(value: int | None) -> str:
    return DASH if value is None else str(int(value))


def fmt_budget(seconds: float | None) -> str:
    """A budget as run ids spell it (`ids.format_budget`: 120 -> 2m, 3600 -> 1h)."""
    number = json_number(seconds)
    return DASH if number is None else format_budget(int(number))


def fmt_levels(levels: Mapping[str, int] | None) -> str:
    """Coded levels as the paper writes them: A-,B+,C0."""
    if not levels:
        return DASH
    signs = {-1: "-", 0: "0", 1: "+"}
    return ",".join(f"{code}{signs.get(level, f'={level:g}')}" for code, level in levels.items())


def fmt_text(value: object) -> str:
    """Free text in a table cell: pipes escaped and newlines flattened, so the row holds."""
    if value is None or (isinstance(value, float) and json_number(value) is None):
        return DASH
    return str(value).replace("|", "\\|").replace("\n", " ") or DASH


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
