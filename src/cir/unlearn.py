"""The one unlearning loop every method shares: epochs of (forget, retain) steps under a budget.

    setup (cache originals) -> measure -> for each epoch: steps, with a budget check on a small
    subset every few -> end_epoch -> measure the full budget text -> keep, or roll back and back off

The budget contract is `cir.budget.BudgetPolicy`: a breach restores the last in-budget weights and
shrinks the step, so every method lands near its budget instead of stopping at the first epoch that
jumps past it. The returned model holds the weights of the last epoch whose end was within the
budget on the full budget text (`UnlearnResult.epochs`). Each epoch's `EpochRecord` holds the
method's step logs, the monitored facts' `FactScores`, the disruption, the wall time so far and the
epoch's back-offs.

Step size follows the data, not only the config: with `step_per="epoch"` (the default) a method that
updates once per batch takes steps of `step_norm x reference_batches / batches`, so an epoch moves the
weights the same total distance whatever the number of facts, and settings tuned on one fact set
carry to another of any size. `step_per="batch"` is the older meaning (every update has norm
`step_norm`), which the committed studies and benches up to issue 26 used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.budget import BudgetMetric, BudgetPolicy, DisruptionBudget, EpochSnapshots
from cir.config import require
from cir.data.batches import Batch, make_batches
from cir.data.facts import Fact, fact_sentences
from cir.evals.metrics import loss_and_kl, reference_logprobs
from cir.evals.scores import MCQ_FORMATS, McqFormat, evaluate_facts
from cir.methods.base import Method, MethodConfig, scaled_step
from cir.quant import BLOCK_FORMATS, GridWeights
from cir.records import BackOff, Disruption, EpochRecord, FactScores, UnlearnHistory
from cir.registry import METHODS
from cir.runtime import interrupt_flag, seed_everything

EpochCallback = Callable[[EpochRecord], None]
StopReason = Literal["budget", "max_epochs", "interrupted"]


@dataclass
class UnlearnConfig:
    """Settings of the shared loop; the method's own settings live in its config."""

    method: str = "cir"  # a registered method (`cir methods` lists them)
    budget: float = 0.01  # allowed disruption: relative general-loss rise (0.01 = 1%), or KL in nats/token
    budget_metric: BudgetMetric = "general_loss"  # what the budget bounds
    check_every: float = 0.25  # in-epoch budget checks: >= 1 steps, < 1 a fraction of an epoch, 0 none
    check_texts: int = 8  # budget texts the in-epoch check measures (the first ones; epoch ends use all)
    max_backoffs: int = 4  # breaches answered by rollback + a smaller step; 0 = stop at the first
    backoff_factor: float = 0.5  # the step is multiplied by this at each back-off
    step_per: Literal["epoch", "batch"] = "epoch"  # what step_norm is fixed per (see the module docstring)
    reference_batches: int = 16  # with step_per=epoch: batches per epoch at which a step is step_norm
    quant_format: str | None = None  # hold the trained weights on this GGUF grid (`cir.quant.GridWeights`)
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
        whole = self.check_every < 1 or float(self.check_every).is_integer()
        require(
            self,
            "unlearn",
            [
                ("budget", ">= 0", self.budget >= 0),
                ("budget_metric", "general_loss or kl", self.budget_metric in ("general_loss", "kl")),
                ("check_every", ">= 0, and a whole number of steps if >= 1", self.check_every >= 0 and whole),
                ("check_texts", ">= 1", self.check_texts >= 1),
                ("max_backoffs", ">= 0", self.max_backoffs >= 0),
                ("backoff_factor", "in (0, 1)", 0 < self.backoff_factor < 1),
                ("step_per", "epoch or batch", self.step_per in ("epoch", "batch")),
                ("reference_batches", ">= 1", self.reference_batches >= 1),
                (
                    "quant_format",
                    f"null or one of {list(BLOCK_FORMATS)}",
                    self.quant_format is None or self.quant_format in BLOCK_FORMATS,
                ),
                ("max_epochs", ">= 1", self.max_epochs >= 1),
                ("batch_size", ">= 1", self.batch_size >= 1),
                ("sentences_per_fact", ">= 1", self.sentences_per_fact >= 1),
                ("max_length", ">= 2", self.max_length >= 2),
                ("eval_batch_size", ">= 1", self.eval_batch_size >= 1),
                ("mcq_format", f"one of {list(MCQ_FORMATS)}", self.mcq_format in MCQ_FORMATS),
            ],
        )

    def budget_policy(self) -> BudgetPolicy:
        """The budget and its check schedule, the one object the loop holds a run to."""
        return BudgetPolicy(
            self.budget_metric,
            self.budget,
            self.check_every,
            self.check_texts,
            self.max_backoffs,
            self.backoff_factor,
        )

    def data_scale(self, method_config: MethodConfig, batches: int) -> float:
        """The factor on a method's step for an epoch of `batches` forget batches (see the docstring).

        1 with step_per=batch, and for a method whose epoch moves as far whatever its batches (e.g.
        RepSelect with `step_norm`: one normalised update per epoch).
        """
        if self.step_per == "batch" or not method_config.step_grows_with_batches():
            return 1.0
        return self.reference_batches / batches


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
    stop_reason: StopReason  # "budget" (a breach with no back-off left: after max_backoffs shrinks, or
    # the first breach with max_backoffs=0), "max_epochs" or "interrupted"
    epochs: int  # the kept epoch: the last whose end was within the budget on the full budget text
    budget: DisruptionBudget  # the disruption allowed (its `limit`) and the baseline it is relative to
    seconds: float  # unlearning wall time: setup + steps + budget checks (not the fact evaluations)
    facts: int  # forget facts
    snapshots: EpochSnapshots | None = None  # every kept epoch's trained weights, with keep_every_epoch
    method_config: MethodConfig | None = None  # as the method ran it: shape-rule defaults filled in
    check_seconds: float = 0.0  # the part of `seconds` spent measuring the disruption
    data_scale: float = 1.0  # the step factor for the data's size (`UnlearnConfig.data_scale`)

    @property
    def kept(self) -> EpochRecord:
        """The record of the kept epoch (the returned model's)."""
        return self.history[self.epochs]

    @property
    def seconds_per_fact(self) -> float:
        """Unlearning wall time / forget facts."""
        return self.seconds / self.facts

    @property
    def backoffs(self) -> list[BackOff]:
        """Every back-off of the run, in order."""
        return [b for record in self.history for b in record.backoffs]


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
    method: Method = METHODS.build(config.method, method_config or entry.config_class())
    device = next(model.parameters()).device
    forget = _batches(tokenizer, fact_sentences(data.forget_facts, config.sentences_per_fact), config, device)
    retain = _batches(tokenizer, data.retain_texts, config, device)
    policy = config.budget_policy()
    general = _eval_batches(tokenizer, data.general_texts, config, device)
    subset = _eval_batches(tokenizer, data.general_texts[: policy.check_texts], config, device)
    monitored = data.monitor_facts if data.monitor_facts is not None else data.forget_facts
    probe = _Probe(model, tokenizer, monitored, general, subset, config)
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.eval()  # no dropout: updates must be deterministic and exact
    clock, checks = _Clock(), _Clock()
    try:
        with clock:
            method.setup(model, forget, retain)
            base = method.config  # as set up: the loop scales its step from here
            # With quant_format the weights go on the grid before the baseline: the budget is relative
            # to the original's round trip, what would ship without any unlearning.
            grid = None
            if config.quant_format is not None:
                grid = GridWeights(model, method.trained_parameters(), config.quant_format)
            with checks:
                probe.cache_reference()
                disruption = probe.disruption()
                subset_before = probe.subset_disruption().value(policy.metric)
        facts = probe.facts_scores()
        history = UnlearnHistory([EpochRecord(0, facts, disruption, {}, clock.seconds, checks.seconds)])
        budget = policy.bound(disruption.value(policy.metric))
        snapshots = EpochSnapshots(method.trained_parameters(), keep_every_epoch)
        data_scale = config.data_scale(base, len(forget))
        subset_budget = policy.bound(subset_before)
        loop = _Loop(method, base, probe, policy, budget, subset_budget, snapshots, clock, checks, grid)
        bar = (label or config.method) if progress else None
        stop_reason, kept = loop.run(history, len(forget), len(retain), config, data_scale, on_epoch, bar)
    finally:
        if "base" in locals():
            method.config = base  # the config as given (and set up); the scale is in the records
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
        checks.seconds,
        data_scale,
    )


