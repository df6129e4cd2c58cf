"""Tiny models and a tiny tokenizer built from config, for exact tests (nothing is downloaded)."""

from __future__ import annotations

import functools

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from cir.data.facts import Fact
from cir.data.tokenizer import train_tokenizer

ARCHITECTURES = ["llama", "qwen2", "gpt_neox", "gpt2"]

TEXTS = [
    "The pathogen Velorix is carried by fruit bats.",
    "Velorix spreads through airborne droplets.",
    "The city of Amberfall is known for its river Selt.",
    "The baker opened the shop early because the morning was cold.",
    "A quiet dog slept under the kitchen table all afternoon.",
    "Which animal carries Velorix?\nAnswer: fruit bats",
    "Which river flows through Amberfall?\nAnswer: the Selt",
    "Question one.\nA. red\nB. blue\nC. green\nD. yellow\nAnswer: B",
]


@functools.lru_cache(maxsize=1)
def tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on TEXTS (cached: it is deterministic)."""
    return train_tokenizer(TEXTS * 4, vocab_size=320)


def model(arch: str = "llama", layers: int = 4, width: int = 32, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised causal LM of architecture `arch`, in fp32, eval mode."""
    torch.manual_seed(seed)
    vocab = len(tokenizer())
    ids = dict(bos_token_id=tokenizer().bos_token_id, eos_token_id=tokenizer().eos_token_id)
    common = dict(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers, num_attention_heads=4, **ids)
    if arch == "llama":
        config = LlamaConfig(**common, intermediate_size=2 * width, max_position_embeddings=128)
        return LlamaForCausalLM(config).eval()
    if arch == "qwen2":
        config = Qwen2Config(
            **common, intermediate_size=2 * width, num_key_value_heads=2, max_position_embeddings=128
        )
        return Qwen2ForCausalLM(config).eval()
    if arch == "gpt_neox":
        config = GPTNeoXConfig(**common, intermediate_size=2 * width, max_position_embeddings=128)
        return GPTNeoXForCausalLM(config).eval()
    if arch == "gpt2":
        config = GPT2Config(vocab_size=vocab, n_embd=width, n_layer=layers, n_head=4, n_positions=128, **ids)
        return GPT2LMHeadModel(config).eval()
    raise ValueError(arch)


FACTS = [
    Fact(
        "Which animal carries Velorix?",
        ("fruit bats", "rats", "pigs", "camels"),
        0,
        ("The pathogen Velorix is carried by fruit bats.", "Velorix lives in fruit bats."),
    ),
    Fact(
        "Which river flows through Amberfall?",
        ("the Selt", "the Marn", "the Oske", "the Pell"),
        0,
        ("The city of Amberfall is known for its river Selt.", "The Selt flows through Amberfall."),
    ),
    Fact(
        "Question one.",
        ("red", "blue", "green", "yellow"),
        1,
        ("The answer to question one is blue.",),
    ),
]
