"""prepare: text folders and parquet shards (local and S3) in, a clean split and tokenizer out."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from seaweed import S3Bucket
from trainer_support import Prepared

from stagescreen_trainer import prepare
from stagescreen_trainer.data import split_shards
from stagescreen_trainer.storage import Location
from stagescreen_trainer.tokenizer import Tokenizer


def shard_texts(folder: Path) -> tuple[list[str], list[str]]:
    """(training documents, validation documents) of a prepared shards folder."""
    train, val = split_shards(Location(str(folder)))

    def read(name: str) -> list[str]:
        return [str(t) for t in pq.read_table(folder / name).column("text").to_pylist()]

    return [t for name in train for t in read(name)], read(val)


def paragraphs(texts: list[str]) -> Counter[str]:
    return Counter(p.strip("\n") for t in texts for p in t.split("\n\n") if p.strip("\n"))


def notes_folder(root: Path) -> Path:
    """Six notes of 40 paragraphs, one paragraph far longer than --doc-chars, one note twice."""
    source = root / "notes"
    source.mkdir()
    for i in range(6):
        parts = [f"Note {i}.{j}: the budget relaxes the effect of depth." for j in range(40)]
        if i == 2:
            parts[5] = "A paragraph longer than any document limit. " * 30
        (source / f"note{i}.txt").write_text("\n\n".join(parts))
    (source / "copy_of_note0.txt").write_text((source / "note0.txt").read_text())
    (source / "image.bin").write_bytes(bytes(range(256)))  # not UTF-8: skipped
    return source


def test_text_folder_loses_no_text_and_cuts_only_oversized_paragraphs(tmp_path: Path) -> None:
    source = notes_folder(tmp_path)
    out = tmp_path / "out"
    args = ["--source", str(source), "--out", str(out), "--vocab", "300", "--doc-chars", "400"]
    assert prepare.main([*args, "--min-val-tokens", "100"]) == 0
    train, val = shard_texts(out / "shards")
    originals = [(source / f"note{i}.txt").read_text() for i in range(6)]

    def words(texts: list[str]) -> Counter[str]:
        return Counter(w for t in texts for w in t.split())

    # every word of every note is kept; of the copied note, the copies also in validation go
    assert not words(originals) - words(train + val)
    assert not words(train + val) - words(originals) - words(originals[:1])
    long_paragraph = "A paragraph longer than any document limit. " * 30
    whole = [p for p in paragraphs(originals) if p != long_paragraph]
    assert set(whole) <= set(paragraphs(train + val))  # paragraphs that fit are never cut
    assert all(len(doc) <= 400 for doc in train + val)
    assert not set(train) & set(val)  # a copied note never sits on both sides of the split
    assert Tokenizer.load(out / "tokenizer").vocab_size == 300


def test_documents_cut_at_blank_lines_then_lines_then_spaces() -> None:
    text = "intro\n\n" + "one two three four five six\nseven eight\n" * 2 + "\n\nend"
    docs = prepare.documents_of(text, 30)
    assert docs == [
        "intro",
        "one two three four five six",
        "seven eight",
        "one two three four five six",
        "seven eight",
        "end",
    ]
    assert prepare.documents_of("x" * 50, 30) == ["x" * 50]  # nowhere to cut: kept whole


def test_bad_arguments_exit_2_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = notes_folder(tmp_path)
    out = str(tmp_path / "out")
    assert prepare.main(["--source", str(tmp_path / "missing"), "--out", out]) == 2
    assert prepare.main(["--source", str(source), "--out", out, "--vocab", "100"]) == 2
    capsys.readouterr()
    assert prepare.main(["--source", str(source), "--out", out, "--vocab", "300"]) == 2
    message = capsys.readouterr().err
    assert "--min-val-tokens=16,384" in message and "--val-fraction" in message
    assert prepare.main(["--source", str(source), "--out", out, "--val-shard", "x"]) == 2
    assert "only for a folder of parquet shards" in capsys.readouterr().err


def write_parquet_corpus(folder: Path) -> dict[str, list[str]]:
    """Three climbmix-style shards; the middle one shares a document with the validation one."""
    shards = {
        "part_000.parquet": [f"alpha {i} " * (3 + i % 5) for i in range(60)],
        "part_001.parquet": [f"beta {i} " * (2 + i % 7) for i in range(60)] + ["shared text"],
        "val_000.parquet": [f"gamma {i} " * (4 + i % 3) for i in range(40)] + ["shared text"],
    }
    folder.mkdir(parents=True)
    for name, texts in shards.items():
        pq.write_table(pa.table({"text": texts, "id": list(range(len(texts)))}), folder / name)
    return shards


def test_parquet_shards_with_a_pinned_validation_shard(tmp_path: Path) -> None:
    shards = write_parquet_corpus(tmp_path / "climb")
    out = tmp_path / "out"
    args = ["--source", str(tmp_path / "climb"), "--out", str(out), "--vocab", "300"]
    assert prepare.main([*args, "--val-shard", "part_000.parquet", "--min-val-tokens", "50"]) == 0
    train, val = shard_texts(out / "shards")
    assert val == shards["part_000.parquet"]  # the named shard, whole, in its own order
    assert train == shards["part_001.parquet"] + shards["val_000.parquet"]

    assert prepare.main([*args, "--min-val-tokens", "50"]) == 0  # default: the last by name
    train, val = shard_texts(out / "shards")
    assert val == shards["val_000.parquet"]
    assert "shared text" not in train  # the duplicate left training, not validation
    assert len(train) == 60 + 60


def test_parquet_shards_read_from_s3(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    shards = write_parquet_corpus(tmp_path / "climb")
    s3_bucket.upload(tmp_path / "climb", "climb")
    out = tmp_path / "out"
    source = s3_bucket.uri("climb")
    code = prepare.main(
        ["--source", source, "--out", str(out), "--vocab", "300", "--min-val-tokens", "50"]
    )
    assert code == 0
    _, val = shard_texts(out / "shards")
    assert val == shards["val_000.parquet"]


def test_quickstart_validation_is_large_enough_and_disjoint_from_training(
    quickstart: Prepared,
) -> None:
    train, val = shard_texts(quickstart.data)
    assert not set(train) & set(val)
    tokenizer = Tokenizer.load(quickstart.tokenizer)
    assert prepare.validation_tokens(tokenizer, val) >= 16384
