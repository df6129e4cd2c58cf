"""Every fact metric at once: MCQ accuracy (one format) and answer recall, as one `FactScores`.

This module sits above `metrics` (scoring primitives, answer recall) and `mcq` (the two MCQ
formats), so neither of those imports the other's caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, get_args

from transformers import PreTrainedModel, PreTrainedTokenizerBase

import cir.probes  # noqa: F401  (registers the probes)
from cir.data.batches import make_batches
from cir.data.facts import Fact
from cir.errors import ConfigError
from cir.evals.metrics import PaddingSide, general_loss, model_device
from cir.records import FactScores, FactTable
from cir.registry import PROBES

McqFormat = Literal[
    "choice", "letter"
]  # "letter" for models that follow A-D prompts, "choice" for small ones
MCQ_FORMATS: tuple[McqFormat, ...] = get_args(McqFormat)


def check_mcq_format(mcq_format: str, source: str = "mcq_format") -> None:
    """Refuse an MCQ format other than "choice" or "letter".

    Raises:
        ConfigError: naming `source` and the bad value.
    """
    if mcq_format not in MCQ_FORMATS:
        raise ConfigError(f"{source} must be one of {list(MCQ_FORMATS)}, got {mcq_format!r}")


def evaluate_facts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    facts: Sequence[Fact],
    mcq_format: McqFormat = "choice",
    batch_size: int = 16,
    padding_side: PaddingSide = "right",
) -> FactScores:
    """Accuracy at t=0 and t=1 in one MCQ format, answer probability and recall loss of `facts`.

    The means of `score_facts`.

    Raises:
        ConfigError: on an unknown `mcq_format`, a bad `padding_side` or `batch_size`.
        DataError: if `facts` is empty or a fact does not have 4 choices.
        ModelError: if a letter " A".." D" is not a single token (letter format).
    """
    return score_facts(model, tokenizer, facts, mcq_format, batch_size, padding_side).means()


def score_facts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    facts: Sequence[Fact],
    mcq_format: McqFormat = "choice",
    batch_size: int = 16,
    padding_side: PaddingSide = "right",
    probes: Sequence[str] = (),
) -> FactTable:
    """Every fact metric of each fact: acc_t0 (0 or 1), acc_t1, answer_prob and recall_loss, in fact order.

    Then the columns of each extra probe of `probes` (`cir.registry.PROBES`, default settings), e.g.
    "paraphrase" adds paraphrase_acc_t1 and paraphrase_max_acc_t1.

    Raises:
        ConfigError: as `evaluate_facts`, or for an unknown probe.
        DataError, ModelError: as `evaluate_facts`, or from a probe.
    """
    check_mcq_format(mcq_format)
    values: dict[str, tuple[float, ...]] = {}
    for name in (mcq_format, "recall", *probes):  # the MCQ format's probe and recall: FactScores' four
        entry = PROBES.get(name)
        probe = PROBES.build(name, entry.config_class())
        scored = probe.score(model, tokenizer, facts, batch_size, padding_side)
        values |= {metric: tuple(map(float, column)) for metric, column in scored.items()}
    return FactTable(values)


def score_files(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    facts: Mapping[str, Sequence[Fact]],
    formats: Sequence[McqFormat] = ("choice",),
    general: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, float]]:
    """`cir eval`'s numbers: every fact metric of each fact file in each format, and general-text losses.

    Args:
        model: the model to score.
        tokenizer: its tokenizer.
        facts: file name -> its facts.
        formats: MCQ formats; with more than one, each file's key gets " (format)" appended.
        general: file name -> held-out texts, scored by `general_loss` (64 texts a batch).

    Returns:
        Key (file name) -> `FactScores.to_json()`, or `{"general_loss": ...}` for a general text.

    Raises:
        ConfigError, DataError, ModelError: as `evaluate_facts`.
    """
    results: dict[str, dict[str, float]] = {}
    for name, file_facts in facts.items():
        for mcq_format in formats:
            scores = evaluate_facts(model, tokenizer, file_facts, mcq_format).to_json()
            results[name if len(formats) == 1 else f"{name} ({mcq_format})"] = scores
    for name, texts in (general or {}).items():
        batches = [b.to(model_device(model)) for b in make_batches(tokenizer, list(texts), 64)]
        results[name] = {"general_loss": general_loss(model, batches)}
    return results
