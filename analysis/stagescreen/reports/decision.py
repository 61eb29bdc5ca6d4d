"""The study's answer, first: what it found, what to run next, and how far to trust it.

`decide` is pure: the spec and each analysed stage's `StageOutcome` (with the manifest and
the rehearsal word when there are) in, a typed `Decision` out. The study report opens with it
in words (`decision_section`) and `stagescreen report --format json` prints it for tools, so
the two cannot disagree. It only reads what the analysis wrote: the factors each fitted stage
retained at its judged budget and their effects there, the deciding stage's best per pool
(`status.deciding_outcome`) with its runner-up's paired comparison, the reversals
(`outcomes.stability`), the run counts and the noise floors (`statistics.noise`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stagescreen.outcomes.manifest import Manifest
from stagescreen.outcomes.model import AnchorRecord, Best, RankedCondition, StageOutcome
from stagescreen.outcomes.status import deciding_outcome
from stagescreen.reports.formatting import (
    FALLBACK_DECIMALS,
    best_digits,
    effect_digits,
    fmt_budget,
    fmt_effect,
    fmt_levels,
    fmt_mean,
    fmt_text,
    ranking_digits,
)
from stagescreen.statistics.noise import NoiseFloor, difference_detectable
from stagescreen.statistics.stability import Reversal
from stagescreen.storage.jsonvalues import JsonFloat, Scalar
from stagescreen.study.spec import StudySpec


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class RetainedFactor(_Model):
    """A retained factor and which way it moves the metric at the judged budget: `effect` is
    high minus low; `better` the level (`better_value` as the spec writes it) that improves
    the metric, None when the effect is zero or unknown."""

    code: str
    name: str
    effect: JsonFloat
    better: Literal["low", "high"] | None
    better_value: str | None


class Finding(_Model):
    """What one fitted stage (screen, follow-up) retained at the budget it judged on, and the
    smallest high-minus-low effect it detects there (None: no run noise measured)."""

    stage: str
    budget_s: int | None
    retained: list[RetainedFactor]
    detectable: JsonFloat = None
    digits: int = FALLBACK_DECIMALS
    """The decimals of the judged budget's effects table, which the report prints them at."""


class Behind(_Model):
    """A condition whose mean beats the best's in its cell but that ranks behind it because
    of its lost runs (`ranking.rank_conditions`): of its `runs` ended runs, `failed` failed
    and `diverged` diverged, counted apart as the run tables count them (in outcomes written
    before divergences were counted apart, `failed` holds both)."""

    condition_id: str
    mean: JsonFloat
    failed: int
    diverged: int
    runs: int


class Pick(_Model):
    """What to run next on one pool: the deciding stage's best with every role it holds, and
    how it stands against its runner-up. `verdict`: "ahead" (the paired interval excludes
    zero), "tied" (not distinguishable by a comparison that could have told them apart:
    choose on cost), "inconclusive" (not distinguishable, but the comparison had little
    chance: `because` says why, and the answer is to rerun both with more seeds), "alone"
    (nothing to compare with). `behind` lists the conditions with a better mean that rank
    behind on failures. `digits`: the decimals of the pick's ranking table, which the report
    prints its means at."""

    pool: str
    budget_s: int
    condition_id: str
    roles: list[str]
    mean: float
    adjusted: bool
    ci_low: JsonFloat
    ci_high: JsonFloat
    levels: dict[str, int]
    hyperparameters: dict[str, Scalar]
    verdict: Literal["ahead", "tied", "inconclusive", "alone"]
    because: list[str] = Field(default_factory=list)
    runner_up: str | None = None
    runner_up_mean: JsonFloat = None
    difference: JsonFloat = None
    paired_seeds: int | None = None
    behind: list[Behind] = Field(default_factory=list)
    against: list[str] = Field(default_factory=list)
    """Codes of retained factors (each as the last fitted stage that retained it found it)
    whose better level the pick does not hold, a centre level included: the answer and the
    screen disagree there."""
    detectable: JsonFloat = None
    """The smallest difference between two conditions the stage detects in this cell."""
    digits: int = FALLBACK_DECIMALS


class StageReversal(_Model):
    """A reversal (`StageOutcome.reversals`) with the stage it was found in."""

    stage: str
    reversal: Reversal


class RunTally(_Model):
    """Runs of the study: planned = succeeded + diverged + failed + missing + pending."""

    planned: int = 0
    succeeded: int = 0
    diverged: int = 0
    failed: int = 0
    missing: int = 0
    pending: int = 0


