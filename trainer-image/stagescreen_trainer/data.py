"""Shards in, packed (inputs, targets) batches out, with a cursor a checkpoint can hold.

Shards are parquet files with a `text` column (the climbmix layout the reference reads), in a
local folder or under `s3://` (downloaded one at a time as the stream reaches them). Sorted by
name, the last shard is the pinned validation shard; the rest are training shards.

Training packs documents best-fit, as the reference does: the longest buffered document that
still fits the row's room is placed next; when none fits, the shortest one is split at the
room left. Two departures keep every token of the corpus in play (a small corpus trained on
the reference packer is seen as a few rows repeated many times, and val_bpb then rises with
budget):
- the rest of a split document is carried into the next row and opens it, instead of being
  thrown away, so one epoch emits each token of the training shards exactly once;
- the buffer never reads past the end of an epoch to fill itself: it drains first, so a shard
  smaller than the buffer is not looped, and `epoch` counts passes over the data.
So a row opens with the rest of the document that ended the row before, or at a document's
BOS; every other document in it starts at its BOS. Attention is plain causal within a row.
The buffer is kept sorted so the best fit is a bisection; training order is shuffled from
RUN_SEED (shard order per epoch, document order per row group).

Validation is one pass (`validation_batches`): the pinned shard's documents in file order,
joined into one token stream, cut into rows that overlap by one token so every token after
the first is a target exactly once; nothing depends on the run seed or on earlier calls.

Every piece of training state (stream position, epoch, buffered documents) round-trips through
`state_dict`, so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from torch import Tensor

from stagescreen_trainer.storage import Location
from stagescreen_trainer.tokenizer import Tokenizer


class DataError(ValueError):
    """The shards cannot feed a run (too few, missing the text column, empty)."""


def text_shard(path: Path, uri: str) -> pq.ParquetFile:
    """A parquet shard opened for its `text` column, or DataError naming it."""
    shard = pq.ParquetFile(path)
    if "text" not in shard.schema_arrow.names:
        columns = ", ".join(shard.schema_arrow.names)
        raise DataError(f"{uri}: no 'text' column (columns: {columns})")
    return shard


def row_group_texts(shard: pq.ParquetFile, row_group: int) -> list[str]:
    """The documents of one row group; empty and null texts are not documents."""
    texts = shard.read_row_group(row_group, columns=["text"]).column("text").to_pylist()
    return [str(text) for text in texts if text]


def split_shards(location: Location) -> tuple[list[str], str]:
    """(training shard names, validation shard name) under a location."""
    names = location.list(".parquet")
    if len(names) < 2:
        raise DataError(
            f"DATA_URI={location.root!r}: found {len(names)} parquet shard(s); need at least 2 "
            "(training shards, then the validation shard last by name)"
        )
    return names[:-1], names[-1]


@dataclass
class Cursor:
    """Where the document stream stands: epoch, shard in this epoch's order, row group, doc."""

    epoch: int = 1
    shard: int = 0
    row_group: int = 0
    doc: int = 0


class DocumentStream:
    """Endless documents from a list of shards; the order is a pure function of the seed."""

    def __init__(
        self, location: Location, names: list[str], cache: Path, seed: int, chunk: int = 128
    ) -> None:
        self.location, self.names, self.cache, self.seed, self.chunk = (
            location,
            names,
            cache,
            seed,
            chunk,
        )
        self.cursor = Cursor()
        self._loaded: tuple[tuple[int, int, int], list[str]] | None = None
        self._row_group_counts: dict[int, int] = {}

    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.names)))
        random.Random(f"shards:{self.seed}:{epoch}").shuffle(order)
        return order

    def _row_group(self, epoch: int, shard: int, row_group: int) -> list[str]:
        key = (epoch, shard, row_group)
        if self._loaded is None or self._loaded[0] != key:
            texts = row_group_texts(self._shard(shard), row_group)
            random.Random(f"docs:{self.seed}:{epoch}:{shard}:{row_group}").shuffle(texts)
            self._loaded = (key, texts)
        return self._loaded[1]

    def _row_groups(self, shard: int) -> int:
        if shard not in self._row_group_counts:
            self._row_group_counts[shard] = int(self._shard(shard).num_row_groups)
        return self._row_group_counts[shard]

    def _shard(self, shard: int) -> pq.ParquetFile:
        name = self.names[shard]
        return text_shard(self.location.local_copy(name, self.cache), self.location.uri(name))

    def next_documents(self, new_epoch: bool = True) -> list[str]:
        """The next few documents (at most `chunk`), advancing the cursor.

        At the end of an epoch the stream starts the next one only when `new_epoch` is true;
        otherwise it answers [] and stays at the end.
        """
        for _ in range(4 * len(self.names) + 4):
            c = self.cursor
            if c.shard == len(self.names):
                if not new_epoch:
                    return []
                c.epoch, c.shard, c.row_group, c.doc = c.epoch + 1, 0, 0, 0
            shard = self._order(c.epoch)[c.shard]
            if c.row_group < self._row_groups(shard):
                texts = self._row_group(c.epoch, shard, c.row_group)
                if c.doc < len(texts):
                    out = texts[c.doc : c.doc + self.chunk]
                    c.doc += len(out)
                    return out
                c.row_group, c.doc = c.row_group + 1, 0
                continue
            c.shard, c.row_group, c.doc = c.shard + 1, 0, 0
        raise DataError(f"DATA_URI={self.location.root!r}: shards {self.names} hold no documents")


