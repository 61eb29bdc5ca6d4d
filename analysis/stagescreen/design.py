"""Two-level factorial designs: full 2^k, regular 2^(k-p) fractions and their alias structure.

Conditions are numbered as in the paper (arXiv 2606.05186, sec. 4.3) rather than in Yates
order: the base (non-generated) factors are enumerated with the FIRST factor varying slowest
and low (-1) before high (+1); generated factors follow from their generators. So in the
paper's 2^(5-1) screen with E=ABCD, c07 is A-,B+,C+,D-,E+ and c10 is A+,B-,C-,D+,E+, and in
the full 2^5 space c14 is A-,B+,C+,D-,E+. Yates order (first factor fastest) is available
with ``order="yates"``; condition ids are then positions in that order.

Effects and defining words are bit masks over the factors (bit i is the i-th factor), so the
product of two effects is an XOR and a word's length is its popcount. Designs "by
resolution" come from an exhaustive minimum-aberration search (Fries & Hunter 1980: the
lexicographically smallest word-length pattern), cut down by the symmetry among base
factors, and the resolution of the result is checked again on the run matrix itself rather
than trusted from the algebra, because a public library's helper is known to return less
than asked.

Real hyperparameter values are not this module's business: a factor's levels belong to the
spec's `Factor`, whose `decode` maps coded levels to them.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Literal

import numpy as np

Order = Literal["paper", "yates"]
Subject = Literal["factors", "generators", "resolution", "runs", "levels", "order", "alias_order"]

ORDERS: tuple[str, ...] = ("paper", "yates")
MAX_RESOLUTION_FACTORS = 11
"""The minimum-aberration search is exhaustive; beyond 11 factors it stops being instant."""


class DesignError(ValueError):
    """A design request that cannot be met; `subject` says which input is at fault.

    `index` is the position of the generator at fault in the list given, when one is, so the
    spec can name `design.generators[1]` while the command line names `--generators`.
    """

    def __init__(
        self, message: str, subject: Subject = "generators", index: int | None = None
    ) -> None:
        super().__init__(message)
        self.subject: Subject = subject
        self.index = index


@dataclass(frozen=True)
class _Generator:
    """One parsed generator such as E=-ABCD: `factor` = sign * product of `base`."""

    factor: int
    base: int
    sign: int
    text: str
    index: int
    """Position in the generators as given, for naming it in a problem."""

    @property
    def word(self) -> int:
        return self.base | (1 << self.factor)


# --- words ------------------------------------------------------------------------------


def _bits(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


def _word_key(mask: int) -> tuple[int, list[int]]:
    """Shorter words first, then by factor order (A before B), as textbooks list them."""
    return mask.bit_count(), _bits(mask)


def _spell(mask: int, factors: Sequence[str], sign: int = 1, sep: str = "") -> str:
    return ("-" if sign < 0 else "") + sep.join(factors[i] for i in _bits(mask))


def _subgroup(gens: Sequence[_Generator]) -> list[tuple[int, int]]:
    """Every non-identity word the generators span, with its sign."""
    words: list[tuple[int, int]] = []
    for size in range(1, len(gens) + 1):
        for chosen in itertools.combinations(gens, size):
            mask, sign = 0, 1
            for gen in chosen:
                mask ^= gen.word
                sign *= gen.sign
            words.append((mask, sign))
    return sorted(words, key=lambda word: _word_key(word[0]))


def _roman(number: int) -> str:
    """3 -> "III", 5 -> "V": resolutions are named in Roman numerals by convention."""
    numerals = ((50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"))
    out = ""
    for value, letters in numerals:
        count, number = divmod(number, value)
        out += letters * count
    return out


# --- parsing and checks -----------------------------------------------------------------

# No two neighbouring parts can match the same text (an empty sign between two runs of
# spaces, say), so a long malformed generator is refused in linear time, not quadratic.
_GENERATOR = re.compile(
    r"^\s*(?P<lhs>[A-Za-z])\s*=\s*(?:(?P<sign>[+-])\s*)?(?P<rhs>[A-Za-z*][A-Za-z*\s]*)$"
)


def _check_factors(factors: Sequence[str]) -> tuple[str, ...]:
    if isinstance(factors, str):
        raise DesignError(
            f"factors must be a sequence of letters such as ['A', 'B', 'C'], got the string "
            f"{factors!r}",
            "factors",
        )
    names = tuple(factors)
    if not names:
        raise DesignError("need at least one factor letter, got none", "factors")
    for name in names:
        if not (isinstance(name, str) and len(name) == 1 and name.isalpha()):
            raise DesignError(
                f"{name!r} is not a factor code; accepted: one letter each (A, B, ...)",
                "factors",
            )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DesignError(
                f"factor {name!r} appears twice in {','.join(names)}; each code letter once",
                "factors",
            )
        seen.add(name)
    return names


def _parse_one(text: str, factors: Sequence[str], index: int) -> _Generator:
    """One generator on its own: its form and its letters, before how it sits with the rest."""
    match = _GENERATOR.match(text) if isinstance(text, str) else None
    letters = [c for c in match["rhs"] if not (c.isspace() or c == "*")] if match else []
    if match is None or not letters:
        raise DesignError(
            f"expected a generator such as E=ABCD or E=-ABCD (got {text!r})", index=index
        )
    lhs = match["lhs"]
    unknown = [c for c in dict.fromkeys([lhs, *letters]) if c not in factors]
    if unknown:
        raise DesignError(
            f"unknown factor code {', '.join(unknown)} in {text!r} (codes: {', '.join(factors)})",
            index=index,
        )
    if lhs in letters:
        raise DesignError(
            f"{text!r} defines {lhs} in terms of itself; write it in other factors", index=index
        )
    repeated = [c for c in dict.fromkeys(letters) if letters.count(c) > 1]
    if repeated:
        raise DesignError(
            f"repeats {', '.join(repeated)} in {text!r}; write each factor once", index=index
        )
    base = sum(1 << factors.index(letter) for letter in letters)
    sign = -1 if match["sign"] == "-" else 1
    canonical = f"{lhs}={'-' if sign < 0 else ''}{_spell(base, factors)}"
    return _Generator(factors.index(lhs), base, sign, canonical, index)


def _set_problems(gens: Sequence[_Generator], factors: Sequence[str]) -> list[DesignError]:
    """How well-formed generators sit together: one per generated factor, each written in the
    base factors, and no defining word so short that two main effects become one."""
    problems: list[DesignError] = []
    by_factor: dict[int, _Generator] = {}
    for gen in gens:
        if gen.factor in by_factor:
            first = by_factor[gen.factor]
            problems.append(
                DesignError(
                    f"{factors[gen.factor]} is generated twice ({first.text!r} and "
                    f"{gen.text!r}); give each generated factor one generator",
                    index=gen.index,
                )
            )
        by_factor.setdefault(gen.factor, gen)
    base_letters = ", ".join(f for j, f in enumerate(factors) if j not in by_factor)
    for gen in gens:
        used = [i for i in _bits(gen.base) if i in by_factor]
        if used:
            problems.append(
                DesignError(
                    f"{gen.text!r} uses {factors[used[0]]}, which is itself generated by "
                    f"{by_factor[used[0]].text!r}; write every generator in the base factors "
                    f"({base_letters})",
                    index=gen.index,
                )
            )
    return problems or _main_effects_aliased(gens, factors)


def _main_effects_aliased(gens: Sequence[_Generator], factors: Sequence[str]) -> list[DesignError]:
    """The first defining word of length <= 2, which makes two main effects indistinguishable."""
    for size in range(1, len(gens) + 1):
        for chosen in itertools.combinations(gens, size):
            mask = 0
            for gen in chosen:
                mask ^= gen.word
            if mask.bit_count() <= 2:
                first, second = (factors[i] for i in _bits(mask))
                named = " and ".join(repr(gen.text) for gen in chosen)
                return [
                    DesignError(
                        f"{named} {'alias' if size > 1 else 'aliases'} main effect {first} "
                        f"with main effect {second} (defining word {first}{second}); every "
                        "defining word needs at least 3 letters (resolution III or more)",
                        index=chosen[0].index if size == 1 else None,
                    )
                ]
    return []


def _read_generators(
    factors: Sequence[str], generators: Iterable[str]
) -> tuple[tuple[_Generator, ...], list[DesignError]]:
    """The generators in factor order, and every problem found with them.

    Each generator is read on its own first, so all malformed ones are named at once; how
    they sit together is judged only when every one of them could be read.
    """
    if isinstance(generators, str):
        generators = [generators]
    gens: list[_Generator] = []
    problems: list[DesignError] = []
    for index, text in enumerate(generators):
        try:
            gens.append(_parse_one(text, factors, index))
        except DesignError as error:
            problems.append(error)
    gens.sort(key=lambda gen: gen.factor)
    if not problems:
        problems = _set_problems(gens, factors)
    return tuple(gens), problems


def _parse_generators(factors: Sequence[str], generators: Iterable[str]) -> tuple[_Generator, ...]:
    gens, problems = _read_generators(factors, generators)
    if problems:
        raise problems[0]
    return gens


def generator_problems(factors: Sequence[str], generators: Sequence[str]) -> list[DesignError]:
    """Every problem with these generators (none when they define a usable fraction).

    What the spec validator calls: each problem's `index` names the generator at fault, or is
    None when several generators are at fault together.
    """
    return _read_generators(_check_factors(factors), generators)[1]


def defining_relation(factors: Sequence[str], generators: Sequence[str]) -> tuple[str, ...]:
    """All words of I = ..., e.g. ("ABCDE",) for E=ABCD; a leading '-' marks I = -WORD."""
    names = _check_factors(factors)
    gens = _parse_generators(names, generators)
    return tuple(_spell(mask, names, sign) for mask, sign in _subgroup(gens))


# --- construction -----------------------------------------------------------------------


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise DesignError(f"order {order!r} is not known; accepted: {', '.join(ORDERS)}", "order")


def _base_bits(k: int, gens: Sequence[_Generator]) -> list[int]:
    generated = {gen.factor for gen in gens}
    return [i for i in range(k) if i not in generated]


def _condition_ids(n: int) -> tuple[str, ...]:
    return tuple(_condition_id(i, n) for i in range(n))


def _condition_id(index: int, n: int) -> str:
    """The id of condition `index` (from 0) of n: c01, c02, ..., as wide as n needs."""
    return f"c{index + 1:0{max(2, len(str(n)))}d}"


def _matrix(k: int, gens: Sequence[_Generator], order: str) -> np.ndarray:
    base = _base_bits(k, gens)
    row = np.arange(1 << len(base))
    matrix = np.empty((row.size, k), dtype=np.int64)
    for j, factor in enumerate(base):
        shift = len(base) - 1 - j if order == "paper" else j
        matrix[:, factor] = np.where(row >> shift & 1, 1, -1)
    for gen in gens:
        matrix[:, gen.factor] = gen.sign * matrix[:, _bits(gen.base)].prod(axis=1)
    return matrix


@dataclass(frozen=True, eq=False)
class Design:
    """A two-level design: the run matrix in condition order plus how it was generated."""

    factors: tuple[str, ...]
    generators: tuple[str, ...]
    matrix: np.ndarray
    """Shape (runs, k), -1/+1, rows in condition order."""
    condition_ids: tuple[str, ...]
    order: Order = "paper"

    @cached_property
    def _gens(self) -> tuple[_Generator, ...]:
        return _parse_generators(self.factors, self.generators)

    @cached_property
    def _words(self) -> list[tuple[int, int]]:
        return _subgroup(self._gens)

    def defining_relation(self) -> tuple[str, ...]:
        """All words of the defining relation, letters in factor order, shortest first."""
        return tuple(_spell(mask, self.factors, sign) for mask, sign in self._words)

    @property
    def resolution(self) -> int | None:
        """Length of the shortest defining word; None for a full factorial (nothing aliased)."""
        return min((mask.bit_count() for mask, _ in self._words), default=None)

    @property
    def resolution_numeral(self) -> str | None:
        """The resolution as textbooks write it ("V"); None for a full factorial."""
        return None if self.resolution is None else _roman(self.resolution)

    def describe(self) -> str:
        """What kind of design this is, e.g. "2^(5-1) regular fraction" or "2^3 full factorial"."""
        k, p = len(self.factors), len(self.generators)
        return f"2^({k}-{p}) regular fraction" if p else f"2^{k} full factorial"

    def alias_chains(self, max_order: int = 2) -> list[list[str]]:
        """Every effect of up to `max_order` factors, once, in the chain of effects it is aliased
        with: [["A", "B:D", "C:E"], ["B", "A:D"], ...].

        Effects are named the way models name them (`A:B`; `I` is the mean). A chain leaves out
        its effects of higher order, as textbooks list aliases "up to two-factor interactions",
        so a chain of one effect is one that nothing else up to that order is aliased with.
        Each chain starts with its lowest-order effect and chains are in the order of those,
        the mean's chain first; a leading '-' marks an effect that enters with the opposite
        sign.
        """
        k = len(self.factors)
        if not 1 <= max_order <= k:
            raise DesignError(
                f"must be between 1 and {k} (the number of factors), got {max_order}",
                "alias_order",
            )
        listed: set[int] = set()
        chains: list[tuple[int, list[str]]] = []
        for size in range(1, max_order + 1):
            for term in itertools.combinations(range(k), size):
                effect = sum(1 << i for i in term)
                if effect in listed:
                    continue
                members = [(effect, 1)] + [(effect ^ mask, sign) for mask, sign in self._words]
                members = sorted(
                    ((mask, sign) for mask, sign in members if mask.bit_count() <= max_order),
                    key=lambda member: _word_key(member[0]),
                )
                listed.update(mask for mask, _ in members)
                lead, lead_sign = members[0]
                names = [
                    _spell(mask, self.factors, sign * lead_sign, sep=":") if mask else "I"
                    for mask, sign in members
                ]
                chains.append((lead, names))
        return [names for _, names in sorted(chains, key=lambda chain: _word_key(chain[0]))]

    def runs(self) -> list[dict[str, int]]:
        """One {factor: coded level} per run, in condition order."""
        return [
            {name: int(level) for name, level in zip(self.factors, row, strict=True)}
            for row in self.matrix
        ]


def _frozen(matrix: np.ndarray) -> np.ndarray:
    matrix.setflags(write=False)
    return matrix


def fractional_factorial(
    factors: Sequence[str], generators: Sequence[str], order: Order = "paper"
) -> Design:
    """The regular fraction defined by generators such as ["E=ABCD"] or ["E=-ABCD"]."""
    names = _check_factors(factors)
    _check_order(order)
    gens = _parse_generators(names, generators)
    matrix = _frozen(_matrix(len(names), gens, order))
    return Design(
        factors=names,
        generators=tuple(gen.text for gen in gens),
        matrix=matrix,
        condition_ids=_condition_ids(len(matrix)),
        order=order,
    )


def full_factorial(factors: Sequence[str], order: Order = "paper") -> Design:
    """All 2^k combinations."""
    return fractional_factorial(factors, (), order=order)


def full_factorial_run(factors: Sequence[str], index: int) -> dict[str, int]:
    """Run `index` (from 0) of the 2^k full factorial in paper order, counted rather than
    built: `full_factorial(factors).runs()[index]` without the other 2^k - 1."""
    k = len(factors)
    if not 0 <= index < 1 << k:
        raise DesignError(f"run {index} is not in the 2^{k} full factorial", "runs")
    return {name: 1 if index >> (k - 1 - j) & 1 else -1 for j, name in enumerate(factors)}


def condition_id(
    levels: Mapping[str, int],
    factors: Sequence[str],
    generators: Sequence[str] = (),
    order: Order = "paper",
) -> str:
    """The id ("c07") of the condition with these coded levels in the given design."""
    names = _check_factors(factors)
    _check_order(order)
    gens = _parse_generators(names, generators)
    for name in names:
        if levels.get(name) not in (-1, 1):
            raise DesignError(
                f"{name} must be -1 or +1 to name a condition, got {levels.get(name)!r}",
                "levels",
            )
    coded = [int(levels[name]) for name in names]
    for gen in gens:
        implied = gen.sign * math.prod(coded[i] for i in _bits(gen.base))
        if coded[gen.factor] != implied:
            raise DesignError(
                f"{names[gen.factor]}={coded[gen.factor]:+d} is not in the fraction; "
                f"{gen.text} sets it to {implied:+d} here",
                "levels",
            )
    base = _base_bits(len(names), gens)
    index = 0
    for j, factor in enumerate(base):
        shift = len(base) - 1 - j if order == "paper" else j
        index |= (coded[factor] > 0) << shift
    return _condition_id(index, 1 << len(base))


# --- by resolution ----------------------------------------------------------------------


def _check_reachable(k: int, resolution: int) -> None:
    """Refuse a resolution beyond every fraction of k factors.

    The best fraction is the half fraction whose one defining word holds every factor, of
    resolution k; with fewer than 3 factors even that aliases two main effects.
    """
    if k < 3:
        raise DesignError(
            f"no fraction of {k} factor{'s' if k > 1 else ''} reaches resolution "
            f"{_roman(resolution)} ({resolution}): any fraction of fewer than 3 factors aliases "
            f"two main effects; use the full factorial (all {1 << k} runs)",
            "resolution",
        )
    if resolution > k:
        raise DesignError(
            f"no fraction of {k} factors reaches resolution {_roman(resolution)} "
            f"({resolution}): the best is resolution {_roman(k)}, the 2^({k}-1) half fraction "
            f"({1 << (k - 1)} runs); ask for resolution {k} or less, or use the full factorial "
            f"(all {1 << k} runs, nothing aliased)",
            "resolution",
        )


_CHUNK = 1 << 14
"""Candidate generator sets scored per numpy batch; bounds memory for the larger searches."""


@lru_cache(maxsize=256)
def _min_aberration(k: int, m: int, resolution: int) -> tuple[int, ...] | None:
    """Generator words (masks over the m base factors) of a minimum-aberration 2^(k-(k-m)).

    Returns None when no fraction of that size reaches `resolution`. Minimum aberration
    maximises resolution first, so the search starts from the highest resolution a generator
    word allows (m + 1) and steps down: high targets leave few candidate columns and cost
    little, and the first target met is the answer.
    """
    for target in range(m + 1, resolution - 1, -1):
        found = _best_of_resolution(k, m, target)
        if found is not None:
            return found
    return None


@lru_cache(maxsize=256)
def _best_of_resolution(k: int, m: int, resolution: int) -> tuple[int, ...] | None:
    """The smallest word-length pattern among generator sets whose words all reach `resolution`.

    Every candidate set holds a column of largest weight w, and permuting the base factors
    maps it to the canonical weight-w column (the first w factors) without changing the
    word-length pattern; so fixing that column loses no pattern and shrinks the search.
    """
    p = k - m
    minimum = max(resolution - 1, 2)
    columns = [c for c in range(1, 1 << m) if c.bit_count() >= minimum]
    best: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    for weight in range(minimum, m + 1):
        canonical = (1 << weight) - 1
        others = [c for c in columns if c.bit_count() <= weight and c != canonical]
        combos = itertools.combinations(others, p - 1)
        while chunk := list(itertools.islice(combos, _CHUNK)):
            rest = np.array(chunk, dtype=np.int16).reshape(len(chunk), p - 1)
            found = _best_in_batch(k, canonical, rest, resolution)
            if found is not None and (best is None or found[0] < best[0]):
                best = found
    return None if best is None else best[1]


def _best_in_batch(
    k: int, canonical: int, rest: np.ndarray, resolution: int
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(pattern, columns) of the best set in one batch; each row is `canonical` + `rest`."""
    cols = np.hstack([np.full((len(rest), 1), canonical, dtype=np.int16), rest])
    p = cols.shape[1]
    # Word of generator subset s: XOR of its columns, plus one generated letter per member.
    xors = np.zeros((len(cols), 1 << p), dtype=np.int16)
    for s in range(1, 1 << p):
        low = (s & -s).bit_length() - 1
        xors[:, s] = xors[:, s & (s - 1)] ^ cols[:, low]
    members = np.array([s.bit_count() for s in range(1, 1 << p)], dtype=np.int16)
    lengths = np.bitwise_count(xors[:, 1:]) + members
    feasible = lengths.min(axis=1) >= resolution
    if not feasible.any():
        return None
    lengths, cols = lengths[feasible], cols[feasible]
    pattern = np.stack([(lengths == n).sum(axis=1) for n in range(1, k + 1)], axis=1)
    first = int(np.lexsort(pattern.T[::-1])[0])
    return tuple(int(x) for x in pattern[first]), tuple(int(c) for c in cols[first])


