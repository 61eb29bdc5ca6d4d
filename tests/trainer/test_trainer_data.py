"""Tokenizer and data: raw-byte table, tiktoken format, BOS-aligned packing, resumable order."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import tiktoken.load
import torch
from trainer_support import Prepared

from stagescreen_trainer import prepare
from stagescreen_trainer.data import split_shards, train_batches, validation_batches
from stagescreen_trainer.storage import Location
from stagescreen_trainer.tokenizer import RANKS_FILE, Tokenizer, load_token_bytes


def test_prepare_writes_train_shards_then_a_validation_shard(quickstart: Prepared) -> None:
    train, val = split_shards(Location(str(quickstart.data)))
    assert train and val == sorted([*train, val])[-1]
    texts = pq.read_table(quickstart.data / val).column("text").to_pylist()
    assert texts and all(0 < len(t) <= 600 for t in texts)


def test_token_byte_table_counts_raw_bytes_and_zero_for_specials(quickstart: Prepared) -> None:
    tokenizer = Tokenizer.load(quickstart.tokenizer)
    table = load_token_bytes(quickstart.tokenizer)
    assert len(table) == tokenizer.vocab_size == 512
    enc = tokenizer.encoding
    lone_byte = enc.encode_single_token(bytes([0xC3]))  # half of a two-byte UTF-8 character
    assert table[lone_byte] == 1
    assert len(enc.decode([lone_byte]).encode("utf-8")) == 3  # what decoding would count
    assert table[tokenizer.bos_id] == 0
    assert sum(1 for n in table if n == 0) == 4
    text = "def parse(self, value):\n    return value  # café\n"
    ids = enc.encode_ordinary(text)
    assert sum(table[i] for i in ids) == len(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text


def test_saved_encoding_loads_with_tiktokens_own_reader(quickstart: Prepared) -> None:
    ranks = tiktoken.load.load_tiktoken_bpe(str(quickstart.tokenizer / RANKS_FILE))
    assert ranks == Tokenizer.load(quickstart.tokenizer).encoding._mergeable_ranks


def test_packing_is_bos_aligned_without_padding(quickstart: Prepared, tmp_path: Path) -> None:
    tokenizer = Tokenizer.load(quickstart.tokenizer)
    batches = train_batches(Location(str(quickstart.data)), tokenizer, 4, 64, 1, tmp_path)
    for _ in range(5):
        inputs, targets = batches.next_batch()
        assert inputs.shape == targets.shape == (4, 64)
        assert torch.all(inputs[:, 0] == tokenizer.bos_id)
        assert torch.equal(inputs[:, 1:], targets[:, :-1])  # targets are inputs shifted by one
        assert int(inputs.min()) >= 0 and int(inputs.max()) < tokenizer.vocab_size


def test_order_follows_the_seed_and_survives_a_checkpoint(
    quickstart: Prepared, tmp_path: Path
) -> None:
    tokenizer = Tokenizer.load(quickstart.tokenizer)
    data = Location(str(quickstart.data))

    def loader(seed: int):  # type: ignore[no-untyped-def]
        return train_batches(data, tokenizer, 4, 64, seed, tmp_path)

    a, b, other = loader(7), loader(7), loader(8)
    first = [a.next_batch()[0] for _ in range(3)]
    assert all(torch.equal(x, b.next_batch()[0]) for x in first)
    assert not torch.equal(first[0], other.next_batch()[0])
    state = a.state_dict()
    expected = [a.next_batch()[0] for _ in range(4)]
    resumed = loader(7)
    resumed.load_state_dict(state)
    assert all(torch.equal(x, resumed.next_batch()[0]) for x in expected)


def test_validation_stream_is_pinned_whatever_the_run_seed(
    quickstart: Prepared, tmp_path: Path
) -> None:
    tokenizer = Tokenizer.load(quickstart.tokenizer)
    data = Location(str(quickstart.data))
    one = validation_batches(data, tokenizer, 4, 64, tmp_path).next_batch()[1]
    two = validation_batches(data, tokenizer, 4, 64, tmp_path).next_batch()[1]
    assert torch.equal(one, two)


def test_prepare_reads_any_folder_of_text_and_rejects_bad_arguments(tmp_path: Path) -> None:
    source = tmp_path / "notes"
    source.mkdir()
    for i in range(6):
        paragraphs = [f"Note {i}.{j}: the budget relaxes the effect of depth." for j in range(40)]
        (source / f"note{i}.txt").write_text("\n\n".join(paragraphs))
    (source / "image.bin").write_bytes(bytes(range(256)))  # not UTF-8: skipped
    out = tmp_path / "out"
    assert (
        prepare.main(
            ["--source", str(source), "--out", str(out), "--vocab", "300", "--doc-chars", "400"]
        )
        == 0
    )
    train, val = split_shards(Location(str(out / "shards")))
    texts = [
        t
        for name in [*train, val]
        for t in pq.read_table(out / "shards" / name).column("text").to_pylist()
    ]
    assert len(texts) > 6 and all("budget relaxes" in t for t in texts)
    assert Tokenizer.load(out / "tokenizer").vocab_size == 300
    assert prepare.main(["--source", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert prepare.main(["--source", str(source), "--out", str(out), "--vocab", "100"]) == 2
