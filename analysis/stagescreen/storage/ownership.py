"""Which study owns a study folder: the owner file, and the decision to claim, keep or refuse.

A study's folder is named by the study's name (`StudyKeys`), and a name outlives the study:
delete a ScreeningStudy and apply one of the same name with other levels, and without this
module the new one would read the old one's run records and outcomes as its own and analyse
a mixture. So the first study to use a folder writes `owner.json` there (its Kubernetes UID,
a hash of the parts of its spec that define its runs, the time), and every reconcile and
every `stagescreen run` checks it before anything else is read or written
(docs/architecture.md "Storage", docs/kubernetes.md "Re-created studies").

The rules (`decide`, pure):
- The owner itself goes on. A ScreeningStudy (same UID) whose spec changed in place, within
  what the webhook allows, is not refused; the owner file takes its new spec hash.
- `stagescreen run` has no UID: it owns a folder by its spec hash, so running the same study
  again resumes it, and a different spec in the same folder is refused.
- A ScreeningStudy of another UID (the old one deleted, the name reused) is refused, unless
  it carries the annotation `stagescreen.dev/adopt: "<the owner's UID>"` (`local` for a
  folder `stagescreen run` wrote) and its run-defining spec is the same as the owner's:
  then it adopts the folder (the owner file is rewritten to its UID). Naming the UID, not
  `"true"`, means an annotation left in a manifest never adopts some later study's folder.
  A different spec is never adopted: that is the mixture this module exists to prevent.
- A folder from before owner files (a spec.yaml and no owner.json) is claimed by a study
  that was already running there (a ScreeningStudy whose status shows its stages) or whose
  run-defining spec equals the stored one, and refused otherwise.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from stagescreen.storage.keys import StudyKeys
from stagescreen.storage.publish import read_record
from stagescreen.study.parse import parse_study
from stagescreen.study.spec import GROUP, SpecError, Study, StudySpec

if TYPE_CHECKING:
    from stagescreen.storage.store import Store

ADOPT = f"{GROUP}/adopt"  # annotation: the UID of the folder's owner to adopt, or LOCAL
LOCAL = "local"  # how a folder that `stagescreen run` owns is named for adoption

# The spec's parts that decide which runs a study plans and what its outcomes mean. Pools,
# storage, limits, the trainer's image, env and resources may change without changing a run.
RUN_DEFINING = (
    "factors",
    "design",
    "metric",
    "stages",
    "trainer.hyperparameters",
    "trainer.dataUri",
    "trainer.tokenizerUri",
)


class Owner(BaseModel):
    """The owner file (`<study>/owner.json`): which study's runs the folder holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uid: str | None = Field(description="The ScreeningStudy's UID; null: `stagescreen run`.")
    spec_hash: str = Field(description="sha256 of the run-defining parts of the spec.")
    spec_parts: dict[str, str] = Field(
        description="A short hash of each run-defining part, to name the parts that differ."
    )
    claimed: str = Field(description="When this owner claimed the folder (ISO 8601, UTC).")
    adopted_from: str | None = Field(
        default=None, description="The owner it adopted the folder from, if it did."
    )

    @property
    def name(self) -> str:
        """How messages and the adopt annotation name this owner."""
        return self.uid if self.uid is not None else LOCAL


@dataclass(frozen=True)
class SpecHash:
    """The run-defining parts of a spec, hashed: the whole, and each part."""

    whole: str
    parts: dict[str, str]

    def difference(self, other: SpecHash) -> str | None:
        """None when `other` is the same spec, else which run-defining parts differ
        ("differs in spec.factors, ...")."""
        if other.whole == self.whole:
            return None
        paths = [f"spec.{p}" for p in RUN_DEFINING if self.parts.get(p) != other.parts.get(p)]
        return "differs in " + (", ".join(paths) or "its run-defining parts")


def spec_hash(spec: StudySpec) -> SpecHash:
    """The hash of `spec`'s run-defining parts: fields left at their defaults are left out,
    so a field a later version adds with a default does not change the hash."""
    document = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    values = {part: _at(document, part) for part in RUN_DEFINING}
    parts = {part: _digest(value)[:12] for part, value in values.items()}
    return SpecHash(whole=_digest(values), parts=parts)


@dataclass(frozen=True)
class Claimant:
    """The study asking for the folder."""

    uid: str | None  # its ScreeningStudy's UID; None for `stagescreen run`
    spec: SpecHash
    adopt: str | None = None  # the ADOPT annotation's value
    resumed: bool = False  # its status shows it ran before (a folder from before owner files)


@dataclass(frozen=True)
class Found:
    """What the folder holds: its owner file, else the hash of a spec.yaml stored without one,
    or why the owner file or that spec.yaml cannot be read."""

    owner: Owner | None = None
    stored: SpecHash | None = None
    broken_owner: str | None = None
    broken_spec: str | None = None


