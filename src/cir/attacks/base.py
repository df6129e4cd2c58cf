"""The Attack protocol every relearning attack implements, and the post-attack metric.

An attack runs IN PLACE on the model it is given: it changes the weights (finetune), adds and then
removes an adapter (lora) or only changes prompts (few_shot). A caller that needs the unlearned model
afterwards saves it first (`cir.model_io`) or attacks a copy. What it returns is a
`cir.records.AttackResult`; `check` refuses facts it cannot run on before any model is loaded.

Post-attack accuracy is the attacker's best (method.md §7): the max over the attack, epochs 0..E
with 0 = before it, of the metric smoothed by a trailing moving average; the min for recall loss.
`POST_ATTACK_DEFINITION` states this and is reported next to every such number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.config import to_dict
from cir.data.facts import Fact, check_disjoint
from cir.errors import ConfigError, DataError
from cir.records import (
    FACT_METRICS,
    LOWER_IS_BETTER,
    AttackEpoch,
    AttackResult,
    FactScores,
    FactTable,
    ParameterChanges,
)

POST_ATTACK_DEFINITION = (
    "post-attack value = the attacker's best: over epochs 0..E of the attack (0 = before it), the max "
    "(the min for recall_loss) of the eval-fact metric averaged over a trailing window of {window} "
    "epoch(s) (fewer at the start)"
)


@dataclass
class AttackConfig:
    """Base of every attack's config dataclass (fields are each attack's own; checked in __post_init__)."""


class Attack(Protocol):
    """One relearning attack on an unlearned model."""

    # what the steps of its `AttackResult.history` are, for the bench plot's x axis
    trajectory_axis: ClassVar[str]

    def check(self, train_facts: Sequence[Fact], eval_facts: Sequence[Fact]) -> None:
        """Refuse a T/V pair this attack cannot run on; called before any model is loaded or trained.

        Raises:
            DataError: if T or V is empty or they share a question or a sentence (`check_attack_facts`).
            ConfigError: if a setting does not fit these facts (e.g. more shots than T has facts).
        """

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
        """Attack `model` in place using `train_facts` (T), measuring `eval_facts` (V) throughout.

        V is scored by `cir.evals.scores.score_facts` with the extra `probes` (`cir.registry.PROBES`),
        so their per-fact columns are in every epoch's `per_fact`. The caller saves the unlearned model
        first if it needs it afterwards. With `progress`, a bar
        over the attack's epochs is shown (cleared at the end when nested under a caller's bar),
        its description prefixed by `label` (the bench passes e.g. "cir seed 1 budget 0.01").

        Raises:
            DataError, ConfigError: as `check`, which `run` calls first.
        """


@runtime_checkable
class Reachable(Protocol):
    """An attack that can bring a model back to any scored point of a run (finetune's kind, quantize).

    The bench uses it to score its extra probes once, at the attacker's chosen point, instead of at
    every epoch of every run (`bench.probes_at: chosen`).
    """

    def reach(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        train_facts: list[Fact],
        eval_facts: list[Fact],
        epoch: int,
    ) -> None:
        """Bring `model`, in the state `run` started from, to the state `run` scored as `history[epoch]`."""


def trailing_mean(values: Sequence[float], window: int) -> list[float]:
    """Moving average s_i = mean(v_j for j in max(0, i - window + 1) .. i), shorter at the start."""
    return [
        sum(values[max(0, i - window + 1) : i + 1]) / (i + 1 - max(0, i - window + 1))
        for i in range(len(values))
    ]


def post_attack(values: Sequence[float], window: int, higher_is_better: bool = True) -> float:
    """The attacker's best value: max over i of trailing_mean(values, window)_i (min when lower is better).

    Args:
        values: one metric over the attack, entry 0 before it, then one per epoch; all are candidates.
        window: epochs in the trailing moving average (1 = no smoothing).
        higher_is_better: False for a loss (e.g. recall_loss), whose best is the min.

    Raises:
        ConfigError: if `window` < 1 or there are no values.
    """
    if window < 1:
        raise ConfigError(f"attack.window must be at least 1 epoch, got {window}")
    if not values:
        raise ConfigError("post_attack: the attack history is empty")
    smoothed = trailing_mean(values, window)
    return max(smoothed) if higher_is_better else min(smoothed)


def post_attack_scores(history: Sequence[AttackEpoch], window: int) -> FactScores:
    """`post_attack` of every fact metric over the history (the min for recall_loss, the max otherwise).

    Raises:
        ConfigError: as `post_attack`.
    """
    best = {
        name: post_attack([e.facts.metric(name) for e in history], window, name not in LOWER_IS_BETTER)
        for name in FACT_METRICS
    }
    return FactScores(**best)


def best_epoch(values: Sequence[float], window: int, higher_is_better: bool = True) -> int:
    """The epoch at which `post_attack` takes its value (the first, on a tie).

    Raises:
        ConfigError: as `post_attack`.
    """
    best = post_attack(values, window, higher_is_better)
    return trailing_mean(values, window).index(best)


def post_attack_per_fact(
    history: Sequence[AttackEpoch], window: int
) -> tuple[dict[str, int], FactTable | None]:
    """Each metric's best epoch, and every fact's value there, smoothed over the same trailing window.

    The attacker picks one epoch for the whole eval set (its best mean), so a fact's post-attack value is
    its own (smoothed) value at that epoch; the mean over facts is then `post_attack_scores` exactly.
    Every column of the per-fact tables is covered, extra probes' included (each at its own best
    epoch). The table is None when an epoch of the history has no per-fact scores; the epochs are
    then those of `FactScores`' metrics.

    Raises:
        ConfigError: as `post_attack`.
    """
    tables = [e.per_fact for e in history]
    if any(t is None for t in tables):
        return {
            name: best_epoch([e.facts.metric(name) for e in history], window, name not in LOWER_IS_BETTER)
            for name in FACT_METRICS
        }, None
    present = [t for t in tables if t is not None]
    epochs, values = {}, {}
    for name in present[0].values:
        epoch = best_epoch([t.mean(name) for t in present], window, name not in LOWER_IS_BETTER)
        start = max(0, epoch - window + 1)
        columns = [t.values[name] for t in present[start : epoch + 1]]
        epochs[name] = epoch
        values[name] = tuple(sum(column) / len(columns) for column in zip(*columns, strict=True))
    return epochs, FactTable(values)


def check_attack_facts(train_facts: Sequence[Fact], eval_facts: Sequence[Fact]) -> None:
    """Refuse an empty T or V, or a T/V pair that shares a question or a sentence.

    Raises:
        DataError: naming the empty side, or the first shared question/sentence (`check_disjoint`).
    """
    for name, facts in (("train (T)", train_facts), ("eval (V)", eval_facts)):
        if not facts:
            raise DataError(f"the attack got no {name} facts; pass at least one")
    check_disjoint(train_facts, eval_facts)


def attack_result(
    config: AttackConfig,
    history: list[AttackEpoch],
    window: int,
    stop_reason: str,
    seconds: float,
    trained_parameters: Sequence[str] = (),
    changes: ParameterChanges | None = None,
    details: dict[str, Any] | None = None,
    definition: str = POST_ATTACK_DEFINITION,
) -> AttackResult:
    """The result every attack returns, with the post-attack scores computed from `history`.

    Raises:
        ConfigError: as `post_attack`.
    """
    best_epochs, per_fact = post_attack_per_fact(history, window)
    return AttackResult(
        history=history,
        post_attack=post_attack_scores(history, window),
        post_attack_definition=definition.format(window=window),
        stop_reason=stop_reason,
        seconds=seconds,
        trained_parameters=list(trained_parameters),
        config=to_dict(config),
        changes=changes,
        details=details or {},
        best_epochs=best_epochs,
        post_attack_per_fact=per_fact,
    )
