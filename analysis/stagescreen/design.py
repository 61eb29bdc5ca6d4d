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

Centre points are runs at coded level 0 with ids ``ctr1``, ``ctr2``, ...; they repeat one
condition, so they carry no condition number.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Literal, Protocol

import numpy as np

Order = Literal["paper", "yates"]
Scale = Literal["integer", "float", "log"]
Subject = Literal["factors", "generators", "resolution", "runs", "levels", "order"]

ORDERS: tuple[str, ...] = ("paper", "yates")
MAX_RESOLUTION_FACTORS = 11
"""The minimum-aberration search is exhaustive; beyond 11 factors it stops being instant."""

CENTRE_PREFIX = "ctr"


class DesignError(ValueError):
    """A design request that cannot be met; `subject` says which input is at fault."""

    def __init__(self, message: str, subject: Subject = "generators") -> None:
        super().__init__(message)
        self.subject: Subject = subject


@dataclass(frozen=True)
class _Generator:
    """One parsed generator such as E=-ABCD: `factor` = sign * product of `base`."""

    factor: int
    base: int
    sign: int
    text: str

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


# --- parsing and checks -----------------------------------------------------------------

_GENERATOR = re.compile(r"^\s*(?P<lhs>[A-Za-z])\s*=\s*(?P<sign>[+-]?)\s*(?P<rhs>[A-Za-z*\s]+)$")


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


def _parse_one(text: str, factors: Sequence[str]) -> _Generator:
    accepted = "accepted: a factor, '=', an optional '-', then base factors, e.g. 'E=ABCD'"
    match = _GENERATOR.match(text) if isinstance(text, str) else None
    if match is None:
        raise DesignError(f"generator {text!r} is not of the form X=WORD; {accepted}")
    known = ", ".join(factors)
    lhs = match["lhs"]
    if lhs not in factors:
        raise DesignError(
            f"generator {text!r} defines {lhs!r}, which is not a factor; factors are {known}"
        )
    letters = [c for c in match["rhs"] if not (c.isspace() or c == "*")]
    if not letters:
        raise DesignError(f"generator {text!r} has an empty word; {accepted}")
    base = 0
    for letter in letters:
        if letter not in factors:
            raise DesignError(
                f"generator {text!r} references unknown factor {letter!r}; factors are {known}"
            )
        bit = 1 << factors.index(letter)
        if base & bit:
            raise DesignError(f"generator {text!r} repeats factor {letter!r} in its word")
        base |= bit
    factor = factors.index(lhs)
    if base >> factor & 1:
        raise DesignError(
            f"generator {text!r} defines {lhs} in terms of itself; write it in other factors"
        )
    sign = -1 if match["sign"] == "-" else 1
    canonical = f"{lhs}={'-' if sign < 0 else ''}{_spell(base, factors)}"
    return _Generator(factor=factor, base=base, sign=sign, text=canonical)


def _parse_generators(factors: Sequence[str], generators: Iterable[str]) -> tuple[_Generator, ...]:
    if isinstance(generators, str):
        generators = [generators]
    gens = [_parse_one(text, factors) for text in generators]
    by_factor: dict[int, _Generator] = {}
    for gen in gens:
        if gen.factor in by_factor:
            raise DesignError(
                f"factor {factors[gen.factor]} is generated twice ({by_factor[gen.factor].text!r}"
                f" and {gen.text!r}); give each generated factor one generator"
            )
        by_factor[gen.factor] = gen
    for gen in gens:
        for i in _bits(gen.base):
            if i in by_factor:
                base_letters = ", ".join(f for j, f in enumerate(factors) if j not in by_factor)
                raise DesignError(
                    f"generator {gen.text!r} uses {factors[i]}, which is itself generated by "
                    f"{by_factor[i].text!r}; write every generator in the base factors "
                    f"({base_letters})"
                )
    gens.sort(key=lambda gen: gen.factor)
    _check_main_effects_clear(gens, factors)
    return tuple(gens)


def _check_main_effects_clear(gens: Sequence[_Generator], factors: Sequence[str]) -> None:
    """Reject a defining word of length <= 2: it makes two main effects indistinguishable."""
    for size in range(1, len(gens) + 1):
        for chosen in itertools.combinations(gens, size):
            mask = 0
            for gen in chosen:
                mask ^= gen.word
            if mask.bit_count() <= 2:
                first, second = (factors[i] for i in _bits(mask))
                named = " and ".join(repr(gen.text) for gen in chosen)
                raise DesignError(
                    f"{'generators' if size > 1 else 'generator'} {named} "
                    f"{'alias' if size > 1 else 'aliases'} main effect {first} with "
                    f"main effect {second} (defining word {first}{second}); every defining word "
                    f"needs at least 3 letters (resolution III or more)"
                )


