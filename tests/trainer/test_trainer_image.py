"""The trainer image, built for real (torch's CPU build), trains the tiny configuration as a
training Job runs it: its entry point as user 10001, HOME read-only as on the Job's read-only
root filesystem, writable /tmp and /cache (STAGESCREEN_CACHE) as the Job's emptyDirs."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from buildah import Image
from trainer_support import TINY, Prepared

ROOT = Path(__file__).resolve().parents[2]
TRAINER_UID = 10001  # the image's USER


def readable_copy(source: Path, target: Path) -> Path:
    """A copy of `source` the trainer's user can read (pytest's folders are root's alone)."""
    shutil.copytree(source, target)
    for folder, _, files in os.walk(target):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(Path(folder) / name, 0o644)
    return target


def writable(folder: Path) -> Path:
    """An empty folder owned by the trainer's user, as an emptyDir is to the pod."""
    folder.mkdir()
    os.chown(folder, TRAINER_UID, TRAINER_UID)
    return folder


def test_the_image_holds_the_pinned_torch_built_for_cpu(trainer_image: Image) -> None:
    pinned = re.search(r'"torch==([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned
    done = trainer_image.run(
        "-c", "import torch; print(torch.__version__)", entrypoint=["python"], timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{pinned[1]}+cpu"


def test_the_image_trains_the_tiny_configuration_with_home_read_only(
    trainer_image: Image, quickstart: Prepared, tmp_path: Path
) -> None:
    data = readable_copy(quickstart.data, tmp_path / "data")
    tokenizer = readable_copy(quickstart.tokenizer, tmp_path / "tokenizer")
    home = tmp_path / "home"
    home.mkdir(mode=0o555)
    out, cache, tmp = (writable(tmp_path / name) for name in ("out", "cache", "tmp"))
    env = {
        **TINY,
        "MAX_STEPS": "20",
        "DATA_URI": "/data",
        "TOKENIZER_URI": "/tokenizer",
        "RESULT_URI": "/out/run",
        "DEVICE": "cpu",  # what the operator's Job sets (kube/jobs.py)
        "STAGESCREEN_CACHE": "/cache",
    }
    volumes = [
        f"{data}:/data:ro",
        f"{tokenizer}:/tokenizer:ro",
        f"{home}:/home/trainer:ro",
        f"{out}:/out",
        f"{cache}:/cache",
        f"{tmp}:/tmp",
    ]
    done = trainer_image.run(env=env, volumes=volumes, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    record = json.loads((out / "run" / "result.json").read_text())
    assert record["status"] == "succeeded" and record["steps"] == 20
    assert list(home.iterdir()) == []
