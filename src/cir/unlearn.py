"""The one unlearning loop every method shares: epochs of (forget, retain) steps under a budget.

    setup (cache originals) -> measure -> for each epoch: steps -> end_epoch -> measure -> budget check

The returned model is the last one within the disruption budget (method.md §4). Per epoch it logs
the forget facts' accuracy and answer probability, the general-text loss, the KL to the original,
the update norm and the wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.budget import BudgetMetric, DisruptionBudget, WeightSnapshot
from cir.data.batches import Batch, make_batches
from cir.data.facts import Fact, fact_sentences
from cir.evals.metrics import McqFormat, evaluate_facts, general_loss, kl_to_reference, reference_logprobs
from cir.methods.base import Method, MethodConfig
from cir.registry import METHODS
from cir.runtime import interrupt_flag, seed_everything

EpochCallback = Callable[[dict[str, float], list[nn.Parameter]], None]


@dataclass
class UnlearnConfig:
    """Settings of the shared loop; the method's own settings live in its config."""

    method: str = "cir"  # a registered method (`cir methods` lists them)
    budget: float = 0.01  # allowed disruption: relative general-loss rise (0.01 = 1%), or KL in nats/token
    budget_metric: BudgetMetric = "general_loss"  # what the budget bounds
    max_epochs: int = 20  # stop here even if still within budget
    batch_size: int = 16  # forget (and retain) texts per step [paper 32]
    sentences_per_fact: int = 3  # forget sentences per fact [paper 3]
    max_length: int = 128  # tokens per text, longer ones are cut
    eval_batch_size: int = 64  # texts per forward pass when measuring
    mcq_format: McqFormat = "choice"  # "letter" for models that answer A-D prompts, "choice" for small ones
    track_kl: bool = True  # also log KL(original || current) on general text each epoch
    seed: int = 0  # seeds data order and randomised PCA


@dataclass
class UnlearnData:
    """What to forget, what to keep, and the held-out text disruption is measured on."""

    forget_facts: list[Fact]
    retain_texts: list[str]
    general_texts: list[str]
    monitor_facts: list[Fact] | None = None  # facts scored after every epoch; None = forget_facts


@dataclass
class UnlearnResult:
    """The unlearned model (last in-budget weights) and how the run went."""

    model: PreTrainedModel
    history: list[dict[str, float]]  # entry 0: before unlearning; entry e: after epoch e
    stop_reason: str  # "budget", "max_epochs" or "interrupted"
    epochs: int  # epochs whose weights were kept
    seconds: float  # unlearning wall time: setup + steps + budget checks (not the fact evaluations)
    seconds_per_fact: float
    summary: dict[str, Any] = field(default_factory=dict)


def unlearn(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: UnlearnData,
    config: UnlearnConfig,
    method_config: MethodConfig | None = None,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
) -> UnlearnResult:
    """Unlearn `data.forget_facts` from `model` in place with the configured method.

    `on_epoch(entry, parameters)` is called after each epoch's measurement, before the budget check,
    with the epoch's history entry and the trained parameters (e.g. to snapshot the weights at several
    budgets in one run).

    Raises:
        ConfigError: unknown method or a method setting that cannot apply to this model.
        ModelError: the model lacks the modules or layers the method needs.
    """
    seed_everything(config.seed)
    entry = METHODS.get(config.method)
    method: Method = entry.build(method_config if method_config is not None else entry.config_class())
    device = next(model.parameters()).device
    forget = _batches(tokenizer, fact_sentences(data.forget_facts, config.sentences_per_fact), config, device)
    retain = _batches(tokenizer, data.retain_texts, config, device)
    general = [
        b.to(device)
        for b in make_batches(tokenizer, data.general_texts, config.eval_batch_size, config.max_length)
    ]
    monitored = data.monitor_facts if data.monitor_facts is not None else data.forget_facts
    probe = _Probe(model, tokenizer, monitored, general, config)
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.eval()  # no dropout: updates must be deterministic and exact
    clock = _Clock()
    try:
        with clock:
            method.setup(model, forget, retain)
            probe.cache_reference()
            before = probe.measure()
        budget = DisruptionBudget(config.budget_metric, config.budget, before[config.budget_metric])
        history = [{"epoch": 0, **before}]
        snapshot = WeightSnapshot(method.trained_parameters())
        loop = _Loop(method, probe, budget, snapshot, clock, history, on_epoch)
        stop_reason, kept = loop.run(len(forget), len(retain), config, progress)
    finally:
        for parameter, flag in zip(model.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)
        model.train(was_training)
    facts = len(data.forget_facts)
    summary = {
        "stop_reason": stop_reason,
        "epochs": kept,
        "budget_limit": budget.limit,
        "unlearn_seconds": clock.seconds,
        "seconds_per_fact": clock.seconds / facts,
        "facts": facts,
    }
    return UnlearnResult(model, history, stop_reason, kept, clock.seconds, clock.seconds / facts, summary)