def check_generators(factors: Sequence[str], generators: Sequence[str]) -> None:
    """Raise DesignError naming the generator at fault; what the spec validator calls."""
    _parse_generators(_check_factors(factors), generators)


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
    width = max(2, len(str(n)))
    return tuple(f"c{i:0{width}d}" for i in range(1, n + 1))


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
    """Shape (runs, k), -1/+1 (0 for centre points), rows in condition order."""
    condition_ids: tuple[str, ...]
    order: Order = "paper"
    centre_points: int = 0

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

    def aliases(self, max_order: int = 2) -> dict[str, list[str]]:
        """Alias chain of every effect up to `max_order` factors: {"A": ["BCDE"], "A:B": ["CDE"]}.

        Keys name effects the way models do (`A:B`); values are the aliased words, shortest
        first, with a leading '-' where the alias enters with a minus sign.
        """
        k = len(self.factors)
        if not 1 <= max_order <= k:
            raise DesignError(f"alias order must be between 1 and {k}, got {max_order}", "order")
        chains: dict[str, list[str]] = {}
        for size in range(1, max_order + 1):
            for term in itertools.combinations(range(k), size):
                effect = sum(1 << i for i in term)
                aliased = sorted(
                    ((effect ^ mask, sign) for mask, sign in self._words),
                    key=lambda word: _word_key(word[0]),
                )
                key = _spell(effect, self.factors, sep=":")
                chains[key] = [_spell(mask, self.factors, sign) for mask, sign in aliased]
        return chains

    def runs(self) -> list[dict[str, int]]:
        """One {factor: coded level} per run, in condition order."""
        return [
            {name: int(level) for name, level in zip(self.factors, row, strict=True)}
            for row in self.matrix
        ]

    def run_order(self, seed: int) -> list[int]:
        """Row indices in a random execution order, the same for the same seed."""
        return [int(i) for i in np.random.default_rng(seed).permutation(len(self.matrix))]

    def with_centre_points(self, n: int) -> Design:
        """The same design plus `n` runs at the centre (all factors at coded level 0)."""
        if n < 0:
            raise DesignError(f"centre points must be 0 or more, got {n}", "runs")
        total = self.centre_points + n
        factorial = len(self.matrix) - self.centre_points
        centre = np.zeros((total, len(self.factors)), dtype=np.int64)
        return replace(
            self,
            matrix=_frozen(np.vstack([self.matrix[:factorial], centre])),
            condition_ids=self.condition_ids[:factorial]
            + tuple(f"{CENTRE_PREFIX}{i}" for i in range(1, total + 1)),
            centre_points=total,
        )

    def foldover(self) -> Design:
        """The full fold-over: this fraction plus its sign-reversed mirror, as one fraction.

        Mirroring every column removes each odd-length word from the defining relation and
        keeps the even ones, so a resolution III design becomes resolution IV (Box & Hunter
        1961). The result is renumbered in its own condition order; the original runs are
        those where the first odd generator still holds with its original sign.
        """
        odd = [gen for gen in self._gens if gen.word.bit_count() % 2 == 1]
        if not odd:
            raise DesignError(
                "fold-over would repeat the same runs: the defining relation has no odd-length "
                f"word ({', '.join(self.defining_relation()) or 'full factorial'}); fold a "
                "design with an odd-length word, such as a resolution III fraction",
                "generators",
            )
        pivot = odd[0]
        folded: list[str] = []
        for gen in self._gens:
            if gen is pivot:
                continue
            # An odd word changes sign under the mirror; its product with the pivot does not.
            word, sign = gen.word, gen.sign
            if word.bit_count() % 2 == 1:
                word, sign = word ^ pivot.word, sign * pivot.sign
            base = word & ~(1 << gen.factor)
            folded.append(
                f"{self.factors[gen.factor]}={'-' if sign < 0 else ''}{_spell(base, self.factors)}"
            )
        design = fractional_factorial(self.factors, folded, order=self.order)
        return design.with_centre_points(self.centre_points) if self.centre_points else design


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
    return _condition_ids(1 << len(base))[index]


# --- by resolution ----------------------------------------------------------------------


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
    the paper's E=ABCD. Falls back to the full factorial when no fraction is enough.
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
        sizes = list(range(min(smallest, k), k + 1))
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


# --- decoding ---------------------------------------------------------------------------


class LevelsLike(Protocol):
    """Anything with a factor's real levels, such as the spec's Factor."""

    @property
    def low(self) -> float: ...
    @property
    def high(self) -> float: ...
    @property
    def centre(self) -> float | None: ...
    @property
    def scale(self) -> str: ...


@dataclass(frozen=True)
class Levels:
    """A factor's real values at coded -1 (low) and +1 (high), and optionally at 0."""

    low: float
    high: float
    centre: float | None = None
    scale: Scale = "float"


def decode(level: float, levels: LevelsLike) -> int | float:
    """The real hyperparameter value at a coded level in [-1, +1].

    Declared values come back exactly as declared. Between them, "float" interpolates
    linearly, "log" geometrically (so its centre is sqrt(low*high)), "integer" linearly and
    must land on an integer: a non-integer midpoint needs an explicit centre.
    """
    if not (isinstance(level, int | float) and -1 <= level <= 1):
        raise DesignError(f"coded level must be within [-1, +1], got {level!r}", "levels")
    if levels.scale not in ("integer", "float", "log"):
        raise DesignError(
            f"scale {levels.scale!r} is not known; accepted: integer, float, log", "levels"
        )
    declared: dict[float, float | None] = {-1: levels.low, 1: levels.high, 0: levels.centre}
    value = declared.get(level)
    if value is None:
        t = (level + 1) / 2
        if levels.scale == "log":
            if levels.low <= 0 or levels.high <= 0:
                raise DesignError(
                    f"log scale needs positive levels, got low={levels.low} high={levels.high}",
                    "levels",
                )
            value = math.exp(math.log(levels.low) + t * math.log(levels.high / levels.low))
        else:
            value = levels.low + t * (levels.high - levels.low)
    if levels.scale != "integer":
        return value
    if abs(value - round(value)) > 1e-9:
        raise DesignError(
            f"integer factor between {levels.low} and {levels.high} has no integer value at "
            f"coded level {level} ({value}); declare a centre or use scale float",
            "levels",
        )
    return round(value)


def decode_run(
    run: Mapping[str, float], levels: Mapping[str, LevelsLike]
) -> dict[str, int | float]:
    """Decode every factor of one run: {code: coded level} to {code: real value}."""
    missing = [code for code in run if code not in levels]
    if missing:
        raise DesignError(
            f"no levels declared for {', '.join(missing)}; declared: {', '.join(levels) or 'none'}",
            "levels",
        )
    return {code: decode(level, levels[code]) for code, level in run.items()}
