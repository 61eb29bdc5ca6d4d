"""Checks across the sections of a study: what no single field can know.

Each returns (path relative to `spec`, message) pairs: codes a stage names must be factors,
a selection's source must come earlier and be of the kind its rule reads, a rule cannot pick
more conditions than its source ranks, generators must build a design, and so on. A stage's
kind must be registered (`stagescreen.kinds.KINDS`), and the kind checks the fields only it
reads. They take
the parsed parts (possibly from a leniently parsed, partly broken file) so `validate` lists
every problem in one pass.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence

from pydantic.alias_generators import to_camel

from stagescreen import design as designs
from stagescreen.kinds import KINDS
from stagescreen.planning.ids import format_budget
from stagescreen.study.bounds import MAX_DESIGN_RUNS, MAX_RUNS
from stagescreen.study.spec import (
    MODEL_RULES,
    RANKING_RULES,
    WINNER_RULES,
    DesignSpec,
    Factor,
    Pool,
    Selection,
    Stage,
    StudySpec,
    Trainer,
    default_codes,
    screen_design,
)
from stagescreen_contract.checks import CROSS_CHECKS, CrossCheck, defaults, value_problem
from stagescreen_contract.variables import SET_PER_RUN, TYPE_NAMES, VARIABLES, type_of


def cross_problems(
    factors: list[Factor] | None,
    stages: list[Stage],
    pools: list[Pool] | None,
    design: DesignSpec | None,
    trainer: Trainer | None,
    *,
    trains: bool = True,
) -> list[tuple[str, str]]:
    """Checks across sections; factors, pools, design or trainer are None when they did not
    parse, and then the checks that need them are left out rather than guessed at. Without
    `trains` the trainer's own checks (`_trainer_refuses`) are left out: the study is
    replayed or read, never run."""
    pool_check = _check_pools(pools or [])
    pool_names = [pool.name for pool in pools or []]
    if factors is None:
        return [*pool_check, *_check_stages(stages, None, pool_names)]
    codes = default_codes([factor.code for factor in factors])
    factor_problems = _check_factors(factors, codes)
    # A design over duplicate codes would only repeat the factor problem in other words.
    design_problems = (
        _check_design(design, codes) if design is not None and not factor_problems else []
    )
    screen_runs = (
        len(screen_design(design, codes).matrix)
        if design is not None and not factor_problems and not design_problems
        else None
    )
    return [
        *factor_problems,
        *design_problems,
        *pool_check,
        *_check_stages(stages, codes, pool_names, screen_runs),
        *([] if factor_problems else _check_centres(factors, codes, stages)),
        *(_check_trainer(trainer, factors) if trainer is not None else []),
        *(
            _trainer_refuses(factors, stages, trainer)
            if trains and trainer is not None and not factor_problems
            else []
        ),
    ]


def _check_factors(factors: list[Factor], codes: list[str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    first_name: dict[str, int] = {}
    first_code: dict[str, int] = {}
    for index, factor in enumerate(factors):
        if factor.name in first_name:
            other = first_name[factor.name]
            problems.append(
                (f"factors[{index}].name", f"duplicate of factors[{other}].name ({factor.name!r})")
            )
        first_name.setdefault(factor.name, index)
        code = codes[index]
        if code in first_code:
            other = first_code[code]
            problems.append(
                (
                    f"factors[{index}].code",
                    f"{code!r} is already the code of factors[{other}] "
                    f"({factors[other].name}); each factor needs its own letter",
                )
            )
        first_code.setdefault(code, index)
    return problems


def _check_centres(
    factors: list[Factor], codes: list[str], stages: list[Stage]
) -> list[tuple[str, str]]:
    """Every place a stage would put a categorical factor at level 0, which it does not have
    (a bridge, a control, a followup's fixed level or a greedy start at 0)."""
    categorical = {code: f for code, f in zip(codes, factors, strict=True) if f.categorical}
    if not categorical:
        return []
    problems: list[tuple[str, str]] = []

    def refuse(path: str, code: str, what: str, fix: str) -> None:
        problems.append(
            (
                path,
                f"factor {categorical[code].described()} is categorical: it has no centre, "
                f"so {what} cannot set it to 0; {fix}",
            )
        )

    for index, stage in enumerate(stages):
        base = f"stages[{index}]"
        for field, levels in (("fix", stage.fix), ("start", stage.start)):
            for code, level in levels.items():
                if level == 0 and code in categorical:
                    refuse(f"{base}.{field}.{code}", code, field, "use -1 or +1")
        for number, selection in enumerate(stage.select):
            path = f"{base}.select[{number}]"
            if selection.rule == "bridge":
                for code in selection.factors:
                    if code in categorical:
                        refuse(
                            f"{path}.factors", code, "rule bridge", "bridge numeric factors only"
                        )
            for code, level in selection.levels.items():
                if level == 0 and code in categorical:
                    refuse(f"{path}.levels.{code}", code, f"rule {selection.rule}", "use -1 or +1")
    return problems


def _check_design(design: DesignSpec, codes: list[str]) -> list[tuple[str, str]]:
    """Build-time problems of the screen design, at the field that causes each; its size is
    counted (2^(k-p)) before anything is built. A design by resolution needs no count: the
    search takes at most `design.MAX_RESOLUTION_FACTORS` factors, whose half fraction is
    far under the bound."""
    k = len(codes)
    if design.type == "full":
        return _check_design_runs("design.type", k, 0)
    if design.resolution is not None:
        try:
            designs.by_resolution(codes, design.resolution)
        except designs.DesignError as error:
            return [("design.resolution", str(error))]
        return []
    problems = [
        (
            "design.generators" if problem.index is None else f"design.generators[{problem.index}]",
            str(problem),
        )
        for problem in designs.generator_problems(codes, design.generators)
    ]
    return problems or _check_design_runs("design.generators", k, len(design.generators))


def _check_design_runs(path: str, factors: int, generated: int) -> list[tuple[str, str]]:
    """A 2^(factors-generated) design within `MAX_DESIGN_RUNS` conditions, counted."""
    runs = 2 ** (factors - generated)
    if runs <= MAX_DESIGN_RUNS:
        return []
    if generated:
        what, instead = f"2^({factors}-{generated}) fraction", "give more generators"
    else:
        what, instead = (
            f"2^{factors} full factorial",
            "use type fractional (generators or a resolution)",
        )
    return [
        (
            path,
            f"at most {MAX_DESIGN_RUNS} conditions per design (got {runs}, the {what}); {instead}",
        )
    ]


def _check_pools(pools: list[Pool]) -> list[tuple[str, str]]:
    seen: dict[str, int] = {}
    problems: list[tuple[str, str]] = []
    for index, pool in enumerate(pools):
        if pool.name in seen:
            problems.append(
                (f"pools[{index}].name", f"duplicate of pools[{seen[pool.name]}] ({pool.name!r})")
            )
        seen.setdefault(pool.name, index)
    return problems


def _check_codes(path: str, named: Iterable[str], codes: list[str] | None) -> list[tuple[str, str]]:
    if codes is None:
        return []
    unknown = [code for code in named if code not in codes]
    if not unknown:
        return []
    listing = ", ".join(dict.fromkeys(codes))
    return [(path, f"unknown factor code {', '.join(unknown)} (codes: {listing})")]


def _check_stages(
    stages: list[Stage],
    codes: list[str] | None,
    pool_names: list[str],
    screen_runs: int | None = None,
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    position: dict[str, int] = {}
    roles = _anchor_roles(stages)
    for index, stage in enumerate(stages):
        if stage.name in position:
            problems.append(
                (
                    f"stages[{index}].name",
                    f"duplicate of stages[{position[stage.name]}] ({stage.name!r})",
                )
            )
        position.setdefault(stage.name, index)
    for index, stage in enumerate(stages):
        base = f"stages[{index}]"
        for at, pool in enumerate(stage.pools):
            if pool not in pool_names:
                problems.append(
                    (
                        f"{base}.pools[{at}]",
                        f"no pool named {pool!r} (declared: {', '.join(pool_names)})",
                    )
                )
        problems += _check_codes(f"{base}.fix", stage.fix, codes)
        problems += _check_codes(f"{base}.start", stage.start, codes)
        if codes is not None and stage.fix and set(stage.fix) >= set(codes):
            problems.append((f"{base}.fix", "fixes every factor; leave at least one free"))
        problems += _check_kind(base, stage, codes)
        for number, selection in enumerate(stage.select):
            problems += _check_selection(
                f"{base}.select[{number}]", selection, index, stages, position, codes, roles
            )
            problems += _check_supply(
                f"{base}.select[{number}].k", selection, stages, position, codes, screen_runs, roles
            )
    return problems


def _check_kind(base: str, stage: Stage, codes: list[str] | None) -> list[tuple[str, str]]:
    """The stage's kind is registered, it sets only the fields its kind reads (or others
    left at their defaults), and the kind's own checks pass."""
    kind = KINDS.get(stage.kind)
    if kind is None:
        names = [repr(name) for name in KINDS]
        accepted = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
        return [(f"{base}.kind", f"expected {accepted} (got {stage.kind!r})")]
    problems = []
    for field in Stage.model_fields:
        readers = [other.name for other in KINDS.values() if field in other.fields]
        default = Stage.model_fields[field].get_default(call_default_factory=True)
        if readers and field not in kind.fields and getattr(stage, field) != default:
            problems.append(
                (
                    f"{base}.{to_camel(field)}",
                    f"only for kind {' or '.join(readers)} (stage kind is {stage.kind})",
                )
            )
    return [*problems, *((f"{base}.{path}", text) for path, text in kind.problems(stage, codes))]


def _check_selection(
    path: str,
    selection: Selection,
    index: int,
    stages: list[Stage],
    position: dict[str, int],
    codes: list[str] | None,
    roles: Mapping[int, set[str]],
) -> list[tuple[str, str]]:
    problems = _check_codes(f"{path}.factors", selection.factors, codes)
    problems += _check_codes(f"{path}.levels", selection.levels, codes)
    if selection.rule == "control" and codes is not None and not problems:
        missing = [code for code in codes if code not in selection.levels]
        if missing:
            problems.append(
                (
                    f"{path}.levels",
                    f"missing factor {', '.join(missing)}; a control gives every factor a level",
                )
            )
    opposite = {"best": "worst", "worst": "best"}.get(selection.rule)
    if opposite and selection.role and re.split(r"[-_ ]", selection.role)[0] == opposite:
        problems.append(
            (
                f"{path}.role",
                f"a {selection.rule} rule labelled {selection.role!r} would read as the "
                f"{opposite} condition in every report; name it {selection.rule} or neutrally",
            )
        )
    source_name = selection.from_
    if source_name is None:
        return problems
    if source_name not in position:
        names = ", ".join(stage.name for stage in stages)
        return [*problems, (f"{path}.from", f"no stage named {source_name!r} (stages: {names})")]
    source_index = position[source_name]
    if source_index >= index:
        where = (
            "is this stage" if source_index == index else f"comes later (stages[{source_index}])"
        )
        earlier = ", ".join(stage.name for stage in stages[:index]) or "none"
        return [
            *problems,
            (
                f"{path}.from",
                f"stage {source_name!r} {where}; a selection can only use earlier stages "
                f"({earlier})",
            ),
        ]
    source = stages[source_index]
    needs = WINNER_RULES.get(selection.rule)
    if needs and source.kind != needs:
        problems.append(
            (
                f"{path}.from",
                f"rule {selection.rule} needs a {needs} stage ({source_name!r} is {source.kind})",
            )
        )
    fitted = KINDS.get(source.kind)
    if selection.rule in MODEL_RULES and fitted is not None and not fitted.fits_effects:
        effect_kinds = " or ".join(name for name, kind in KINDS.items() if kind.fits_effects)
        problems.append(
            (
                f"{path}.from",
                f"rule {selection.rule} predicts from fitted effects, so it needs a "
                f"{effect_kinds} stage ({source_name!r} is {source.kind}, which fits none)",
            )
        )
    if selection.among:
        offers = roles[id(source)]
        unknown = [role for role in selection.among if role not in offers]
        if unknown:
            offered = (
                f"its anchors' roles: {', '.join(sorted(offers))}"
                if offers
                else "its conditions have no roles (only anchor stages name roles)"
            )
            problems.append(
                (
                    f"{path}.among",
                    f"stage {source_name!r} has no anchors with role {', '.join(unknown)} "
                    f"({offered})",
                )
            )
    if selection.at != "longest" and selection.at not in source.budgets:
        budgets = ", ".join(f"{budget} s" for budget in source.budgets)
        problems.append(
            (
                f"{path}.at",
                f"{selection.at} s is not a budget of stage {source_name!r} (its budgets: "
                f"{budgets}, or longest)",
            )
        )
    return problems


def _check_supply(
    path: str,
    selection: Selection,
    stages: list[Stage],
    position: dict[str, int],
    codes: list[str] | None,
    screen_runs: int | None,
    roles: Mapping[int, set[str]],
) -> list[tuple[str, str]]:
    """A rule cannot pick more conditions than its source ranks: `plan` would price k
    anchors and the stage would run fewer."""
    if selection.rule not in RANKING_RULES or selection.from_ not in position:
        return []
    source = stages[position[selection.from_ or ""]]
    kind = KINDS.get(source.kind)
    supply = kind.supply(source, codes, screen_runs) if kind is not None else None
    if supply is None and source.select:
        wanted = selection.among
        if not set(wanted) <= roles[id(source)]:
            return []  # the unknown role is reported on `among`
        supply = sum(
            rule.picks for rule in source.select if not wanted or (rule.role or rule.rule) in wanted
        )
    if supply is None or selection.k <= supply:
        return []
    among = f" with roles {', '.join(selection.among)}" if selection.among else ""
    return [
        (
            path,
            f"k={selection.k} but stage {source.name!r} ranks at most {supply} conditions"
            f"{among}; lower k to {supply} or less",
        )
    ]


def _anchor_roles(stages: list[Stage]) -> dict[int, set[str]]:
    """The roles each stage's anchors can carry (by `id` of the stage): each rule's role
    (default its rule name), and for best/worst rules without one, the roles they inherit
    from their own source.

    Each stage is worked out once: walked again for every rule that reaches it, a chain of
    stages picking best and worst from the one before would cost 2^stages. A circle of
    sources (refused on `from`) is cut where it closes.
    """
    by_name = {other.name: other for other in stages}
    table: dict[int, set[str]] = {}

    def visit(stage: Stage, open_: frozenset[int]) -> set[str]:
        if id(stage) in table:
            return table[id(stage)]
        roles: set[str] = set()
        for selection in stage.select:
            if selection.role is None and selection.rule in ("best", "worst"):
                source = by_name.get(selection.from_ or "")
                if (
                    source is not None
                    and source is not stage
                    and source.select
                    and id(source) not in open_
                ):
                    roles |= visit(source, open_ | {id(stage)})
            roles.add(selection.role or selection.rule)
        table[id(stage)] = roles
        return roles

    for stage in stages:
        visit(stage, frozenset())
    return table


def _check_trainer(trainer: Trainer, factors: list[Factor]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for index, factor in enumerate(factors):
        if factor.name in trainer.hyperparameters:
            problems.append(
                (
                    f"trainer.hyperparameters.{factor.name}",
                    f"{factor.name} is a factor (factors[{index}]); remove it from the fixed "
                    "hyperparameters",
                )
            )
    return problems


# --- what the trainer would refuse -----------------------------------------------------------
# The trainer's own checks (stagescreen_contract), run on every factor level a study can run
# (low, high, and the centre where a bridge rule or a declared centre puts a run there), alone
# and in every combination with the other factors' levels, the fixed hyperparameters and the
# trainer's defaults.


def _unknown(name: str, path: str) -> tuple[str, str]:
    close = difflib.get_close_matches(name, VARIABLES, n=1)
    hint = f"; did you mean {close[0]}?" if close else " (python -m stagescreen_trainer --help)"
    return path, f"{name} is not a variable the trainer reads{hint}"


def _kind_mismatch(factor: Factor) -> str | None:
    """Why a categorical factor cannot name a numeric hyperparameter (or a numeric factor a
    string one), naming the hyperparameters that would fit; None when the kinds agree."""
    kind = type_of(factor.name)
    if factor.categorical == (kind is str):
        return None
    strings = sorted(
        name
        for name, variable in VARIABLES.items()
        if variable.metadata["kind"] == "hyper" and name not in SET_PER_RUN and type_of(name) is str
    )
    if factor.categorical:
        fits = (
            f"the trainer's string hyperparameters: {', '.join(strings)}"
            if strings
            else "the trainer has no string hyperparameter"
        )
        return (
            f"factor {factor.described()} is categorical but {factor.name} takes "
            f"{'an' if kind is int else 'a'} {TYPE_NAMES[kind]}; a categorical factor needs a "
            f"string hyperparameter ({fits}), or give {factor.name} low and high"
        )
    return (
        f"{factor.name} takes a string; give the factor levels: [a, b] (categorical) "
        "instead of low and high"
    )


def _levels_run(factor: Factor, stages: Sequence[Stage]) -> dict[str, int | float | str]:
    """The values a study can give the factor: low, high, and the centre when used (never
    for a categorical factor: `_check_centres` refuses a bridge on it)."""
    if factor.categorical:
        return {"levels[0]": factor.decode(-1), "levels[1]": factor.decode(1)}
    centred = factor.centre is not None or any(
        selection.rule == "bridge" and factor.code in selection.factors
        for stage in stages
        for selection in stage.select
    )
    levels: dict[str, int | float | str] = {"low": factor.decode(-1), "high": factor.decode(1)}
    if centred:
        levels["centre"] = factor.decode(0)
    return levels


def _trainer_refuses(
    factors: Sequence[Factor], stages: Sequence[Stage], trainer: Trainer
) -> list[tuple[str, str]]:
    """Every reason the trainer would refuse a run of this study, with its field path."""
    found: list[tuple[str, str]] = []
    usable: dict[int, dict[str, int | float | str]] = {}
    for index, factor in enumerate(factors):
        path = f"factors[{index}]"
        if factor.name not in VARIABLES:
            found.append(_unknown(factor.name, f"{path}.name"))
            continue
        if VARIABLES[factor.name].metadata["kind"] != "hyper" or factor.name in SET_PER_RUN:
            found.append((f"{path}.name", f"{factor.name} is a run setting, not a hyperparameter"))
            continue
        if why := _kind_mismatch(factor):
            found.append((f"{path}.{'levels' if factor.categorical else 'name'}", why))
            continue
        levels = _levels_run(factor, stages)
        bad = [(f"{path}.{field}", value_problem(factor.name, v)) for field, v in levels.items()]
        found += [(where, why) for where, why in bad if why]
        if "centre" in levels and levels["centre"] in (levels["low"], levels["high"]):
            found.append(
                (
                    f"{path}.centre",
                    f"{factor.name}'s centre comes out as {levels['centre']}, equal to a level: "
                    "a bridge point would repeat a corner; declare a centre between the levels",
                )
            )
        if not any(why for _, why in bad):
            usable[index] = levels
    fixed: dict[str, int | float | str | bool] = {}
    for name, value in trainer.hyperparameters.items():
        path = f"trainer.hyperparameters.{name}"
        if name not in VARIABLES:
            found.append(_unknown(name, path))
        elif name in SET_PER_RUN or VARIABLES[name].metadata["kind"] == "identity":
            found.append((path, f"{name} is set for each run by StageScreen, not by the study"))
        elif why := value_problem(name, value):
            found.append((path, why))
        else:
            fixed[name] = value
    if found:
        return found  # combinations of values already known to be wrong add only noise
    return _combination_problems(factors, usable, fixed)


def _failing_combination(
    check: CrossCheck,
    factors: Sequence[Factor],
    usable: Mapping[int, Sequence[tuple[str, int | float | str]]],
    base: Mapping[str, int | float | str | bool],
) -> tuple[tuple[int, ...], dict[int, tuple[str, int | float | str]], str] | None:
    """The first combination of every usable factor's levels (in product order, factors in
    spec order, levels low, high, centre) that fails `check`, as level positions, the levels
    and the message; None if none does.

    Only the factors the check reads change its answer, so only their levels are tried (at
    most 3^len(reads) of them, where all 3^k could be millions); every other factor is at
    its first level, where the first failing combination of all of them has it too.
    """
    indices = sorted(usable)
    read = [i for i in indices if factors[i].name in check.reads]
    for picks in itertools.product(*(range(len(usable[i])) for i in read)):
        chosen = dict(zip(read, picks, strict=True))
        position = tuple(chosen.get(i, 0) for i in indices)
        combination = {i: usable[i][at] for i, at in zip(indices, position, strict=True)}
        values = {**base, **{factors[i].name: value for i, (_, value) in combination.items()}}
        message = check.problem(values)
        if message is not None:
            return position, combination, message
    return None


def _combination_problems(
    factors: Sequence[Factor],
    usable: Mapping[int, Mapping[str, int | float | str]],
    fixed: Mapping[str, int | float | str | bool],
) -> list[tuple[str, str]]:
    """The trainer's cross-checks over every combination of the factors' levels; each check
    reported once, at the first combination that fails it, in the order of those."""
    levels = {i: list(usable[i].items()) for i in usable}
    base = {**defaults(), **fixed}
    found = []
    for number, check in enumerate(CROSS_CHECKS):
        failing = _failing_combination(check, factors, levels, base)
        if failing is None:
            continue
        position, combination, message = failing
        at = ", ".join(
            f"{factors[i].name}={value} ({field})" for i, (field, value) in combination.items()
        )
        owner = next((i for i in combination if factors[i].name == check.blames), None)
        fixed_at = f"trainer.hyperparameters.{check.blames}"
        path = f"factors[{owner}]" if owner is not None else fixed_at
        found.append((position, number, (path, message + (f" when {at}" if at else ""))))
    return [problem for _, _, problem in sorted(found, key=lambda item: item[:2])]


def runs_problems(spec: StudySpec) -> list[tuple[str, str]]:
    """The study's runs within `MAX_RUNS`: each stage's most runs as its kind prices them
    from the spec alone (conditions x budgets x seeds x pools; no plan is made), summed."""
    runs = [KINDS[stage.kind].expected_runs(spec, stage) for stage in spec.stages]
    total = sum(runs)
    if total <= MAX_RUNS:
        return []
    largest = sorted(range(len(runs)), key=lambda index: -runs[index])[:3]
    most = ", ".join(f"stages[{i}] ({spec.stages[i].name}) {runs[i]}" for i in largest)
    return [("stages", f"at most {MAX_RUNS} runs per study (got {total}; most in {most})")]


def spec_warnings(spec: StudySpec) -> list[tuple[str, str]]:
    """(field path, message) for what is valid but likely not meant: a long-horizon stage
    with a budget no longer than the longest a screen already ran answers nothing the
    screen did not (the stage exists to ask whether the ordering holds further out)."""
    screens = [stage for stage in spec.stages if stage.kind == "screen"]
    if not screens:
        return []
    screen = max(screens, key=lambda stage: max(stage.budgets))
    longest = max(screen.budgets)
    found = []
    for index, stage in enumerate(spec.stages):
        short = [b for b in stage.budgets if b <= longest]
        if stage.kind == "long-horizon" and short:
            found.append(
                (
                    f"stages[{index}].budgets",
                    f"long-horizon stage {stage.name!r} runs {format_budget(short[0])}, no longer "
                    f"than screen {screen.name!r} already runs ({format_budget(longest)}); give "
                    f"it budgets beyond the screen's, e.g. {format_budget(longest * 4)}",
                )
            )
    return found
