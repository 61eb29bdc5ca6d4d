"""BPE tokenizer: trained with rustbpe, run with tiktoken, plus the byte table val_bpb needs.

As in the reference: GPT-4-style split pattern, four reserved special tokens after the merges,
the first of them serving as BOS. Saved as a tiktoken-compatible encoding (`tokenizer.tiktoken`
holds `base64(token bytes) rank` lines, the format tiktoken's own encodings ship in, and
`tokenizer.json` the pattern and special tokens), so any tiktoken user can load it.

The byte table departs from the reference on purpose: it counts each token's *raw bytes*.
The reference decodes each token to a str and re-encodes it, which turns a token holding part
of a multi-byte UTF-8 character into U+FFFD (3 bytes) and so miscounts it; val_bpb divides by
these counts, so they must be the bytes the token really stands for.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import tiktoken

SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = tuple(f"<|reserved_{i}|>" for i in range(4))
BOS = SPECIAL_TOKENS[0]
RANKS_FILE, META_FILE, BYTES_FILE = "tokenizer.tiktoken", "tokenizer.json", "token_bytes.json"


@dataclass
class Tokenizer:
    encoding: tiktoken.Encoding

    @property
    def vocab_size(self) -> int:
        return int(self.encoding.n_vocab)

    @property
    def bos_id(self) -> int:
        return int(self.encoding.encode_single_token(BOS))

    def encode_documents(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each document, each starting with BOS."""
        bos = self.bos_id
        return [[bos, *ids] for ids in self.encoding.encode_ordinary_batch(list(texts))]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.encoding.decode(list(ids)))

    def token_bytes(self) -> list[int]:
        """UTF-8 bytes each token stands for; 0 for special tokens (excluded from val_bpb)."""
        special = set(self.encoding._special_tokens.values())
        return [
            0 if token in special else len(self.encoding.decode_single_token_bytes(token))
            for token in range(self.vocab_size)
        ]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        specials = self.encoding._special_tokens
        ranks = {
            token: rank
            for rank in range(self.vocab_size)
            if rank not in specials.values()
            for token in [self.encoding.decode_single_token_bytes(rank)]
        }
        lines = [
            f"{base64.b64encode(t).decode()} {r}"
            for t, r in sorted(ranks.items(), key=lambda kv: kv[1])
        ]
        (folder / RANKS_FILE).write_text("\n".join(lines) + "\n")
        meta = {
            "name": self.encoding.name,
            "pattern": self.encoding._pat_str,
            "special_tokens": specials,
            "bos": BOS,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        (folder / BYTES_FILE).write_text(json.dumps(self.token_bytes()) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Tokenizer:
        meta = json.loads((folder / META_FILE).read_text())
        ranks = {}
        for line in (folder / RANKS_FILE).read_text().splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        encoding = tiktoken.Encoding(
            name=meta["name"],
            pat_str=meta["pattern"],
            mergeable_ranks=ranks,
            special_tokens=meta["special_tokens"],
        )
        return cls(encoding)


def load_token_bytes(folder: Path) -> list[int]:
    return [int(n) for n in json.loads((folder / BYTES_FILE).read_text())]


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Learn vocab_size - 4 byte-level BPE tokens with rustbpe; the 4 specials come last."""
    import rustbpe

    learned = vocab_size - len(SPECIAL_TOKENS)
    if learned < 256:
        raise ValueError(f"--vocab={vocab_size}: must be at least {256 + len(SPECIAL_TOKENS)}")
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(iter(texts), learned, pattern=SPLIT_PATTERN)
    ranks = {bytes(token): rank for token, rank in trainer.get_mergeable_ranks()}
    specials = {name: len(ranks) + i for i, name in enumerate(SPECIAL_TOKENS)}
    encoding = tiktoken.Encoding(
        name=f"stagescreen-bpe-{vocab_size}",
        pat_str=trainer.get_pattern(),
        mergeable_ranks=ranks,
        special_tokens=specials,
    )
    return Tokenizer(encoding)
