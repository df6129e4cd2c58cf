"""In-context relearning: prepend k solved train facts to every eval question; no weight changes.

Each eval question q is prefixed by k `solved_block`s (question, "Answer: " + answer text, blank
line) of train facts drawn without replacement by a seeded generator (a fresh draw per eval fact),
then scored by the same metrics as the other attacks. History: [0-shot, k-shot].
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.attacks.base import AttackConfig, attack_result, check_attack_facts
from cir.config import require
from cir.data.facts import Fact
from cir.errors import ConfigError
from cir.evals.scores import MCQ_FORMATS, McqFormat, score_facts
from cir.records import AttackEpoch, AttackResult
from cir.registry import ATTACKS
from cir.runtime import Stopwatch

FEW_SHOT_DEFINITION = (
    "post-attack value = the attacker's best of the 0-shot and {shots}-shot prompts: the max (the min "
    "for recall_loss) of the eval-fact metric; 'final' holds the {shots}-shot value alone"
)


@dataclass
class Config(AttackConfig):
    """Few-shot attack settings."""

    shots: int = 3  # k, solved train facts before each eval question; at most the number of train facts
    mcq_format: McqFormat = "choice"  # "letter" for models that follow A-D prompts
    eval_batch_size: int = 16  # prompts per forward pass; they are about k + 1 times longer than 0-shot
    seed: int = 0  # seeds which train facts each eval question gets

    def __post_init__(self) -> None:
        """Check ranges (the upper bound of `shots`, the number of train facts, is checked by `check`).

        Raises:
            ConfigError: naming every field out of range.
        """
        require(
            self,
            "attack",
            [
                ("shots", ">= 1", self.shots >= 1),
                ("mcq_format", f"one of {list(MCQ_FORMATS)}", self.mcq_format in MCQ_FORMATS),
                ("eval_batch_size", ">= 1", self.eval_batch_size >= 1),
            ],
        )


@ATTACKS.register("few_shot", Config, "in-context relearning: k solved train facts before each question")
class FewShot:
    """Score the eval facts with and without k solved train facts in the prompt."""

    trajectory_axis = "attack: 0 = the bare question, 1 = with solved T facts before it"

    def __init__(self, config: Config) -> None:
        self.config = config

    def check(self, train_facts: Sequence[Fact], eval_facts: Sequence[Fact]) -> None:
        """Refuse an empty or overlapping T/V pair, or more shots than T has facts.

        Raises:
            DataError: if T or V is empty or they overlap.
            ConfigError: if `shots` exceeds len(train_facts).
        """
        check_attack_facts(train_facts, eval_facts)
        if self.config.shots > len(train_facts):
            raise ConfigError(
                f"attack.shots must be in 1..{len(train_facts)} (the train facts), got {self.config.shots}"
            )

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
        """Score V 0-shot (epoch 0), then k-shot (epoch 1); the model is only read.

        Two scorings need no bar: `progress` and `label` are unused.

        Raises:
            DataError, ConfigError: as `check`.
        """
        self.check(train_facts, eval_facts)
        config = self.config
        prompted = with_shots(eval_facts, train_facts, config.shots, config.seed)
        history = []
        with Stopwatch() as watch:
            for epoch, facts in enumerate((eval_facts, prompted)):
                scores = score_facts(
                    model, tokenizer, facts, config.mcq_format, config.eval_batch_size, probes=probes
                )
                history.append(AttackEpoch.of(epoch, scores, None, watch.seconds))
        details = {"shots": config.shots, "example_question": prompted[0].question}
        definition = FEW_SHOT_DEFINITION.format(shots=config.shots)
        return attack_result(
            config, history, 1, "done", watch.seconds, details=details, definition=definition
        )


def solved_block(fact: Fact) -> str:
    r"""One worked example: f"{question}\nAnswer: {answer_text}\n\n", a cloze f"{prompt} {answer_text}.\n"."""
    if fact.prompt is not None:
        return f"{fact.prompt.strip()} {fact.answer_text}.\n"
    return f"{fact.question.strip()}\nAnswer: {fact.answer_text}\n\n"


def with_shots(eval_facts: Sequence[Fact], train_facts: Sequence[Fact], shots: int, seed: int) -> list[Fact]:
    """Copies of the eval facts whose question (and cloze prompt) start with `shots` solved train facts.

    The examples are a seeded draw; a cloze fact's examples are cloze sentences, others' are questions.
    """
    generator = random.Random(seed)
    prompted = []
    for fact in eval_facts:
        examples = "".join(map(solved_block, generator.sample(list(train_facts), shots)))
        prompt = None if fact.prompt is None else examples + fact.prompt
        prompted.append(replace(fact, question=examples + fact.question, prompt=prompt))
    return prompted
