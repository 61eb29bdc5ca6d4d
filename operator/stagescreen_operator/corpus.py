"""The corpus a study trains on when its spec names none: prepared once, kept in the store.

`python -m stagescreen_trainer.prepare` turns this interpreter's standard library into shards
and a tokenizer (no download). The result lives in the study's store under
`_corpus/stdlib-py<version>-v<vocab>/`, so every later study in the same store, and every run
restarted after a crash, reuses it instead of preparing again. On Kubernetes the Jobs read the
same keys: `stagescreen run` (or a study run once against the same store) puts them there.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from stagescreen.storage.store import Store
from stagescreen.study.spec import Study

CORPUS_ROOT = "_corpus"
TOKENIZER_MARK = "tokenizer/token_bytes.json"  # written last by prepare's tokenizer save


def corpus_for(
    study: Study, store: Store, vocab: int, say: Callable[[str], None] = print
) -> dict[str, str]:
    """DATA_URI and TOKENIZER_URI for the study's runs: the spec's own when it names them,
    else the prepared standard-library corpus in the store (prepared now if missing)."""
    trainer = study.spec.trainer
    name = corpus_key(vocab)
    named = bool(trainer.data_uri and trainer.tokenizer_uri)
    if not named and not store.exists(f"{name}/{TOKENIZER_MARK}"):
        say(f"preparing the corpus ({name}): this interpreter's standard library, vocab {vocab}")
        with tempfile.TemporaryDirectory(prefix="stagescreen-corpus-") as tmp:
            command = [sys.executable, "-m", "stagescreen_trainer.prepare", "--out", tmp]
            done = subprocess.run(
                [*command, "--vocab", str(vocab)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"corpus preparation failed: {done.stderr.strip()}")
            say(done.stdout.splitlines()[0])
            files = sorted(p for p in Path(tmp).rglob("*") if p.is_file())
            # the tokenizer's last file goes last: its presence means the corpus is whole
            for path in sorted(files, key=lambda p: str(p).endswith(TOKENIZER_MARK)):
                store.put_bytes(f"{name}/{path.relative_to(tmp).as_posix()}", path.read_bytes())
    return corpus_uris(study, store.uri, vocab)


def corpus_key(vocab: int) -> str:
    """The store folder of the prepared standard-library corpus."""
    return f"{CORPUS_ROOT}/stdlib-py{platform.python_version()}-v{vocab}"


def corpus_uris(study: Study, uri: Callable[[str], str], vocab: int) -> dict[str, str]:
    """DATA_URI and TOKENIZER_URI: the spec's own, else the prepared corpus's in the store
    whose `uri` function is given (nothing is read or prepared here)."""
    trainer = study.spec.trainer
    if trainer.data_uri and trainer.tokenizer_uri:
        return {"DATA_URI": trainer.data_uri, "TOKENIZER_URI": trainer.tokenizer_uri}
    name = corpus_key(vocab)
    return {"DATA_URI": uri(f"{name}/shards"), "TOKENIZER_URI": uri(f"{name}/tokenizer")}
