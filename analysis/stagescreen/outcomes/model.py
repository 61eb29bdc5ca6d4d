"""Stage outcomes: what a finished stage found, as the typed record outcome.json holds.

`StageOutcome` is what an analysis Job (or the local executor) writes to
`<study>/stages/<stage>/outcome.json` (built by `stagescreen.outcomes.analyse.stage_outcome`): the
effects the stage's kind calls for (paper 4.4), the ranking of its conditions with Student-t
intervals, cross-seed win counts between its anchors, the best condition per pool, the
anchors promoted into later stages with the rule that chose each, and the baselines' climbs,
batches and ladders; a kind registered later adds its own part under `parts`. Every reader
(status, report, command line) takes the validated model; outcome.json files of older
writers are read through the before-validators here, the one place that knows their shapes.
The model knows no kind: what depends on one (a summary line, which stage answers the
study) is in `stagescreen.outcomes.status`, which asks the kind.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue, computed_field, model_validator

from stagescreen.statistics.families import EffectFamilies, Relaxation
from stagescreen.statistics.means import VarianceShare
from stagescreen.statistics.noise import NoiseFloor
from stagescreen.statistics.pooled import PooledBudgetFit
from stagescreen.statistics.stability import RankAgreement, Reversal
from stagescreen.storage.jsonvalues import JsonFloat, Scalar

SCHEMA_VERSION = 1


class _Record(BaseModel):
    """A JSON record in storage: snake_case keys, unknown keys of newer writers ignored."""

    model_config = ConfigDict(extra="ignore")

    def to_json(self) -> dict[str, JsonValue]:
        """The record as outcome.json holds it."""
        return self.model_dump(mode="json")


class StageRuns(_Record):
    """A stage's planned runs by terminal state, and those with no record yet: planned =
    succeeded + diverged + failed + missing + pending."""

    planned: int
    succeeded: int = 0
    failed: int = 0
    diverged: int = 0
    missing: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pending(self) -> int:
        """Planned runs with a record that has not ended (queued or running); written to
        outcome.json so that its run counts add up there too."""
        ended = self.succeeded + self.failed + self.diverged
        return max(0, self.planned - ended - len(self.missing))


class RankedCondition(_Record):
    """One condition in one (budget, pool) cell: its runs, failures, mean and interval.

    `runs` counts ended runs, `failed` those that failed or diverged (`diverged` of them
    diverged; 0 in outcomes written before it), `n` the succeeded ones the mean is taken over;
    `adjusted` marks a seed-adjusted mean (`ranking.rank_conditions`).
    """

    budget_s: int
    pool: str
    condition_id: str
    role: str | None = None
    runs: int = 0
    failed: int = 0
    diverged: int = 0
    n: int
    mean: JsonFloat
    sd: JsonFloat = None
    ci_low: JsonFloat = None
    ci_high: JsonFloat = None
    adjusted: bool = False
    rank: int


class RunnerUp(_Record):
    """The condition ranked second, and how far the best is from it.

    `difference` is runner-up minus best over the `seeds` both ran, with the 95% paired-t
    interval (`means.paired_difference`): runs of different conditions with one seed share that
    seed's shift, which an unpaired interval would count as noise twice. `separated` is True
    when the interval excludes zero, False when it does not, None without an interval
    (`reason`: fewer than two common seeds, or identical differences). The runner-up is the
    closest rival the data offered, yet the pick does not make the plain paired t liberal: the
    closest two of several tied means lie closer together than two means drawn alone. Measured
    (tests/core/statistics/test_comparisons.py, seed sd 0.002 > run sd 0.0012, 4 seeds, 2000
    draws): with no gap between the two, separated 4.5-5.9% of the time with 2, 4 or 16
    candidates (Welch: 0.5%); at a gap of two run sds 50%, a paired t's rate whatever the
    number of candidates (Welch: 16%); declared ahead of an equal or better rival at most 4.9%
    of the time (two tied ahead of a far field), 0.7-1.6% with 4 or 16 tied.
    `wins` of `total` cross-seed pairings on the common seeds go to the best (descriptive,
    paper 4.4). `seeds` and `reason` are None in outcomes written before they existed.
    """

    condition_id: str
    mean: JsonFloat
    difference: JsonFloat
    ci_low: JsonFloat = None
    ci_high: JsonFloat = None
    seeds: int | None = None
    reason: str | None = None
    wins: int
    total: int
    separated: bool | None = None


class Best(_Record):
    """A stage's best condition on one pool at its longest budget.

    It was picked from `candidates` (k) conditions with a succeeded run in its cell, so the
    best of several near-tied conditions is usually lucky and its own 95% interval
    (`ci_low`, `ci_high`: the ranking's Student-t or seed-adjusted one) covers its true mean
    too rarely (best of 16 tied conditions: 0.79 on 5 seeds with run noise alone, 0.90 with
    seed shifts, which every condition shares and so do not flatter the pick).
    `selection_ci_low` and `selection_ci_high` are the same interval at the Bonferroni level
    over the k candidates: every candidate's interval holds jointly at 95%, so the one picked
    holds at least as often, whichever rule picked it (each on its own sd and n - 1 df; the
    adjusted fit's df when seeds were lost). Its
    true mean is the condition's mean over the seed distribution. Measured
    (tests/core/statistics/test_comparisons.py), best of 16 tied or near-tied conditions on 2
    and 5 seeds, with and without seed shifts: coverage 0.985-0.997. The price is width: the
    half-width is 16 times the own interval's on 2 seeds (t on 1 df), 2.3 times on 5. The
    decision text uses it; k and the selection interval are None in outcomes written before
    they existed.
    """

    condition_id: str
    role: str | None = None
    budget_s: int
    pool: str
    mean: float
    ci_low: JsonFloat = None
    ci_high: JsonFloat = None
    candidates: int | None = None
    selection_ci_low: JsonFloat = None
    selection_ci_high: JsonFloat = None
    adjusted: bool = False
    runs: int = 0
    failed: int = 0
    levels: dict[str, int]
    hyperparameters: dict[str, Scalar]
    runner_up: RunnerUp | None = None

    @property
    def decision_interval(self) -> tuple[float | None, float | None]:
        """The interval a decision quotes: the selection-aware one (over a single candidate,
        the own one); the own one in outcomes written before `candidates` existed."""
        if self.candidates is None:
            return self.ci_low, self.ci_high
        return self.selection_ci_low, self.selection_ci_high


class PairWins(_Record):
    """Cross-seed win count of one anchor against another in one (budget, pool) cell:
    `wins` of `total` pairings go to `left` (descriptive, paper 4.4)."""

    budget_s: int
    pool: str
    left: str
    right: str
    wins: int
    ties: int
    total: int


class AnchorRecord(_Record):
    """A condition carried into a stage, with the rule and source stage that chose it, and
    its ended and failed runs at the source (`plans.Anchor`); a `predicted` anchor adds its
    predicted metric, whether the source ran it, and a note when the rule fell back. `also`:
    the roles of further rules that picked the same condition (it runs once, under `role`)."""

    condition_id: str
    role: str | None = None
    also: list[str] = Field(default_factory=list, exclude_if=lambda roles: not roles)
    rule: str | None = None
    source: str | None = None
    levels: dict[str, int] = Field(default_factory=dict)
    runs: int = 0
    failed: int = 0
    predicted: JsonFloat = Field(default=None, exclude_if=lambda value: value is None)
    ran: bool | None = Field(default=None, exclude_if=lambda value: value is None)
    note: str | None = Field(default=None, exclude_if=lambda value: value is None)


class Promotion(AnchorRecord):
    """An anchor a later stage (`to_stage`) selects from this one."""

    to_stage: str


class GreedyStep(_Record):
    """One step of a greedy climb: the condition tried, its mean, whether it was kept."""

    step: int
    condition_id: str
    levels: dict[str, int]
    mean: JsonFloat
    accepted: bool


class GreedyClimb(_Record):
    """One (budget, pool) climb: its steps, how many moves were accepted (the start is not a
    move), the incumbent's mean and step, and whether the climb has stopped."""

    budget_s: int
    pool: str
    steps: list[GreedyStep] = Field(default_factory=list)
    accepted: int = 0
    best: JsonFloat = None
    best_step: int | None = None
    stopped: bool = False


class GreedySummary(_Record):
    climbs: list[GreedyClimb] = Field(default_factory=list)


class RandomBatch(_Record):
    """One batch of a random search and the condition that won it."""

    batch: int
    condition_id: str
    levels: dict[str, int]
    best: float


class RandomSummary(_Record):
    """Each batch's winner and the spread of batch bests, the random baseline's answer."""

    batches: list[RandomBatch] = Field(default_factory=list)
    mean_batch_best: JsonFloat = None
    median_batch_best: JsonFloat = None
    min_batch_best: JsonFloat = None
    max_batch_best: JsonFloat = None


class RungConfiguration(_Record):
    """A configuration on a halving rung with its mean there (None before it ended)."""

    condition_id: str
    levels: dict[str, int]
    mean: JsonFloat = None


class HalvingWinner(RungConfiguration):
    """The best of a ladder's last rung, at that rung's budget."""

    budget_s: int


class HalvingRung(_Record):
    """One rung: its budget, how many configurations ran, and those that went on."""

    budget_s: int
    configurations: int
    complete: bool
    survivors: list[RungConfiguration] = Field(default_factory=list)


class HalvingLadder(_Record):
    pool: str
    rungs: list[HalvingRung] = Field(default_factory=list)
    winner: HalvingWinner | None = None


class HalvingSummary(_Record):
    """Each pool's ladder; each rung keeps the best 1/`eta`, rounded up."""

    eta: int
    ladders: list[HalvingLadder] = Field(default_factory=list)


class StageOutcome(_Record):
    """What a finished stage found: `<study>/stages/<stage>/outcome.json`.

    The effect sections hold the records `statistics.families`, `pooled` and `means` fit;
    the parts that drive decisions and status (run counts, ranking, best, retained factors,
    anchors) and the baselines' summaries are typed here.
    """

    schema_version: int = SCHEMA_VERSION
    study: str
    stage: str
    kind: str
    synthetic: bool = False
    """Results simulated by `stagescreen simulate` on planted effects: no model was trained."""
    replay: str | None = None
    """The table of measured runs the results were replayed from (`stagescreen simulate
    --table`): no model was trained. None for results of real or synthetic runs."""
    metric: str
    goal: str
    runs: StageRuns
    effects: EffectFamilies | None = None
    interactions: EffectFamilies | None = None
    pooled: PooledBudgetFit | None = None
    variance_shares: list[VarianceShare] | None = None
    relaxation: list[Relaxation] | None = None
    noise_floor: list[NoiseFloor] = Field(default_factory=list)
    """Measured run noise per budget (and pool) and the smallest contrast the stage's design
    detects at 80% power (`statistics.noise`); empty in outcomes written before it."""
    retained: list[str] = Field(default_factory=list)
    retained_at: int | None = None
    """The budget (seconds) whose effects `retained` was judged on."""
    ranking: list[RankedCondition] = Field(default_factory=list)
    win_counts: list[PairWins] = Field(default_factory=list)
    best_per_pool: list[Best] = Field(default_factory=list)
    anchors: list[AnchorRecord] = Field(default_factory=list)
    promoted: list[Promotion] = Field(default_factory=list)
    rank_agreement: list[RankAgreement] = Field(default_factory=list)
    """Kendall's tau between the stage's rankings at consecutive budgets, and against each
    stage it took anchors from (`stagescreen.outcomes.stability`)."""
    reversals: list[Reversal] = Field(default_factory=list)
    """Anchors that lose here to a condition their source stage ranked behind them."""
    greedy: GreedySummary | None = None
    random: RandomSummary | None = None
    halving: HalvingSummary | None = None
    parts: dict[str, JsonValue] = Field(default_factory=dict, exclude_if=lambda parts: not parts)
    """Parts a registered kind adds beyond the typed ones above, by the kind's name; its
    module in `stagescreen.kinds` writes and reads its own. Left out of outcome.json when
    empty."""
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _older_writers(cls, data: object) -> object:
        """Outcomes of older writers: one written before `best_per_pool` existed names its
        best only as `best`; a part it left null reads as its default (empty, or absent)."""
        if not isinstance(data, dict):
            return data
        data = {key: value for key, value in data.items() if value is not None}
        if "best_per_pool" not in data and data.get("best"):
            data["best_per_pool"] = [data["best"]]
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def best(self) -> Best | None:
        """The best on the stage's first pool, the one status and summaries name; written
        to outcome.json beside `best_per_pool` for readers that want one."""
        return self.best_per_pool[0] if self.best_per_pool else None
