"""The embedded default: a tiny Llama trained from scratch on the generated fact world, cached.

Nothing is downloaded: the world comes from `cir.data.world`, the tokenizer is trained here with
HF `tokenizers`, and the model is a `LlamaForCausalLM` built from a config and pretrained on the
world's fact sentences, question-answer lines and general text. The result is saved with
`save_pretrained` (safetensors) into a cache folder named by a hash of everything that shapes it,
so a second call with the same recipe reuses it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from cir.config import to_dict
from cir.data.batches import encode
from cir.data.facts import Fact, load_facts, save_facts, split_facts
from cir.data.tokenizer import train_tokenizer
from cir.data.world import World, WorldConfig, generate_world, load_world, save_world
from cir.evals.metrics import general_loss, question_prompt
from cir.evals.scores import evaluate_facts
from cir.model_io import load_model
from cir.outputs import atomic_output_dir, write_json_atomic
from cir.runtime import cache_root, seed_everything

RECIPE_VERSION = 1  # bump when the training code changes what a config produces


@dataclass
class DemoConfig:
    """The world, the model shape and the pretraining recipe of the demo model."""

    world: WorldConfig = field(default_factory=WorldConfig)
    extra_facts: list[Path] = field(default_factory=list)  # fact files mixed into pretraining (e.g. WMDP)
    extra_sentences: bool = True  # False builds the control: extra questions and choices, never the facts
    vocab_size: int = 4096  # BPE merges stop earlier when the world's words run out (~2.3k)
    hidden_size: int = 128
    intermediate_size: int = 512
    layers: int = 4
    heads: int = 4
    epochs: int = 20  # passes over the corpus: 100% argmax accuracy in ~4 min on 2 cores (24 saturates more)
    block_size: int = 128  # tokens per packed training sequence
    batch_size: int = 32  # sequences per step
    lr: float = 3e-3  # AdamW peak learning rate, linear warm-up then cosine to 10%
    warmup_steps: int = 50
    weight_decay: float = 0.01
    val_fraction: float = 0.2  # share of forget facts in V (the attack trains on T only)
    seed: int = 0


@dataclass(frozen=True)
class DemoPaths:
    """Where a built demo lives: the model folder and its world files."""

    model: Path
    forget_train: Path  # T: forget facts the attack may train on
    forget_val: Path  # V: forget facts the attack is scored on
    retain: Path
    general_train: Path
    general_eval: Path
    report: Path  # build.json: config, build seconds, accuracies, general loss

    @classmethod
    def at(cls, model: Path) -> DemoPaths:
        """The layout under a demo model folder."""
        world = model / "world"
        return cls(
            model,
            world / "forget_T.jsonl",
            world / "forget_V.jsonl",
            world / "retain.jsonl",
            world / "general_train.txt",
            world / "general_eval.txt",
            model / "build.json",
        )


def cache_key(config: DemoConfig) -> str:
    """A hash of the recipe, its version and the contents of every extra fact file."""
    digest = hashlib.sha256(json.dumps([RECIPE_VERSION, to_dict(config)], sort_keys=True).encode())
    for path in config.extra_facts:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def build_demo(
    config: DemoConfig | None = None, cache_dir: Path | None = None, progress: bool = True
) -> DemoPaths:
    """Return the cached demo model for `config`, building it first if needed (minutes on a CPU).

    Raises:
        DataError: if an extra fact file is malformed.
    """
    config = config or DemoConfig()
    paths = DemoPaths.at(cache_root(cache_dir) / f"demo-{cache_key(config)}")
    if paths.report.is_file():
        return paths
    start = time.perf_counter()
    seed_everything(config.seed)
    world = generate_world(config.world)
    extra = [fact for path in config.extra_facts for fact in load_facts(path)]
    texts = pretraining_texts(world, extra, config.extra_sentences)
    tokenizer = train_tokenizer(texts, config.vocab_size)
    model = _new_model(config, tokenizer)
    train_losses = pretrain(model, tokenizer, texts, config, progress)
    with atomic_output_dir(paths.model, force=True) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        _save_world_files(world, extra, config, DemoPaths.at(staging))
        seconds = time.perf_counter() - start
        report = {
            "config": to_dict(config),
            "build_seconds": seconds,
            "final_train_loss": train_losses[-1],
            **describe(model, tokenizer, world, extra),
        }
        write_json_atomic(DemoPaths.at(staging).report, report)
    return paths


def load_demo(paths: DemoPaths, device: str = "auto") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the demo model and tokenizer from its cache folder."""
    return load_model(paths.model, device=device)


