"""The key layout of a study's storage: object names, key checks and `StudyKeys`.

Pure and dependency-free, so the planner, the analysis and the report build keys without
importing a storage backend (boto3); `stagescreen.storage.store` reads and writes the objects. The
layout is docs/architecture.md, "Storage".
"""

from __future__ import annotations

from dataclasses import dataclass

# Local writes go to a hidden sibling first; listing skips such names and keys may not use them.
TEMP_PREFIX = ".stagescreen-tmp-"

# Object names inside a run's and a stage's folder (docs/architecture.md "Storage").
SPEC = "spec.yaml"
OWNER = "owner.json"
MANIFEST = "manifest.json"
RESULT = "result.json"
CURVE = "curve.parquet"
LOG = "log.txt"
IMAGE = "image.txt"  # the image digest the kube operator saw the run's pod run
CKPT = "ckpt/"
RESULTS = "results.parquet"
OUTCOME = "outcome.json"
REPORT = "report.md"


class StoreError(Exception):
    """A store could not be opened or used as asked."""


class InvalidKey(StoreError, ValueError):
    """A key or prefix that could escape the store or name no single object."""


class MissingKey(StoreError, KeyError):
    """A read of a key that holds no object."""

    def __init__(self, key: str, uri: str) -> None:
        super().__init__(key, uri)
        self.key = key
        self.uri = uri

    def __str__(self) -> str:
        return f"no object at {self.uri}"


class UnreadableObject(StoreError, ValueError):
    """An object that is there but cannot be read as what it should hold: damaged, or not
    written by StageScreen."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(uri, reason)
        self.uri = uri
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"{self.uri} cannot be read: {self.reason} (the file is damaged or was not "
            "written by StageScreen)"
        )


def check_key(key: str, *, prefix: bool = False) -> str:
    """Return `key` if it is a clean relative key ("a/b.json"); a prefix may be "" or end in "/"."""
    accepted = "relative '/'-separated names without '.', '..', empty parts or a leading '/'"
    if prefix and key == "":
        return key
    body = key[:-1] if prefix and key.endswith("/") else key
    problem = None
    if not body:
        problem = "is empty"
    elif body.startswith("/"):
        problem = "starts with '/'"
    elif "\\" in body or "\0" in body:
        problem = "contains a backslash or NUL"
    elif any(part in ("", ".", "..") for part in body.split("/")):
        problem = "has an empty, '.' or '..' part"
    elif any(part.startswith(TEMP_PREFIX) for part in body.split("/")):
        problem = f"has a part starting with {TEMP_PREFIX!r}, reserved for partial writes"
    if problem:
        kind = "prefix" if prefix else "key"
        raise InvalidKey(f"{kind} {key!r} {problem}; accepted: {accepted}")
    return key


@dataclass(frozen=True)
class StudyKeys:
    """The key layout of one study, in one place; every reader and writer builds keys here."""

    study: str

    def __post_init__(self) -> None:
        _check_segment("study", self.study)

    def spec(self) -> str:
        return f"{self.study}/{SPEC}"

    def owner(self) -> str:
        """Which study owns the folder (`stagescreen.storage.ownership`)."""
        return f"{self.study}/{OWNER}"

    def manifest(self) -> str:
        return f"{self.study}/{MANIFEST}"

    def report(self) -> str:
        """The study's report.md; its figures sit beside it."""
        return f"{self.study}/{REPORT}"

    def runs_prefix(self) -> str:
        return f"{self.study}/runs/"

    def run_prefix(self, run_id: str) -> str:
        return f"{self.runs_prefix()}{_check_segment('run_id', run_id)}/"

    def run(self, run_id: str, name: str) -> str:
        """`name` is RESULT, CURVE, LOG, IMAGE, or CKPT and paths under it."""
        return check_key(self.run_prefix(run_id) + name, prefix=name.endswith("/"))

    def stage_prefix(self, stage: str) -> str:
        return f"{self.study}/stages/{_check_segment('stage', stage)}/"

    def stage(self, stage: str, name: str) -> str:
        """`name` is RESULTS, OUTCOME, REPORT or a figure such as "effects.png"."""
        return check_key(self.stage_prefix(stage) + name)


def _check_segment(what: str, value: str) -> str:
    if not value or "/" in value or value in (".", "..") or value.startswith(TEMP_PREFIX):
        raise InvalidKey(f"{what} {value!r} must be one non-empty key part without '/'")
    return value
