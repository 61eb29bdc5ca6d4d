"""Turn local text files into training shards, a validation shard and a BPE tokenizer.

    python -m stagescreen_trainer.prepare --out DIR [--source DIR] [--vocab 8192]

Without `--source` the corpus is the Python standard library of the running interpreter
(`Lib/**/*.py`, test suites and site-packages left out): it is on every machine that can run the
trainer, nothing is downloaded, and the same interpreter version always yields the same corpus.
Files are read in sorted order, cut into documents of at most `--doc-chars` characters at blank
lines, shuffled with a fixed seed so the validation shard is drawn from the same distribution
as training, and written as parquet with a `text` column:

    OUT/shards/shard_00000.parquet ... shard_NNNNN.parquet   (the last one is validation)
    OUT/tokenizer/tokenizer.tiktoken, tokenizer.json, token_bytes.json

DATA_URI=OUT/shards and TOKENIZER_URI=OUT/tokenizer are what the trainer then reads.
"""

from __future__ import annotations

import argparse
import random
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from stagescreen_trainer.tokenizer import train_tokenizer

EXCLUDED_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__"}


@dataclass(frozen=True)
class Corpus:
    """Where the text comes from and how it is cut."""

    source: Path
    pattern: str
    max_bytes: int
    doc_chars: int


def default_source() -> Path:
    """The running interpreter's standard library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def source_files(corpus: Corpus) -> Iterator[Path]:
    for path in sorted(corpus.source.glob(corpus.pattern)):
        relative = path.relative_to(corpus.source).parts
        if path.is_file() and not EXCLUDED_DIRS & set(relative[:-1]):
            yield path


def documents(corpus: Corpus) -> list[str]:
    """Documents of at most doc_chars characters, cut at blank lines, up to max_bytes of text."""
    docs: list[str] = []
    total = 0
    for path in source_files(corpus):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary or unreadable: not text for a language model
        current = ""
        for paragraph in text.split("\n\n"):
            piece = paragraph.strip("\n")
            if not piece:
                continue
            if current and len(current) + len(piece) + 2 > corpus.doc_chars:
                docs.append(current)
                current = ""
            current = f"{current}\n\n{piece}" if current else piece[: corpus.doc_chars]
        if current:
            docs.append(current)
        total += len(text.encode("utf-8"))
        if total >= corpus.max_bytes:
            break
    return docs


def write_shards(docs: list[str], out: Path, shard_docs: int, val_docs: int) -> list[Path]:
    """Training shards of shard_docs documents each, then one validation shard last."""
    folder = out / "shards"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("shard_*.parquet"):
        stale.unlink()
    train, val = docs[:-val_docs], docs[-val_docs:]
    groups = [train[i : i + shard_docs] for i in range(0, len(train), shard_docs)] + [val]
    paths = []
    for index, group in enumerate(groups):
        path = folder / f"shard_{index:05d}.parquet"
        pq.write_table(pa.table({"text": group}), path, row_group_size=1024)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stagescreen_trainer.prepare", description=__doc__
    )
    parser.add_argument(
        "--source", type=Path, help="folder of text files (default: this Python's stdlib)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--vocab", type=int, default=8192, help="vocabulary size incl. 4 specials")
    parser.add_argument(
        "--glob", default=None, help="files to read (default **/*.py for the stdlib, else **/*)"
    )
    parser.add_argument(
        "--max-bytes", type=int, default=8_000_000, help="stop reading after this much text"
    )
    parser.add_argument(
        "--doc-chars", type=int, default=2000, help="longest document, in characters"
    )
    parser.add_argument("--shard-docs", type=int, default=2000, help="documents per training shard")
    parser.add_argument(
        "--val-fraction", type=float, default=0.05, help="share of documents for validation"
    )
    args = parser.parse_args(argv)

    if args.vocab < 260:
        print(
            f"--vocab={args.vocab}: must be at least 260 (256 bytes + 4 specials)", file=sys.stderr
        )
        return 2
    source = args.source or default_source()
    if not source.is_dir():
        print(f"--source={str(source)!r}: not a folder of text files", file=sys.stderr)
        return 2
    pattern = args.glob or ("**/*.py" if args.source is None else "**/*")
    started = time.time()
    docs = documents(Corpus(source, pattern, args.max_bytes, args.doc_chars))
    if len(docs) < 4:
        print(
            f"--source={str(source)!r} --glob={pattern!r}: found {len(docs)} documents; need >= 4",
            file=sys.stderr,
        )
        return 2
    random.Random(0).shuffle(docs)
    val_docs = max(1, round(len(docs) * args.val_fraction))
    paths = write_shards(docs, args.out, args.shard_docs, val_docs)
    tokenizer = train_tokenizer(docs[:-val_docs], args.vocab)
    tokenizer.save(args.out / "tokenizer")
    chars = sum(len(d) for d in docs)
    print(
        f"prepared {len(docs)} documents ({chars / 1e6:.1f}M chars) from {source} into "
        f"{len(paths) - 1} training shard(s) + 1 validation shard ({val_docs} docs), "
        f"vocab {tokenizer.vocab_size}, in {time.time() - started:.1f}s\n"
        f"DATA_URI={args.out / 'shards'}\nTOKENIZER_URI={args.out / 'tokenizer'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