@dataclass
class _Loop:
    """The epochs of one run, with the budget controller (`cir.budget.BudgetPolicy`)."""

    method: Method
    base: MethodConfig  # the method's config before any step scaling
    probe: _Probe
    policy: BudgetPolicy
    budget: DisruptionBudget  # on the full budget text
    subset_budget: DisruptionBudget  # the same bound on the in-epoch check's subset (a trigger only)
    snapshots: EpochSnapshots  # weights of each kept epoch (verified on the full text)
    clock: _Clock
    checks: _Clock  # the budget checks' share of the clock
    grid: GridWeights | None = None  # with unlearn.quant_format: commits before every measurement
    scale: float = 1.0
    backoffs: list[BackOff] = field(default_factory=list)  # the current epoch's

    def run(
        self,
        history: UnlearnHistory,
        forget_count: int,
        retain_count: int,
        config: UnlearnConfig,
        data_scale: float,
        on_epoch: EpochCallback | None,
        label: str | None,
    ) -> tuple[StopReason, int]:
        """Epochs until the epoch cap, a breach with no back-off left, or Ctrl-C.

        Leaves the kept epoch's weights in place and returns (why it stopped, the kept epoch). A bar
        per epoch, f"{label} epoch {n}", unless `label` is None.
        """
        kept = 0
        self._set_scale(data_scale)
        # In-epoch checks only where weights move within the epoch (not for once-per-epoch updates).
        interval = self.policy.check_interval(forget_count) if self.base.updates_per_batch else None
        # The last weights that passed a check: where an in-epoch breach rolls back to.
        checkpoint = EpochSnapshots(self.method.trained_parameters())
        with interrupt_flag() as interrupted:
            for epoch in range(1, config.max_epochs + 1):  # CIR's first epoch only gathers statistics
                sums: dict[str, float] = {}
                restored = 0  # steps of this epoch in the checkpoint's weights (0: the epoch's start)
                with self.clock:
                    bar = f"{label} epoch {epoch - 1}"
                    for index in tqdm(range(forget_count), desc=bar, disable=label is None, leave=False):
                        for key, value in self.method.step(index, index % retain_count, epoch - 1).items():
                            sums[key] = sums.get(key, 0.0) + value / forget_count  # type: ignore[assignment]
                            # (a device tensor: summed on the device, read once per epoch)
                        if interrupted.is_set():
                            break
                        if interval is None or (index + 1) % interval or index + 1 == forget_count:
                            continue
                        self._commit()
                        if self._subset_within(epoch, index + 1, restored):
                            checkpoint.save(0)
                            restored = index + 1
                        elif self._exhausted(history):
                            break  # no back-off left: the epoch ends here, over budget
                        else:
                            self._restore(checkpoint, 0)
                    sums.update(self.method.end_epoch(epoch - 1))
                if interrupted.is_set():
                    self._restore(self.snapshots, kept)
                    return "interrupted", kept
                with self.clock:
                    self._commit()
                with self.clock, self.checks:
                    disruption = self.probe.disruption()
                value = disruption.value(self.policy.metric)
                within = self.budget.allows(value)
                rolled_back = False
                if not within and restored > 0:  # back to the last in-epoch weights that passed a check
                    self._restore(checkpoint, 0)
                    with self.clock, self.checks:
                        disruption = self.probe.disruption()  # verified in full: they may be kept
                    within, rolled_back = self.budget.allows(disruption.value(self.policy.metric)), True
                if not self.budget.allows(value) and not self._exhausted(history):
                    self._back_off(epoch, forget_count, "epoch_end", value, restored if within else 0)
                self._append(history, epoch, sums, disruption, on_epoch, rolled_back or not within)
                if within:
                    self.snapshots.save(epoch)
                    kept = epoch
                else:
                    self._restore(self.snapshots, kept)
                checkpoint.save(0)
                if self._exhausted(history):
                    return "budget", kept  # a breach with no back-off left
            if interrupted.is_set():  # during the last epoch's measurements: the run was still cut short
                return "interrupted", kept
        return "max_epochs", kept

    def _commit(self) -> None:
        """Put the updates since the last measurement on the grid (with unlearn.quant_format)."""
        if self.grid is not None:
            self.grid.commit()

    def _restore(self, snapshots: EpochSnapshots, key: int) -> None:
        snapshots.restore(key)
        if self.grid is not None:
            self.grid.reset()  # the restored weights are on the grid; sub-step progress since is dropped

    def _subset_within(self, epoch: int, step: int, restored: int) -> bool:
        """The in-epoch check: the subset, and the full text to confirm a breach the subset finds.

        The subset is a cheap trigger, not a judge: a breach is answered (recorded, step shrunk,
        weights back to the checkpoint after `restored` steps) only when the full budget text confirms
        it, so a noisy subset cannot shrink the step for nothing.
        """
        with self.checks:
            if self.subset_budget.allows(self.probe.subset_disruption().value(self.policy.metric)):
                return True
            value = self.probe.disruption().value(self.policy.metric)
        if self.budget.allows(value):
            return True
        self._back_off(epoch, step, "in_epoch", value, restored)
        return False

    def _back_off(
        self, epoch: int, step: int, check: Literal["in_epoch", "epoch_end"], value: float, restored: int
    ) -> None:
        self._set_scale(self.scale * self.policy.backoff_factor)
        self.backoffs.append(BackOff(epoch, step, check, value, self.budget.limit, restored, self.scale))

    def _exhausted(self, history: UnlearnHistory) -> bool:
        """Whether more breaches were found than back-offs are allowed (the last one ends the run)."""
        return len(self._all_backoffs(history)) > self.policy.max_backoffs

    def _set_scale(self, scale: float) -> None:
        self.scale = scale
        self.method.config = scaled_step(self.base, scale)

    def _all_backoffs(self, history: UnlearnHistory) -> list[BackOff]:
        return [b for r in history for b in r.backoffs] + self.backoffs

    def _append(
        self,
        history: UnlearnHistory,
        epoch: int,
        sums: dict[str, float],
        disruption: Disruption,
        on_epoch: EpochCallback | None,
        rolled_back: bool,
    ) -> EpochRecord:
        """Record epoch `epoch`: facts scored on the weights `disruption` was measured on."""
        logs = {key: float(value) for key, value in sums.items()}  # one host copy per epoch
        record = EpochRecord(
            epoch,
            self.probe.facts_scores(),
            disruption,
            logs,
            self.clock.seconds,
            self.checks.seconds,
            self.scale,
            rolled_back,
            tuple(self.backoffs),
        )
        history.append(record)
        self.backoffs = []  # now in the history
        if on_epoch is not None:
            on_epoch(record)
        return record


