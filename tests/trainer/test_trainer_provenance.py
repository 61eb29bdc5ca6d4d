"""The trainer's provenance: file digests are SHA-256, computed once per file and cached by
path, modification time and size; the NVIDIA driver is read from its /proc file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from stagescreen_trainer import provenance as module
from stagescreen_trainer.provenance import nvidia_driver, sha256_files


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STAGESCREEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(module, "_hashed", {})
    return tmp_path / "cache"


def test_each_file_is_hashed_once_and_the_digest_cached_until_it_changes(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once in this process, then from the disk cache in the next; a changed file (its
    mtime and size) is hashed again; a file gone is left out."""
    shard = tmp_path / "shard_00.parquet"
    shard.write_bytes(b"x" * (3 << 20))  # over one read chunk
    expected = hashlib.sha256(shard.read_bytes()).hexdigest()
    assert sha256_files({"shard_00.parquet": shard}) == {"shard_00.parquet": expected}
    assert list(json.loads((cache / "sha256.json").read_text()).values()) == [expected]

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} hashed again")

    with monkeypatch.context() as patched:
        patched.setattr(module, "sha256_file", no_hashing)
        assert sha256_files({"shard_00.parquet": shard}) == {"shard_00.parquet": expected}
        patched.setattr(module, "_hashed", {})  # a new process: the disk cache answers
        assert sha256_files({"shard_00.parquet": shard}) == {"shard_00.parquet": expected}
    shard.write_bytes(b"y" * 10)
    os.utime(shard, ns=(1, 1))
    changed = hashlib.sha256(b"y" * 10).hexdigest()
    assert sha256_files({"shard_00.parquet": shard}) == {"shard_00.parquet": changed}
    assert sha256_files({"gone.parquet": tmp_path / "gone.parquet"}) == {}


def test_the_nvidia_driver_version_is_read_from_its_proc_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = tmp_path / "version"
    driver.write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  Release Build\n"
        "GCC version:  gcc version 12.2.0\n"
    )
    monkeypatch.setattr(module, "DRIVER_FILE", driver)
    assert nvidia_driver() == "550.54.15"
    monkeypatch.setattr(module, "DRIVER_FILE", tmp_path / "absent")
    assert nvidia_driver() is None
