"""The Probe protocol: how a model is asked about a fact set, scored one value per fact.

A probe is one file that registers itself in `cir.registry.PROBES` (like methods and attacks). It
names the per-fact columns it writes (`metrics`) and says of each whether higher means "known"
(`higher_known`), so the attacker's best and the drop are taken the right way round. The bench and
the attacks score V through `cir.evals.scores.score_facts`, which runs the MCQ probe of the loop's
format and `recall` (the four columns of `FactScores`) and then any extra probes named in the
config (`eval.probes`, one list for `cir bench`, `cir run` and `cir attack`), each adding its columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.data.facts import Fact
from cir.evals.metrics import PaddingSide


@dataclass
class ProbeConfig:
    """Base of every probe's config dataclass."""


class Probe(Protocol):
    """One way of asking a model about facts."""

    metrics: ClassVar[tuple[str, ...]]  # the per-fact columns `score` returns, in order
    higher_known: ClassVar[tuple[bool, ...]]  # per metric: True if a higher value means the fact is known

    def score(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        facts: Sequence[Fact],
        batch_size: int,
        padding_side: PaddingSide = "right",
    ) -> dict[str, list[float]]:
        """Metric -> one value per fact, in fact order.

        Raises:
            DataError: if `facts` is empty or a fact lacks what the probe needs.
        """