class Trust(_Model):
    """How far to trust the answer: the runs behind it, the seeds of the deciding stage, and
    whether anything was trained (`rehearsal`: SYNTHETIC or REPLAY, None when it was)."""

    rehearsal: str | None
    runs: RunTally
    stages: int
    analysed: int
    seeds: int | None
    waiting: list[str] = Field(default_factory=list)
    """Stages of the spec with no outcome yet, in spec order: the answer may still move."""


class Decision(_Model):
    """The study's answer (module docstring); `stage` is the stage whose best answers it."""

    study: str
    metric: str
    goal: str
    stage: str | None
    findings: list[Finding]
    picks: list[Pick]
    reversals: list[StageReversal]
    trust: Trust


# --------------------------------------------------------------------------------------------
# Deciding


def better_mean(a: float | None, b: float | None, goal: str) -> bool:
    """Whether mean `a` beats mean `b` under the metric's goal."""
    if a is None or b is None:
        return False
    return a < b if goal == "minimize" else a > b


def behind_on_failures(
    best: Best, ranking: Sequence[RankedCondition], goal: str
) -> list[RankedCondition]:
    """Conditions of the best's cell with a better mean than the best that rank behind it
    only because they failed or diverged on a larger share of their runs."""
    share = best.failed / best.runs if best.runs else 0.0
    return [
        entry
        for entry in sorted(ranking, key=lambda e: e.rank)
        if (entry.budget_s, entry.pool) == (best.budget_s, best.pool)
        and entry.condition_id != best.condition_id
        and entry.n > 0
        and entry.runs
        and entry.failed / entry.runs > share
        and better_mean(entry.mean, best.mean, goal)
    ]


def ranked_entry(
    outcome: StageOutcome, budget_s: int, pool: str, condition_id: str
) -> RankedCondition | None:
    """A condition's line of the stage's ranking in one cell (its roles, lost runs)."""
    cell = (budget_s, pool, condition_id)
    return next((e for e in outcome.ranking if (e.budget_s, e.pool, e.condition_id) == cell), None)


def failure_words(failed: int, diverged: int, runs: int) -> str:
    """ "diverged on 1 of its 2 runs", "failed on 1 and diverged on 1 of its 3 runs"; an
    outcome written before divergences were counted apart says "failed or diverged"."""
    crashed = failed - diverged
    if not diverged:
        parts = f"failed or diverged on {failed}"
    elif not crashed:
        parts = f"diverged on {diverged}"
    else:
        parts = f"failed on {crashed} and diverged on {diverged}"
    return f"{parts} of its {runs} run{'s' * (runs != 1)}"


def anchor_roles(anchors: Sequence[AnchorRecord]) -> dict[str, list[str]]:
    """Condition -> every role the stage's rules gave it (a control that is also the best
    keeps both)."""
    roles: dict[str, list[str]] = {}
    for anchor in anchors:
        for role in [anchor.role, *anchor.also]:
            if role and role not in roles.setdefault(anchor.condition_id, []):
                roles[anchor.condition_id].append(role)
    return roles


def _floor(
    floors: Sequence[NoiseFloor], budget_s: int | None, pool: str | None
) -> NoiseFloor | None:
    for floor in floors:
        if floor.budget_s == budget_s and (pool is None or floor.pool in (None, pool)):
            return floor
    return None


def _finding(spec: StudySpec, outcome: StageOutcome) -> Finding:
    judged = outcome.retained_at
    families = [
        family
        for family in (outcome.effects.families if outcome.effects else ())
        if family.by.get("budget_s") == judged
    ]
    effects = {effect.term: effect.effect for family in families for effect in family.effects}
    retained = []
    for code in outcome.retained:
        factor = spec.factor(code)
        effect = effects.get(code)
        low, high = factor.levels or (factor.low, factor.high)
        better: Literal["low", "high"] | None = None
        if effect:
            better = "high" if better_mean(effect, 0.0, outcome.goal) else "low"
        value = {"low": low, "high": high}.get(better or "")
        retained.append(
            RetainedFactor(
                code=code,
                name=factor.name,
                effect=effect,
                better=better,
                better_value=None if value is None else str(value),
            )
        )
    floor = _floor(outcome.noise_floor, judged, None)
    return Finding(
        stage=outcome.stage,
        budget_s=judged,
        retained=retained,
        detectable=None if floor is None else floor.detectable,
        digits=effect_digits(families),
    )


MIN_PAIRED_SEEDS = 3
"""Seeds the best and its runner-up need in common before "not distinguishable" means tied:
with two, the paired t has one df and its interval is 12.7 standard errors wide, so a
difference of several run sds still reads as a tie."""


