"""val_bpb equals an independent plain loop over tokens to 1e-6 relative."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from trainer_support import Prepared

from stagescreen_trainer.data import validation_batches
from stagescreen_trainer.evaluate import evaluate_bpb
from stagescreen_trainer.model import GPT, GPTConfig
from stagescreen_trainer.storage import Location
from stagescreen_trainer.tokenizer import Tokenizer, load_token_bytes


def test_val_bpb_matches_a_plain_loop_over_tokens(quickstart: Prepared, tmp_path: Path) -> None:
    tokenizer = Tokenizer.load(quickstart.tokenizer)
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=64, sequence_len=64)
    )
    model.init_weights()
    with torch.no_grad():  # an untrained-but-not-uniform model, so every token's loss differs
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    model.eval()
    data, steps, batch = Location(str(quickstart.data)), 3, 4
    table = torch.tensor(load_token_bytes(quickstart.tokenizer))
    trainer_bpb = evaluate_bpb(
        model,
        validation_batches(data, tokenizer, batch, 64, tmp_path),
        table,
        steps,
        torch.device("cpu"),
    )

    special = set(tokenizer.encoding._special_tokens.values())
    nats, nbytes, counted = 0.0, 0, 0
    stream = validation_batches(data, tokenizer, batch, 64, tmp_path)
    with torch.no_grad():
        for _ in range(steps):
            inputs, targets = stream.next_batch()
            logits = model(inputs).double()
            for row in range(batch):
                for t in range(64):
                    target = int(targets[row, t])
                    if target in special:
                        continue
                    nats += float(torch.logsumexp(logits[row, t], 0) - logits[row, t, target])
                    nbytes += len(tokenizer.encoding.decode_single_token_bytes(target))
                    counted += 1
    expected = nats / (math.log(2) * nbytes)
    assert counted > 0.9 * steps * batch * 64  # only the BOS targets were left out
    assert abs(trainer_bpb - expected) / expected < 1e-6
