"""Power rehearsal: detection, sign errors, coverage and anchor picks over many replicates.

The vectorised fits are checked against the one-replicate path they stand in for
(`families.fit_effects` and `retention.retained_factors`), and the rates against what the
statistics promise: power near one for a huge effect, near alpha for a null one, 95%
intervals covering the planted effect about 95% of the time.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stagescreen.planning.ranking import select_anchors
from stagescreen.statistics import families as fx
from stagescreen.statistics import power, retention, synthetic
from stagescreen.statistics.coding import model_terms
from stagescreen.study.parse import load_study

ROOT = Path(__file__).resolve().parents[3]
PAPER = load_study(ROOT / "examples" / "paper.yaml").spec
SMALL = load_study(ROOT / "tests" / "data" / "quickstart-two-stages.yaml").spec
PLAIN = synthetic.ResponseModel(
    effects={"A": 0.05, "B": 0.0, "C": -0.03, "D": 0.08, "E": 0.0},
    reference_s=600,
    seed_sd=0.002,
    noise_sd=0.004,
)


def rows_of(report: power.PowerReport, stage: str, budget_s: int) -> dict[str, power.TermPower]:
    return {t.term: t for t in report.terms if t.stage == stage and t.budget_s == budget_s}


def test_a_huge_effect_is_always_found_and_a_null_one_rarely() -> None:
    model = synthetic.ResponseModel(effects={"A": 0.5}, reference_s=10, seed_sd=0, noise_sd=0.01)
    report = power.power_study(SMALL, model, replicates=600, seed=1)
    for budget in (10, 20):
        terms = rows_of(report, "screen", budget)
        assert terms["A"].power == 1.0 and terms["A"].sign_errors == 0.0
        for null in ("B", "C"):
            assert terms[null].power <= 0.1, (budget, null)
            assert terms[null].sign_errors is None
    # The full 2^3 picks the best and worst corners of A alone: either level of B and C ties.
    best = next(a for a in report.anchors if a.rule == "best")
    assert len(best.optimum) == 4 and best.match == 1.0


def test_intervals_of_a_replicated_design_cover_the_planted_effect_about_95_percent() -> None:
    report = power.power_study(PAPER, PLAIN, replicates=1000, seed=2)
    for budget in (300, 600):
        for term in rows_of(report, "seeded-screen", budget).values():
            assert term.fitted == 1000
            assert 0.92 <= term.coverage <= 0.98, term
            assert term.mean_estimate == pytest.approx(term.planted, abs=0.002), term


def test_replicate_r_depends_only_on_the_seed_and_r() -> None:
    plan = power.rehearsal(PAPER, PLAIN)
    alone, _ = power.draw(plan, PLAIN, 7, [3])
    together, _ = power.draw(plan, PLAIN, 7, range(5))
    assert np.array_equal(alone[:, 0], together[:, 3])
    assert not np.array_equal(together[:, 2], together[:, 3])
    first = power.power_study(PAPER, PLAIN, replicates=300, seed=7)
    assert power.power_study(PAPER, PLAIN, replicates=300, seed=7) == first
    assert power.power_study(PAPER, PLAIN, replicates=300, seed=8) != first


@pytest.mark.parametrize("stage", ["screen", "seeded-screen"])
def test_the_vectorised_fit_is_fit_effects_on_one_replicate(stage: str) -> None:
    model = synthetic.paper_model(PAPER)
    table = power.replicate_results(PAPER, replace(model, divergence=0.0), seed=3, replicate=11)
    rows = table[table["stage"] == stage]
    block = "seed" if rows["seed"].nunique() > 1 else None
    families = fx.fit_effects(rows, "val_bpb", PAPER.codes, by="budget_s", block=block)
    plan = power.rehearsal(PAPER, model)
    fitted = [f for f in power._families(PAPER, plan) if f.stage == stage]
    detected: dict[int, list[str]] = {}
    for family, reference in zip(fitted, families, strict=True):
        assert family.budget_s == reference.by["budget_s"]
        y = table["val_bpb"].to_numpy()[family.rows][:, None]
        fit = power.fit_family(family.x, y, family.columns, family.lenth)
        assert fit is not None
        for j, effect in enumerate(reference.effects):
            assert fit.effect[j, 0] == pytest.approx(effect.effect, abs=1e-9)
            assert fit.ci_low[j, 0] == pytest.approx(effect.ci_low, abs=1e-9)
            assert fit.ci_high[j, 0] == pytest.approx(effect.ci_high, abs=1e-9)
        q = power._bh_along_terms(fit.p)
        for j, effect in enumerate(reference.effects):
            assert q[j, 0] == pytest.approx(effect.q, abs=1e-9)
        detected[family.budget_s] = [
            t
            for j, t in enumerate(family.terms)
            if (fit.ci_low[j, 0] > 0 or fit.ci_high[j, 0] < 0) and q[j, 0] <= retention.FDR
        ]
    # The detection rule is the retention rule, read at the longest budget.
    longest = max(detected)
    assert sorted(detected[longest]) == sorted(retention.retained_factors(families))


def test_the_saturated_fit_uses_lenth_as_fit_effects_does() -> None:
    rng = np.random.default_rng(0)
    corners = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], float)
    y = 1 + 0.4 * corners[:, 0] - 0.1 * corners[:, 1] + rng.normal(0, 0.01, 8)
    frame = pd.DataFrame(corners, columns=["A", "B", "C"]).assign(y=y)
    [family] = fx.fit_effects(frame, "y", ["A", "B", "C"], order=3, lenth=True)
    terms = model_terms(["A", "B", "C"], 3)
    x = np.column_stack(
        [np.ones(8)] + [np.prod(corners[:, [ord(c) - 65 for c in t.split(":")]], 1) for t in terms]
    )
    fit = power.fit_family(x, y[:, None], range(1, 8), lenth=True)
    assert fit is not None
    for j, effect in enumerate(family.effects):
        assert fit.effect[j, 0] == pytest.approx(effect.effect, abs=1e-9)
        assert fit.ci_low[j, 0] == pytest.approx(effect.ci_low, abs=1e-9)
        assert fit.p[j, 0] == pytest.approx(effect.p, abs=1e-9)
    assert power.fit_family(x, y[:, None], range(1, 8), lenth=False) is None


def test_bh_along_terms_matches_the_one_family_procedure() -> None:
    p = np.random.default_rng(4).random((6, 20))
    p[[1, 4], 3] = np.nan  # terms not tested in one replicate do not count towards m
    p[:, 7] = np.nan
    expected = np.column_stack([fx.benjamini_hochberg(p[:, r]) for r in range(20)])
    assert np.allclose(power._bh_along_terms(p), expected, atol=1e-12, equal_nan=True)


def test_simes_along_pools_matches_the_one_factor_procedure() -> None:
    p = np.random.default_rng(5).random((4, 3, 10))
    p[2, 1, 4] = np.nan  # a pool that did not fit that replicate
    p[:, 2, 6] = np.nan
    combined = power._simes_along_pools(p)
    for term in range(3):
        for r in range(10):
            expected = fx.simes(float(v) for v in p[:, term, r] if not np.isnan(v))
            assert combined[term, r] == pytest.approx(
                expected if expected is not None else np.nan, nan_ok=True
            )


def test_detection_across_pools_is_fit_effects_then_retained_factors() -> None:
    """Two pools of the 2^(5-1): the vectorised q (Simes over pools, BH over terms) and
    detection are what `fit_effects(q_across=["pool"])` and `retained_factors` make."""
    x = np.column_stack(
        [np.ones(16)]
        + [np.array([(i >> (3 - j)) % 2 * 2 - 1 for i in range(16)], float) for j in range(4)]
    )
    x = np.column_stack([x, np.prod(x[:, 1:5], axis=1)])
    rng = np.random.default_rng(8)
    frames, fits = [], []
    for pool, shift in (("a", 0.0), ("b", 0.3)):
        y = shift + x @ np.array([0, 0.6, -0.2, 0, 0.1, 0]) + rng.normal(0, 0.5, 16)
        frames.append(
            pd.DataFrame(x[:, 1:], columns=list("ABCDE")).assign(
                y=y, pool=pool, budget_s=60, status="succeeded"
            )
        )
        fit = power.fit_family(x, y[:, None], range(1, 6), lenth=False)
        assert fit is not None
        fits.append(fit)
    families = fx.fit_effects(
        pd.concat(frames, ignore_index=True),
        "y",
        list("ABCDE"),
        by=["budget_s", "pool"],
        q_across=["pool"],
    )
    q = power._bh_along_terms(power._simes_along_pools(np.stack([fit.p for fit in fits])))
    for family in families:
        assert [e.q for e in family.effects] == pytest.approx(q[:, 0].tolist(), abs=1e-12)
    detected = power.detect(fits)[:, :, 0].any(axis=0)
    retained = retention.retained_factors(families)
    assert retained and sorted(retained) == [t for t, d in zip("ABCDE", detected, strict=True) if d]


def test_divergence_loses_runs_but_every_replicate_still_fits() -> None:
    model = replace(PLAIN, divergence=0.1)
    table = power.replicate_results(PAPER, model, seed=5, replicate=0)
    diverged = table[table["status"] == "diverged"]
    assert 0 < len(diverged) < len(table)
    assert diverged["val_bpb"].isna().all()
    report = power.power_study(PAPER, model, replicates=200, seed=5)
    d = rows_of(report, "seeded-screen", 600)["D"]
    assert d.fitted == 200 and d.power == 1.0


def test_a_noiseless_study_always_picks_the_true_optimum() -> None:
    model = replace(PLAIN, seed_sd=0.0, noise_sd=1e-9)
    report = power.power_study(PAPER, model, replicates=50)
    picks = {(a.stage, a.rule): a for a in report.anchors}
    # A-, C+, D- is lowest; B and E are null, and the fraction holds two such points.
    assert picks[("confirm", "best")].optimum == ("c03", "c07")
    assert all(anchor.match == 1.0 for anchor in report.anchors)
    # Rules ranking anchor, greedy or random stages are named as not rehearsed.
    assert any("greedy-winner" in note for note in report.notes)


def test_zero_replicates_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        power.power_study(PAPER, PLAIN, replicates=0)


def test_a_pick_follows_the_studys_failure_ordering() -> None:
    """The rehearsed pick is the anchor `select_anchors` would promote from that replicate's
    results: a condition that lost runs ranks behind every complete one, however good its
    surviving runs look; in some replicates the raw-mean best is such a condition."""
    model = replace(synthetic.paper_model(PAPER), divergence=0.1)
    plan = power.rehearsal(PAPER, model)
    [pick] = [
        p for p in power._picks(PAPER, plan, model)[0] if (p.stage, p.rule) == ("bridge", "best")
    ]
    selection = next(s for s in PAPER.stage("bridge").select if s.from_ == "seeded-screen")
    replicates = range(12)
    values, _ = power.draw(plan, model, 9, replicates)
    chosen, usable = power._chosen(pick, values)
    assert usable.all()
    y = values[pick.rows]
    with np.errstate(invalid="ignore"):
        raw = np.nanargmin(
            (pick.membership @ np.nan_to_num(y)) / (pick.membership @ ~np.isnan(y)), axis=0
        )
    assert (raw != chosen).sum() >= 3
    for r in replicates:
        results = power.replicate_results(PAPER, model, seed=9, replicate=r)
        [anchor] = select_anchors(PAPER, selection, results)
        assert pick.conditions[chosen[r]] == anchor.condition_id, r


def test_a_predicted_pick_is_named_as_not_rehearsed() -> None:
    text = (ROOT / "examples" / "quickstart.yaml").read_text()
    spec = load_study(
        text.replace("{from: screen, rule: best, role: best}", "{from: screen, rule: predicted}")
    ).spec
    report = power.power_study(spec, PLAIN, replicates=20)
    assert all(anchor.rule != "predicted" for anchor in report.anchors)
    assert any(
        "rule predicted from 'screen' is not rehearsed: its pick is a model refit" in note
        for note in report.notes
    )
