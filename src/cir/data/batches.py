"""Tokenisation into padded batches, and the token masks the method and the metrics share."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase


@dataclass
class Batch:
    """A padded batch of token ids. Padding may be on either side; `attention_mask` marks real tokens."""

    input_ids: torch.Tensor  # (batch, seq) long
    attention_mask: torch.Tensor  # (batch, seq) long, 1 = real token

    def to(self, device: torch.device | str) -> Batch:
        """Return the batch on `device`."""
        return Batch(self.input_ids.to(device), self.attention_mask.to(device))

    @property
    def num_tokens(self) -> int:
        """Number of real (unpadded) tokens."""
        return int(self.attention_mask.sum())

    def kept_tokens(self) -> torch.Tensor:
        """Bool mask (batch, seq) of real tokens other than each row's first (BOS).

        The first token is dropped because its activations are outliers shared by every text
        (method.md section 2); padding is dropped because it carries no text.
        """
        real = self.attention_mask.bool()
        first = real & (self.attention_mask.cumsum(dim=1) == 1)
        return real & ~first


def bos_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The BOS id to prepend when the tokenizer does not add one itself (GPT-2 style), else []."""
    probe = tokenizer("a")["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is None or (probe and probe[0] == bos):
        return []
    return [bos]


def encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int = 256
) -> list[list[int]]:
    """Token ids of each text, starting with BOS where the tokenizer has one, truncated to max_length."""
    prefix = bos_ids(tokenizer)
    ids = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    return [(prefix + row)[:max_length] for row in ids]


def pad(rows: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> Batch:
    """Pad token-id rows to one length on `side` ("right" or "left")."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        input_ids[i, span] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, span] = 1
    return Batch(input_ids, attention_mask)


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The pad id, falling back to EOS for tokenizers without one (GPT-2)."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0


def make_batches(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    batch_size: int,
    max_length: int = 256,
    shuffle_seed: int | None = None,
) -> list[Batch]:
    """Tokenise `texts` into right-padded batches of `batch_size` (the last may be smaller).

    With `shuffle_seed`, the texts are shuffled first (deterministically).
    """
    order = list(range(len(texts)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    rows = encode(tokenizer, [texts[i] for i in order], max_length)
    pid = pad_id(tokenizer)
    return [pad(rows[i : i + batch_size], pid) for i in range(0, len(rows), batch_size)]
