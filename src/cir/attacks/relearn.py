"""The relearning loop shared by the fine-tuning attacks (`finetune`, `lora`; method.md §7).

Cross-entropy on every real token of T's fact sentences, through the FULL forward pass, scoring V
before and after each epoch. The CIR authors' attack silently retrained only the early layers of a
model left trimmed after unlearning, so `check_full_forward` refuses a model with missing layers or
forward hooks on its decoder layers, and `cpu_snapshot`, `changed_parameters` and `verify_changes`
check afterwards that every parameter an attack claims to train changed and that nothing else did.
The attacks call these helpers (they do not inherit them) and run in place on the model.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.attacks.base import AttackConfig, best_epoch
from cir.config import require
from cir.data.batches import Batch, encode, pad, pad_id
from cir.data.facts import Fact
from cir.errors import ModelError
from cir.evals.metrics import model_device
from cir.evals.scores import MCQ_FORMATS, McqFormat, score_facts
from cir.hooks import forward
from cir.losses import cross_entropy
from cir.modules import decoder_layers, mlp_modules
from cir.records import LOWER_IS_BETTER, AttackEpoch, ParameterChanges
from cir.runtime import interrupt_flag


@dataclass(frozen=True)
class TrainPlan:
    """The training-loop settings finetune and lora share, read off either attack's config."""

    optimizer: str
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    sentences_per_fact: int | None
    max_length: int
    mcq_format: McqFormat
    eval_batch_size: int
    window: int
    seed: int
    patience: int
    stop_metric: str

    @classmethod
    def of(cls, config: AttackConfig) -> TrainPlan:
        """Copy the loop's fields from `config` (already checked by `check_training`)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


def check_training(config: Any, extra: Sequence[tuple[str, str, bool]] = ()) -> None:
    """Range checks of the training-loop fields (TrainPlan's) that finetune and lora share, and `extra`.

    Args:
        config: a finetune or lora config.
        extra: the attack's own (field, rule, holds) checks, reported with these.

    Raises:
        ConfigError: naming every `attack.field` out of range.
    """
    per_fact = config.sentences_per_fact
    require(
        config,
        "attack",
        [
            ("optimizer", "sgd or adamw", config.optimizer in ("sgd", "adamw")),
            ("lr", "> 0", config.lr > 0),
            ("weight_decay", ">= 0", config.weight_decay >= 0),
            ("epochs", ">= 1", config.epochs >= 1),
            ("batch_size", ">= 1", config.batch_size >= 1),
            ("sentences_per_fact", ">= 1 or null", per_fact is None or per_fact >= 1),
            ("max_length", ">= 2", config.max_length >= 2),
            ("mcq_format", f"one of {list(MCQ_FORMATS)}", config.mcq_format in MCQ_FORMATS),
            ("eval_batch_size", ">= 1", config.eval_batch_size >= 1),
            ("window", ">= 1", config.window >= 1),
            ("patience", ">= 0", config.patience >= 0),
            *extra,
        ],
    )


def check_full_forward(model: PreTrainedModel) -> None:
    """Refuse a model whose forward pass may not reach every decoder layer.

    Raises:
        ModelError: if the model has fewer decoder layers than its config says (it was trimmed), or a
            decoder layer carries a forward (pre-)hook, e.g. a layer-trimming hook left behind.
    """
    layers = decoder_layers(model)
    expected = getattr(model.config, "num_hidden_layers", None)
    if expected is not None and len(layers) != expected:
        raise ModelError(
            f"{type(model).__name__} has {len(layers)} decoder layers but its config says {expected}: "
            "it was trimmed; reload the saved unlearned model before attacking it"
        )
    hooked = [i for i, layer in enumerate(layers) if layer._forward_hooks or layer._forward_pre_hooks]
    if hooked:
        raise ModelError(
            f"decoder layer(s) {hooked} carry forward hooks (e.g. a layer-trimming hook left behind); "
            "the attack needs the full forward pass, remove them first"
        )


def claimed_parameters(model: PreTrainedModel, trained: str) -> dict[str, nn.Parameter]:
    """Name -> parameter of what the attack trains: every layer's MLP linear weights, or everything.

    Raises:
        ModelError: if "mlp" is asked and no MLP linear module is found.
    """
    if trained == "all":
        return dict(model.named_parameters())
    weights = {id(m.weight) for m in mlp_modules(model)}  # layers=None: ALL decoder layers
    return {name: p for name, p in model.named_parameters() if id(p) in weights}


@contextmanager
def preserved_state(model: PreTrainedModel) -> Iterator[None]:
    """Eval mode (no dropout) inside; every module's mode and parameter's requires_grad restored after."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def train_epochs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    parameters: Sequence[nn.Parameter],
    train_texts: Sequence[str],
    eval_facts: Sequence[Fact],
    plan: TrainPlan,
    progress: bool,
    desc: str,
    probes: Sequence[str] = (),
) -> tuple[list[AttackEpoch], str]:
    """Train `parameters` on `train_texts` (T's sentences) for `plan.epochs`, scoring V before and after each.

    Each epoch reshuffles the sentences with a generator seeded once by `plan.seed`. Entry e of the
    history holds V's scores after epoch e, the mean batch loss of the epoch's steps (entry 0: of the
    unshuffled batches before any step) and the cumulative training time (evaluation excluded).
    A Ctrl-C stops after the current epoch. With `plan.patience` > 0, training stops once V's
    `stop_metric`, smoothed as the post-attack value is, has not improved on its best for `patience`
    epochs: the attacker trains until V stops rising, up to `plan.epochs`.

    Returns:
        The history and the stop reason, "epochs", "plateau" or "interrupted".
    """
    device = model_device(model)
    rows = encode(tokenizer, list(train_texts), plan.max_length)
    generator = torch.Generator().manual_seed(plan.seed)
    optimizer = make_optimizer(parameters, plan)

    def entry(epoch: int, loss: float, seconds: float) -> AttackEpoch:
        table = score_facts(
            model, tokenizer, eval_facts, plan.mcq_format, plan.eval_batch_size, probes=probes
        )
        return AttackEpoch.of(epoch, table, loss, seconds)

    with torch.no_grad():
        before = [float(loss_of(model, b.to(device))) for b in shuffled(rows, tokenizer, plan, None)]
    history, seconds = [entry(0, sum(before) / len(before), 0.0)], 0.0
    with interrupt_flag() as interrupted:
        # leave=None: the bar stays when it stands alone and is cleared when nested under another
        for epoch in tqdm(range(1, plan.epochs + 1), desc=desc, disable=not progress, leave=None):
            start = time.perf_counter()
            losses = [
                train_step(model, b.to(device), optimizer) for b in shuffled(rows, tokenizer, plan, generator)
            ]
            seconds += time.perf_counter() - start
            history.append(entry(epoch, sum(losses) / len(losses), seconds))
            if interrupted.is_set():
                return history, "interrupted"
            if plan.patience and epochs_since_best(history, plan) >= plan.patience:
                return history, "plateau"
    return history, "epochs"


