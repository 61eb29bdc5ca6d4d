"""The record a training run leaves: `result.json`, written last (its presence means the run
is over) by the trainer, or by an executor for a run whose trainer could not write one.

One model for the writers (the trainer dumps it, `planning.results.failure_record` in the core
builds it) and the readers (the core validates every record it reads through it). A record holds who
the run is (the identity the executors passed in), how it ended (`status`, `reason`) and what
it measured; a field a run did not get to measure is None.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stagescreen_contract.status import RunStatus

SCHEMA_VERSION = 1


class ResumedFrom(BaseModel):
    """The checkpoint a run continued from, after an interruption."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    uri: str
    step: int
    training_s: float
    saved_at: str | None = None


class Provenance(BaseModel):
    """What produced a run, so two runs of one study that disagree can be told apart: the
    trainer's code, the image, the data and tokenizer files, the device and its software. Every
    field is None (or empty) where the writer does not know it; records written before this
    model have none of it."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    # the trainer's version (CODE_VERSION when the executor sets one, else the package's)
    trainer_version: str | None = None
    trainer_commit: str | None = None  # the git commit the image was built from, if recorded
    image_digest: str | None = None  # the container image digest, where the executor knows it
    # SHA-256 of each file this process read, by file name
    data_sha256: dict[str, str] = Field(default_factory=dict)
    tokenizer_sha256: dict[str, str] = Field(default_factory=dict)
    device: str | None = None  # the CUDA device's name, or the CPU model
    torch: str | None = None
    cuda_runtime: str | None = None  # torch.version.cuda; None on a CPU build
    cuda_driver: str | None = None  # the NVIDIA kernel driver, where one is loaded
    python: str | None = None
    # the other libraries a run's numbers depend on (pyarrow, tiktoken, boto3), by name
    libraries: dict[str, str | None] = Field(default_factory=dict)
    host: str | None = None  # the machine's host name: where, not what, so no column

    def columns(self) -> dict[str, str | None]:
        """The results table's `provenance.*` columns: one text value per field, so runs can be
        grouped by it. A file set becomes one digest: the SHA-256 of its `sha256sum` manifest
        (`<sha256>  <name>` lines, sorted by name), None when no file was recorded; the
        libraries read as `name version` pairs."""
        out: dict[str, str | None] = {}
        for name, value in self.model_dump(exclude={"host", *(self.model_extra or ())}).items():
            if name == "libraries":
                value = ", ".join(f"{k} {v}" for k, v in sorted(value.items())) or None
            elif isinstance(value, dict):
                value = _manifest_digest(value)
            out[f"provenance.{name}"] = value
        return out


def _manifest_digest(files: dict[str, str]) -> str | None:
    if not files:
        return None
    manifest = "".join(f"{digest}  {name}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(manifest.encode()).hexdigest()


PROVENANCE_COLUMNS = tuple(
    f"provenance.{name}" for name in Provenance.model_fields if name != "host"
)


OLDER_PROVENANCE = ("host", "versions", "code_version", "device_name")
"""Fields records kept before `Provenance` held them."""


def _older_provenance(older: dict[str, Any]) -> dict[str, Any]:
    """An older record's host, library versions, code version and device name as provenance."""
    versions = dict(older.get("versions") or {})
    return {
        "trainer_version": older.get("code_version") or versions.pop("stagescreen_trainer", None),
        "device": older.get("device_name"),
        "torch": versions.pop("torch", None),
        "cuda_runtime": versions.pop("cuda", None),
        "python": versions.pop("python", None),
        "libraries": versions,
        "host": older.get("host"),
    }


class RunRecord(BaseModel):
    """One run's `result.json`. Unknown fields are kept (a newer trainer may record more).
    Its validator is built on first use, not at import: the trainer imports this before its
    SIGTERM handler is installed and needs it only when the run ends."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    schema_version: int = SCHEMA_VERSION
    # --- identity, passed through from the run's environment ---
    study: str = ""
    stage: str = ""
    run_id: str = ""
    condition_id: str = ""
    coded_levels: dict[str, int | float] | None = None  # None: CODED_LEVELS did not parse
    hyperparameters: dict[str, int | float | str] = Field(default_factory=dict)
    budget_s: float | None = None
    max_steps: int | None = None
    seed: int | None = None
    pool: str = ""
    # --- how it ended ---
    status: RunStatus
    reason: str | None = None  # why it failed or diverged; "" for a success
    warnings: list[str] = Field(default_factory=list)
    # --- the metric and the training it took ---
    val_bpb: float | None = None
    eval_tokens: int | None = None
    eval_bytes: int | None = None
    train_loss: float | None = None  # debiased smoothed training loss at the end
    train_loss_last: float | None = None
    steps: int = 0
    tokens: int = 0
    parameters: int | None = None
    flops_per_token: float | None = None
    # --- timings, seconds ---
    training_s: float | None = None  # charged to the budget
    warmup_s: float | None = None  # the first steps, timed apart
    checkpoint_s: float | None = None
    startup_s: float | None = None
    eval_s: float | None = None
    wall_s: float | None = None  # start-up, training and evaluation
    # --- throughput and the device ---
    tokens_per_s: float | None = None
    mfu: float | None = None  # model FLOPs utilisation, a fraction of peak_flops
    peak_flops: float | None = None
    peak_flops_source: str | None = None
    peak_memory_bytes: int | None = None
    peak_memory_kind: str | None = None
    device: str | None = None
    attention: str | None = None
    compute_dtype: str | None = None
    orthogonal_dtype: str | None = None
    compiled: bool | None = None
    compile_error: str | None = None
    threads: int | None = None
    resumed_from: ResumedFrom | None = None
    # what produced the run; older records' host, versions, code_version and device_name are
    # read into it, and a record from before any of them has None
    provenance: Provenance | None = None
    started_at: str | None = None
    finished_at: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _older_records(cls, data: Any) -> Any:
        """Records written before this model, read as they were meant: non-finite numbers
        (an older trainer's NaN) are None, a status is read lower-case without spaces, and a
        null where this model has a default (steps, tokens, pool, ...) is that default."""
        if not isinstance(data, dict):
            return data
        read = {
            key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in data.items()
        }
        status = read.get("status")
        if isinstance(status, str):
            read["status"] = status.strip().lower()
        older = {key: read.pop(key) for key in OLDER_PROVENANCE if key in read}
        if older and read.get("provenance") is None:
            read["provenance"] = _older_provenance(older)
        return {
            key: value
            for key, value in read.items()
            if value is not None or key not in cls.model_fields or _nullable(key)
        }

    def number(self, name: str) -> float | None:
        """A numeric field, or a recorded extra, by name (a study's metric names one)."""
        value = getattr(self, name, None)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)


def _nullable(name: str) -> bool:
    """Whether a RunRecord field's default is None (so a null reads as itself)."""
    return RunRecord.model_fields[name].default is None
