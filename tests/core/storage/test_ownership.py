"""Which study owns a study folder: the spec hash, the pure decision, and the owner file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stagescreen.storage.keys import StudyKeys
from stagescreen.storage.ownership import (
    ADOPT,
    Claimant,
    Found,
    Owner,
    Verdict,
    claim_folder,
    decide,
    spec_hash,
)
from stagescreen.storage.publish import publish_spec
from stagescreen.storage.store import LocalStore
from stagescreen.study.parse import load_study, parse_study
from stagescreen.study.spec import Study

ROOT = Path(__file__).resolve().parents[3]
STUDY = load_study(ROOT / "tests" / "data" / "quickstart-two-stages.yaml")
FOLDER = "s3://bucket/studies/quickstart/"
THEN, NOW = "2026-01-01T00:00:00+00:00", "2026-02-02T00:00:00+00:00"


def changed(study: Study, change: dict[str, Any]) -> Study:
    """`study` with `change` merged into its spec document."""
    document = study.model_dump(mode="json", by_alias=True, exclude_none=True)
    for path, value in change.items():
        *parents, last = path.split(".")
        node = document["spec"]
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return parse_study(document, stored=True)


OTHER_LEVELS = changed(STUDY, {"factors.0.high": 3})
SAME_RUNS = changed(
    STUDY,
    {
        "limits": {"parallelism": 8, "maxFailedRuns": 5},
        "pools": [{"name": "cpu", "gpus": 0, "nodeSelector": {"pool": "big"}}],
        "storage": {"s3": {"bucket": "elsewhere"}},
        "trainer.image": "stagescreen-trainer:2",
    },
)
SPEC, OTHER = spec_hash(STUDY.spec), spec_hash(OTHER_LEVELS.spec)


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"factors.0.high": 3}, "spec.factors"),
        ({"factors.2.name": "EMBEDDING_LR"}, "spec.factors"),
        ({"stages.0.seeds": [1, 2]}, "spec.stages"),
        ({"stages.1.select": [{"from": "screen", "rule": "best"}]}, "spec.stages"),
        ({"metric": {"name": "val_loss"}}, "spec.metric"),
        ({"trainer.hyperparameters.EVAL_TOKENS": 65536}, "spec.trainer.hyperparameters"),
        ({"trainer.dataUri": "s3://corpora/other-corpus"}, "spec.trainer.dataUri"),
    ],
)
def test_the_spec_hash_follows_what_defines_the_runs(change: dict[str, Any], differs: str) -> None:
    other = spec_hash(changed(STUDY, change).spec)
    assert other.whole != SPEC.whole
    assert other.difference(SPEC) == f"differs in {differs}"


def test_the_spec_hash_ignores_pools_storage_limits_and_the_image() -> None:
    assert spec_hash(SAME_RUNS.spec) == SPEC
    assert SPEC.difference(SPEC) is None
    # a value written out at its default is the same spec
    assert spec_hash(changed(STUDY, {"stages.1.batches": 5}).spec) == SPEC


def owner(uid: str | None, spec: Any = SPEC, claimed: str = THEN, **extra: Any) -> Owner:
    return Owner(uid=uid, spec_hash=spec.whole, spec_parts=spec.parts, claimed=claimed, **extra)


def claims(uid: str | None, **extra: Any) -> Verdict:
    """The verdict that writes a new owner file for `uid`, claimed now."""
    return Verdict(owner(uid, claimed=NOW, **extra))


def kube(uid: str, spec: Any = SPEC, adopt: str | None = None, resumed: bool = False) -> Claimant:
    return Claimant(uid=uid, spec=spec, adopt=adopt, resumed=resumed)


LOCAL = Claimant(uid=None, spec=SPEC)
ACCEPTED: list[tuple[str, Found, Claimant, Verdict]] = [
    ("a new folder, a cluster study", Found(), kube("u1"), claims("u1")),
    ("a new folder, stagescreen run", Found(), LOCAL, claims(None)),
    ("its own folder", Found(owner("u1")), kube("u1"), Verdict()),
    ("stagescreen run again, same spec", Found(owner(None)), LOCAL, Verdict()),
    (
        "updated in place: the new spec hash, the old claim",
        Found(owner("u1", OTHER)),
        kube("u1"),
        Verdict(owner("u1")),
    ),
    (
        "adopted by the owner's uid, same spec",
        Found(owner("u1")),
        kube("u2", adopt="u1"),
        claims("u2", adopted_from="u1"),
    ),
    (
        "a folder of stagescreen run adopted as local",
        Found(owner(None)),
        kube("u2", adopt="local"),
        claims("u2", adopted_from="local"),
    ),
    ("before owner files, same spec stored", Found(stored=SPEC), kube("u1"), claims("u1")),
    ("before owner files, stagescreen run, same spec", Found(stored=SPEC), LOCAL, claims(None)),
    (
        "before owner files, a study that ran there, spec updated",
        Found(stored=OTHER),
        kube("u1", resumed=True),
        claims("u1"),
    ),
    (
        "before owner files, a study that ran there, spec unreadable now",
        Found(broken_spec="bad"),
        kube("u1", resumed=True),
        claims("u1"),
    ),
]


@pytest.mark.parametrize(
    ("found", "claimant", "verdict"),
    [case[1:] for case in ACCEPTED],
    ids=[case[0] for case in ACCEPTED],
)
def test_a_study_uses_a_folder_it_owns_or_may_claim(
    found: Found, claimant: Claimant, verdict: Verdict
) -> None:
    assert decide(found, claimant, folder=FOLDER, now=NOW) == verdict


ADOPT_WAY = f'{ADOPT}: "u1"'
CLUSTER_WAY = "another metadata.name or spec.storage.s3.prefix"
LOCAL_WAY = "another --store"
REFUSED: list[tuple[str, Found, Claimant, list[str], list[str]]] = [
    (
        "re-created, same spec",
        Found(owner("u1")),
        kube("u2"),
        ["belongs to another ScreeningStudy of this name (uid u1", ADOPT_WAY, CLUSTER_WAY],
        [],
    ),
    (
        "re-created, other levels",
        Found(owner("u1")),
        kube("u2", OTHER),
        [
            "belongs to another ScreeningStudy of this name (uid u1",
            "differs in spec.factors",
            CLUSTER_WAY,
        ],
        [ADOPT_WAY],
    ),
    (
        "adopting with another spec",
        Found(owner("u1")),
        kube("u2", OTHER, adopt="u1"),
        ["differs in spec.factors", "cannot be adopted", CLUSTER_WAY],
        [ADOPT_WAY],
    ),
    (
        "adopting another uid",
        Found(owner("u1")),
        kube("u3", adopt="u2"),
        [ADOPT_WAY, CLUSTER_WAY],
        [],
    ),
    ("adopt: true is not a uid", Found(owner("u1")), kube("u2", adopt="true"), [ADOPT_WAY], []),
    (
        "stagescreen run of another spec",
        Found(owner(None, OTHER)),
        LOCAL,
        ["another spec, which differs in spec.factors", LOCAL_WAY, "remove the folder"],
        [ADOPT],
    ),
    (
        "stagescreen run into a cluster study's folder",
        Found(owner("u1")),
        LOCAL,
        ["ScreeningStudy of this name (uid u1", LOCAL_WAY],
        [ADOPT],
    ),
    (
        "a cluster study in stagescreen run's folder",
        Found(owner(None)),
        kube("u2"),
        ["belongs to `stagescreen run`", f'{ADOPT}: "local"'],
        [],
    ),
    (
        "before owner files, another spec stored",
        Found(stored=OTHER),
        kube("u1"),
        ["an earlier study of this name whose spec differs in spec.factors", CLUSTER_WAY],
        [ADOPT],
    ),
    (
        "before owner files, stagescreen run, another spec",
        Found(stored=OTHER),
        LOCAL,
        ["differs in spec.factors", LOCAL_WAY],
        [],
    ),
    (
        "an unreadable owner file",
        Found(broken_owner="has an owner.json that is broken"),
        kube("u1", resumed=True),
        ["has an owner.json that is broken"],
        [],
    ),
    (
        "an unreadable stored spec",
        Found(broken_spec="holds a spec.yaml that is bad"),
        kube("u1"),
        ["holds a spec.yaml that is bad", CLUSTER_WAY],
        [],
    ),
]


@pytest.mark.parametrize(
    ("found", "claimant", "said", "unsaid"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
def test_a_study_is_refused_another_studys_folder_with_the_ways_out(
    found: Found, claimant: Claimant, said: list[str], unsaid: list[str]
) -> None:
    verdict = decide(found, claimant, folder=FOLDER, now=NOW)
    assert verdict.write is None
    assert verdict.refusal is not None
    assert verdict.refusal.startswith(f"storage folder {FOLDER} ")
    assert "None of its records were read" in verdict.refusal
    for text in said:
        assert text in verdict.refusal, verdict.refusal
    for text in unsaid:
        assert text not in verdict.refusal, verdict.refusal


def test_the_owner_file_is_written_once_and_read_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    key = StudyKeys("quickstart").owner()
    first, later = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
    assert claim_folder(store, STUDY, uid="u1", now=first) is None
    written = store.get_json(key)
    assert written == owner("u1").model_dump(mode="json")
    assert claim_folder(store, SAME_RUNS, uid="u1", now=later) is None
    assert store.get_json(key) == written  # nothing to change: not rewritten
    refusal = claim_folder(store, OTHER_LEVELS, uid="u2", now=later)
    assert refusal is not None and f"storage folder {store.uri('quickstart')}/ " in refusal
    assert claim_folder(store, STUDY, uid="u2", now=later, adopt="u1") is None
    assert store.get_json(key)["uid"] == "u2" and store.get_json(key)["adopted_from"] == "u1"
    store.put_text(key, '{"uid": 7}')
    broken = claim_folder(store, STUDY, uid="u2", now=later)
    assert broken is not None and "has an owner.json that does not fit the record" in broken


def test_a_folder_from_before_owner_files_is_judged_by_its_stored_spec(tmp_path: Path) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    publish_spec(LocalStore(tmp_path / "same"), STUDY)
    assert claim_folder(LocalStore(tmp_path / "same"), SAME_RUNS, uid=None, now=now) is None
    publish_spec(LocalStore(tmp_path / "other"), STUDY)
    refusal = claim_folder(LocalStore(tmp_path / "other"), OTHER_LEVELS, uid=None, now=now)
    assert refusal is not None and "differs in spec.factors" in refusal
    assert not LocalStore(tmp_path / "other").exists(StudyKeys("quickstart").owner())
    LocalStore(tmp_path / "bad").put_text(StudyKeys("quickstart").spec(), "kind: [")
    bad = claim_folder(LocalStore(tmp_path / "bad"), STUDY, uid="u1", now=now)
    assert bad is not None and "holds a spec.yaml that is not a valid study" in bad
