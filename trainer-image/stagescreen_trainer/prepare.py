"""Turn a corpus into training shards, a validation shard and a BPE tokenizer.

    python -m stagescreen_trainer.prepare --out DIR [--source DIR|s3://...] [--vocab 8192]

Two kinds of source:
- a folder of **parquet shards** with a `text` column (local or `s3://bucket/prefix`), the
  layout the paper's climbmix shards and most public pretraining sets ship in: each row is a
  document; the validation shard is `--val-shard NAME`, by default the last one by name (the
  climbmix convention), and training reads the others in name order up to `--max-bytes`;
- a folder of **text files** (`--glob`, default `**/*`), or with no `--source` at all the
  Python standard library of the running interpreter (`Lib/**/*.py`, test suites and
  site-packages left out): on every machine that can run the trainer, nothing downloaded, the
  same corpus for the same Python version. Files are cut into documents of about
  `--doc-chars` characters at blank lines (at line ends, then spaces, only inside a longer
  paragraph; no text is ever dropped), shuffled with a fixed seed, and documents holding
  `--val-fraction` of the characters held out for validation.

Either way, a training document identical to a validation document is dropped (so val_bpb
never scores text the model trained on), and the validation text must hold at least
`--min-val-tokens` tokens, or prepare stops with a message saying what to change. Output:

    OUT/shards/shard_00000.parquet ... shard_NNNNN.parquet   (the last one is validation)
    OUT/tokenizer/tokenizer.tiktoken, tokenizer.json, token_bytes.json

DATA_URI=OUT/shards and TOKENIZER_URI=OUT/tokenizer are what the trainer then reads.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from stagescreen_contract.variables import CORPUS_VOCAB_MIN
from stagescreen_trainer.data import DataError, row_group_texts, text_shard
from stagescreen_trainer.storage import Location
from stagescreen_trainer.tokenizer import Tokenizer, train_tokenizer

EXCLUDED_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__"}


class PrepareError(ValueError):
    """The corpus or the arguments cannot make a usable data set; the message says why."""


@dataclass(frozen=True)
class Split:
    """Documents for training and for validation, before tokenisation."""

    train: list[str]
    val: list[str]
    dropped_duplicates: int = 0


# --- text files --------------------------------------------------------------------------


def default_source() -> Path:
    """The running interpreter's standard library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def source_files(source: Path, pattern: str) -> Iterator[Path]:
    for path in sorted(source.glob(pattern)):
        relative = path.relative_to(source).parts
        if path.is_file() and not EXCLUDED_DIRS & set(relative[:-1]):
            yield path


def documents_of(text: str, doc_chars: int) -> list[str]:
    """Documents of about doc_chars characters, cut at the strongest boundary available:
    blank lines, then line ends, then spaces. Nothing is dropped: joining a document's pieces
    gives back its text, and a piece with no boundary left (one very long word) stays whole."""
    return [doc for doc in _pieces(text.strip("\n"), doc_chars, ("\n\n", "\n", " ")) if doc]


def _pieces(text: str, limit: int, separators: tuple[str, ...]) -> list[str]:
    if len(text) <= limit or not separators:
        return [text]
    separator, weaker = separators[0], separators[1:]
    docs: list[str] = []
    current: str | None = None
    for part in text.split(separator):
        if separator == "\n\n":
            part = part.strip("\n")
            if not part:
                continue
        if current is not None and len(current) + len(separator) + len(part) <= limit:
            current = f"{current}{separator}{part}"
            continue
        if current is not None:
            docs.append(current)
        current = None
        if len(part) > limit:
            docs.extend(_pieces(part, limit, weaker))
        else:
            current = part
    if current is not None:
        docs.append(current)
    return docs


def text_documents(source: Path, pattern: str, max_bytes: int, doc_chars: int) -> list[str]:
    """Documents from the text files under source, in sorted order, up to max_bytes."""
    docs: list[str] = []
    total = 0
    for path in source_files(source, pattern):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary or unreadable: not text for a language model
        docs.extend(documents_of(text, doc_chars))
        total += len(text.encode("utf-8"))
        if total >= max_bytes:
            break
    return docs


def split_text(docs: list[str], val_fraction: float) -> Split:
    """Shuffle with a fixed seed (validation is drawn from the same mix as training) and hold
    out documents until they hold val_fraction of the characters."""
    docs = list(docs)
    random.Random(0).shuffle(docs)
    target = val_fraction * sum(len(doc) for doc in docs)
    held, count = 0, 0
    while count < len(docs) - 1 and (count == 0 or held < target):
        count += 1
        held += len(docs[-count])
    return Split(train=docs[:-count], val=docs[-count:])


# --- parquet shards ----------------------------------------------------------------------


def has_parquet(source: str) -> bool:
    return source.startswith("s3://") or bool(Location(source).list(".parquet"))


def parquet_split(source: str, val_shard: str | None, max_bytes: int, cache: Path) -> Split:
    """The validation shard whole; training documents from the other shards up to max_bytes."""
    location = Location(source)
    names = location.list(".parquet")
    if len(names) < 2:
        raise PrepareError(
            f"--source={source!r}: found {len(names)} parquet shard(s); need at least 2 "
            "(training shards and a validation shard)"
        )
    val = val_shard or names[-1]
    if val not in names:
        raise PrepareError(
            f"--val-shard={val!r}: not among the shards of {source!r} ({', '.join(names[:5])}"
            + (", ..." if len(names) > 5 else "")
            + ")"
        )
    train: list[str] = []
    total = 0
    for name in names:
        if name == val or total >= max_bytes:
            continue
        for text in shard_texts(location, name, cache):
            train.append(text)
            total += len(text.encode("utf-8"))
            if total >= max_bytes:
                break
    return Split(train=train, val=list(shard_texts(location, val, cache)))