@dataclass
class _Probe:
    """Measures the model: the monitored facts and the disruption (the budget), in full or on a subset."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    facts: list[Fact]
    general: list[Batch]
    subset: list[Batch]  # the in-epoch check's texts
    config: UnlearnConfig
    reference: list[torch.Tensor] | None = None
    subset_reference: list[torch.Tensor] | None = None

    def cache_reference(self) -> None:
        """Store the original model's general-text distribution, for the KL."""
        if self.config.track_kl or self.config.budget_metric == "kl":
            self.reference = reference_logprobs(self.model, self.general)
        if self.config.budget_metric == "kl":
            self.subset_reference = reference_logprobs(self.model, self.subset)

    def disruption(self) -> Disruption:
        """General-text loss and, when tracked, KL(original || current)."""
        return Disruption(*loss_and_kl(self.model, self.general, self.reference))  # one pass for both

    def subset_disruption(self) -> Disruption:
        """The same on the in-epoch check's subset (its KL only for a KL budget)."""
        return Disruption(*loss_and_kl(self.model, self.subset, self.subset_reference))

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


def _eval_batches(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], config: UnlearnConfig, device: torch.device
) -> list[Batch]:
    return [b.to(device) for b in make_batches(tokenizer, texts, config.eval_batch_size, config.max_length)]


class _Clock:
    """Accumulates the wall time spent inside `with clock:` blocks."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> _Clock:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._start
