"""Two-level designs: the paper's numbering, alias structure, minimum aberration."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from pyDOE3 import fracfact

from stagescreen.design import (
    Design,
    DesignError,
    by_resolution,
    condition_id,
    defining_relation,
    fractional_factorial,
    full_factorial,
    full_factorial_run,
    generator_problems,
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
    assert screen.defining_relation() == ("ABCDE",)
    assert screen.resolution == 5
    chains = screen.alias_chains(max_order=5)
    assert chains[:3] == [["I", "A:B:C:D:E"], ["A", "B:C:D:E"], ["B", "A:C:D:E"]]
    assert ["A:B", "C:D:E"] in chains
    assert len(chains) == 16  # the 32 effects (with the mean) in pairs


@pytest.mark.parametrize(
    ("generators", "numeral", "kind"),
    [
        (["E=ABCD"], "V", "2^(5-1) regular fraction"),
        (["D=AB", "E=AC"], "III", "2^(5-2) regular fraction"),
        ([], None, "2^5 full factorial"),
    ],
)
def test_design_names_its_kind_and_resolution_as_textbooks_do(
    generators: list[str], numeral: str | None, kind: str
) -> None:
    design = fractional_factorial(ABCDE, generators)
    assert (design.describe(), design.resolution_numeral) == (kind, numeral)


def test_resolution_numerals_beyond_ten() -> None:
    letters14 = letters(14)
    design = fractional_factorial(letters14, ["N=" + "".join(letters14[:13])])
    assert (design.resolution, design.resolution_numeral) == (14, "XIV")


def test_each_alias_chain_is_listed_once_up_to_the_asked_order() -> None:
    design = fractional_factorial(ABCDE, ["D=AB", "E=AC"])
    assert design.alias_chains(max_order=2) == [
        ["A", "B:D", "C:E"],
        ["B", "A:D"],
        ["C", "A:E"],
        ["D", "A:B"],
        ["E", "A:C"],
        ["B:C", "D:E"],
        ["B:E", "C:D"],
    ]
    assert design.alias_chains(max_order=1) == [["A"], ["B"], ["C"], ["D"], ["E"]]
    assert design.alias_chains(max_order=3)[0] == ["I", "A:B:D", "A:C:E"]


@pytest.mark.parametrize(("k", "generators"), [(5, ["D=AB", "E=-AC"]), (6, ["E=ABC", "F=BCD"])])
def test_alias_chains_hold_every_effect_exactly_once(k: int, generators: list[str]) -> None:
    design = fractional_factorial(letters(k), generators)
    assert design.resolution is not None
    for order in range(1, k + 1):
        named = [name.lstrip("-") for chain in design.alias_chains(order) for name in chain]
        effects = [
            ":".join(term)
            for size in range(1, order + 1)
            for term in itertools.combinations(design.factors, size)
        ]
        mean = ["I"] if order >= design.resolution else []
        assert sorted(named) == sorted(mean + effects)


def test_alias_order_outside_one_to_k_is_refused() -> None:
    with pytest.raises(DesignError, match=r"between 1 and 3 \(the number of factors\), got 4"):
        full_factorial(list("ABC")).alias_chains(4)


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
    assert all(len(chain) == 1 for chain in full.alias_chains(5))


def test_negative_generator_gives_the_other_half_with_signed_aliases() -> None:
    plus = fractional_factorial(ABCDE, ["E=ABCD"])
    minus = fractional_factorial(ABCDE, ["E=-ABCD"])
    assert run_set(plus.matrix).isdisjoint(run_set(minus.matrix))
    assert np.all(minus.matrix.prod(axis=1) == -1)
    assert ["A:B", "-C:D:E"] in minus.alias_chains(3)


def test_aliases_of_resolution_three_design_name_the_confounded_main_effect() -> None:
    design = fractional_factorial(ABCDE, ["D=AB", "E=AC"])
    assert design.resolution == 3
    assert ["D", "A:B", "B:C:E"] in design.alias_chains(3)


def test_alias_words_really_are_confounded_in_the_matrix() -> None:
    design = fractional_factorial(list("ABCDEFG"), ["E=ABC", "F=ABD", "G=-ACD"])
    column = {f: design.matrix[:, i] for i, f in enumerate(design.factors)}
    column["I"] = np.ones(len(design.matrix), dtype=np.int64)
    for lead, *aliased in design.alias_chains(7):
        effect = np.prod([column[f] for f in lead.split(":")], axis=0)
        for name in aliased:
            sign = -1 if name.startswith("-") else 1
            alias = np.prod([column[f] for f in name.lstrip("-").split(":")], axis=0)
            assert np.array_equal(effect, sign * alias), (lead, name)


# --- generator checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("generators", "index", "message"),
    [
        (["E=ABCF"], 0, "unknown factor code F in 'E=ABCF' (codes: A, B, C, D, E)"),
        (["F=ABCD"], 0, "unknown factor code F in 'F=ABCD' (codes: A, B, C, D, E)"),
        (
            ["E=ABCD", "E=ABC"],
            1,
            "E is generated twice ('E=ABCD' and 'E=ABC'); give each generated factor one generator",
        ),
        (
            ["E=ABCD", "D=ABC"],
            0,
            "'E=ABCD' uses D, which is itself generated by 'D=ABC'; write every generator in "
            "the base factors (A, B, C)",
        ),
        (["E=ABCE"], 0, "'E=ABCE' defines E in terms of itself; write it in other factors"),
        (["E=AAB"], 0, "repeats A in 'E=AAB'; write each factor once"),
        (
            ["E=A"],
            0,
            "'E=A' aliases main effect A with main effect E (defining word AE); every defining "
            "word needs at least 3 letters (resolution III or more)",
        ),
        (
            ["D=ABC", "E=ABC"],
            None,
            "'D=ABC' and 'E=ABC' alias main effect D with main effect E (defining word DE); "
            "every defining word needs at least 3 letters (resolution III or more)",
        ),
        (["E ABCD"], 0, "expected a generator such as E=ABCD or E=-ABCD (got 'E ABCD')"),
        (["E="], 0, "expected a generator such as E=ABCD or E=-ABCD (got 'E=')"),
        (["E=*"], 0, "expected a generator such as E=ABCD or E=-ABCD (got 'E=*')"),
    ],
)
def test_bad_generators_are_refused_with_the_generator_named(
    generators: list[str], index: int | None, message: str
) -> None:
    [problem] = generator_problems(ABCDE, generators)
    assert (str(problem), problem.index, problem.subject) == (message, index, "generators")
    with pytest.raises(DesignError) as caught:
        fractional_factorial(ABCDE, generators)
    assert str(caught.value) == message


def test_every_malformed_generator_is_named_at_once() -> None:
    problems = generator_problems(list("ABCDEFG"), ["E=ABQ", "F=ABC", "G=A-B"])
    assert [(problem.index, str(problem)) for problem in problems] == [
        (0, "unknown factor code Q in 'E=ABQ' (codes: A, B, C, D, E, F, G)"),
        (2, "expected a generator such as E=ABCD or E=-ABCD (got 'G=A-B')"),
    ]


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
    assert generator_problems(ABCDE, ["E = -A*B*C*D"]) == []


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


@pytest.mark.parametrize(
    ("k", "resolution", "message"),
    [
        (
            4,
            5,
            "no fraction of 4 factors reaches resolution V (5): the best is resolution IV, the "
            "2^(4-1) half fraction (8 runs); ask for resolution 4 or less, or use the full "
            "factorial (all 16 runs, nothing aliased)",
        ),
        (5, 6, "no fraction of 5 factors reaches resolution VI (6): the best is resolution V"),
        (
            2,
            3,
            "no fraction of 2 factors reaches resolution III (3): any fraction of fewer than 3 "
            "factors aliases two main effects; use the full factorial (all 4 runs)",
        ),
    ],
)
def test_a_resolution_no_fraction_reaches_is_refused_not_met_by_the_full_factorial(
    k: int, resolution: int, message: str
) -> None:
    with pytest.raises(DesignError) as caught:
        by_resolution(letters(k), resolution)
    assert str(caught.value).startswith(message)
    assert caught.value.subject == "resolution"


def test_the_half_fraction_reaches_resolution_k() -> None:
    design = by_resolution(letters(4), 4)
    assert (len(design.matrix), design.generators) == (8, ("D=ABC",))


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


def test_design_matrix_cannot_be_changed_in_place() -> None:
    design = full_factorial(list("AB"))
    with pytest.raises(ValueError):
        design.matrix[0, 0] = 1


@pytest.mark.parametrize("factors", [["A"], ["A", "B", "C"], list("ABCDEFG")])
def test_a_run_of_the_full_factorial_is_counted_as_the_built_design_has_it(
    factors: list[str],
) -> None:
    """Random and halving stages draw from the 2^k space by index without building it."""
    built = full_factorial(factors).runs()
    assert [full_factorial_run(factors, i) for i in range(len(built))] == built
    with pytest.raises(DesignError):
        full_factorial_run(factors, len(built))


def test_a_malformed_generator_of_a_million_spaces_is_refused_at_once() -> None:
    """The generator pattern has no two parts that match the same spaces: linear time."""
    start = time.perf_counter()
    problems = generator_problems(list("ABC"), ["C=" + " " * 10**6 + "!"])
    assert time.perf_counter() - start < 1.0
    assert "expected a generator such as E=ABCD" in str(problems[0])