def _doubts(best: Best, outcome: StageOutcome, roles: Sequence[str]) -> list[str]:
    """Why a comparison that did not separate the best from its runner-up had little chance
    to: too few seeds in common, a runner-up that is the predeclared control or lost runs,
    a best carried as the worst. Empty for a well-powered tie."""
    runner = best.runner_up
    if runner is None:
        return []
    doubts = []
    if runner.seeds is not None and runner.seeds < MIN_PAIRED_SEEDS:
        test = (
            "no paired test" if runner.seeds < 2 else f"{runner.seeds - 1} df for the paired test"
        )
        doubts.append(f"only {_plural(runner.seeds, 'seed')} in common ({test})")
    elif runner.seeds is None and runner.separated is None:
        doubts.append("too few seeds in common for a paired test")
    other = f"`{fmt_text(runner.condition_id)}`"
    entry = ranked_entry(outcome, best.budget_s, best.pool, runner.condition_id)
    runner_roles = anchor_roles(outcome.anchors).get(runner.condition_id) or (
        [entry.role] if entry is not None and entry.role else []
    )
    if "control" in runner_roles:
        doubts.append(f"{other} is the predeclared control")
    if entry is not None and entry.failed:
        doubts.append(f"{other} {failure_words(entry.failed, entry.diverged, entry.runs)}")
    if "worst" in roles:
        doubts.append(f"`{fmt_text(best.condition_id)}` was carried as the worst")
    return doubts


def _pick(best: Best, outcome: StageOutcome, findings: Sequence[Finding], digits: int) -> Pick:
    runner = best.runner_up
    roles = anchor_roles(outcome.anchors).get(best.condition_id) or (
        [best.role] if best.role else []
    )
    doubts = [] if runner is None or runner.separated else _doubts(best, outcome, roles)
    verdict: Literal["ahead", "tied", "inconclusive", "alone"] = (
        "alone"
        if runner is None
        else "ahead"
        if runner.separated
        else "inconclusive"
        if doubts
        else "tied"
    )
    low, high = best.decision_interval
    floor = _floor(outcome.noise_floor, best.budget_s, best.pool)
    return Pick(
        pool=best.pool,
        budget_s=best.budget_s,
        condition_id=best.condition_id,
        roles=roles,
        mean=best.mean,
        adjusted=best.adjusted,
        ci_low=low,
        ci_high=high,
        levels=best.levels,
        hyperparameters=best.hyperparameters,
        verdict=verdict,
        because=doubts,
        runner_up=None if runner is None else runner.condition_id,
        runner_up_mean=None if runner is None else runner.mean,
        difference=None if runner is None else runner.difference,
        paired_seeds=None if runner is None else runner.seeds,
        behind=[
            Behind(
                condition_id=entry.condition_id,
                mean=entry.mean,
                failed=entry.failed - entry.diverged,
                diverged=entry.diverged,
                runs=entry.runs,
            )
            for entry in behind_on_failures(best, outcome.ranking, outcome.goal)
        ],
        against=[
            code for code in _better_levels(findings) if _against(best.levels, code, findings)
        ],
        detectable=None if floor is None else difference_detectable(floor, best.runs),
        digits=digits,
    )


def _better_levels(findings: Sequence[Finding]) -> dict[str, tuple[Finding, RetainedFactor]]:
    """Each retained factor with a direction, as the last fitted stage that retained it
    found it."""
    found: dict[str, tuple[Finding, RetainedFactor]] = {}
    for finding in findings:
        for factor in finding.retained:
            if factor.better is not None:
                found[factor.code] = (finding, factor)
    return found


def _against(levels: Mapping[str, int], code: str, findings: Sequence[Finding]) -> bool:
    """Whether the pick's level of a retained factor is not the one found better (a centre
    level is not the better level either)."""
    _, factor = _better_levels(findings)[code]
    wanted = {"low": -1, "high": 1}
    return code in levels and levels[code] != wanted[factor.better or ""]


def _tally(outcomes: Sequence[StageOutcome], manifest: Manifest | None) -> RunTally:
    """The study's runs: the manifest's lines when written (every stage, planned or not), else
    the analysed stages' run counts."""
    if manifest is not None:
        return RunTally.model_validate(manifest.total, from_attributes=True)
    runs = [outcome.runs for outcome in outcomes]
    return RunTally(
        planned=sum(r.planned for r in runs),
        succeeded=sum(r.succeeded for r in runs),
        diverged=sum(r.diverged for r in runs),
        failed=sum(r.failed for r in runs),
        missing=sum(len(r.missing) for r in runs),
        pending=sum(r.pending for r in runs),
    )


