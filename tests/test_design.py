"""Two-level designs: the paper's numbering, alias structure, minimum aberration, decoding."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from pyDOE3 import fracfact

from stagescreen.design import (
    Design,
    DesignError,
    Levels,
    by_resolution,
    check_generators,
    condition_id,
    decode,
    decode_run,
    defining_relation,
    fractional_factorial,
    full_factorial,
)

ABCDE = list("ABCDE")


def letters(k: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(k)]


def levels_of(design: Design, cid: str) -> dict[str, int]:
    return design.runs()[design.condition_ids.index(cid)]


def run_set(matrix: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(x) for x in row) for row in matrix}


def word_length_pattern(design: Design) -> list[int]:
    lengths = [len(word.lstrip("-")) for word in design.defining_relation()]
    return [lengths.count(n) for n in range(1, len(design.factors) + 1)]


# --- the paper's numbering (arXiv 2606.05186, sec. 4.3 and 5) ----------------------------

PAPER_SCREEN = [
    ("c07", {"A": -1, "B": 1, "C": 1, "D": -1, "E": 1}),  # best screened condition
    ("c10", {"A": 1, "B": -1, "C": -1, "D": 1, "E": 1}),  # predeclared control
    ("c14", {"A": 1, "B": 1, "C": -1, "D": 1, "E": -1}),  # worst screened condition
]


@pytest.mark.parametrize(("cid", "levels"), PAPER_SCREEN)
def test_paper_screen_conditions_have_the_papers_levels(cid: str, levels: dict[str, int]) -> None:
    screen = fractional_factorial(ABCDE, ["E=ABCD"])
    assert levels_of(screen, cid) == levels
    assert condition_id(levels, ABCDE, ["E=ABCD"]) == cid


@pytest.mark.parametrize(
    ("cid", "levels"),
    [
        ("c14", {"A": -1, "B": 1, "C": 1, "D": -1, "E": 1}),  # full32_c14, random-search winner
        ("c10", {"A": -1, "B": 1, "C": -1, "D": -1, "E": 1}),  # full32_c10
        ("c06", {"A": -1, "B": -1, "C": 1, "D": -1, "E": 1}),  # full32_c06
    ],
)
def test_full_space_is_numbered_like_the_papers_full32(cid: str, levels: dict[str, int]) -> None:
    full = full_factorial(ABCDE)
    assert levels_of(full, cid) == levels
    assert condition_id(levels, ABCDE) == cid


def test_first_factor_varies_slowest_and_low_comes_first() -> None:
    full = full_factorial(list("ABC"))
    assert full.matrix.tolist() == [list(r) for r in itertools.product([-1, 1], repeat=3)]
    assert full.condition_ids == ("c01", "c02", "c03", "c04", "c05", "c06", "c07", "c08")


def test_yates_order_varies_the_first_factor_fastest() -> None:
    yates = full_factorial(list("ABC"), order="yates")
    assert yates.matrix[:4].tolist() == [[-1, -1, -1], [1, -1, -1], [-1, 1, -1], [1, 1, -1]]
    assert condition_id({"A": 1, "B": -1, "C": -1}, list("ABC"), order="yates") == "c02"
    assert run_set(yates.matrix) == run_set(full_factorial(list("ABC")).matrix)


@pytest.mark.parametrize(("k", "first", "last"), [(3, "c01", "c08"), (7, "c001", "c128")])
def test_condition_ids_widen_from_a_hundred_runs(k: int, first: str, last: str) -> None:
    ids = full_factorial(letters(k)).condition_ids
    assert (ids[0], ids[-1]) == (first, last)


def test_condition_outside_the_fraction_is_refused_with_the_generator() -> None:
    with pytest.raises(DesignError, match=r"E=-1 is not in the fraction; E=ABCD sets it to \+1"):
        condition_id({"A": -1, "B": 1, "C": 1, "D": -1, "E": -1.0}, ABCDE, ["E=ABCD"])
    with pytest.raises(DesignError, match=r"D must be -1 or \+1 to name a condition, got 0"):
        condition_id({"A": -1, "B": 1, "C": 1, "D": 0, "E": 1}, ABCDE, ["E=ABCD"])


def test_condition_id_reads_levels_straight_from_a_design_row() -> None:
    screen = fractional_factorial(ABCDE, ["E=ABCD"])
    row = dict(zip(ABCDE, screen.matrix[13], strict=True))
    assert condition_id(row, ABCDE, ["E=ABCD"]) == "c14"


# --- defining relation, resolution, aliases ----------------------------------------------


def test_paper_screen_is_resolution_five_with_the_papers_aliases() -> None:
    screen = fractional_factorial(ABCDE, ["E=ABCD"])
    aliases = screen.aliases()
    assert screen.defining_relation() == ("ABCDE",)
    assert screen.resolution == 5
    assert aliases["A"] == ["BCDE"]
    assert aliases["B"] == ["ACDE"]
    assert aliases["A:B"] == ["CDE"]
    assert len(aliases) == 5 + 10
    assert list(screen.aliases(max_order=1)) == ABCDE


@pytest.mark.parametrize(
    ("factors", "generators", "relation"),
    [
        ("ABCDE", ["E=ABCD"], ("ABCDE",)),
        ("ABCDE", ["E=-ABCD"], ("-ABCDE",)),
        ("ABCDEF", ["E=ABC", "F=BCD"], ("ABCE", "ADEF", "BCDF")),
        ("ABCDEF", ["F=BCD", "E=ABC"], ("ABCE", "ADEF", "BCDF")),
        ("ABCDE", ["D=AB", "E=-AC"], ("ABD", "-ACE", "-BCDE")),
        ("ABCD", [], ()),
    ],
)
def test_defining_relation_holds_every_product_of_generators(
    factors: str, generators: list[str], relation: tuple[str, ...]
) -> None:
    assert defining_relation(list(factors), generators) == relation


def test_full_factorial_has_no_resolution_and_no_aliases() -> None:
    full = full_factorial(ABCDE)
    assert full.resolution is None
    assert full.defining_relation() == ()
    assert full.aliases()["A:B"] == []


def test_negative_generator_gives_the_other_half_with_signed_aliases() -> None:
    plus = fractional_factorial(ABCDE, ["E=ABCD"])
    minus = fractional_factorial(ABCDE, ["E=-ABCD"])
    assert run_set(plus.matrix).isdisjoint(run_set(minus.matrix))
    assert np.all(minus.matrix.prod(axis=1) == -1)
    assert minus.aliases()["A:B"] == ["-CDE"]


def test_aliases_of_resolution_three_design_name_the_confounded_main_effect() -> None:
    design = fractional_factorial(ABCDE, ["D=AB", "E=AC"])
    assert design.resolution == 3
    assert design.aliases()["A:B"] == ["D", "BCE", "ACDE"]


def test_alias_words_really_are_confounded_in_the_matrix() -> None:
    design = fractional_factorial(list("ABCDEFG"), ["E=ABC", "F=ABD", "G=-ACD"])
    column = {f: design.matrix[:, i] for i, f in enumerate(design.factors)}
    for term, chain in design.aliases().items():
        effect = np.prod([column[f] for f in term.split(":")], axis=0)
        for word in chain:
            sign = -1 if word.startswith("-") else 1
            alias = np.prod([column[f] for f in word.lstrip("-")], axis=0)
            assert np.array_equal(effect, sign * alias), (term, word)


# --- generator checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("generators", "message"),
    [
        (["E=ABCF"], r"'E=ABCF' references unknown factor 'F'; factors are A, B, C, D, E"),
        (["F=ABCD"], r"defines 'F', which is not a factor"),
        (["E=ABCD", "E=ABC"], r"factor E is generated twice"),
        (["E=ABCD", "D=ABC"], r"'E=ABCD' uses D, which is itself generated by 'D=ABC'"),
        (["E=ABCE"], r"defines E in terms of itself"),
        (["E=AAB"], r"repeats factor 'A'"),
        (["E=A"], r"'E=A' aliases main effect A with main effect E \(defining word AE\)"),
        (["D=ABC", "E=ABC"], r"'D=ABC' and 'E=ABC' alias main effect D with main effect E"),
        (["E ABCD"], r"not of the form X=WORD"),
        (["E="], r"not of the form X=WORD"),
    ],
)
def test_bad_generators_are_refused_with_the_generator_named(
    generators: list[str], message: str
) -> None:
    with pytest.raises(DesignError, match=message) as caught:
        check_generators(ABCDE, generators)
    assert caught.value.subject == "generators"


@pytest.mark.parametrize(
    ("factors", "message"),
    [
        (["A", "B", "A"], r"'A' appears twice"),
        (["A", "BC"], r"'BC' is not a factor code"),
        ([], "at least one"),
    ],
)
def test_bad_factor_lists_are_refused(factors: list[str], message: str) -> None:
    with pytest.raises(DesignError, match=message) as caught:
        full_factorial(factors)
    assert caught.value.subject == "factors"


def test_generators_may_be_written_with_stars_and_spaces() -> None:
    design = fractional_factorial(ABCDE, ["E = -A*B*C*D"])
    assert design.generators == ("E=-ABCD",)
    check_generators(ABCDE, ["E=ABCD"])


# --- agreement with pyDOE3 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("factors", "generators", "pydoe"),
    [
        ("ABCDE", ["E=ABCD"], "a b c d abcd"),
        ("ABCDE", ["E=-ABCD"], "a b c d -abcd"),
        ("ABCDEFG", ["E=ABC", "F=BCD", "G=ACD"], "a b c d abc bcd acd"),
        ("ABCDEF", ["D=AB", "E=-AC", "F=BC"], "a b c ab -ac bc"),
    ],
)
def test_same_runs_as_pydoe3_fracfact(factors: str, generators: list[str], pydoe: str) -> None:
    ours = fractional_factorial(list(factors), generators)
    assert run_set(ours.matrix) == run_set(fracfact(pydoe).astype(int))
    assert len(ours.matrix) == len(run_set(ours.matrix))


# --- by resolution -----------------------------------------------------------------------


def brute_force_best_pattern(k: int, m: int, resolution: int) -> list[int] | None:
    """Minimum aberration over every generator set, no symmetry shortcut, for small k."""
    columns = [c for c in range(1, 1 << m) if c.bit_count() >= 2]
    best: list[int] | None = None
    for chosen in itertools.combinations(columns, k - m):
        lengths = []
        for size in range(1, k - m + 1):
            for subset in itertools.combinations(chosen, size):
                xor = 0
                for c in subset:
                    xor ^= c
                lengths.append(xor.bit_count() + size)
        if min(lengths) < resolution:
            continue
        pattern = [lengths.count(n) for n in range(1, k + 1)]
        best = pattern if best is None or pattern < best else best
    return best


@pytest.mark.parametrize(
    ("k", "resolution", "runs", "pattern"),
    [
        # Word-length patterns of minimum-aberration designs (Chen, Sun & Wu 1993 catalogue).
        (5, 5, 16, {5: 1}),
        (6, 4, 16, {4: 3}),
        (7, 4, 16, {4: 7}),
        (8, 4, 16, {4: 14, 8: 1}),
        (7, 3, 8, {3: 7, 4: 7, 7: 1}),
        (6, 5, 32, {6: 1}),
        (8, 5, 64, {5: 2, 6: 1}),
        (9, 5, 128, {6: 3}),
        (11, 3, 16, None),
        (11, 4, 32, None),
        (11, 5, 128, None),
        (10, 6, 256, None),
    ],
)
def test_by_resolution_gives_smallest_minimum_aberration_fraction(
    k: int, resolution: int, runs: int, pattern: dict[int, int] | None
) -> None:
    design = by_resolution(letters(k), resolution)
    assert len(design.matrix) == runs
    assert design.resolution is not None
    assert design.resolution >= resolution
    if pattern is not None:
        assert word_length_pattern(design) == [pattern.get(n, 0) for n in range(1, k + 1)]
    smaller = runs // 2
    refusal = "cannot reach resolution" if smaller > k else "must be a power of two from"
    with pytest.raises(DesignError, match=refusal) as caught:
        by_resolution(letters(k), resolution, runs=smaller)
    assert caught.value.subject == "runs"


def test_resolution_holds_on_the_run_matrix_itself() -> None:
    design = by_resolution(letters(11), 4)
    for size in (1, 2, 3):
        for term in itertools.combinations(range(11), size):
            product = design.matrix[:, term].prod(axis=1)
            assert abs(int(product.sum())) < len(product), term


@pytest.mark.parametrize(("k", "m", "resolution"), [(6, 3, 3), (7, 4, 3), (7, 4, 4), (8, 5, 4)])
def test_search_shortcut_finds_the_brute_force_optimum(k: int, m: int, resolution: int) -> None:
    design = by_resolution(letters(k), resolution, runs=1 << m)
    assert word_length_pattern(design) == brute_force_best_pattern(k, m, resolution)


def test_too_high_a_resolution_falls_back_to_the_full_factorial() -> None:
    design = by_resolution(ABCDE, 6)
    assert design.generators == ()
    assert len(design.matrix) == 32


def test_by_resolution_is_fast_for_eleven_factors() -> None:
    start = time.perf_counter()
    by_resolution(letters(11), 4, order="yates")
    by_resolution(letters(11), 3, order="yates")
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("k", "resolution", "runs", "message"),
    [
        (5, 2, None, "resolution must be an integer of at least 3"),
        (12, 3, None, "up to 11 factors"),
        (5, 4, 12, "runs must be a power of two from 8 to 32"),
        (5, 4, 4, "runs must be a power of two"),
    ],
)
def test_impossible_resolution_requests_are_refused(
    k: int, resolution: int, runs: int | None, message: str
) -> None:
    with pytest.raises(DesignError, match=message):
        by_resolution(letters(k), resolution, runs=runs)


# --- centre points, fold-over, run order -------------------------------------------------


def test_centre_points_are_appended_at_coded_zero() -> None:
    design = fractional_factorial(ABCDE, ["E=ABCD"]).with_centre_points(3)
    assert design.matrix.shape == (19, 5)
    assert design.condition_ids[-4:] == ("c16", "ctr1", "ctr2", "ctr3")
    assert design.runs()[-1] == dict.fromkeys(ABCDE, 0)
    assert design.with_centre_points(1).condition_ids[-1] == "ctr4"
    assert design.resolution == 5


def test_foldover_of_resolution_three_is_resolution_four() -> None:
    design = by_resolution(letters(7), 3)
    assert (len(design.matrix), design.resolution) == (8, 3)
    folded = design.foldover()
    assert (len(folded.matrix), folded.resolution) == (16, 4)
    assert run_set(folded.matrix) == run_set(design.matrix) | run_set(-design.matrix)
    assert all(len(word) % 2 == 0 for word in folded.defining_relation())


def test_foldover_keeps_signs_and_centre_points() -> None:
    design = fractional_factorial(ABCDE, ["D=-AB", "E=AC"]).with_centre_points(2)
    folded = design.foldover()
    assert folded.defining_relation() == ("-BCDE",)
    assert folded.centre_points == 2
    factorial = design.matrix[:8]
    assert run_set(folded.matrix[:16]) == run_set(factorial) | run_set(-factorial)


def test_foldover_without_odd_words_is_refused() -> None:
    with pytest.raises(DesignError, match="no odd-length word"):
        fractional_factorial(list("ABCDEF"), ["E=ABC", "F=BCD"]).foldover()


def test_run_order_is_a_seeded_permutation() -> None:
    design = full_factorial(ABCDE)
    order = design.run_order(seed=7)
    assert sorted(order) == list(range(32))
    assert order == design.run_order(seed=7)
    assert order != design.run_order(seed=8)
    assert order != list(range(32))


def test_design_matrix_cannot_be_changed_in_place() -> None:
    design = full_factorial(list("AB"))
    with pytest.raises(ValueError):
        design.matrix[0, 0] = 1


# --- decoding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("levels", "level", "value"),
    [
        (Levels(6, 8, scale="integer"), -1, 6),
        (Levels(6, 8, scale="integer"), 1, 8),
        (Levels(6, 8, scale="integer"), 0, 7),
        (Levels(48, 72, centre=64, scale="integer"), 0, 64),
        (Levels(0.03, 0.05), 0, 0.04),
        (Levels(0.03, 0.05), 1, 0.05),
        (Levels(1e-4, 1e-2, scale="log"), 0, 1e-3),
        (Levels(262144, 524288, scale="log"), 0, 262144 * math.sqrt(2)),
        (Levels(262144, 524288, scale="log"), -1, 262144),
        (Levels(0.25, 0.5), -0.5, 0.3125),
    ],
)
def test_decode_coded_levels_to_hyperparameters(levels: Levels, level: float, value: float) -> None:
    decoded = decode(level, levels)
    assert decoded == pytest.approx(value, rel=1e-12)


def test_integers_stay_integers() -> None:
    assert type(decode(0, Levels(6, 8, scale="integer"))) is int
    assert type(decode(1, Levels(48, 72, scale="integer"))) is int
    assert type(decode(0, Levels(0.25, 0.5))) is float


def test_integer_factor_without_integer_midpoint_asks_for_a_centre() -> None:
    with pytest.raises(DesignError, match=r"no integer value at coded level 0 \(7.5\)"):
        decode(0, Levels(6, 9, scale="integer"))


@pytest.mark.parametrize(
    ("level", "levels", "message"),
    [
        (2, Levels(1, 2), r"within \[-1, \+1\], got 2"),
        (0, Levels(-1.0, 1.0, scale="log"), "log scale needs positive levels"),
        (0, Levels(1, 2, scale="cubic"), "scale 'cubic' is not known"),  # type: ignore[arg-type]
    ],
)
def test_decode_refuses_what_it_cannot_decode(level: float, levels: Levels, message: str) -> None:
    with pytest.raises(DesignError, match=message):
        decode(level, levels)


def test_decode_run_maps_every_factor_of_a_condition() -> None:
    levels = {"A": Levels(6, 8, scale="integer"), "C": Levels(0.03, 0.05)}
    assert decode_run({"A": 1, "C": -1}, levels) == {"A": 8, "C": 0.03}
    with pytest.raises(DesignError, match="no levels declared for B"):
        decode_run({"A": 1, "B": 1}, levels)