class PackedBatches:
    """Best-fit packing of a document stream into (B, T) inputs and targets, split documents
    carried into the next row."""

    def __init__(
        self,
        stream: DocumentStream,
        tokenizer: Tokenizer,
        batch_size: int,
        seq_len: int,
        buffer_docs: int = 1000,
    ) -> None:
        self.stream, self.tokenizer = stream, tokenizer
        self.batch_size, self.seq_len, self.buffer_docs = batch_size, seq_len, buffer_docs
        self._buffer: list[tuple[int, int, list[int]]] = []  # (length, arrival, tokens), sorted
        self._arrivals = 0
        self._carry: list[int] = []  # the rest of the document split at the last row's end

    @property
    def epoch(self) -> int:
        return self.stream.cursor.epoch

    def _refill(self) -> None:
        """Top the buffer up to buffer_docs from this epoch; start the next only when empty."""
        while len(self._buffer) < self.buffer_docs:
            texts = self.stream.next_documents(new_epoch=not self._buffer)
            if not texts:
                return
            for tokens in self.tokenizer.encode_documents(texts):
                bisect.insort(self._buffer, (len(tokens), self._arrivals, tokens))
                self._arrivals += 1

    def _take_fitting(self, room: int) -> list[int]:
        """The longest document of length <= room, else the first `room` tokens of the
        shortest one, whose rest is carried into the next row."""
        index = bisect.bisect_right(self._buffer, (room, float("inf"))) - 1
        if index >= 0:
            return self._buffer.pop(index)[2]
        tokens = self._buffer.pop(0)[2]
        self._carry = tokens[room:]
        return tokens[:room]

    def next_batch(self) -> tuple[Tensor, Tensor]:
        width = self.seq_len + 1
        rows = torch.empty((self.batch_size, width), dtype=torch.long)
        for r in range(self.batch_size):
            carried, self._carry = self._carry[:width], self._carry[width:]
            rows[r, : len(carried)] = torch.tensor(carried, dtype=torch.long)
            filled = len(carried)
            while filled < width:
                self._refill()
                tokens = self._take_fitting(width - filled)
                rows[r, filled : filled + len(tokens)] = torch.tensor(tokens, dtype=torch.long)
                filled += len(tokens)
        return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()

    def state_dict(self) -> dict[str, Any]:
        c = self.stream.cursor
        lengths = [entry[0] for entry in self._buffer]
        flat = [token for entry in self._buffer for token in entry[2]]
        return {
            "cursor": [c.epoch, c.shard, c.row_group, c.doc],
            "arrivals": self._arrivals,
            "buffer_lengths": torch.tensor(lengths, dtype=torch.int64),
            "buffer_arrivals": torch.tensor(
                [entry[1] for entry in self._buffer], dtype=torch.int64
            ),
            "buffer_tokens": torch.tensor(flat, dtype=torch.int32),
            "carry": torch.tensor(self._carry, dtype=torch.int32),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.cursor = Cursor(*(int(v) for v in state["cursor"]))
        self._arrivals = int(state["arrivals"])
        self._carry = state["carry"].tolist()
        tokens = state["buffer_tokens"].tolist()
        self._buffer, start = [], 0
        for length, arrival in zip(
            state["buffer_lengths"].tolist(), state["buffer_arrivals"].tolist(), strict=True
        ):
            self._buffer.append((length, arrival, tokens[start : start + length]))
            start += length


def train_batches(
    location: Location, tokenizer: Tokenizer, batch_size: int, seq_len: int, seed: int, cache: Path
) -> PackedBatches:
    names, _ = split_shards(location)
    return PackedBatches(
        DocumentStream(location, names, cache, seed), tokenizer, batch_size, seq_len
    )


def validation_batches(
    location: Location,
    tokenizer: Tokenizer,
    batch_size: int,
    seq_len: int,
    max_tokens: int,
    cache: Path,
) -> Iterator[tuple[Tensor, Tensor]]:
    """One pass over the pinned validation shard, the same batches whatever the run.

    The shard's documents, in file order and each led by BOS, form one token stream. Row i
    holds stream[i*T : i*T + T] as inputs and the next token of each as targets, so rows
    overlap by one token and every token after the first is a target exactly once. Targets
    stop after `max_tokens` or at the end of the shard; the rest of the last row, and rows
    padding the last batch to full size (shapes stay fixed for a compiled model), carry
    target -1, which scores nothing.
    """
    _, val = split_shards(location)
    shard = text_shard(location.local_copy(val, cache), location.uri(val))
    stream: list[int] = []
    start = 0  # tokens of `stream` before this are scored already (kept: no O(n) deletes)
    targets_left = max_tokens
    row_groups = iter(range(shard.num_row_groups))
    exhausted = False
    while targets_left > 0:
        while len(stream) - start <= batch_size * seq_len and not exhausted:
            group = next(row_groups, None)
            if group is None:
                exhausted = True
                break
            stream = stream[start:]
            start = 0
            for tokens in tokenizer.encode_documents(row_group_texts(shard, group)):
                stream.extend(tokens)
        if len(stream) - start < 2:
            return
        inputs = torch.zeros((batch_size, seq_len), dtype=torch.long)
        targets = torch.full((batch_size, seq_len), -1, dtype=torch.long)
        for row in range(batch_size):
            take = min(seq_len, len(stream) - start - 1, targets_left)
            if take <= 0:
                break
            inputs[row, :take] = torch.tensor(stream[start : start + take])
            targets[row, :take] = torch.tensor(stream[start + 1 : start + take + 1])
            start += take  # the last target becomes the next row's first input
            targets_left -= take
        yield inputs, targets