def decide(
    spec: StudySpec,
    study: str,
    outcomes: Mapping[str, StageOutcome],
    manifest: Manifest | None = None,
    rehearsal: str | None = None,
) -> Decision:
    """The study's answer from its analysed stages' outcomes (by stage name), its manifest
    and its rehearsal word (SYNTHETIC, REPLAY or None)."""
    ordered = [outcomes[s.name] for s in spec.stages if s.name in outcomes]
    chosen = deciding_outcome(spec, outcomes)
    findings = [
        _finding(spec, outcome)
        for outcome in ordered
        if outcome.effects is not None and outcome.effects.families
    ]
    picks = []
    if chosen is not None:
        digits = ranking_digits(chosen)
        picks = [
            _pick(b, chosen, findings, best_digits(b, digits)[0]) for b in chosen.best_per_pool
        ]
    return Decision(
        study=study,
        metric=spec.metric.name,
        goal=spec.metric.goal,
        stage=None if chosen is None else chosen.stage,
        findings=findings,
        picks=picks,
        reversals=[StageReversal(stage=o.stage, reversal=r) for o in ordered for r in o.reversals],
        trust=Trust(
            rehearsal=rehearsal,
            runs=_tally(ordered, manifest),
            stages=len(spec.stages),
            analysed=len(ordered),
            seeds=None if chosen is None else len(spec.stage(chosen.stage).seeds),
            waiting=[s.name for s in spec.stages if s.name not in outcomes],
        ),
    )


# --------------------------------------------------------------------------------------------
# In words


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


def _finding_line(finding: Finding, goal: str, metric: str) -> str:
    at = f" at {fmt_budget(finding.budget_s)}" if finding.budget_s is not None else ""
    stage = f"`{fmt_text(finding.stage)}`"
    if not finding.retained:
        if finding.detectable is None:
            size = "it measured no run noise, so it cannot say how large an effect it missed"
        else:
            size = (
                f"an effect on {metric} smaller than {fmt_mean(finding.detectable)} (high minus "
                "low) would likely be missed; more seeds or a longer budget detect smaller ones"
            )
        return (
            f"{stage} retained no factor{at}: no main effect's interval excludes zero with "
            "q ≤ 0.05, so none stands out from run noise. That is not evidence that the "
            f"factors do not matter: {size}."
        )
    direction = "lower" if goal == "minimize" else "higher"
    parts = []
    for factor in finding.retained:
        effect = fmt_effect(factor.effect, finding.digits)
        text = f"`{fmt_text(factor.name)}` ({fmt_text(factor.code)}) {effect}"
        if factor.better is not None:
            text += f", so {factor.name}={factor.better_value} gives the {direction} {metric}"
        parts.append(text)
    listed = "; ".join(parts)
    return f"{stage} retained {_plural(len(parts), 'factor')}{at} (high minus low): {listed}."


def _pick_line(pick: Pick, decision: Decision) -> str:
    metric, goal, digits = decision.metric, decision.goal, pick.digits
    name = f"`{fmt_text(pick.condition_id)}`"
    roles = f" ({', '.join(pick.roles)})" if pick.roles else ""
    settings = ", ".join(f"{k}={fmt_text(v)}" for k, v in pick.hyperparameters.items())
    adjusted = ", seed-adjusted" if pick.adjusted else ""
    text = (
        f"On {fmt_text(pick.pool)}: {name}{roles}, levels {fmt_levels(pick.levels)}"
        + (f" ({settings})" if settings else "")
        + f"; {metric} {fmt_mean(pick.mean, digits)}{adjusted} at {fmt_budget(pick.budget_s)}"
    )
    runner = f"`{fmt_text(pick.runner_up)}`"
    runner_mean = fmt_mean(pick.runner_up_mean, digits)
    seeds = "" if pick.paired_seeds is None else f" over {_plural(pick.paired_seeds, 'seed')}"
    if pick.verdict == "alone":
        text += ": the only condition with a result."
    elif pick.verdict == "ahead":
        text += (
            f", ahead of {runner} ({runner_mean}; the paired interval of "
            "the difference excludes zero): run it."
        )
    elif pick.verdict == "inconclusive":
        text += (
            f". Not separated from {runner} ({runner_mean}){seeds}, but inconclusive: "
            f"{'; '.join(pick.because)}. Rerun {name} and {runner} with more seeds before "
            "choosing."
        )
    else:
        text += f". Tied with {runner} ({runner_mean}, not distinguishable{seeds}): choose on cost."
    better = _better_levels(decision.findings)
    if pick.against:
        found = []
        for code in pick.against:
            source, factor = better[code]
            found.append(
                f"`{fmt_text(factor.name)}` ({fmt_text(factor.better_value)} in "
                f"`{fmt_text(source.stage)}` at {fmt_budget(source.budget_s)})"
            )
        text += (
            f" Its levels are not the ones found better for {', '.join(found)}: an effect "
            "that fades or turns with budget, or a pick that noise made."
        )
    for other in pick.behind:
        lower = "lower" if goal == "minimize" else "higher"
        lost = failure_words(other.failed + other.diverged, other.diverged, other.runs)
        text += (
            f" `{fmt_text(other.condition_id)}` has the {lower} mean "
            f"({fmt_mean(other.mean, digits)}) but ranks behind {name} because it {lost} (a "
            "condition that failed or diverged ranks behind every condition with a smaller "
            "failure share)."
        )
    return text


