"""Kendall's tau between two rankings with its interval, and the paired "loses" test of a
reversal (`stagescreen.statistics.stability`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stagescreen.statistics.stability import kendall_tau, loses

IDS_16 = [f"c{i:02d}" for i in range(1, 17)]
IDS = IDS_16[:8]


@pytest.mark.parametrize(
    ("left", "right", "n", "tau"),
    [
        (IDS, IDS, 8, 1.0),
        (IDS, IDS[::-1], 8, -1.0),
        (IDS[:3], ["c02", "c01", "c03"], 3, 1 / 3),
        # conditions only one ranking holds are left out, whatever their place
        (["x", *IDS[:4], "y"], ["z", *IDS[:4][::-1]], 4, -1.0),
    ],
)
def test_tau_is_kendalls_on_the_conditions_both_rank(
    left: list[str], right: list[str], n: int, tau: float
) -> None:
    found = kendall_tau(left, right)
    assert (found.n, found.tau) == (n, pytest.approx(tau))


@pytest.mark.parametrize(
    ("left", "right", "n", "reason"),
    [
        (IDS[:2], IDS[:2], 2, "2 conditions ranked by both; tau needs 3"),
        (IDS, ["c01", "x", "y"], 1, "1 conditions ranked by both; tau needs 3"),
        (IDS[:4], IDS[:4], 4, "4 conditions ranked by both; an interval needs 5"),
    ],
)
def test_too_few_common_conditions_give_no_tau_or_no_interval_and_say_why(
    left: list[str], right: list[str], n: int, reason: str
) -> None:
    found = kendall_tau(left, right)
    assert (found.n, found.reason, found.ci_low, found.ci_high) == (n, reason, None, None)
    assert (found.tau is None) == (n < 3)


def test_the_interval_is_fisher_z_with_the_fieller_hartley_pearson_variance() -> None:
    right = ["c02", "c01", *IDS[2:]]  # one discordant pair of 28
    found = kendall_tau(IDS, right)
    half = stats.norm.ppf(0.975) * math.sqrt(0.437 / 4)
    z = math.atanh(1 - 2 / 28)
    assert found.tau == pytest.approx(1 - 2 / 28)
    assert (found.ci_low, found.ci_high) == (
        pytest.approx(math.tanh(z - half)),
        pytest.approx(math.tanh(z + half)),
    )
    # a perfect agreement is taken one pair short and closed at 1: not certain on 8
    perfect = kendall_tau(IDS, IDS)
    assert perfect.ci_high == 1.0
    assert perfect.ci_low == pytest.approx(found.ci_low)


def test_the_interval_covers_the_population_tau_of_bivariate_normal_rankings() -> None:
    """300 seeded rankings of 8, 16 and 5 conditions whose two scores correlate 0.5
    (population tau 2/pi asin 0.5 = 1/3): 94.3%, 95.0% and, conservative, 99.7% measured
    (docs/analysis.md)."""
    rng = np.random.default_rng(18)
    truth = 2 / math.pi * math.asin(0.5)
    for n, lowest, highest in ((8, 0.91, 0.985), (16, 0.91, 0.985), (5, 0.97, 1.0)):
        covered = 0
        for _ in range(300):
            scores = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], size=n)
            left = [IDS_16[i] for i in np.argsort(scores[:, 0])]
            right = [IDS_16[i] for i in np.argsort(scores[:, 1])]
            found = kendall_tau(left, right)
            assert found.ci_low is not None and found.ci_high is not None
            covered += found.ci_low <= truth <= found.ci_high
        assert lowest <= covered / 300 <= highest, (n, covered)


def test_an_anchor_loses_only_when_the_paired_interval_excludes_zero_on_its_worse_side() -> None:
    seeds = [1, 2, 3, 4]
    shift = pd.Series([0.01, -0.02, 0.03, 0.0], index=seeds)  # a seed moves both alike
    better = 1.0 + shift
    worse = better + pd.Series([0.010, 0.011, 0.009, 0.010], index=seeds)
    gap = loses(worse, better, lower_is_better=True)
    assert gap is not None and gap.ci_low is not None and gap.ci_low > 0
    assert gap.effect == pytest.approx(0.010)
    assert loses(better, worse, lower_is_better=True) is None  # ahead and better: no reversal
    assert loses(better, worse, lower_is_better=False) is not None  # a metric to maximise
    noisy = better + pd.Series([0.02, -0.015, 0.01, -0.012], index=seeds)
    assert loses(noisy, better, lower_is_better=True) is None  # not distinguishable
    assert loses(worse.iloc[:1], better, lower_is_better=True) is None  # one common seed


def test_bonferroni_over_a_stages_pairs_keeps_false_reversals_rare_when_all_are_tied() -> None:
    """4 tied anchors on 4 seeds (seed sd 0.002 shared, run sd 0.001), every ordered pair
    tested as a stage tests them, 500 seeded stages: 95% intervals flag a reversal in 14.2%
    of stages, Bonferroni's over the 6 pairs in 2.6% (docs/analysis.md)."""
    rng = np.random.default_rng(7)
    seeds, anchors = range(4), 4
    pairs = [(i, j) for i in range(anchors) for j in range(i + 1, anchors)]
    flagged = {1: 0, len(pairs): 0}
    for _ in range(500):
        shift = rng.normal(0, 0.002, len(seeds))
        runs = [pd.Series(shift + rng.normal(0, 0.001, len(seeds)), index=seeds) for _ in range(4)]
        for tested in flagged:
            flagged[tested] += any(
                loses(runs[i], runs[j], lower_is_better=True, pairs=tested) for i, j in pairs
            )
    assert flagged[1] / 500 > 0.08
    assert flagged[len(pairs)] / 500 <= 0.04
