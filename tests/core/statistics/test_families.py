"""Screening effects: BH q-values, published textbook effects, interval coverage, missing runs."""

from __future__ import annotations

import io
import itertools
import time

import numpy as np
import pandas as pd
import pytest
from screens import DATA, PLANTED, paper_like_screen
from statsmodels.stats.multitest import multipletests

from stagescreen.design import fractional_factorial
from stagescreen.statistics.coding import EffectsError, code_factor
from stagescreen.statistics.families import (
    benjamini_hochberg,
    fit_effects,
    lenth_margin,
    lenth_reference,
    simes,
)


def read_data(name: str) -> pd.DataFrame:
    """A textbook dataset from tests/data, skipping its '#' citation header."""
    lines = (DATA / name).read_text().splitlines(keepends=True)
    return pd.read_csv(io.StringIO("".join(line for line in lines if not line.startswith("#"))))


def effects_of(family) -> dict[str, float]:
    return {e.term: e.effect for e in family.effects}


# --- Benjamini-Hochberg --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pvalues", "qvalues"),
    [
        ([0.01, 0.02, 0.03], [0.03, 0.03, 0.03]),
        ([0.04, 0.01], [0.04, 0.02]),
        ([0.9, 0.8], [0.9, 0.9]),
        ([0.5, 0.6, 0.7, 0.8], [0.8, 0.8, 0.8, 0.8]),
        ([0.001, 0.6, 0.002], [0.003, 0.6, 0.003]),
        ([1.0], [1.0]),
    ],
)
def test_bh_table(pvalues: list[float], qvalues: list[float]) -> None:
    assert benjamini_hochberg(pvalues) == pytest.approx(qvalues)