def _reversal_line(item: StageReversal) -> str:
    r = item.reversal
    return (
        f"`{fmt_text(r.ahead)}`, ranked ahead of `{fmt_text(r.behind)}` by "
        f"`{fmt_text(r.source)}` at {fmt_budget(r.source_budget_s)}, loses to it in "
        f"`{fmt_text(item.stage)}` at {fmt_budget(r.budget_s)} on {fmt_text(r.pool)} "
        f"(difference {fmt_effect(r.difference)})"
    )


def _trust_line(decision: Decision) -> str:
    trust, runs = decision.trust, decision.trust.runs
    ended = (
        f"{runs.succeeded} succeeded, {runs.diverged} diverged, {runs.failed} failed"
        + (f", {runs.missing} missing" if runs.missing else "")
        + (f", {runs.pending} not ended" if runs.pending else "")
    )
    if not runs.planned and not trust.analysed:
        text = f"Nothing has run yet: 0 of {_plural(trust.stages, 'stage')} analysed"
    else:
        text = (
            f"{_plural(runs.planned, 'run')} planned ({ended}); "
            f"{trust.analysed} of {_plural(trust.stages, 'stage')} analysed"
        )
    if trust.seeds is not None and decision.stage is not None:
        text += f"; `{fmt_text(decision.stage)}` ran {_plural(trust.seeds, 'seed')}"
    floors = [
        f"{fmt_mean(f.detectable)} for an effect in `{fmt_text(f.stage)}`"
        for f in decision.findings
        if f.detectable is not None
    ]
    floors += [
        f"{fmt_mean(p.detectable)} between two conditions in `{fmt_text(decision.stage)}` on "
        f"{fmt_text(p.pool)}"
        for p in decision.picks
        if p.detectable is not None
    ]
    if floors:
        text += "; smallest difference detectable at 80% power: " + ", ".join(floors)
    unmeasured = [fmt_text(p.pool) for p in decision.picks if p.detectable is None]
    if unmeasured:
        text += (
            f"; `{fmt_text(decision.stage)}` measured no run noise on {', '.join(unmeasured)},"
            " so it cannot say how small a difference between its conditions is real"
        )
    text += "."
    if trust.rehearsal == "SYNTHETIC":
        text += " **SYNTHETIC**: simulated on planted effects; nothing was trained."
    elif trust.rehearsal == "REPLAY":
        text += " **REPLAY**: measured values replayed from a table; nothing was trained."
    return text


def decision_section(decision: Decision) -> str:
    """The decision in words: found, run next, trust; one bullet each (several for several
    fitted stages or pools)."""
    metric, goal = decision.metric, decision.goal
    found = [_finding_line(f, goal, metric) for f in decision.findings]
    if not found:
        found = ["No stage that fits factor effects has been analysed yet."]
    lines = ["**What the study found**", "", *(f"- {line}" for line in found), ""]
    lines += ["**What to run next**", ""]
    if decision.stage is None:
        lines.append("- No stage has a best condition yet: run the study's next stage.")
    else:
        lines.append(f"- From stage `{fmt_text(decision.stage)}`:")
        lines += [f"  - {_pick_line(p, decision)}" for p in decision.picks]
    waiting = decision.trust.waiting
    if waiting and decision.stage is not None:
        listed = ", ".join(f"`{fmt_text(name)}`" for name in waiting)
        lines.append(f"- Not analysed yet: {listed}. This answer is provisional until they finish.")
    if decision.reversals:
        listed = "; ".join(_reversal_line(item) for item in decision.reversals)
        lines.append(
            f"- {_plural(len(decision.reversals), 'rank reversal')} between stages: {listed}. "
            "An order that reverses at a longer budget does not carry: judge at the longer one."
        )
    lines += ["", "**How far to trust it**", "", f"- {_trust_line(decision)}"]
    return "\n".join(lines)
