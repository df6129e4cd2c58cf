"""`generation`: does the model say the answer when left to continue the prompt?

Multiple choice shows the answer to the model; open generation does not. The prompt (the cloze
prefix, else the question form) is continued for `max_new_tokens` tokens greedily, and once by
sampling at temperature 1 (seeded per fact, so a run repeats); a fact scores 1 when its answer text,
or one of its aliases (`extra["aliases"]`), appears in the continuation (case-insensitive).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.config import require
from cir.data.batches import encode, pad_id
from cir.data.facts import Fact
from cir.evals.metrics import PaddingSide, answer_context, evaluating, model_device
from cir.probes.base import ProbeConfig
from cir.registry import PROBES


@dataclass
class Config(ProbeConfig):
    """Generation probe settings."""

    max_new_tokens: int = 8  # tokens generated after the prompt
    seed: int = 0  # the sampled continuation of fact i is seeded with seed + i

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: naming the field out of range.
        """
        require(self, "probes.generation", [("max_new_tokens", ">= 1", self.max_new_tokens >= 1)])


def names(fact: Fact) -> list[str]:
    """The answer text and its aliases, lower-cased."""
    aliases = fact.extra.get("aliases", [])
    return [fact.answer_text.lower(), *(str(a).lower() for a in aliases if str(a).strip())]


def continuation(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    row: list[int],
    max_new_tokens: int,
    seed: int | None = None,
) -> str:
    """The text generated after the token row: greedy, or sampled at temperature 1 seeded by `seed`.

    The caller's random state is left as it was (the sample draws from a forked generator).
    """
    ids = torch.tensor([row], device=model_device(model))  # (1, prompt)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        out = model.generate(  # type: ignore[operator]  # transformers' stub
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=seed is not None,
            temperature=1.0 if seed is not None else None,
            top_k=0 if seed is not None else None,
            top_p=1.0 if seed is not None else None,
            pad_token_id=pad_id(tokenizer),
        )
    return str(tokenizer.decode(out[0, len(row) :], skip_special_tokens=True))


@PROBES.register("generation", Config, "the answer (or an alias) in a greedy / a sampled continuation")
class Generation:
    """1 if the continuation names the answer, else 0: greedy and one temperature-1 sample."""

    metrics = ("generation_greedy", "generation_sampled")
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
        """Greedy and sampled hits of each fact (`batch_size` is unused: one prompt at a time)."""
        greedy, sampled = [], []
        rows = encode(tokenizer, [answer_context(f) for f in facts], max_length=1024)
        with evaluating(model):
            for index, (fact, row) in enumerate(zip(facts, rows, strict=True)):
                greedy.append(
                    self._hit(fact, continuation(model, tokenizer, row, self.config.max_new_tokens))
                )
                sampled.append(
                    self._hit(
                        fact,
                        continuation(
                            model, tokenizer, row, self.config.max_new_tokens, self.config.seed + index
                        ),
                    )
                )
        return {"generation_greedy": greedy, "generation_sampled": sampled}

    @staticmethod
    def _hit(fact: Fact, text: str) -> float:
        lowered = text.lower()
        return float(any(name in lowered for name in names(fact)))
