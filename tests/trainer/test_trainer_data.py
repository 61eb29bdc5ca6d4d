"""Tokenizer and data: raw-byte table, tiktoken format, BOS-aligned packing, resumable order."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import tiktoken.load
import torch
from trainer_support import Prepared

from stagescreen_trainer.data import (
    PackedBatches,
    split_shards,
    train_batches,
    validation_batches,
)
from stagescreen_trainer.storage import Location
from stagescreen_trainer.tokenizer import RANKS_FILE, Tokenizer, load_token_bytes


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


def test_rows_are_full_and_targets_are_the_inputs_shifted_by_one(
    quickstart: Prepared, tmp_path: Path
) -> None:
    tokenizer = Tokenizer.load(quickstart.tokenizer)
    batches = train_batches(Location(str(quickstart.data)), tokenizer, 4, 64, 1, tmp_path)
    starts = []
    for _ in range(20):
        inputs, targets = batches.next_batch()
        assert inputs.shape == targets.shape == (4, 64)
        assert torch.equal(inputs[:, 1:], targets[:, :-1])  # targets are inputs shifted by one
        assert int(inputs.min()) >= 0 and int(inputs.max()) < tokenizer.vocab_size
        starts += inputs[:, 0].tolist()
    # a row opens at a document's BOS unless it continues a document split at a row's end
    assert tokenizer.bos_id in starts


def write_corpus(folder: Path, shards: list[list[str]]) -> Location:
    folder.mkdir(parents=True)
    for index, texts in enumerate(shards):
        pq.write_table(pa.table({"text": texts}), folder / f"shard_{index:05d}.parquet")
    return Location(str(folder))


def corpus_tokens(tokenizer: Tokenizer, texts: list[str]) -> Counter[int]:
    return Counter(t for doc in tokenizer.encode_documents(texts) for t in doc)


def emitted(batches: PackedBatches, rows: int) -> tuple[Counter[int], set[tuple[int, ...]]]:
    """Tokens and distinct rows of the next `rows` rows (one batch row at a time)."""
    tokens: Counter[int] = Counter()
    distinct = set()
    for _ in range(rows):
        inputs, targets = batches.next_batch()
        row = [*inputs[0].tolist(), int(targets[0, -1])]
        tokens.update(row)
        distinct.add(tuple(row))
    return tokens, distinct


def test_packing_uses_each_training_token_once_per_epoch(
    quickstart: Prepared, tmp_path: Path
) -> None:
    """A corpus far smaller than the 1,000-document buffer (the case that used to loop one
    shard four times at step 1 and drop every cropped tail): rows drawn within one epoch are
    all distinct and cover exactly rows*(T+1) of the corpus's tokens, none twice."""
    tokenizer = Tokenizer.load(quickstart.tokenizer)
    texts = [
        f"document {i}: " + " ".join(f"w{i * j % 97}" for j in range(5 + 7 * (i % 9)))
        for i in range(120)
    ]
    location = write_corpus(tmp_path / "shards", [texts[:70], texts[70:], ["held out"]])
    corpus = corpus_tokens(tokenizer, texts)
    total = sum(corpus.values())
    width = 33
    batches = train_batches(location, tokenizer, 1, width - 1, 5, tmp_path / "cache")

    rows = total // width
    seen, distinct = emitted(batches, rows)
    assert batches.epoch == 1
    assert not seen - corpus  # no token more often than the corpus holds it
    assert sum(seen.values()) == rows * width  # the share of the corpus an epoch count predicts
    assert len(distinct) == rows

    more, _ = emitted(batches, 3)  # the rest of epoch 1 (under one row), then into epoch 2
    assert batches.epoch == 2
    assert not (seen + more) - corpus - corpus
    assert (seen + more) - corpus  # epoch 2 repeats tokens only once epoch 1 is used up


def test_a_split_document_goes_on_at_the_start_of_the_next_row(
    quickstart: Prepared, tmp_path: Path
) -> None:
    """Documents are 100-300 tokens and rows 65, so most are split: every token that is not a
    BOS follows, in its row or across the row boundary, the token before it in its document.
    A split document's rest placed after another document would glue two texts together."""
    tokenizer = Tokenizer.load(quickstart.tokenizer)
    texts = pq.read_table(quickstart.data / split_shards(Location(str(quickstart.data)))[0][0])
    documents = tokenizer.encode_documents(texts.column("text").to_pylist()[:300])
    follows = {(a, b) for doc in documents for a, b in itertools.pairwise(doc)}
    location = write_corpus(tmp_path / "shards", [texts.column("text").to_pylist()[:300], ["v"]])
    batches = train_batches(location, tokenizer, 4, 64, 3, tmp_path / "cache")
    stream: list[int] = []
    for _ in range(30):
        inputs, targets = batches.next_batch()
        for row in torch.cat([inputs, targets[:, -1:]], dim=1).tolist():
            stream += row
    bos = tokenizer.bos_id
    assert all((a, b) in follows for a, b in itertools.pairwise(stream) if b != bos)


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


def test_validation_is_one_pass_over_the_shard_in_file_order(
    quickstart: Prepared, tmp_path: Path
) -> None:
    tokenizer = Tokenizer.load(quickstart.tokenizer)
    data = Location(str(quickstart.data))
    _, val = split_shards(data)
    texts = pq.read_table(quickstart.data / val).column("text").to_pylist()
    stream = [t for doc in tokenizer.encode_documents(texts) for t in doc]

    def scored(limit: int, batch: int = 4) -> list[tuple[int, int]]:
        pairs = []
        for inputs, targets in validation_batches(data, tokenizer, batch, 64, limit, tmp_path):
            assert inputs.shape == targets.shape == (batch, 64)
            keep = targets >= 0
            pairs += list(zip(inputs[keep].tolist(), targets[keep].tolist(), strict=True))
        return pairs

    whole = scored(10**9)
    assert [t for _, t in whole] == stream[1:]  # every token after the first, once, in order
    assert [i for i, _ in whole][1:] == stream[1:-1]  # each target's input is its predecessor
    assert scored(1000) == whole[:1000]  # EVAL_TOKENS takes a prefix, whatever the batching
    assert scored(1000, batch=3) == whole[:1000]
    assert scored(10**9) == whole  # a second pass is the same pass
