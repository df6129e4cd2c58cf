"""The T/V relearning attack (Deeb & Roger; method.md §7): fine-tune on T's sentences, score V each epoch.

Cross-entropy on every real token of T's fact sentences, through the FULL forward pass: the CIR
authors' attack silently retrained only the early layers of a model left trimmed after unlearning,
so this attack refuses a model with missing layers or forward hooks on its decoder layers, and after
training checks that every parameter it claims to train changed and that nothing else did.

The training loop and those checks live in `cir.attacks.relearn`, shared with the LoRA attack. Both attacks
run in place: save the unlearned model first if you need it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.attacks.base import AttackConfig, attack_result, check_attack_facts
from cir.attacks.relearn import (
    TrainPlan,
    changed_parameters,
    check_full_forward,
    check_training,
    claimed_parameters,
    cpu_snapshot,
    preserved_state,
    train_epochs,
    verify_changes,
)
from cir.data.facts import Fact, fact_sentences
from cir.evals.scores import McqFormat
from cir.modules import freeze_all_but
from cir.records import AttackResult, FactMetric
from cir.registry import ATTACKS
from cir.runtime import Stopwatch, seed_everything


@dataclass
class Config(AttackConfig):
    """Fine-tuning attack settings, sized for the 4-layer 128-wide demo model ([bracketed]: the paper's)."""

    optimizer: Literal["sgd", "adamw"] = "adamw"  # [sgd]; AdamW relearns a tiny model in a few epochs
    lr: float = 1e-3  # learning rate [1e-5 with SGD]
    weight_decay: float = 0.0  # AdamW's decoupled decay; 0 keeps every change due to T's gradient
    epochs: int = 10  # passes over T's sentences [100]; on the demo model V peaks within 2-5
    batch_size: int = 32  # sentences per step [32]
    sentences_per_fact: int | None = None  # first N sentences of each T fact; None = all of them
    # the first N of T's facts; None = all. Holds the attack's size fixed when fact sets differ in
    # size, so that drops on a large set and a small one measure the same attack.
    train_facts: int | None = None
    trained: Literal["mlp", "all"] = "mlp"  # "mlp": every layer's MLP linear weights [paper]; "all": all
    max_length: int = 128  # tokens per sentence, longer ones are cut
    mcq_format: McqFormat = "choice"  # "letter" for models that follow A-D prompts
    eval_batch_size: int = 64  # prompts per forward pass when scoring V
    window: int = 3  # epochs in the post-attack moving average
    # stop once V's smoothed `stop_metric` has not improved for this many epochs (0: run every epoch);
    # `epochs` is then the cap. The bench sets stop_metric to its own metric.
    patience: int = 0
    stop_metric: FactMetric = "acc_t1"
    seed: int = 0  # seeds the per-epoch shuffling (and, via seed_everything, the global generators)

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: naming every field out of range.
        """
        check_training(
            self,
            [
                ("trained", "mlp or all", self.trained in ("mlp", "all")),
                ("train_facts", ">= 1 or null", self.train_facts is None or self.train_facts >= 1),
            ],
        )


@ATTACKS.register("finetune", Config, "T/V relearning: fine-tune on T's sentences, score V each epoch")
class Finetune:
    """Full fine-tuning of the claimed parameters on the train facts' sentences."""

    trajectory_axis = "attack epoch (fine-tuning on T)"
    name = "finetune"  # in bars and messages

    def __init__(self, config: Config) -> None:
        self.config = config

    def train_texts(self, train_facts: Sequence[Fact], eval_facts: Sequence[Fact] = ()) -> list[str]:
        """What the attack trains on: T's sentences; V is unused.

        Only the first `train_facts` facts of T (all when None), and the first `sentences_per_fact`
        sentences of each.
        """
        return fact_sentences(train_facts[: self.config.train_facts], self.config.sentences_per_fact)

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
        """Fine-tune `model` in place on T's sentences; history[e] holds V's metrics after epoch e.

        A CPU copy of every parameter is taken first (one model's size of host memory) to check,
        afterwards, that exactly the claimed parameters changed.

        Raises:
            DataError: if T or V is empty or they overlap.
            ModelError: if the model has lost layers or carries forward hooks on its decoder layers.
        """
        self.check(train_facts, eval_facts)
        plan = TrainPlan.of(self.config)
        check_full_forward(model)
        seed_everything(plan.seed)
        claimed = claimed_parameters(model, self.config.trained)
        snapshot = cpu_snapshot(dict(model.named_parameters()))
        desc = f"{label} {self.name}" if label else self.name
        with Stopwatch() as watch, preserved_state(model):
            freeze_all_but(model, list(claimed.values()))
            texts = self.train_texts(train_facts, eval_facts)
            history, stop_reason = train_epochs(
                model, tokenizer, list(claimed.values()), texts, eval_facts, plan, progress, desc, probes
            )
        changes = verify_changes(
            list(claimed), changed_parameters(dict(model.named_parameters()), snapshot), self.name
        )
        return attack_result(
            self.config, history, plan.window, stop_reason, watch.seconds, list(claimed), changes
        )

    def reach(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        train_facts: list[Fact],
        eval_facts: list[Fact],
        epoch: int,
    ) -> None:
        """Bring `model`, in the state `run` started from, to its state after `epoch` epochs, in place.

        Training is seeded and V's scoring draws no random numbers, so the first `epoch` epochs of a
        run replay exactly on CPU (the bench checks it). Epoch 0 is the model as it is.
        """
        if epoch > 0:
            replay = type(self)(replace(self.config, epochs=epoch, patience=0))
            replay.run(model, tokenizer, train_facts, eval_facts, progress=False)
