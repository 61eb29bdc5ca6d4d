"""Stage outcome records and the run manifest (the paper's Table 1), and publishing them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from seaweed import S3Bucket

from stagescreen.outcomes import analyse
from stagescreen.outcomes import model as outcome
from stagescreen.outcomes.manifest import manifest
from stagescreen.planning.planner import plan_stage
from stagescreen.planning.plans import PlannedRun
from stagescreen.statistics import families as fx
from stagescreen.statistics import retention, synthetic
from stagescreen.storage import publish
from stagescreen.storage.jsonvalues import json_ready
from stagescreen.storage.store import LocalStore, Store, open_store
from stagescreen.study.parse import load_study, parse_study
from stagescreen.study.spec import Study

ROOT = Path(__file__).resolve().parents[3]
QUICKSTART_TEXT = (ROOT / "tests" / "data" / "quickstart-two-stages.yaml").read_text()
# The quickstart on a pool with two GPUs per run, so GPU-seconds are visible.
QUICKSTART = load_study(QUICKSTART_TEXT.replace("gpus: 0", "gpus: 2"))
SPEC = QUICKSTART.spec
MODEL = synthetic.ResponseModel(effects={"A": 0.10, "B": -0.05, "C": 0.02}, overhead_s=45.0)


@pytest.fixture(scope="module")
def screen() -> pd.DataFrame:
    return synthetic.simulate_stage(SPEC, "screen", pd.DataFrame(), MODEL)


@pytest.fixture(scope="module")
def both(screen: pd.DataFrame) -> pd.DataFrame:
    return synthetic.simulate_stage(SPEC, "confirm", screen, MODEL)


def record(results: pd.DataFrame, stage: str) -> outcome.StageOutcome:
    return analyse.stage_outcome(SPEC, SPEC.stage(stage), results, "quickstart")


def test_runs_count_failed_and_missing_runs(screen: pd.DataFrame) -> None:
    failed_id, missing_id = screen["run_id"].iloc[3], screen["run_id"].iloc[9]
    results = screen[screen["run_id"] != missing_id].copy()
    results.loc[results["run_id"] == failed_id, ["status", "val_bpb"]] = ["failed", np.nan]
    runs = record(results, "screen").runs
    assert runs == outcome.StageRuns(
        planned=16, succeeded=14, failed=1, diverged=0, missing=[missing_id]
    )


def test_a_stage_without_results_has_a_record_and_a_note(screen: pd.DataFrame) -> None:
    out = record(screen, "confirm")
    assert out.runs.planned == 12
    assert out.runs.succeeded == 0
    assert len(out.runs.missing) == 12
    assert out.notes == ["no succeeded runs yet"]
    assert out.best is None
    assert out.effects is None


def test_screen_record_has_effects_relaxation_and_what_it_promotes(screen: pd.DataFrame) -> None:
    out = record(screen, "screen")
    assert (out.schema_version, out.study, out.stage, out.kind) == (
        1,
        "quickstart",
        "screen",
        "screen",
    )
    assert out.effects is not None and out.relaxation is not None
    assert [family.by for family in out.effects.families] == [
        {"budget_s": 10},
        {"budget_s": 20},
    ]
    doubled = [r for r in out.relaxation if r.budget == 20]
    assert [r.term for r in doubled] == ["A", "B", "C"]
    # The model shrinks effects by 2**-0.8 per doubling of budget.
    assert doubled[0].ratio == pytest.approx(2**-0.8, abs=0.02)
    assert out.variance_shares is None
    promoted = {(p.to_stage, p.rule, p.role, p.condition_id) for p in out.promoted}
    # A+ raises the metric, B+ lowers it: best A-,B+,C-; worst A+,B-,C+ (full 2^3 ids).
    assert promoted == {
        ("confirm", "best", "best", "c03"),
        ("confirm", "worst", "worst", "c06"),
        ("confirm", "bridge", "bridge", "c03-b0"),
    }
    assert next(p for p in out.promoted if p.role == "bridge").levels == {
        "A": -1,
        "B": 0,
        "C": -1,
    }


def test_ranking_is_per_budget_and_pool_and_best_is_at_the_longest_budget(
    screen: pd.DataFrame,
) -> None:
    results = screen.copy()
    # c08 is best at 10 s only; at 20 s c03 stays best.
    results.loc[(results["condition_id"] == "c08") & (results["budget_s"] == 10), "val_bpb"] = 0.5
    out = record(results, "screen")
    ranking = out.ranking
    assert [(r.budget_s, r.rank) for r in ranking] == [(10, i) for i in range(1, 9)] + [
        (20, i) for i in range(1, 9)
    ]
    assert ranking[0].condition_id == "c08"
    assert ranking[8].condition_id == "c03"
    assert all(r.pool == "cpu" and r.n == 1 for r in ranking)
    # A screen's conditions have no role, however the table spells "none" (None or NaN).
    assert all(r.role is None for r in record(results.assign(role=np.nan), "screen").ranking)
    assert out.best is not None
    assert out.best.condition_id == "c03"
    assert out.best.budget_s == 20
    assert out.best.levels == {"A": -1, "B": 1, "C": -1}
    assert out.best.hyperparameters == {"DEPTH": 1, "ASPECT_RATIO": 64, "MATRIX_LR": 0.02}


def test_confirm_record_counts_wins_between_roles_and_shares_variance(
    both: pd.DataFrame,
) -> None:
    out = record(both, "confirm")
    assert out.runs.succeeded == 12
    assert {(w.budget_s, w.left, w.right) for w in out.win_counts} == {
        (budget, left, right)
        for budget in (10, 20)
        for left, right in (("best", "bridge"), ("best", "worst"), ("bridge", "worst"))
    }
    best_vs_worst = [w for w in out.win_counts if (w.left, w.right) == ("best", "worst")]
    # Two seeds each side: 2 x 2 pairings, and the planted gap is far above the noise.
    assert [(w.wins, w.ties, w.total) for w in best_vs_worst] == [(4, 0, 4), (4, 0, 4)]
    assert out.variance_shares is not None
    terms = [share.term for share in out.variance_shares]
    assert "seed" in " ".join(terms)
    assert any("budget" in t and "condition" in t for t in terms)
    assert sum(share.eta_sq or 0.0 for share in out.variance_shares) == pytest.approx(1.0)
    assert [a.role for a in out.anchors] == ["best", "worst", "bridge"]
    assert {r.role for r in out.ranking} == {"best", "worst", "bridge"}
    assert out.effects is None
    assert out.promoted == []


def test_one_budget_confirm_has_no_variance_shares() -> None:
    study = load_study(
        QUICKSTART_TEXT.replace(
            "budgets: [10s, 20s]\n      seeds: 2", "budgets: [20s]\n      seeds: 2"
        )
    )
    results = synthetic.simulate_stage(study.spec, "screen", pd.DataFrame(), MODEL)
    results = synthetic.simulate_stage(study.spec, "confirm", results, MODEL)
    out = analyse.stage_outcome(study.spec, study.spec.stage("confirm"), results, "quickstart")
    assert out.variance_shares is None
    assert out.win_counts


@pytest.mark.parametrize(
    ("families", "kept"),
    [
        ({}, []),
        # Only the longest budget counts: B is large at 300 s but not at 600 s.
        (
            {
                600: {"A": (0.10, 0.05, 0.15, 0.001), "B": (0.02, -0.01, 0.05, 0.2)},
                300: {"B": (0.30, 0.20, 0.40, 0.001)},
            },
            ["A"],
        ),
        # Interval excludes zero but q above the threshold: not retained.
        ({600: {"A": (0.10, 0.01, 0.19, 0.06)}}, []),
        # q small but the interval straddles zero: not retained.
        ({600: {"A": (0.10, -0.01, 0.21, 0.01)}}, []),
        # Largest absolute effect first, negative ones included; interactions never.
        (
            {
                60: {
                    "A": (0.05, 0.01, 0.09, 0.01),
                    "D": (-0.2, -0.3, -0.1, 0.001),
                    "A:D": (0.5, 0.4, 0.6, 0.001),
                }
            },
            ["D", "A"],
        ),
    ],
)
def test_retained_factors_hold_at_the_longest_budget(
    families: dict[int, dict[str, tuple[float, float, float, float]]], kept: list[str]
) -> None:
    fitted = [
        fx.Family(
            by={"budget_s": budget},
            n=16,
            df_resid=10,
            effects=tuple(
                fx.Effect(term=term, effect=effect, ci_low=low, ci_high=high, p=q, q=q)
                for term, (effect, low, high, q) in terms.items()
            ),
        )
        for budget, terms in families.items()
    ]
    assert retention.retained_factors(fitted) == kept


def test_manifest_counts_runs_and_gpu_seconds_per_stage_and_pool(both: pd.DataFrame) -> None:
    results = both.copy()
    failed = results["run_id"] == results["run_id"].iloc[0]
    results.loc[failed, ["status", "val_bpb"]] = ["failed", np.nan]
    results.loc[results["run_id"] == results["run_id"].iloc[1], "wall_s"] = np.nan
    table = manifest(SPEC, results, "quickstart").model_dump()
    # Screen: 8 runs of 10 s and 8 of 20 s, each plus 45 s overhead, except one run without
    # a wall time that counts its 10 s budget; two GPUs per run.
    screen_seconds = (8 * 55 + 8 * 65 - 45) * 2
    confirm_seconds = (6 * 55 + 6 * 65) * 2
    assert table["stages"] == [
        {
            "stage": "screen",
            "kind": "screen",
            "pool": "cpu",
            "budgets_s": [10, 20],
            "planned": 16,
            "succeeded": 15,
            "failed": 1,
            "diverged": 0,
            "pending": 0,
            "gpu_seconds": pytest.approx(screen_seconds),
        },
        {
            "stage": "confirm",
            "kind": "confirm",
            "pool": "cpu",
            "budgets_s": [10, 20],
            "planned": 12,
            "succeeded": 12,
            "failed": 0,
            "diverged": 0,
            "pending": 0,
            "gpu_seconds": pytest.approx(confirm_seconds),
        },
    ]
    assert table["total"] == {
        "planned": 28,
        "succeeded": 27,
        "failed": 1,
        "diverged": 0,
        "pending": 0,
        "gpu_seconds": pytest.approx(screen_seconds + confirm_seconds),
    }
    assert table["pools"] == {
        "cpu": {"runs": 28, "gpu_seconds": pytest.approx(screen_seconds + confirm_seconds)}
    }
    assert (table["schema_version"], table["study"]) == (1, "quickstart")


def test_manifest_before_any_run_plans_every_stage() -> None:
    table = manifest(SPEC, pd.DataFrame(), "quickstart")
    assert [(line.stage, line.planned, line.gpu_seconds) for line in table.stages] == [
        ("screen", 16, 0.0),
        ("confirm", 12, 0.0),
    ]
    # nothing ended: every planned run is pending, so each line adds up
    assert [line.pending for line in table.stages] == [16, 12]
    assert table.total.pending == 28
    assert table.total.succeeded == 0


def test_manifest_splits_a_two_pool_stage() -> None:
    paper = load_study(ROOT / "examples" / "paper.yaml").spec
    plan = plan_stage(paper, paper.stage("screen"), pd.DataFrame())
    long_runs = [
        PlannedRun(**{**run.__dict__, "stage": "long-horizon", "pool": pool})
        for run in plan.runs[:3]
        for pool in ("a100", "l40s")
    ]
    results = synthetic.simulate_runs(long_runs, MODEL, "val_bpb")
    lines = [
        (line.stage, line.pool, line.planned, line.succeeded)
        for line in manifest(paper, results, "paper").stages
        if line.stage == "long-horizon"
    ]
    assert lines == [("long-horizon", "a100", 12, 3), ("long-horizon", "l40s", 12, 3)]


# --- publishing -------------------------------------------------------------------------------


def publish_quickstart(store: Store, study: Study, results: pd.DataFrame) -> None:
    publish.publish_spec(store, study)
    for stage in ("screen", "confirm"):
        publish.publish_stage(store, study, stage, results)


EXPECTED_KEYS = [
    "quickstart/manifest.json",
    "quickstart/spec.yaml",
    "quickstart/stages/confirm/outcome.json",
    "quickstart/stages/confirm/results.parquet",
    "quickstart/stages/screen/outcome.json",
    "quickstart/stages/screen/results.parquet",
]


def check_published(store: Store, results: pd.DataFrame) -> None:
    assert store.list("") == EXPECTED_KEYS
    screen = store.get_frame("quickstart/stages/screen/results.parquet")
    assert len(screen) == 16
    assert set(screen["stage"]) == {"screen"}
    assert store.get_json("quickstart/stages/confirm/outcome.json")["runs"]["succeeded"] == 12
    assert store.get_json("quickstart/manifest.json")["total"]["planned"] == 28
    assert load_study(store.get_text("quickstart/spec.yaml"), stored=True) == QUICKSTART


def test_publish_writes_the_design_keys_to_a_local_store(
    tmp_path: Path, both: pd.DataFrame
) -> None:
    store = LocalStore(tmp_path)
    publish_quickstart(store, QUICKSTART, both)
    check_published(store, both)


class Killed(BaseException):
    """The process dying mid-publish (SIGKILL: no cleanup runs)."""


class DyingStore(LocalStore):
    """A local store whose process dies on its `dies_at`-th write."""

    def __init__(self, root: Path, dies_at: int) -> None:
        super().__init__(root)
        self.writes, self.dies_at = 0, dies_at

    def _count(self) -> None:
        self.writes += 1
        if self.writes == self.dies_at:
            raise Killed

    def put_json(self, key: str, value: object) -> None:
        self._count()
        super().put_json(key, value)  # type: ignore[arg-type]

    def put_frame(self, key: str, frame: pd.DataFrame) -> None:
        self._count()
        super().put_frame(key, frame)


@pytest.mark.parametrize("dies_at", [1, 2, 3])
def test_a_publish_killed_at_any_write_leaves_the_stage_unanalysed_until_redone(
    tmp_path: Path, both: pd.DataFrame, dies_at: int
) -> None:
    from stagescreen_operator.observe import observe_store

    dying = DyingStore(tmp_path, dies_at)
    with pytest.raises(Killed):
        publish.publish_stage(dying, QUICKSTART, "screen", both)
    store = LocalStore(tmp_path)
    assert "screen" not in observe_store(store, QUICKSTART).analysed  # so it is analysed again
    publish.publish_stage(store, QUICKSTART, "screen", both)
    assert "screen" in observe_store(store, QUICKSTART).analysed
    assert store.get_json("quickstart/manifest.json")["stages"][0]["succeeded"] == 16


def test_publish_writes_the_design_keys_to_s3(s3_bucket: S3Bucket, both: pd.DataFrame) -> None:
    store = open_store(s3_bucket.uri())
    publish_quickstart(store, QUICKSTART, both)
    check_published(store, both)


def test_manifest_counts_a_stopped_greedy_climb_by_the_runs_it_made() -> None:
    """maxRuns is a ceiling: once the climb stops, Table 1 shows what it actually spent."""
    paper = load_study(ROOT / "examples" / "paper.yaml").spec
    model = synthetic.ResponseModel(effects=synthetic.default_effects(paper))
    before = {line.stage: line.planned for line in manifest(paper, pd.DataFrame(), "p").stages}
    results = synthetic.simulate_stage(paper, "greedy-5m", pd.DataFrame(), model)
    after = {line.stage: line.planned for line in manifest(paper, results, "p").stages}
    assert before["greedy-5m"] == 50
    assert after["greedy-5m"] == len(results) < 50
    assert after["greedy-10m"] == 20


def test_halving_record_lists_each_rung_what_went_on_and_the_winner() -> None:
    data = yaml.safe_load(QUICKSTART_TEXT)
    data["spec"]["stages"].append(
        {
            "name": "ladder",
            "kind": "halving",
            "budgets": ["10s", "20s", "40s"],
            "seeds": 2,
            "eta": 2,
        }
    )
    spec = parse_study(data).spec
    stage = spec.stage("ladder")
    results = synthetic.simulate_stage(spec, "ladder", pd.DataFrame(), MODEL)
    out = analyse.stage_outcome(spec, stage, results, "quickstart")
    assert out.runs.planned == out.runs.succeeded == (8 + 4 + 2) * 2
    assert out.halving is not None
    (ladder,) = out.halving.ladders
    rungs = ladder.rungs
    assert (out.halving.eta, ladder.pool) == (2, "cpu")
    assert [(r.budget_s, r.configurations, len(r.survivors)) for r in rungs] == [
        (10, 8, 4),
        (20, 4, 2),
        (40, 2, 0),
    ]
    # What went on from a rung is what ran at the next budget, with its mean at this one.
    for rung, budget in zip(rungs, (20, 40), strict=False):
        went_on = [s.condition_id for s in rung.survivors]
        assert set(went_on) == set(results.loc[results["budget_s"] == budget, "condition_id"])
        here = results[results["budget_s"] == rung.budget_s].groupby("condition_id")
        means = here["val_bpb"].mean()
        assert [s.mean for s in rung.survivors] == pytest.approx(list(means[went_on]))
    winner = ladder.winner
    assert winner is not None
    assert out.best is not None and out.best.budget_s == winner.budget_s == 40
    assert (winner.condition_id, winner.mean) == (out.best.condition_id, out.best.mean)
    # Partway, the record shows the rung still running and no winner; the manifest prices
    # the whole ladder.
    first_rung = results[results["budget_s"] == 10]
    partway = analyse.stage_outcome(spec, stage, first_rung, "quickstart").halving
    assert partway is not None
    assert [(r.budget_s, r.complete) for r in partway.ladders[0].rungs] == [
        (10, True),
        (20, False),
    ]
    assert partway.ladders[0].winner is None
    planned = {line.stage: line.planned for line in manifest(spec, first_rung, "q").stages}
    assert planned["ladder"] == 28


def test_the_best_is_the_first_pools_and_older_outcomes_still_read(screen: pd.DataFrame) -> None:
    written = record(screen, "screen").to_json()
    assert written["best"] == written["best_per_pool"][0]
    older = {key: value for key, value in written.items() if key != "best_per_pool"}
    assert outcome.StageOutcome.model_validate(older).best == record(screen, "screen").best


def test_an_outcome_written_now_reads_back_unchanged(both: pd.DataFrame) -> None:
    """Every kind's outcome.json, as the store writes it, validates into a model that
    writes the same JSON again: no key lost, renamed or added on the way through."""
    paper = load_study(ROOT / "examples" / "paper.yaml").spec
    model = synthetic.ResponseModel(effects=synthetic.default_effects(paper))
    results = pd.DataFrame()
    for stage in ("seeded-screen", "greedy-5m", "random"):
        results = synthetic.simulate_stage(paper, stage, results, model)
    written = [record(both, "screen"), record(both, "confirm")] + [
        analyse.stage_outcome(paper, paper.stage(s), results, "paper")
        for s in ("seeded-screen", "greedy-5m", "random")
    ]
    for out in written:
        stored = json.loads(json.dumps(json_ready(out.to_json()), allow_nan=False))
        again = outcome.StageOutcome.model_validate(stored)
        assert again.to_json() == stored, out.stage
        assert again == outcome.StageOutcome.model_validate(out.to_json())


def test_an_older_outcome_with_only_best_and_null_parts_still_reads(screen: pd.DataFrame) -> None:
    """An outcome.json of an older writer: its best only as `best`, no noise floor, and parts
    it had nothing for written as null rather than left out."""
    current = record(screen, "screen").to_json()
    newer = ("best_per_pool", "noise_floor", "rank_agreement", "reversals", "replay")
    older = {key: value for key, value in current.items() if key not in newer}
    older |= {"ranking": None, "win_counts": None, "anchors": None, "promoted": None}
    read = outcome.StageOutcome.model_validate(older)
    assert read.best_per_pool == record(screen, "screen").best_per_pool
    assert (read.ranking, read.win_counts, read.anchors, read.promoted) == ([], [], [], [])
    assert read.noise_floor == [] and current["noise_floor"]
    assert (read.rank_agreement, read.reversals) == ([], [])
    assert read.replay is None  # written before replay existed
    assert read.to_json()["effects"] == current["effects"]
