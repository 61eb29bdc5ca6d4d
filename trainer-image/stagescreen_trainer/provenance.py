"""What produced a run (`Provenance` in the run contract): the trainer's version and build
commit, SHA-256 of the data shards and tokenizer files it read, the device and its software.

The image records its build commit in `STAGESCREEN_TRAINER_COMMIT` (Dockerfile.trainer's
TRAINER_COMMIT build argument, which images/build.sh sets from git); without it the commit is
None, never guessed. The image digest is not visible from inside the container: the executor
that started the pod adds it (None here).

Hashing a shard reads it once more, so each file is hashed once per process and the digest is
cached on disk by path, modification time and size (`STAGESCREEN_CACHE/sha256.json`): the runs
of a study on one machine hash a local data set once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import socket
from collections.abc import Mapping
from pathlib import Path

import torch

from stagescreen_contract.record import Provenance
from stagescreen_trainer import __version__
from stagescreen_trainer.device import cache_folder

COMMIT_VARIABLE = "STAGESCREEN_TRAINER_COMMIT"
DRIVER_FILE = Path("/proc/driver/nvidia/version")
CHUNK = 1 << 20

_hashed: dict[str, str] = {}  # "path|mtime_ns|size" -> hex digest, this process


def provenance(
    device_name: str | None,
    data: Mapping[str, Path],
    tokenizer: Mapping[str, Path],
    *,
    code_version: str | None = None,
) -> Provenance:
    """The run's provenance from the files it read (name -> local path) and its device;
    `code_version` (the executor's CODE_VERSION) names the trainer's code when given."""
    return Provenance(
        trainer_version=code_version or __version__,
        trainer_commit=os.environ.get(COMMIT_VARIABLE) or None,
        data_sha256=sha256_files(data),
        tokenizer_sha256=sha256_files(tokenizer),
        device=device_name,
        torch=torch.__version__,
        cuda_runtime=torch.version.cuda,
        cuda_driver=nvidia_driver(),
        python=platform.python_version(),
        libraries=libraries(),
        host=socket.gethostname(),
    )


def libraries() -> dict[str, str | None]:
    """The other libraries a run's numbers depend on, by name (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for package in ("pyarrow", "tiktoken", "boto3"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def sha256_files(files: Mapping[str, Path]) -> dict[str, str]:
    """SHA-256 of each file by name, from the caches where the file has not changed; a file
    that can no longer be read is left out (the record is still written)."""
    path = cache_folder() / "sha256.json"
    known: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        known = {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
    digests: dict[str, str] = {}
    for name, file in sorted(files.items()):
        try:
            stat = file.stat()
            key = f"{file.resolve()}|{stat.st_mtime_ns}|{stat.st_size}"
            if key not in _hashed:
                _hashed[key] = known.get(key) or sha256_file(file)
        except OSError:
            continue
        digests[name] = _hashed[key]
    if any(known.get(key) != value for key, value in _hashed.items()):
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            kept = {k: v for k, v in {**known, **_hashed}.items() if _exists(k)}
            tmp.write_text(json.dumps(kept, indent=1))
            os.replace(tmp, path)
    return digests


def _exists(key: str) -> bool:
    """Whether a cache entry's file is still there (a run's downloaded copies are removed
    with the run: their entries are dropped rather than kept forever)."""
    return Path(key.split("|", 1)[0]).is_file()


def sha256_file(path: Path) -> str:
    """A file's SHA-256, read in 1 MiB chunks (shards can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def nvidia_driver() -> str | None:
    """The loaded NVIDIA kernel driver's version (e.g. 550.54.15), None without one."""
    with contextlib.suppress(OSError):
        found = re.search(
            r"Kernel Module\s+(?:for \S+\s+)?(\d+(?:\.\d+)+)", DRIVER_FILE.read_text()
        )
        if found:
            return found.group(1)
    return None