def shard_texts(location: Location, name: str, cache: Path) -> Iterator[str]:
    try:
        shard = text_shard(location.local_copy(name, cache), location.uri(name))
    except DataError as error:
        raise PrepareError(str(error)) from None
    for group in range(shard.num_row_groups):
        yield from row_group_texts(shard, group)


# --- the split, checked ------------------------------------------------------------------


def without_validation_text(split: Split) -> Split:
    """Drop training documents identical (after stripping whitespace) to a validation one."""

    def key(text: str) -> bytes:
        return hashlib.blake2b(text.strip().encode("utf-8"), digest_size=16).digest()

    held_out = {key(text) for text in split.val}
    train = [text for text in split.train if key(text) not in held_out]
    return Split(train, split.val, dropped_duplicates=len(split.train) - len(train))


def validation_tokens(tokenizer: Tokenizer, texts: list[str]) -> int:
    """Targets val_bpb can score: every token of the joined stream but the first."""
    return sum(len(doc) for doc in tokenizer.encode_documents(texts)) - 1


def write_shards(split: Split, out: Path, shard_docs: int) -> list[Path]:
    """Training shards of shard_docs documents each, then one validation shard last."""
    folder = out / "shards"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("shard_*.parquet"):
        stale.unlink()
    train = split.train
    groups = [train[i : i + shard_docs] for i in range(0, len(train), shard_docs)] + [split.val]
    paths = []
    for index, group in enumerate(groups):
        path = folder / f"shard_{index:05d}.parquet"
        pq.write_table(pa.table({"text": group}), path, row_group_size=1024)
        paths.append(path)
    return paths


# --- command line ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stagescreen_trainer.prepare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source",
        help="folder of parquet shards (local or s3://) or of text files "
        "(default: this Python's stdlib)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--vocab", type=int, default=8192, help="vocabulary size incl. 4 specials")
    parser.add_argument(
        "--glob",
        default=None,
        help="text files to read (default **/*.py for the stdlib, else **/*)",
    )
    parser.add_argument(
        "--max-bytes", type=int, default=8_000_000, help="stop reading training text after this"
    )
    parser.add_argument(
        "--doc-chars",
        type=int,
        default=2000,
        help="text files: cut into documents of about this many characters, at blank lines",
    )
    parser.add_argument("--shard-docs", type=int, default=2000, help="documents per training shard")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.05,
        help="text files: share of the text held out for validation",
    )
    parser.add_argument(
        "--val-shard", default=None, help="parquet: the validation shard's name (default: last)"
    )
    parser.add_argument(
        "--min-val-tokens",
        type=int,
        default=16384,
        help="refuse a validation text smaller than this many tokens",
    )
    return parser


def load_split(args: argparse.Namespace, cache: Path) -> tuple[str, Split]:
    """(what was read, the split) for the source the arguments name."""
    if args.source and has_parquet(args.source):
        return args.source, parquet_split(args.source, args.val_shard, args.max_bytes, cache)
    source = Path(args.source) if args.source else default_source()
    if not source.is_dir():
        raise PrepareError(
            f"--source={str(source)!r}: not a folder of parquet shards or text files"
        )
    if args.val_shard:
        raise PrepareError(
            f"--val-shard={args.val_shard!r}: only for a folder of parquet shards; "
            f"{str(source)!r} holds none (use --val-fraction for text files)"
        )
    pattern = args.glob or ("**/*.py" if args.source is None else "**/*")
    docs = text_documents(source, pattern, args.max_bytes, args.doc_chars)
    if len(docs) < 4:
        raise PrepareError(
            f"--source={str(source)!r} --glob={pattern!r}: found {len(docs)} documents; need >= 4"
        )
    return str(source), split_text(docs, args.val_fraction)


def prepare(args: argparse.Namespace) -> str:
    """Read, split, deduplicate, check, train the tokenizer, write; returns the summary."""
    if args.vocab < CORPUS_VOCAB_MIN:
        raise PrepareError(
            f"--vocab={args.vocab}: must be at least {CORPUS_VOCAB_MIN} (256 bytes + 4 specials)"
        )
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="stagescreen-prepare-") as cache:
        source, split = load_split(args, Path(cache))
    split = without_validation_text(split)
    if not split.train:
        raise PrepareError(f"--source={source!r}: no training documents left after the split")
    tokenizer = train_tokenizer(split.train, args.vocab)
    val_tokens = validation_tokens(tokenizer, split.val)
    if val_tokens < args.min_val_tokens:
        raise PrepareError(
            f"validation text holds {val_tokens:,} tokens, fewer than --min-val-tokens="
            f"{args.min_val_tokens:,}: val_bpb on it would be noise. Hold out more "
            "(--val-fraction, a larger --val-shard, more --max-bytes) or lower --min-val-tokens"
        )
    paths = write_shards(split, args.out, args.shard_docs)
    tokenizer.save(args.out / "tokenizer")
    chars = sum(len(d) for d in split.train) + sum(len(d) for d in split.val)
    return (
        f"prepared {len(split.train) + len(split.val)} documents ({chars / 1e6:.1f}M chars) "
        f"from {source} into {len(paths) - 1} training shard(s) + 1 validation shard "
        f"({len(split.val)} docs, {val_tokens:,} tokens; {split.dropped_duplicates} training "
        f"duplicate(s) of validation text dropped), vocab {tokenizer.vocab_size}, in "
        f"{time.time() - started:.1f}s\n"
        f"DATA_URI={args.out / 'shards'}\nTOKENIZER_URI={args.out / 'tokenizer'}"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(prepare(args))
    except PrepareError as error:
        print(str(error), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
