"""The two MCQ formats as probes, each writing acc_t0 and acc_t1 (`cir.evals.mcq`).

`choice` scores each choice's text after the cloze prompt or question; `letter` the letter after
lm-eval's WMDP A-D prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.data.facts import Fact
from cir.evals.mcq import MCQ_SCORERS
from cir.evals.metrics import PaddingSide
from cir.probes.base import ProbeConfig
from cir.registry import PROBES


@dataclass
class Config(ProbeConfig):
    """No settings: the format is the probe."""


class McqProbe:
    """acc_t0 (argmax right, 0 or 1) and acc_t1 (renormalised probability of the right choice) per fact."""

    metrics = ("acc_t0", "acc_t1")
    higher_known = (True, True)
    mcq_format = "choice"

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
        """Both accuracies of each fact in this probe's format."""
        scores = MCQ_SCORERS[self.mcq_format](model, tokenizer, facts, batch_size, padding_side)
        return {"acc_t0": scores.per_fact_t0, "acc_t1": scores.per_fact_t1}


@PROBES.register(
    "choice", Config, "4-choice MCQ by each choice's likelihood after the prompt (acc_t0, acc_t1)"
)
class Choice(McqProbe):
    """Choice-text likelihood (for models too small to follow a letter prompt)."""

    mcq_format = "choice"


@PROBES.register("letter", Config, "4-choice MCQ by the letter after lm-eval's WMDP prompt (acc_t0, acc_t1)")
class Letter(McqProbe):
    """The paper's letter format."""

    mcq_format = "letter"
