"""`recall`: how likely the model makes the answer text itself after the prompt (answer_prob, recall_loss)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.data.facts import Fact
from cir.evals.metrics import PaddingSide, answer_recall
from cir.probes.base import ProbeConfig
from cir.registry import PROBES


@dataclass
class Config(ProbeConfig):
    """No settings."""


@PROBES.register(
    "recall", Config, "the answer text's probability after the prompt (answer_prob, recall_loss)"
)
class Recall:
    """exp(-mean CE) of the answer tokens, and that CE in nats (lower = better recalled)."""

    metrics = ("answer_prob", "recall_loss")
    higher_known = (True, False)

    def __init__(self, config: Config) -> None:
        self.config = config

    def score(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        facts: Sequence[Fact],
        batch_size: int,
        padding_side: PaddingSide = "right",
    ) -> dict[str, list[float]]:
        """Both recall columns of each fact."""
        recall = answer_recall(model, tokenizer, facts, batch_size, padding_side)
        return {"answer_prob": recall.per_fact_prob, "recall_loss": recall.per_fact_loss}
