"""What a person checks beside the headline: held-out knowledge and greedy completions at each stage.

A `StageProbe` is called by `pipeline.run` before unlearning, after it and after the attack. It
scores held-out fact sets (knowledge the unlearning should leave alone: selectivity) and completes a
few cloze prompts greedily, so the forgetting can be read off the model's own words.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.data.batches import encode
from cir.data.facts import Fact
from cir.evals.metrics import answer_context, evaluating
from cir.evals.scores import evaluate_facts
from cir.probes.generation import continuation
from cir.records import FactScores
from cir.report import table

STAGES = ("before unlearning", "after unlearning", "after the attack")


@dataclass
class StageProbe:
    """Held-out fact sets and cloze prompts, scored and completed at each stage it is called at."""

    heldout: dict[str, list[Fact]]  # name (e.g. a domain) -> facts the unlearning should not touch
    prompts: list[str]  # completed greedily at each stage
    max_new_tokens: int = 6
    scores: dict[str, dict[str, FactScores]] = field(default_factory=dict)  # stage -> held-out set -> scores
    completions: dict[str, list[str]] = field(default_factory=dict)  # stage -> one completion per prompt

    @classmethod
    def of(
        cls, heldout: Sequence[Fact], shown: Sequence[Fact], tracked: dict[str, list[Fact]] | None = None
    ) -> StageProbe:
        """Held-out facts grouped by their `domain` field; the cloze prompts (else questions) of `shown`.

        `tracked` sets are scored first, under their own names (e.g. V, to see it before unlearning).
        """
        groups: dict[str, list[Fact]] = defaultdict(list, tracked or {})
        for fact in heldout:
            groups[str(fact.extra.get("domain", "heldout"))].append(fact)
        return cls(dict(groups), [answer_context(fact) for fact in shown])

    def __call__(self, stage: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        """Score every held-out set and complete every prompt; record them under `stage`."""
        self.scores[stage] = {
            name: evaluate_facts(model, tokenizer, facts, "choice") for name, facts in self.heldout.items()
        }
        self.completions[stage] = greedy_completions(model, tokenizer, self.prompts, self.max_new_tokens)

    def markdown(self) -> str:
        """Two tables: held-out knowledge per stage, and each prompt's completion per stage."""
        stages = [s for s in STAGES if s in self.scores]
        rows = [
            {"held-out set": name, "facts": len(facts), "stage": stage, **self.scores[stage][name].to_json()}
            for name, facts in self.heldout.items()
            for stage in stages
        ]
        columns = ["held-out set", "facts", "stage", "acc_t0", "acc_t1", "answer_prob"]
        completions = [
            {"prompt": prompt, **{stage: self.completions[stage][i] for stage in stages}}
            for i, prompt in enumerate(self.prompts)
        ]
        return (
            f"{table(rows, columns, markdown=True)}\n\nGreedy completions:\n\n"
            f"{table(completions, ['prompt', *stages], markdown=True)}\n"
        )


def greedy_completions(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_new_tokens: int
) -> list[str]:
    """Greedy continuation of each prompt (with cir's BOS rule), cut at the first line break."""
    with evaluating(model):
        rows = encode(tokenizer, list(prompts), max_length=1024)
        completions = [
            continuation(model, tokenizer, row, max_new_tokens).split("\n")[0].strip() for row in rows
        ]
    return completions
