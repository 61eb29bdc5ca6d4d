"""Helpers for the trainer tests: a tiny configuration and running the trainer as a Job would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Prepared:
    """A prepared quickstart corpus: DATA_URI and TOKENIZER_URI folders."""

    data: Path
    tokenizer: Path


# Width 64 (2 heads of 32), 2 layers, 64-token context, 512 tokens per step: a step takes
# tens of milliseconds on one core. THREADS=1 keeps runs steady on a shared 2-core machine;
# PEAK_FLOPS skips the matmul measurement, which only feeds MFU.
TINY = {
    "DEPTH": "2",
    "ASPECT_RATIO": "32",
    "HEAD_DIM": "32",
    "SEQ_LEN": "64",
    "DEVICE_BATCH_SIZE": "8",
    "TOTAL_BATCH_SIZE": "512",
    "EVAL_TOKENS": "2048",
    "EXCLUDE_STEPS": "1",
    "THREADS": "1",
    "PEAK_FLOPS": "1e11",
    "PROGRESS_EVERY": "0.25",
}


def tiny_env(prepared: Prepared, result: str, **overrides: Any) -> dict[str, str]:
    """Environment of a tiny run of the quickstart corpus writing to `result`."""
    env = {k: v for k, v in os.environ.items() if k not in TINY and not k.startswith("AWS_")}
    env.update(TINY)
    env.update(
        DATA_URI=str(prepared.data), TOKENIZER_URI=str(prepared.tokenizer), RESULT_URI=result
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def trainer_command() -> list[str]:
    return [sys.executable, "-m", "stagescreen_trainer"]


def run_trainer(env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        trainer_command(), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def read_record(folder: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((folder / "result.json").read_text())
    return record
