"""Relearning through a LoRA adapter (`cir.adapter`; Hu et al. 2021, arXiv 2106.09685) on T's sentences.

Each targeted linear map W x becomes W x + (alpha / rank) B A x with A (rank, d_in), B (d_out, rank)
and B = 0 at the start; only A and B train, with the same loop, loss and per-epoch V scoring as the
`finetune` attack (the helpers of `cir.attacks.relearn` are called, not inherited). Afterwards the
adapter is removed without merging, so the model object holds exactly its original modules and
weights again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.pytorch_utils import Conv1D

from cir.adapter import lora_adapter
from cir.attacks.base import AttackConfig, attack_result, check_attack_facts
from cir.attacks.relearn import (
    TrainPlan,
    changed_parameters,
    check_full_forward,
    check_training,
    cpu_snapshot,
    preserved_state,
    train_epochs,
    verify_changes,
)
from cir.data.facts import Fact, fact_sentences
from cir.errors import ConfigError
from cir.evals.scores import McqFormat
from cir.modules import freeze_all_but, mlp_modules
from cir.records import AttackResult, FactMetric
from cir.registry import ATTACKS
from cir.runtime import Stopwatch, seed_everything


@dataclass
class Config(AttackConfig):
    """LoRA attack settings, sized for the 4-layer 128-wide demo model."""

    rank: int = 8  # r, the inner dimension of B A
    alpha: float = 16.0  # the update is scaled by alpha / rank
    target_modules: list[str] | None = None  # module names or name suffixes; None = every layer's MLP linears
    optimizer: Literal["sgd", "adamw"] = "adamw"  # adapters are usually trained with AdamW
    lr: float = 1e-3  # learning rate of A and B
    weight_decay: float = 0.0  # AdamW's decoupled decay on A and B
    epochs: int = 20  # passes over T's sentences
    batch_size: int = 32  # sentences per step
    sentences_per_fact: int | None = None  # first N sentences of each T fact; None = all of them
    max_length: int = 128  # tokens per sentence, longer ones are cut
    mcq_format: McqFormat = "choice"  # "letter" for models that follow A-D prompts
    eval_batch_size: int = 64  # prompts per forward pass when scoring V
    window: int = 3  # epochs in the post-attack moving average
    # stop once V's smoothed `stop_metric` has not improved for this many epochs (0: run every epoch);
    # `epochs` is then the cap. The bench sets stop_metric to its own metric.
    patience: int = 0
    stop_metric: FactMetric = "acc_t1"
    seed: int = 0  # seeds the adapter's initialisation and the per-epoch shuffling

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: naming every field out of range.
        """
        check_training(self, [("rank", ">= 1", self.rank >= 1), ("alpha", "> 0", self.alpha > 0)])


@ATTACKS.register("lora", Config, "T/V relearning through a LoRA adapter, removed afterwards")
class Lora:
    """Train a LoRA adapter on the train facts' sentences, then unload it without merging."""

    trajectory_axis = "attack epoch (a LoRA adapter trained on T)"

    def __init__(self, config: Config) -> None:
        self.config = config

    def check(self, train_facts: Sequence[Fact], eval_facts: Sequence[Fact]) -> None:
        """Refuse an empty T or V, or a T/V pair that overlaps.

        Raises:
            DataError: naming the empty side or the first shared question/sentence.
        """
        check_attack_facts(train_facts, eval_facts)

    def run(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        train_facts: list[Fact],
        eval_facts: list[Fact],
        progress: bool = True,
        label: str | None = None,
        probes: Sequence[str] = (),
    ) -> AttackResult:
        """Relearn T through an adapter; history[e] holds V's metrics after epoch e (0 = before).

        Raises:
            DataError: if T or V is empty or they overlap.
            ConfigError: if a target module matches nothing.
            ModelError: if the model has lost layers or carries forward hooks on its decoder layers.
        """
        self.check(train_facts, eval_facts)
        plan = TrainPlan.of(self.config)
        check_full_forward(model)
        targets = target_modules(model, self.config.target_modules)
        seed_everything(plan.seed)  # LoRA's A is drawn from torch's global generator
        base = cpu_snapshot(dict(model.named_parameters()))
        desc = f"{label} lora" if label else "lora"
        with (
            Stopwatch() as watch,
            preserved_state(model),
            lora_adapter(model, targets, self.config.rank, self.config.alpha) as adapter,
        ):
            freeze_all_but(model, list(adapter.values()))
            start = cpu_snapshot(adapter)
            texts = fact_sentences(train_facts, plan.sentences_per_fact)
            history, stop_reason = train_epochs(
                model, tokenizer, list(adapter.values()), texts, eval_facts, plan, progress, desc, probes
            )
            moved = changed_parameters(adapter, start)
        moved += changed_parameters(dict(model.named_parameters()), base)  # the base: should stay empty
        changes = verify_changes(list(adapter), moved, "lora")
        details = {"target_modules": targets, "adapter_parameters": sum(p.numel() for p in adapter.values())}
        return attack_result(
            self.config, history, plan.window, stop_reason, watch.seconds, list(adapter), changes, details
        )


def target_modules(model: PreTrainedModel, names: Sequence[str] | None) -> list[str]:
    """Full names of the linear modules to adapt: `names` as names or name suffixes, or the MLP linears.

    Raises:
        ConfigError: if a given name matches no Linear/Conv1D module (the message lists the MLP ones).
        ModelError: if `names` is None and the model has no MLP linear module.
    """
    if names is None:
        return [m.name for m in mlp_modules(model)]  # full names: GPT-2's "c_proj" is also in attention
    linear = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))]
    found = []
    for wanted in names:
        matches = [n for n in linear if n == wanted or n.endswith(f".{wanted}")]
        if not matches:
            known = ", ".join(m.name for m in mlp_modules(model)[:3])
            raise ConfigError(f"attack.target_modules: {wanted!r} matches no linear module (e.g. {known})")
        found += [n for n in matches if n not in found]
    return found
