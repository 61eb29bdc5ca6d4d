"""Trainer fixtures: the quickstart corpus, prepared once per session with a small vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest
from trainer_support import Prepared

from stagescreen_trainer import prepare


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    """1.5 MB of this interpreter's stdlib, 600-character documents, a 512-token vocabulary."""
    out: Path = tmp_path_factory.mktemp("quickstart")
    code = prepare.main(
        ["--out", str(out), "--vocab", "512", "--max-bytes", "1500000", "--doc-chars", "600"]
    )
    assert code == 0
    return Prepared(data=out / "shards", tokenizer=out / "tokenizer")
