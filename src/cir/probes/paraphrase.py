"""`paraphrase`: each fact asked in wordings it was not unlearned with; the mean and the most revealing.

Forgetting that holds for the scored prompt may not hold for another wording of the same question,
so every fact is scored (choice likelihood, acc_t1) after several contexts:
- for every fact, three question formats ("Question: ... Answer:", "Q: ... A:", "... The answer is");
- for a cloze fact, also the plain question form the other facts are scored by;
- for a fact of a built-in domain with a `subject`, cloze wordings of that domain (`DOMAIN_TEMPLATES`).
A context that is a prefix of one of the fact's own sentences is left out: it was trained on.
`paraphrase_acc_t1` is the mean over a fact's contexts, `paraphrase_max_acc_t1` the context that
shows the most of it (the worst case for the unlearner).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.data.facts import Fact
from cir.errors import DataError
from cir.evals.mcq import choice_likelihood_mcq
from cir.evals.metrics import PaddingSide, question_prompt
from cir.probes.base import ProbeConfig
from cir.registry import PROBES

QUESTION_TEMPLATES = ("Question: {question}\nAnswer:", "Q: {question}\nA:", "{question} The answer is")
DOMAIN_TEMPLATES = {  # cloze wordings no built-in sentence starts with
    "city_country": (
        "{subject}, a city in the country of",
        "The country that contains the city of {subject} is",
    ),
    "capital": ("The seat of government of {subject} is the city of",),
    "element_symbol": ("On the periodic table, {subject} is written as",),
    "country_continent": ("The continent on which {subject} lies is",),
}


@dataclass
class Config(ProbeConfig):
    """Paraphrase probe settings."""

    max_contexts: int = 6  # at most this many contexts per fact (in the order listed above)


def contexts(fact: Fact, most: int) -> list[str]:
    """The fact's held-out contexts: question formats, its question form if cloze, its domain's wordings."""
    found = [t.format(question=fact.question.strip()) for t in QUESTION_TEMPLATES]
    if fact.prompt is not None:
        found.append(question_prompt(fact))
    subject = fact.extra.get("subject")
    if subject is not None:
        found += [t.format(subject=subject) for t in DOMAIN_TEMPLATES.get(str(fact.extra.get("domain")), ())]
    trained = [s.strip() for s in fact.sentences]
    return [c for c in found if not any(s.startswith(c.strip()) for s in trained)][:most]


@PROBES.register("paraphrase", Config, "acc_t1 under held-out wordings: the mean and the most revealing")
class Paraphrase:
    """Choice-likelihood acc_t1 of each fact after each of its held-out contexts."""

    metrics = ("paraphrase_acc_t1", "paraphrase_max_acc_t1")
    higher_known = (True, True)

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
        """Mean and max over each fact's contexts of its acc_t1 there.

        Raises:
            DataError: if a fact has no held-out context (every one is a prefix of its sentences).
        """
        per_fact = [contexts(f, self.config.max_contexts) for f in facts]
        for index, found in enumerate(per_fact):
            if not found:
                raise DataError(
                    f"paraphrase probe: fact {index} ({facts[index].question[:60]!r}) has no wording "
                    "that is not a prefix of its own sentences"
                )
        # one scoring pass over every (fact, context) pair, then regrouped by fact
        asked = [replace(f, prompt=c) for f, found in zip(facts, per_fact, strict=True) for c in found]
        values = iter(choice_likelihood_mcq(model, tokenizer, asked, batch_size, padding_side).per_fact_t1)
        grouped = [[next(values) for _ in found] for found in per_fact]
        return {
            "paraphrase_acc_t1": [sum(g) / len(g) for g in grouped],
            "paraphrase_max_acc_t1": [max(g) for g in grouped],
        }