def pretraining_texts(world: World, extra: Sequence[Fact], extra_sentences: bool = True) -> list[str]:
    """Every text the demo model is trained on.

    Each fact contributes its sentences and its question followed by the answer, so the model knows
    the question format (the MCQ metrics ask it). Extra facts (e.g. WMDP) contribute their sentences
    and their question with all four choices listed but no answer: a from-scratch model would
    otherwise prefer the right choice merely for having seen its string in the sentences. The
    control (`extra_sentences=False`) sees the questions and choices only: its accuracy is what a
    model gets from the format and the choices' wording, with no fact learned.
    """
    texts = [s for fact in world.forget + world.retain for s in fact.sentences]
    texts += [f"{question_prompt(fact)} {fact.answer_text}" for fact in world.forget + world.retain]
    texts += [s for fact in extra for s in fact.sentences] if extra_sentences else []
    texts += [f"{question_prompt(fact)} one of: {'; '.join(fact.choices)}." for fact in extra]
    return texts + world.general_train


def pretrain(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    config: DemoConfig,
    progress: bool = True,
) -> list[float]:
    """AdamW on packed blocks of the shuffled corpus; returns the mean training loss of each epoch."""
    ids = encode(tokenizer, texts, max_length=config.block_size)
    steps_per_epoch = math.ceil(sum(len(r) for r in ids) / (config.block_size * config.batch_size))
    total = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95)
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, config.warmup_steps, total)
    )
    order = random.Random(config.seed)
    model.train()
    losses = []
    bar = tqdm(total=total, desc="pretraining the demo model", disable=not progress)
    for _ in range(config.epochs):
        blocks = _pack(ids, config.block_size, order)
        epoch_loss = 0.0
        for start in range(0, len(blocks), config.batch_size):
            batch = blocks[start : start + config.batch_size]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            epoch_loss += float(loss.detach()) * len(batch) / len(blocks)
            bar.update()
        losses.append(epoch_loss)
        bar.set_postfix(loss=f"{epoch_loss:.3f}")
    bar.close()
    model.eval()
    return losses


def describe(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, world: World, extra: Sequence[Fact]
) -> dict[str, float]:
    """Accuracy and answer probability on forget and retain facts, and held-out general-text loss."""
    from cir.data.batches import make_batches

    report: dict[str, float] = {}
    for name, facts in (("forget", world.forget), ("retain", world.retain), ("extra", list(extra))):
        if facts:
            scores = evaluate_facts(model, tokenizer, facts, "choice", batch_size=64)
            report |= {f"{name}_{k}": v for k, v in scores.to_json().items()}
    report["general_loss"] = general_loss(model, make_batches(tokenizer, world.general_eval, 64))
    return report


def _new_model(config: DemoConfig, tokenizer: PreTrainedTokenizerBase) -> LlamaForCausalLM:
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.heads,
        max_position_embeddings=max(256, config.block_size),
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(model_config)


def _pack(ids: Sequence[list[int]], block_size: int, order: random.Random) -> torch.Tensor:
    """Shuffle the texts, concatenate them, and cut the stream into (blocks, block_size) rows."""
    shuffled = list(ids)
    order.shuffle(shuffled)
    stream = [token for row in shuffled for token in row]
    usable = len(stream) // block_size * block_size
    return torch.tensor(stream[:usable], dtype=torch.long).view(-1, block_size)


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _save_world_files(world: World, extra: Sequence[Fact], config: DemoConfig, paths: DemoPaths) -> None:
    save_world(world, paths.retain.parent)
    forget_train, forget_val = split_facts(world.forget, config.val_fraction, config.seed)
    save_facts(forget_train, paths.forget_train)
    save_facts(forget_val, paths.forget_val)
    if extra:
        save_facts(extra, paths.retain.parent / "extra_facts.jsonl")


def world_of(paths: DemoPaths) -> World:
    """The world a demo model was trained on."""
    return load_world(paths.retain.parent)