@dataclass(frozen=True)
class Verdict:
    """The decision: the owner file to write (None: leave it), or why the study may not use
    the folder (None: it may)."""

    write: Owner | None = None
    refusal: str | None = None


def decide(found: Found, claimant: Claimant, *, folder: str, now: str) -> Verdict:
    """Whether `claimant` may use the folder at URI `folder`, and the owner file to write."""
    owner, spec = found.owner, claimant.spec
    fresh = Owner(uid=claimant.uid, spec_hash=spec.whole, spec_parts=spec.parts, claimed=now)
    where = f"storage folder {folder}"
    if found.broken_owner is not None:  # whose it is cannot be told: nobody's to take
        return Verdict(refusal=_refusal(claimant, f"{where} {found.broken_owner}"))
    if owner is None:
        if found.broken_spec is None and found.stored is None:  # a new folder
            return Verdict(write=fresh)
        if claimant.resumed and claimant.uid is not None:  # ran here before owner files
            return Verdict(write=fresh)
        if found.broken_spec is not None:
            return Verdict(refusal=_refusal(claimant, f"{where} {found.broken_spec}"))
        assert found.stored is not None
        differ = spec.difference(found.stored)
        if not differ:
            return Verdict(write=fresh)
        held = f"{where} holds the runs of an earlier study of this name whose spec {differ}"
        return Verdict(refusal=_refusal(claimant, held))
    differ = spec.difference(SpecHash(owner.spec_hash, owner.spec_parts))
    if owner.uid == claimant.uid:
        if not differ:
            return Verdict()
        if claimant.uid is not None:  # the same ScreeningStudy, its spec updated in place
            return Verdict(
                write=owner.model_copy(update={"spec_hash": spec.whole, "spec_parts": spec.parts})
            )
        held = f"{where} holds the runs of this study with another spec, which {differ}"
        return Verdict(refusal=_refusal(claimant, held))
    held = f"{where} belongs to {_described(owner)}"
    if claimant.uid is None:
        return Verdict(refusal=_refusal(claimant, held))
    if claimant.adopt == owner.name and not differ:
        return Verdict(write=fresh.model_copy(update={"adopted_from": owner.name}))
    if differ:
        held += f", whose spec {differ}; its runs cannot be adopted by a different spec"
        return Verdict(refusal=_refusal(claimant, held))
    return Verdict(refusal=_refusal(claimant, held, adoptable=owner))


def claim_folder(
    store: Store,
    study: Study,
    *,
    uid: str | None,
    now: datetime,
    adopt: str | None = None,
    resumed: bool = False,
) -> str | None:
    """Claim the study's folder for `study` (writing its owner file when `decide` says so), or
    the message saying why it may not use it. Call before anything of the folder is read."""
    keys = StudyKeys(study.metadata.name)
    claimant = Claimant(uid=uid, spec=spec_hash(study.spec), adopt=adopt, resumed=resumed)
    verdict = decide(
        _found(store, keys),
        claimant,
        folder=store.uri(study.metadata.name) + "/",
        now=now.isoformat(timespec="seconds"),
    )
    if verdict.write is not None:
        store.put_json(keys.owner(), verdict.write.model_dump(mode="json"))
    return verdict.refusal


def _found(store: Store, keys: StudyKeys) -> Found:
    """The folder's owner file; without one, the hash of a spec.yaml stored there."""
    owner, why = read_record(store, keys.owner(), Owner)
    if owner is not None:
        return Found(owner=owner)
    if why is not None:
        return Found(broken_owner=f"has an owner.json that {why}")
    if not store.exists(keys.spec()):
        return Found()
    try:
        stored = parse_study(yaml.safe_load(store.get_text(keys.spec())), stored=True)
    except (SpecError, yaml.YAMLError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        return Found(broken_spec=f"holds a spec.yaml that is not a valid study ({first})")
    return Found(stored=spec_hash(stored.spec))


def _refusal(claimant: Claimant, held: str, *, adoptable: Owner | None = None) -> str:
    """The message: the folder and what it holds (`held`), that nothing of it was read, and
    the ways out for this kind of study (adoption only where it would be accepted)."""
    said = f"{held}. None of its records were read, to keep its runs out of this study"
    if claimant.uid is None:
        return (
            f"{said}. Run with another --store, give the study another metadata.name, or "
            "remove the folder to start over"
        )
    elsewhere = "give this study another metadata.name or spec.storage.s3.prefix"
    if adoptable is None:
        return f"{said}. To start afresh, {elsewhere}"
    return (
        f"{said}. Either adopt them (the spec is the same): delete this study and apply it "
        f'again with the annotation {ADOPT}: "{adoptable.name}"; or, to start afresh, '
        f"{elsewhere}"
    )


def _described(owner: Owner) -> str:
    if owner.uid is None:
        return f"`stagescreen run` (claimed {owner.claimed})"
    return f"another ScreeningStudy of this name (uid {owner.uid}, claimed {owner.claimed})"


def _at(document: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of a dumped spec; None where a part is absent."""
    value: Any = document
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
