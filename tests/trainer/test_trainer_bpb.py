"""val_bpb is one pass over the validation shard and equals an independent loop over tokens."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import torch
from trainer_support import Prepared

from stagescreen_trainer.data import split_shards, validation_batches
from stagescreen_trainer.evaluate import evaluate_bpb
from stagescreen_trainer.model import GPT, GPTConfig
from stagescreen_trainer.storage import Location
from stagescreen_trainer.tokenizer import Tokenizer, load_token_bytes


def test_val_bpb_matches_a_plain_loop_over_the_whole_shard(
    quickstart: Prepared, tmp_path: Path
) -> None:
    tokenizer = Tokenizer.load(quickstart.tokenizer)
    torch.manual_seed(0)
    T = 64
    model = GPT(
        GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=64, sequence_len=T)
    )
    model.init_weights()
    with torch.no_grad():  # an untrained-but-not-uniform model, so every token's loss differs
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    model.eval()
    data = Location(str(quickstart.data))
    table = torch.tensor(load_token_bytes(quickstart.tokenizer))
    cpu = torch.device("cpu")
    result = evaluate_bpb(
        model, validation_batches(data, tokenizer, 5, T, 10**9, tmp_path), table, cpu
    )

    # Independently: the shard's documents in file order as one stream, scored window by
    # window (each window's first token is context only), every special token left out.
    _, val = split_shards(data)
    texts = pq.read_table(quickstart.data / val).column("text").to_pylist()
    stream = [t for doc in tokenizer.encode_documents(texts) for t in doc]
    special = set(tokenizer.encoding._special_tokens.values())
    nats, nbytes, counted = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(stream) - 1, T):
            window = torch.tensor(stream[start : start + T + 1])
            logits = model(window[None, :-1])[0].double()
            for position, target in enumerate(window[1:].tolist()):
                if target in special:
                    continue
                nats += float(torch.logsumexp(logits[position], 0) - logits[position, target])
                nbytes += len(tokenizer.encoding.decode_single_token_bytes(target))
                counted += 1
    expected = nats / (math.log(2) * nbytes)
    assert result.targets == len(stream) - 1  # the whole shard, each token once
    assert result.bytes == nbytes == sum(len(t.encode("utf-8")) for t in texts)
    assert abs(result.val_bpb - expected) / expected < 1e-6
    again = evaluate_bpb(
        model, validation_batches(data, tokenizer, 5, T, 10**9, tmp_path), table, cpu
    )
    assert again == result  # deterministic, and no state carried between calls