def epochs_since_best(history: Sequence[AttackEpoch], plan: TrainPlan) -> int:
    """Epochs since V's smoothed `plan.stop_metric` was last at its best (0: the last epoch is the best)."""
    values = [e.facts.metric(plan.stop_metric) for e in history]
    return len(history) - 1 - best_epoch(values, plan.window, plan.stop_metric not in LOWER_IS_BETTER)


def shuffled(
    rows: Sequence[Sequence[int]],
    tokenizer: PreTrainedTokenizerBase,
    plan: TrainPlan,
    generator: torch.Generator | None,
) -> list[Batch]:
    """Right-padded batches of the token rows, in the generator's random order (as given when None)."""
    order = range(len(rows)) if generator is None else torch.randperm(len(rows), generator=generator).tolist()
    ordered = [rows[i] for i in order]
    return [
        pad(ordered[i : i + plan.batch_size], pad_id(tokenizer)) for i in range(0, len(rows), plan.batch_size)
    ]


def make_optimizer(parameters: Sequence[nn.Parameter], plan: TrainPlan) -> torch.optim.Optimizer:
    """SGD (no momentum) or AdamW over `parameters` with the plan's learning rate."""
    if plan.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=plan.lr)
    return torch.optim.AdamW(parameters, lr=plan.lr, weight_decay=plan.weight_decay)


def loss_of(model: PreTrainedModel, batch: Batch) -> torch.Tensor:
    """Mean next-token cross-entropy over the batch's real tokens, full forward pass."""
    logits = forward(model, batch)  # (batch, seq, vocab); no last_layer: every layer runs
    assert logits is not None  # only a last_layer stops the pass early
    return cross_entropy(logits, batch.input_ids, batch.attention_mask)


def train_step(model: PreTrainedModel, batch: Batch, optimizer: torch.optim.Optimizer) -> float:
    """One optimizer step on `batch`; returns its loss. Gradients are freed afterwards."""
    loss = loss_of(model, batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def cpu_snapshot(parameters: Mapping[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    """A CPU copy of each named parameter (memory: their size in their dtype; the whole model's here)."""
    return {name: p.detach().to("cpu", copy=True) for name, p in parameters.items()}


def changed_parameters(
    parameters: Mapping[str, nn.Parameter], snapshot: dict[str, torch.Tensor]
) -> list[str]:
    """Names of the snapshotted parameters whose values differ (bitwise) from the snapshot."""
    return [name for name, old in snapshot.items() if not torch.equal(parameters[name].detach().cpu(), old)]


def verify_changes(claimed: Sequence[str], changed: Sequence[str], attack: str) -> ParameterChanges:
    """Compare what the attack claims to train with what changed; warn about every mismatch."""
    changed_set, claimed_set = set(changed), set(claimed)
    unchanged = [name for name in claimed if name not in changed_set]
    unclaimed = [name for name in changed if name not in claimed_set]
    if unchanged:
        warnings.warn(
            f"{attack}: {len(unchanged)} claimed parameter(s) did not change, e.g. {unchanged[0]}; "
            "raise the learning rate or train in float32",
            RuntimeWarning,
            stacklevel=3,
        )
    if unclaimed:
        warnings.warn(f"{attack}: unclaimed parameter(s) changed: {unclaimed}", RuntimeWarning, stacklevel=3)
    return ParameterChanges(list(changed), unchanged, unclaimed)