def _resolution_of_matrix(matrix: np.ndarray, below: int) -> int | None:
    """Smallest number of columns whose product is constant over the runs, if under `below`.

    An independent check of the algebra: a constant product is exactly a defining word.
    """
    k = matrix.shape[1]
    for size in range(1, min(below, k + 1)):
        for term in itertools.combinations(range(k), size):
            product = matrix[:, term].prod(axis=1)
            if np.all(product == product[0]):
                return size
    return None


def by_resolution(
    factors: Sequence[str],
    resolution: int,
    runs: int | None = None,
    order: Order = "paper",
) -> Design:
    """The smallest minimum-aberration regular fraction of at least `resolution`.

    With `runs`, that run count is used and DesignError is raised when it cannot reach the
    resolution. The first factors are the base factors and the last ones are generated, as in
    the paper's E=ABCD. A resolution no fraction reaches is refused rather than quietly met
    by the full factorial, which costs twice the runs of the largest fraction.
    """
    names = _check_factors(factors)
    _check_order(order)
    k = len(names)
    if k > MAX_RESOLUTION_FACTORS:
        raise DesignError(
            f"by resolution supports up to {MAX_RESOLUTION_FACTORS} factors, got {k}; give "
            "generators explicitly for larger designs",
            "factors",
        )
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 3:
        raise DesignError(
            f"resolution must be an integer of at least 3 (III), got {resolution!r}; below III "
            "main effects are aliased with each other",
            "resolution",
        )
    smallest = max(1, math.ceil(math.log2(k + 1)))
    if runs is not None:
        m = runs.bit_length() - 1
        if runs < 1 or runs & (runs - 1) or not smallest <= m <= k:
            raise DesignError(
                f"runs must be a power of two from {1 << smallest} to {1 << k} for {k} factors, "
                f"got {runs}",
                "runs",
            )
        sizes = [m]
    else:
        _check_reachable(k, resolution)
        sizes = list(range(smallest, k))
    for m in sizes:
        if m == k:
            return full_factorial(names, order=order)
        columns = _min_aberration(k, m, resolution)
        if columns is None:
            continue
        generators = [f"{names[m + i]}={_spell(column, names)}" for i, column in enumerate(columns)]
        design = fractional_factorial(names, generators, order=order)
        achieved = _resolution_of_matrix(design.matrix, resolution)
        if achieved is not None or (design.resolution or k + 1) < resolution:
            raise RuntimeError(
                f"internal error: generators {generators} give resolution {achieved}, "
                f"not {resolution}"
            )
        return design
    best = next((r for r in range(resolution - 1, 2, -1) if _min_aberration(k, sizes[0], r)), None)
    reach = f"at most resolution {best}" if best else "no resolution III design"
    raise DesignError(
        f"runs={runs} cannot reach resolution {resolution} with {k} factors ({reach}); "
        f"use more runs or omit runs to get the smallest design that does",
        "runs",
    )