def test_bh_agrees_with_statsmodels_fdr_bh() -> None:
    rng = np.random.default_rng(3)
    for m in (1, 2, 5, 17, 200):
        p = np.concatenate([rng.uniform(size=m), rng.uniform(0, 1e-3, size=m // 3)])
        expected = multipletests(p, method="fdr_bh")[1]
        assert benjamini_hochberg(p) == pytest.approx(expected, rel=1e-12, abs=0)


def test_bh_is_monotone_in_p_capped_at_one_and_keeps_input_order() -> None:
    p = np.array([0.3, 0.001, 0.97, 0.04, 0.04, 0.5])
    q = benjamini_hochberg(p)
    order = np.argsort(p)
    assert np.all(np.diff(q[order]) >= 0)
    assert q.max() <= 1.0
    assert q[1] == pytest.approx(0.006)  # the smallest p, still at its input position


def test_bh_passes_missing_pvalues_through_and_leaves_them_out_of_m() -> None:
    q = benjamini_hochberg([0.01, None, float("nan"), 0.04])
    assert np.isnan(q[1]) and np.isnan(q[2])
    assert q[[0, 3]] == pytest.approx([0.02, 0.04])  # m = 2, not 4


def test_bh_refuses_values_outside_the_unit_interval() -> None:
    with pytest.raises(EffectsError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.2, 1.5])


# (effect, p, q) as printed in the paper's section 5.1 tables
PAPER_5MIN = {
    "A": (1.98e-11, 4.94e-11),
    "B": (3.57e-08, 5.94e-08),
    "C": (0.0232, 0.0290),
    "D": (9.01e-18, 4.50e-17),
    "E": (0.454, 0.454),
}
PAPER_10MIN = {
    "A": (8.86e-14, 2.21e-13),
    "B": (0.00319, 0.00532),
    "C": (0.0219, 0.0274),
    "D": (9.03e-28, 4.52e-27),
    "E": (0.501, 0.501),
}


def half_unit(printed: float) -> float:
    """Half a unit in the last place of a number printed to three significant digits."""
    return 0.5 * 10 ** (np.floor(np.log10(printed)) - 2)


@pytest.mark.parametrize("table", [PAPER_5MIN, PAPER_10MIN], ids=["5min", "10min"])
def test_bh_reproduces_the_papers_q_column(table: dict[str, tuple[float, float]]) -> None:
    """Paper (arXiv 2606.05186) section 5.1, seeded 5- and 10-minute tables, BH q column.

    The printed p-values are rounded to three significant digits, so a q computed from them
    may differ from the printed q by half a unit of q's last place plus the rounding of p
    carried through q = p * m / rank (at most m/rank times half a unit of p's last place).
    """
    terms = list(table)
    p = [table[t][0] for t in terms]
    q = benjamini_hochberg(p)
    ranks = {t: r + 1 for r, t in enumerate(sorted(terms, key=lambda t: table[t][0]))}
    for term, computed in zip(terms, q, strict=True):
        printed_p, printed_q = table[term]
        slack = half_unit(printed_q) + len(terms) / ranks[term] * half_unit(printed_p)
        assert abs(computed - printed_q) <= slack, (term, computed, printed_q)
    assert {t for t, value in zip(terms, q, strict=True) if value <= 0.05} == set("ABCD")


def test_bh_across_the_combined_ten_test_family_keeps_the_papers_retention_set() -> None:
    """Paper section 4.4: BH once across the 10 seeded main-effect tests keeps D, A, B, C
    at both budgets and drops E."""
    p = [v[0] for v in PAPER_5MIN.values()] + [v[0] for v in PAPER_10MIN.values()]
    q = benjamini_hochberg(p)
    kept = [term for term, value in zip(list("ABCDE") * 2, q, strict=True) if value <= 0.05]
    assert kept == list("ABCD") * 2


# --- coding --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "coded"),
    [
        ([-1, 1, 1, -1], [-1, 1, 1, -1]),
        ([6, 8, 8, 6], [-1, 1, 1, -1]),
        ([0.25, 0.5, 0.25, 0.5], [-1, 1, -1, 1]),
        ([0, 1, 1, 0], [-1, 1, 1, -1]),
        ([-1, 0, 1, 0], [-1, 0, 1, 0]),
        ([48, 64, 72, 60], [-1, 1 / 3, 1, 0]),
    ],
)
def test_code_factor_table(values: list[float], coded: list[float]) -> None:
    result, _ = code_factor(pd.Series(values), "ASPECT_RATIO")
    assert result.tolist() == pytest.approx(coded)


def test_code_factor_refuses_text_naming_the_column() -> None:
    with pytest.raises(EffectsError, match=r"'catalyst' is not numeric.*'A'"):
        code_factor(pd.Series(["A", "B", "A"]), "catalyst")


# --- published textbook effects ------------------------------------------------------------


def test_box_hunter_hunter_pilot_plant_full_2x3() -> None:
    """Box, Hunter & Hunter (2005), Statistics for Experimenters, 2nd ed., Wiley, ch. 5:
    the pilot plant 2^3 (temperature T, concentration C, catalyst K) has effects
    T=23.0, C=-5.0, K=1.5, TC=1.5, TK=10.0, CK=0.0, TCK=0.5.

    Temperature and concentration are given in real units (160/180, 20/40) to exercise the
    low/high -> -1/+1 coding.
    """
    data = read_data("bhh_pilot_plant_2x3.csv")
    [family] = fit_effects(data, "yield", ["temperature", "concentration", "catalyst"], order=3)
    published = {
        "temperature": 23.0,
        "concentration": -5.0,
        "catalyst": 1.5,
        "temperature:concentration": 1.5,
        "temperature:catalyst": 10.0,
        "concentration:catalyst": 0.0,
        "temperature:concentration:catalyst": 0.5,
    }
    assert effects_of(family) == pytest.approx(published, abs=0.05)
    assert family.df_resid == 0
    assert all(e.ci_low is None and e.p is None for e in family.effects)


MONTGOMERY_FULL = {
    "A": 21.625,
    "B": 3.125,
    "C": 9.875,
    "D": 14.625,
    "A:B": 0.125,
    "A:C": -18.125,
    "A:D": 16.625,
    "B:C": 2.375,
    "B:D": -0.375,
    "C:D": -1.125,
    "A:B:C": 1.875,
    "A:B:D": 4.125,
    "A:C:D": -1.625,
    "B:C:D": -2.625,
    "A:B:C:D": 1.375,
}


def test_montgomery_filtration_rate_full_2x4() -> None:
    """Montgomery, Design and Analysis of Experiments, Wiley, Example 6.2 (filtration rate,
    unreplicated 2^4): all fifteen published effects, printed to three decimals."""
    data = read_data("montgomery_filtration_2x4.csv")
    [family] = fit_effects(data, "filtration rate", list("ABCD"), order=4)
    assert effects_of(family) == pytest.approx(MONTGOMERY_FULL, abs=0.0005)


def test_montgomery_filtration_rate_half_fraction_2x4_1() -> None:
    """Montgomery, Design and Analysis of Experiments, Wiley, Example 8.1: the 2^(4-1)
    half fraction with D=ABC; A=19.00, B=1.50, C=14.00, D=16.50, and the alias sums
    AB+CD=-1.00, AC+BD=-18.50, AD+BC=19.00 (estimated by the A:B, A:C, A:D columns)."""
    data = read_data("montgomery_filtration_2x4-1.csv")
    [family] = fit_effects(data, "filtration rate", list("ABCD"), terms=["A:B", "A:C", "A:D"])
    published = {"A": 19.0, "B": 1.5, "C": 14.0, "D": 16.5, "A:B": -1.0, "A:C": -18.5}
    published["A:D"] = 19.0
    assert effects_of(family) == pytest.approx(published, abs=0.005)


def test_aliased_two_factor_terms_are_refused_naming_both() -> None:
    data = read_data("montgomery_filtration_2x4-1.csv")
    with pytest.raises(EffectsError) as caught:
        fit_effects(data, "filtration rate", list("ABCD"), order=2)
    message = str(caught.value)
    for pair in ("A:B is aliased with C:D", "A:C is aliased with B:D", "A:D is aliased with B:C"):
        assert pair in message


def test_main_effect_aliased_with_a_fitted_three_factor_term_is_refused() -> None:
    data = read_data("montgomery_filtration_2x4-1.csv")
    with pytest.raises(EffectsError, match="A is aliased with B:C:D"):
        fit_effects(data, "filtration rate", list("ABCD"), terms=["B:C:D"])


def test_resolution_v_allows_all_two_factor_interactions() -> None:
    """In 2^(5-1) with E=ABCD each 2FI is aliased only with a 3FI that is not fitted."""
    design = fractional_factorial(list("ABCDE"), ["E=ABCD"])
    data = pd.DataFrame(design.matrix, columns=list(design.factors))
    data["y"] = np.arange(16.0) ** 1.5
    [family] = fit_effects(data, "y", list("ABCDE"), order=2)
    assert len(family.effects) == 15 and family.df_resid == 0
    assert all(e.effect is not None for e in family.effects)
    with pytest.raises(EffectsError, match=r"A:B is aliased with -?C:D:E"):
        fit_effects(data, "y", list("ABCDE"), order=2, terms=["C:D:E"])


def test_lenth_on_the_unreplicated_montgomery_2x4() -> None:
    """Lenth (1989), Technometrics 31:469-473, applied to Montgomery Example 6.2's fifteen
    effects: s0 = 1.5 * 2.625, PSE = 1.5 * median(|c| < 2.5 s0) = 1.5 * 1.75 = 2.625. ME is
    PSE times the simulated critical value for fifteen effects, 2.16 in Ye and Hamada (2000,
    J. Quality Technology 32:57-66, individual error rate 0.05), SME times 4.24 (experimentwise).
    The effects beyond ME are A, C, D, AC and AD, the ones Montgomery's normal probability
    plot singles out."""
    data = read_data("montgomery_filtration_2x4.csv")
    [family] = fit_effects(data, "filtration rate", list("ABCD"), order=4, lenth=True)
    assert family.lenth is not None
    assert family.lenth.pse == pytest.approx(2.625)
    assert family.lenth.me == pytest.approx(2.16 * 2.625, rel=0.01)
    assert family.lenth.sme == pytest.approx(4.24 * 2.625, rel=0.01)
    beyond = {e.term for e in family.effects if e.ci_low * e.ci_high > 0}
    assert beyond == {"A", "C", "D", "A:C", "A:D"}
    assert {e.term for e in family.effects if e.q <= 0.05} == beyond
    assert lenth_margin(list(MONTGOMERY_FULL.values())).pse == pytest.approx(2.625)


@pytest.mark.parametrize(
    ("effects", "individual", "simultaneous"), [(7, 2.30, 4.87), (15, 2.16, 4.24)]
)
def test_lenth_critical_values_are_ye_and_hamadas(
    effects: int, individual: float, simultaneous: float
) -> None:
    """The simulated null of |c|/PSE reproduces Ye and Hamada's (2000) critical values at
    0.05 (individual and experimentwise error rate), and is the same on every call."""
    reference = lenth_reference(effects)
    assert reference.critical(0.95) == pytest.approx(individual, rel=0.01)
    assert reference.simultaneous(0.95) == pytest.approx(simultaneous, rel=0.01)
    assert reference.p(reference.critical(0.95)) == pytest.approx(0.05, abs=1e-4)
    fresh = lenth_reference.__wrapped__(effects)
    assert np.array_equal(fresh.t, reference.t) and lenth_reference(effects) is reference


@pytest.mark.parametrize(
    ("pvalues", "combined"),
    [
        ([0.01, 0.04], 0.02),
        ([0.03, 0.04], 0.04),
        ([0.2, None, 0.01, 0.5], 0.03),
        ([0.7], 0.7),
        ([0.9, 0.8], 0.9),
        ([None, float("nan")], None),
    ],
)
def test_simes_combines_one_hypothesis_over_its_tests(
    pvalues: list[float | None], combined: float | None
) -> None:
    assert simes(pvalues) == (None if combined is None else pytest.approx(combined))


def test_saturated_design_without_lenth_reports_effects_and_null_intervals() -> None:
    data = read_data("montgomery_filtration_2x4.csv")
    [family] = fit_effects(data, "filtration rate", list("ABCD"), order=4)
    assert family.lenth is None
    assert family.effect("A").effect == pytest.approx(21.625)
    assert family.effect("A").model_dump() == {
        "term": "A",
        "effect": pytest.approx(21.625),
        "ci_low": None,
        "ci_high": None,
        "p": None,
        "q": None,
    }
    assert any("no residual df" in note for note in family.notes)


# --- synthetic data with known effects ------------------------------------------------------


def test_wald_intervals_cover_the_truth_at_about_the_nominal_rate() -> None:
    """400 replicate experiments (2^3, two runs per cell, sigma 1): the 95% Wald intervals
    of three effects (1200 intervals, 12 residual df each) cover the planted effects."""
    rng = np.random.default_rng(20240611)
    cells = np.array(list(itertools.product([-1, 1], repeat=3)) * 2, dtype=float)
    truth = {"A": 1.0, "B": -0.5, "C": 0.0}
    replicates = 400
    levels = np.tile(cells, (replicates, 1))
    mean = 3.0 + levels @ (np.array(list(truth.values())) / 2)
    data = pd.DataFrame(levels, columns=list(truth))
    data["y"] = mean + rng.normal(size=len(data))
    data["replicate"] = np.repeat(np.arange(replicates), len(cells))
    start = time.perf_counter()
    families = fit_effects(data, "y", list(truth), by="replicate")
    assert time.perf_counter() - start < 5
    assert len(families) == replicates and {f.df_resid for f in families} == {12}
    covered = [
        e.ci_low <= truth[e.term] <= e.ci_high for family in families for e in family.effects
    ]
    assert 0.92 <= np.mean(covered) <= 0.98
    for term in truth:
        per_term = [
            f.effect(term).ci_low <= truth[term] <= f.effect(term).ci_high for f in families
        ]
        assert 0.91 <= np.mean(per_term) <= 0.99


def test_paper_like_screen_recovers_planted_effects() -> None:
    data = paper_like_screen()
    families = fit_effects(data, "val_bpb", list("ABCDE"), by="budget_s", block="seed")
    assert [f.by for f in families] == [{"budget_s": 300}, {"budget_s": 600}]
    for family in families:
        assert family.n == 80 and family.df_resid == 80 - 6 - 4
        for effect in family.effects:
            assert effect.ci_low <= PLANTED[effect.term] <= effect.ci_high
            assert effect.se == pytest.approx(2 * 0.02 / np.sqrt(80), rel=0.35)
        retained = {e.term for e in family.effects if e.q <= 0.05 and e.ci_low * e.ci_high > 0}
        assert retained == set("ABCD")
        assert family.missing == () and family.excluded == ()
        assert "A: coded 6 -> -1, 8 -> +1" in family.notes


def test_block_and_factor_named_like_patsy_functions_still_fit() -> None:
    """A factor called C (patsy's categorical function) and names with spaces must work."""
    data = paper_like_screen().rename(columns={"B": "aspect ratio", "seed": "run seed"})
    families = fit_effects(
        data, "val_bpb", ["A", "aspect ratio", "C", "D", "E"], by="budget_s", block="run seed"
    )
    assert families[0].effect("C").effect == pytest.approx(
        fit_effects(paper_like_screen(), "val_bpb", list("ABCDE"), by="budget_s", block="seed")[0]
        .effect("C")
        .effect
    )
    assert families[0].effect("aspect ratio").ci_low > 0


def test_combined_fdr_replaces_q_with_the_q_across_all_families() -> None:
    data = paper_like_screen()
    within = fit_effects(data, "val_bpb", list("ABCDE"), by="budget_s", block="seed")
    combined = fit_effects(
        data, "val_bpb", list("ABCDE"), by="budget_s", block="seed", combined_fdr=True
    )
    p = [e.p for f in within for e in f.effects]
    assert [e.q for f in combined for e in f.effects] == pytest.approx(
        multipletests(p, method="fdr_bh")[1].tolist()
    )
    assert {f.q_scope for f in combined} == {"combined"}
    assert [e.q for e in within[0].effects] != [e.q for e in combined[0].effects]


# --- missing and failed runs -----------------------------------------------------------------


def test_failed_and_absent_runs_are_excluded_listed_and_estimation_goes_on() -> None:
    data = paper_like_screen()
    first = data.index[(data.budget_s == 300) & (data.seed == 2)]
    data.loc[first[3], "status"] = "diverged"
    data.loc[first[5], "val_bpb"] = np.nan
    data = data.drop(index=first[7])
    design = fractional_factorial(list("ABCDE"), ["E=ABCD"])
    families = fit_effects(
        data, "val_bpb", list("ABCDE"), by="budget_s", block="seed", design=design
    )
    short, long = families
    assert short.n == 77 and long.n == 80
    assert short.missing == ("c04/seed=2", "c06/seed=2", "c08/seed=2")
    assert [(run.reason, run.labels["condition_id"]) for run in short.excluded] == [
        ("status=diverged", "c04"),
        ("val_bpb is missing", "c06"),
    ]
    assert short.excluded[0].labels["run_id"] == "b300-c04-s2"
    assert all(e.effect is not None and e.p is not None for e in short.effects)
    assert long.missing == () and long.excluded == ()
    # without a design, the table's condition ids say what was expected
    without = fit_effects(data, "val_bpb", list("ABCDE"), by="budget_s", block="seed")
    assert without[0].missing == short.missing


def test_effects_that_missing_runs_make_inestimable_are_null_with_a_reason() -> None:
    data = paper_like_screen()
    lost = (data.budget_s == 300) & (data.B.map({-1: 6, 1: 8}) == data.A)
    families = fit_effects(data[~lost], "val_bpb", list("ABCDE"), by="budget_s", block="seed")
    short = families[0]
    for term, partner in (("A", "B"), ("B", "A")):
        effect = short.effect(term)
        assert effect.effect is None and effect.ci_low is None and effect.q is None
        assert (
            effect.reason
            == f"{term} cannot be estimated: it is confounded with {partner} among the runs present"
        )
    assert short.effect("D").effect is not None and short.effect("D").q is not None
    assert len(short.missing) == 40
    assert families[1].effect("A").effect is not None


def test_a_factor_constant_within_a_family_is_reported_not_fitted() -> None:
    data = paper_like_screen()
    lost = (data.budget_s == 600) & (data.D == 1)
    families = fit_effects(data[~lost], "val_bpb", list("ABCDE"), by="budget_s", block="seed")
    assert families[1].effect("D").effect is None
    assert "does not vary" in (families[1].effect("D").reason or "")
    assert families[1].effect("A").effect is not None


def test_unknown_columns_are_named_with_what_exists() -> None:
    data = paper_like_screen()
    with pytest.raises(EffectsError, match="factor column 'F' is not in the table; columns: \\["):
        fit_effects(data, "val_bpb", list("ABCDF"))
    with pytest.raises(EffectsError, match="by column 'budget'"):
        fit_effects(data, "val_bpb", list("ABCDE"), by="budget")
    with pytest.raises(EffectsError, match="term 'A:Z'"):
        fit_effects(data, "val_bpb", list("ABCDE"), terms=["A:Z"])


def test_a_row_without_a_status_has_no_record_and_is_left_out() -> None:
    """One definition of succeeded (stagescreen_contract.status.reads_succeeded) for the
    effects and the planner."""
    data = pd.DataFrame(
        {
            "A": [-1, 1, -1, 1, -1, 1],
            "status": ["succeeded", " Succeeded ", None, "succeeded", "succeeded", "failed"],
            "y": [1.0, 2.0, 1.5, 2.1, 0.9, 3.0],
        }
    )
    (family,) = fit_effects(data, "y", ["A"])
    assert family.n == 4
    assert [(run.row, run.reason) for run in family.excluded] == [
        (2, "status is missing"),
        (5, "status=failed"),
    ]
