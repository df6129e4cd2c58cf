"""Tiny models and a tiny tokenizer built from config, for exact tests (nothing is downloaded).

Also the fixtures the tests share: a tiny method set up on forget/retain batches, its training loop,
and a tiny saved-model workspace on disk for the command-line tests.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

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

from cir.data.batches import make_batches
from cir.data.facts import Fact, save_facts
from cir.data.tokenizer import train_tokenizer
from cir.inputs import Inputs

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


# --- methods: a tiny model, forget/retain batches, a method set up on them ---------------------

FORGET = [s for f in FACTS for s in f.sentences] + ["A quiet dog slept under the kitchen table."]
RETAIN = TEXTS[3:5]


def method_batches(retain: list[str] | None = RETAIN) -> tuple[list, list]:
    """(forget, retain) batches of FORGET (3 a batch) and `retain` (2 a batch).

    `retain=None`: the forget batches double as the retain batches (the same list).
    """
    forget = make_batches(tokenizer(), FORGET, batch_size=3)
    if retain is None:
        return forget, forget
    return forget, make_batches(tokenizer(), retain, batch_size=2)


def set_up(method_class, config, arch: str = "llama", layers: int = 3, retain: list[str] | None = RETAIN):
    """A tiny `arch` model and `method_class(config)` set up on `method_batches(retain)`.

    Returns (model, forget batches, method).
    """
    net = model(arch, layers=layers)
    forget, retain_batches = method_batches(retain)
    method = method_class(config)
    method.setup(net, forget, retain_batches)
    return net, forget, method


def run_epochs(method, forget_count: int, epochs: int = 2) -> None:
    """`epochs` epochs of the shared loop: a step on each forget batch (retain batch 0), then end_epoch."""
    for epoch in range(epochs):
        for index in range(forget_count):
            method.step(index, 0, epoch)
        method.end_epoch(epoch)


def forget_loss(method, index: int = 0) -> float:
    """The method's forget loss on forget batch `index`, without gradients."""
    with torch.no_grad():
        return float(method.forget_loss(index))


def forget_loss_before_after(method, forget_count: int, epochs: int = 2) -> tuple[float, float]:
    """The forget loss on forget batch 0 before and after `epochs` epochs of run_epochs."""
    before = forget_loss(method)
    run_epochs(method, forget_count, epochs)
    return before, forget_loss(method)


def parameters(net: PreTrainedModel) -> dict[str, torch.Tensor]:
    """A copy of every parameter, by name (the `before` of assert_only_trained_changed)."""
    return {name: p.detach().clone() for name, p in net.named_parameters()}


def assert_only_trained_changed(net: PreTrainedModel, before: dict[str, torch.Tensor], method) -> None:
    """Every parameter of `method.trained_parameters()` changed since `before`; no other one did."""
    trained = {id(p) for p in method.trained_parameters()}
    for name, parameter in net.named_parameters():
        changed = not torch.equal(before[name], parameter.detach())
        assert changed == (id(parameter) in trained), name


# --- a tiny saved-model workspace, for the command-line tests ----------------------------------

# The loop as it was before the budget controller (issue 26), and as the paper runs it: every update
# of norm step_norm, the budget checked at epoch ends only, the first breach stops the run.
PAPER_LOOP = {"step_per": "batch", "check_every": 0, "max_backoffs": 0}

FAST_BENCH_ARGS = [
    "eval.probes=[]",  # the extra probes are tested on their own (tests/probes, test_bench_protocol)
    "bench.extra_attacks=[]",  # so are the extra attacks (test_bench_protocol)
    "bench.known_threshold=0",
    "bench.val_fraction=0.34",
    "unlearn.max_epochs=1",
    "unlearn.batch_size=2",
    "unlearn.track_kl=false",
    "attack.epochs=1",
    "attack.batch_size=2",
]


@dataclasses.dataclass(frozen=True)
class Workspace:
    """The paths write_workspace wrote under `root`."""

    root: Path
    model: Path  # a saved tiny Llama and its tokenizer
    train: Path  # T.jsonl: FACTS[:2]
    eval: Path  # V.jsonl: FACTS[2:]
    facts: Path  # facts.jsonl: all of FACTS
    general: Path  # TEXTS[3:], a line each
    retain: Path  # TEXTS[2:5], a line each


def write_workspace(root: Path, layers: int = 3) -> Workspace:
    """Save a tiny Llama of `layers` layers, the tokenizer, the fact files and the text files."""
    paths = Workspace(
        root=root,
        model=root / "model",
        train=root / "T.jsonl",
        eval=root / "V.jsonl",
        facts=root / "facts.jsonl",
        general=root / "general.txt",
        retain=root / "retain.txt",
    )
    model("llama", layers=layers).save_pretrained(paths.model)
    tokenizer().save_pretrained(paths.model)
    save_facts(FACTS[:2], paths.train)
    save_facts(FACTS[2:], paths.eval)
    save_facts(FACTS, paths.facts)
    paths.general.write_text("\n".join(TEXTS[3:]) + "\n")
    paths.retain.write_text("\n".join(TEXTS[2:5]) + "\n")
    return paths


def workspace_inputs(files: Workspace, forget: list[Path] | None = None) -> Inputs:
    """CPU Inputs over a written workspace: T and V forgotten (or `forget`), its retain and general text."""
    return Inputs(
        model=str(files.model),
        forget=forget or [files.train, files.eval],
        retain=files.retain,
        general=files.general,
        device="cpu",
    )
