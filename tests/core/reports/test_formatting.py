"""The report's precision rule (`reports.formatting`): two significant figures of the standard
error, one precision per table from its smallest SE, and no signed zeros."""

from __future__ import annotations

import pytest

from stagescreen.outcomes.model import RankedCondition
from stagescreen.reports.formatting import (
    DASH,
    FALLBACK_DECIMALS,
    MAX_DECIMALS,
    decimals,
    fmt_effect,
    fmt_fixed,
    fmt_interval,
    fmt_mean,
    fmt_percent,
    fmt_significant,
    mean_se,
    se_from_interval,
)
from stagescreen.statistics.noise import NoiseFloor


@pytest.mark.parametrize(
    ("ses", "digits"),
    [
        ([0.0034], 4),
        ([0.0099], 4),
        ([0.01], 3),
        ([0.034], 3),
        ([0.34], 2),
        ([3.4], 1),
        ([34.0], 0),
        ([0.034, 0.0034, None], 4),  # the finest: every row keeps two figures of its SE
        ([1e-12], MAX_DECIMALS),
        ([], FALLBACK_DECIMALS),
        ([None, float("nan"), 0.0], FALLBACK_DECIMALS),
    ],
)
def test_precision_is_two_significant_figures_of_the_smallest_se(
    ses: list[float | None], digits: int
) -> None:
    assert decimals(ses) == digits


def test_the_issues_mean_prints_at_its_se() -> None:
    """ "mean 0.733874, 95% CI [0.700419, 0.767328]" (SE about 0.017) reads at 3 decimals."""
    se = se_from_interval(0.700419, 0.767328)
    assert se is not None and 0.016 < se < 0.018
    digits = decimals([se])
    assert fmt_mean(0.733874, digits) == "0.734"
    assert fmt_interval(0.700419, 0.767328, digits, signed=False) == "[0.700, 0.767]"


@pytest.mark.parametrize(
    ("low", "high", "df", "se"),
    [
        (-1.959964, 1.959964, None, 1.0),  # the normal quantile
        (0.0, 2 * 2.776445, 4, 1.0),  # t(0.975, 4)
        (None, 1.0, 4, None),
    ],
)
def test_se_from_interval_divides_the_half_width_by_the_t_quantile(
    low: float | None, high: float | None, df: int | None, se: float | None
) -> None:
    got = se_from_interval(low, high, df)
    assert got == se if se is None else got == pytest.approx(se, rel=1e-5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (fmt_interval(-0.00003, 0.0126), "[0.0000, +0.0126]"),
        (fmt_interval(-0.0126, -0.00004), "[-0.0126, 0.0000]"),
        (fmt_effect(-0.00004), "0.0000"),
        (fmt_effect(0.00004), "0.0000"),
        (fmt_effect(-0.4, 0), "0"),
        (fmt_mean(-0.0000001, 6), "0.000000"),
        (fmt_fixed(-0.01, 1), "0.0"),
        (fmt_effect(0.00005001), "+0.0001"),
        (fmt_effect(-0.00449), "-0.0045"),
        (fmt_mean(1.1121674, 3), "1.112"),
        (fmt_mean(None, 3), DASH),
        (fmt_interval(0.1, float("inf")), DASH),
    ],
)
def test_a_value_that_rounds_to_zero_prints_unsigned(text: str, expected: str) -> None:
    assert text == expected


FLOOR = NoiseFloor(budget_s=15, pool="cpu", contrast="difference", sd=0.0003, df=2)


@pytest.mark.parametrize(
    ("n", "sd", "se"),
    [
        # the real quickstart's confirm: seeds 0.05 apart on a 0.0003 seed-blocked run sd;
        # the mean prints at its own spread (3 decimals), not five
        (2, 0.05119, 0.05119 / 2**0.5),
        (2, 0.0001, 0.0003 / 2**0.5),  # two runs' sd small by chance: the run sd's
        (1, None, 0.0003),  # a single run: the run noise it carries
        (0, None, None),
    ],
)
def test_a_ranked_means_se_is_the_larger_of_its_own_sd_and_the_run_sd(
    n: int, sd: float | None, se: float | None
) -> None:
    entry = RankedCondition(
        budget_s=15, pool="cpu", condition_id="c02", runs=n, n=n, mean=2.2204, sd=sd, rank=1
    )
    assert mean_se(entry, [FLOOR]) == pytest.approx(se)
    if n == 2 and sd == 0.05119:
        assert decimals([mean_se(entry, [FLOOR])]) == 3


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.014174, "0.0142"), (0.000015, "0.000015"), (14.174, "14.2"), (0.0, "0"), (None, DASH)],
)
def test_sums_of_squares_print_three_significant_figures(value: float | None, text: str) -> None:
    assert fmt_significant(value) == text


@pytest.mark.parametrize(
    ("value", "text"), [(0.538, "53.8%"), (0.000015, "0.0%"), (1.0, "100.0%"), (None, DASH)]
)
def test_shares_print_as_percentages(value: float | None, text: str) -> None:
    assert fmt_percent(value) == text