@dataclass
class _Loop:
    method: Method
    probe: _Probe
    budget: DisruptionBudget
    snapshot: WeightSnapshot
    clock: _Clock
    history: list[dict[str, float]]
    on_epoch: EpochCallback | None

    def run(
        self, forget_count: int, retain_count: int, config: UnlearnConfig, progress: bool
    ) -> tuple[str, int]:
        """Epochs until the budget, max_epochs or Ctrl-C; leaves the last in-budget weights in place."""
        kept = 0
        with interrupt_flag() as interrupted:
            for epoch in range(config.max_epochs):  # CIR's epoch 0 only gathers statistics
                sums: dict[str, float] = {}
                with self.clock:
                    for index in tqdm(
                        range(forget_count),
                        desc=f"{config.method} epoch {epoch}",
                        disable=not progress,
                        leave=False,
                    ):
                        for key, value in self.method.step(index, index % retain_count, epoch).items():
                            sums[key] = sums.get(key, 0.0) + value / forget_count  # stays on the device
                        if interrupted.is_set():
                            break
                    sums.update(self.method.end_epoch(epoch))
                if interrupted.is_set():
                    self.snapshot.restore()
                    return "interrupted", kept
                with self.clock:
                    disruption = self.probe.disruption()
                metrics = self.probe.measure_facts() | disruption
                logs = {key: float(value) for key, value in sums.items()}  # one host copy per epoch
                self.history.append({"epoch": epoch + 1, **logs, **metrics, "seconds": self.clock.seconds})
                if self.on_epoch is not None:
                    self.on_epoch(self.history[-1], self.snapshot.parameters)
                if not self.budget.within(disruption[config.budget_metric]):
                    self.snapshot.restore()
                    return "budget", kept
                self.snapshot.save()
                kept = epoch + 1
        return "max_epochs", kept


@dataclass
class _Probe:
    """Measures the model: the forget facts (monitoring) and the disruption (the budget)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    facts: list[Fact]
    general: list[Batch]
    config: UnlearnConfig
    reference: list[torch.Tensor] | None = None

    def cache_reference(self) -> None:
        """Store the original model's general-text distribution, for the KL."""
        if self.config.track_kl or self.config.budget_metric == "kl":
            self.reference = reference_logprobs(self.model, self.general)

    def disruption(self) -> dict[str, float]:
        """General-text loss and, when tracked, KL(original || current)."""
        values = {"general_loss": general_loss(self.model, self.general)}
        if self.reference is not None:
            values["kl"] = kl_to_reference(self.model, self.general, self.reference)
        return values

    def measure_facts(self) -> dict[str, float]:
        """Accuracy, answer probability and recall loss on the forget facts, prefixed `forget_`."""
        scores = evaluate_facts(
            self.model, self.tokenizer, self.facts, self.config.mcq_format, self.config.eval_batch_size
        )
        return {f"forget_{k}": v for k, v in scores.items()}

    def measure(self) -> dict[str, float]:
        """Both of the above."""
        return self.measure_facts() | self.disruption()


def _batches(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], config: UnlearnConfig, device: torch.device
) -> list[Batch]:
    batches = make_batches(tokenizer, texts, config.batch_size, config.max_length, shuffle_seed=config.seed)
    return [b.to(device) for b in batches]


class _Clock:
    """Accumulates the wall time spent inside `with clock:` blocks."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> _Clock:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._start
