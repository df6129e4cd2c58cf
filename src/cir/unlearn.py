"""The one unlearning loop every method shares: epochs of (forget, retain) steps under a budget.

    setup (cache originals) -> measure -> for each epoch: steps -> end_epoch -> measure -> budget check

The returned model is the one after `budget.last_epoch_within` (method.md §4). Each epoch's
`EpochRecord` holds the method's step logs, the monitored facts' `FactScores`, the disruption
(general-text loss, KL to the original) and the wall time so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.budget import BudgetMetric, DisruptionBudget, EpochSnapshots, last_epoch_within
from cir.config import require
from cir.data.batches import Batch, make_batches
from cir.data.facts import Fact, fact_sentences
from cir.evals.metrics import loss_and_kl, reference_logprobs
from cir.evals.scores import MCQ_FORMATS, McqFormat, evaluate_facts
from cir.methods.base import Method, MethodConfig
from cir.records import Disruption, EpochRecord, FactScores, UnlearnHistory
from cir.registry import METHODS
from cir.runtime import interrupt_flag, seed_everything

EpochCallback = Callable[[EpochRecord], None]


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

    def __post_init__(self) -> None:
        """Check ranges (the method's name is checked against the registry where it is built).

        Raises:
            ConfigError: naming every field out of range.
        """
        require(
            self,
            "unlearn",
            [
                ("budget", ">= 0", self.budget >= 0),
                ("budget_metric", "general_loss or kl", self.budget_metric in ("general_loss", "kl")),
                ("max_epochs", ">= 1", self.max_epochs >= 1),
                ("batch_size", ">= 1", self.batch_size >= 1),
                ("sentences_per_fact", ">= 1", self.sentences_per_fact >= 1),
                ("max_length", ">= 2", self.max_length >= 2),
                ("eval_batch_size", ">= 1", self.eval_batch_size >= 1),
                ("mcq_format", f"one of {list(MCQ_FORMATS)}", self.mcq_format in MCQ_FORMATS),
            ],
        )


@dataclass
class UnlearnData:
    """What to forget, what to keep, and the held-out text disruption is measured on."""

    forget_facts: list[Fact]
    retain_texts: list[str]
    general_texts: list[str]
    monitor_facts: list[Fact] | None = None  # facts scored after every epoch; None = forget_facts


@dataclass
class UnlearnResult:
    """The unlearned model (the weights of the kept epoch) and how the run went."""

    model: PreTrainedModel
    history: UnlearnHistory  # entry 0: before unlearning; entry e: after epoch e (it may be over budget)
    stop_reason: str  # "budget", "max_epochs" or "interrupted"
    epochs: int  # the kept epoch: `last_epoch_within(history, budget)`
    budget: DisruptionBudget  # the disruption allowed (its `limit`) and the baseline it is relative to
    seconds: float  # unlearning wall time: setup + steps + budget checks (not the fact evaluations)
    facts: int  # forget facts
    snapshots: EpochSnapshots | None = None  # every epoch's trained weights, with keep_every_epoch
    method_config: MethodConfig | None = None  # as the method ran it: shape-rule defaults filled in

    @property
    def kept(self) -> EpochRecord:
        """The record of the kept epoch (the returned model's)."""
        return self.history[self.epochs]

    @property
    def seconds_per_fact(self) -> float:
        """Unlearning wall time / forget facts."""
        return self.seconds / self.facts


def unlearn(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: UnlearnData,
    config: UnlearnConfig,
    method_config: MethodConfig | None = None,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    keep_every_epoch: bool = False,
    label: str | None = None,
) -> UnlearnResult:
    """Unlearn `data.forget_facts` from `model` in place with the configured method.

    Args:
        model: the model to change in place; it holds the kept epoch's weights afterwards.
        tokenizer: its tokenizer.
        data: forget facts, retain texts, general texts and the facts to monitor.
        config: the loop's settings.
        method_config: the method's settings (its defaults when None).
        progress: show a bar per epoch (`leave=False`: it nests under a caller's bar).
        on_epoch: called with each epoch's record after it is measured, before the budget check.
        keep_every_epoch: keep a CPU copy of the trained weights after every epoch within the
            budget in `result.snapshots` (the bench's way to reach several budgets in one run).
        label: names the run in the epoch bars, f"{label} epoch {n}" (default: the method's name;
            the bench passes e.g. "cir seed 1").

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
            disruption = probe.disruption()
        history = UnlearnHistory([EpochRecord(0, probe.facts_scores(), disruption, seconds=clock.seconds)])
        budget = DisruptionBudget.of(config.budget_metric, config.budget, history.before)
        snapshots = EpochSnapshots(method.trained_parameters(), keep_every_epoch)
        loop = _Loop(method, probe, budget, snapshots, clock, history, on_epoch)
        bar_label = (label or config.method) if progress else None
        stop_reason, kept = loop.run(len(forget), len(retain), config, bar_label)
    finally:
        for parameter, flag in zip(model.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)
        model.train(was_training)
    return UnlearnResult(
        model,
        history,
        stop_reason,
        kept,
        budget,
        clock.seconds,
        len(data.forget_facts),
        snapshots if keep_every_epoch else None,
        getattr(method, "config", None),
    )


@dataclass
class _Loop:
    method: Method
    probe: _Probe
    budget: DisruptionBudget
    snapshots: EpochSnapshots
    clock: _Clock
    history: UnlearnHistory
    on_epoch: EpochCallback | None

    def run(
        self, forget_count: int, retain_count: int, config: UnlearnConfig, label: str | None
    ) -> tuple[str, int]:
        """Epochs until the budget, max_epochs or Ctrl-C; leaves the kept epoch's weights in place.

        A bar per epoch, f"{label} epoch {n}", unless `label` is None.
        """
        kept = 0
        with interrupt_flag() as interrupted:
            for epoch in range(config.max_epochs):  # CIR's epoch 0 only gathers statistics
                sums: dict[str, float] = {}
                with self.clock:
                    for index in tqdm(
                        range(forget_count),
                        desc=f"{label} epoch {epoch}",
                        disable=label is None,
                        leave=False,
                    ):
                        for key, value in self.method.step(index, index % retain_count, epoch).items():
                            sums[key] = sums.get(key, 0.0) + value / forget_count  # stays on the device
                        if interrupted.is_set():
                            break
                    sums.update(self.method.end_epoch(epoch))
                if interrupted.is_set():
                    self.snapshots.restore(kept)
                    return "interrupted", kept
                with self.clock:
                    disruption = self.probe.disruption()
                logs = {key: float(value) for key, value in sums.items()}  # one host copy per epoch
                record = EpochRecord(
                    epoch + 1, self.probe.facts_scores(), disruption, logs, self.clock.seconds
                )
                self.history.append(record)
                if self.on_epoch is not None:
                    self.on_epoch(record)
                if last_epoch_within(self.history, self.budget) != record.epoch:
                    self.snapshots.restore(kept)
                    return "budget", kept
                self.snapshots.save(record.epoch)
                kept = record.epoch
        return "max_epochs", kept


@dataclass
class _Probe:
    """Measures the model: the monitored facts and the disruption (the budget)."""

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

    def disruption(self) -> Disruption:
        """General-text loss and, when tracked, KL(original || current)."""
        return Disruption(*loss_and_kl(self.model, self.general, self.reference))  # one pass for both

    def facts_scores(self) -> FactScores:
        """Accuracy, answer probability and recall loss of the monitored facts."""
        return evaluate_facts(
            self.model, self.tokenizer, self.facts, self.config.mcq_format, self.config.eval_batch_size
        )


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
