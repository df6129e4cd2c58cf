"""The quantization attack: ship the unlearned model as a GGUF file and load it back; no training.

A user who runs the model locally (llama.cpp, ollama) quantizes it first. The round trip erases any
edit smaller than half a quantization step and restores a model that came from a GGUF file to the
exact weights it had, so the most "non-disruptive" unlearning is the most exposed (method.md §7).
Each configured block format (`cir.quant.BLOCK_FORMATS`) is applied in turn to every linear weight
of the unlearned model, V is scored, and the weights are put back; the post-attack value is the worst
case for the defender, the best format for the attacker. History: [as unlearned, one entry per
format]. `like_input` round-trips each weight through the type the GGUF file the model came from
(`attack.template`) stored it in: what a user re-running llama.cpp's quantizer with the input's
types gets. Its control, like every attack's, is the same round trip on the never-unlearned model
(the bench's `control`): quantization alone moves a model's scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import gguf
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.attacks.base import AttackConfig, attack_result, check_attack_facts
from cir.budget import EpochSnapshots
from cir.config import require
from cir.data.facts import Fact
from cir.evals.scores import MCQ_FORMATS, McqFormat, score_facts
from cir.quant import BLOCK_FORMATS, TORCH_INT8, linear_modules, round_trip, round_trip_types, stored_types
from cir.records import AttackEpoch, AttackResult, FactTable
from cir.registry import ATTACKS
from cir.runtime import Stopwatch

QUANTIZE_DEFINITION = (
    "post-attack value = the attacker's best over the model as unlearned and its round trips through "
    "{formats}: the max (the min for recall_loss) of the eval-fact metric"
)


@dataclass
class Config(AttackConfig):
    """Quantization attack settings."""

    # GGUF block types, in order; "like_input": each weight in the type `template` stored it in, as
    # re-running llama.cpp's quantizer on the file the model came from gives; "torch_int8": torch's
    # own dynamic int8 weights (opt in: one scale per tensor, far coarser than a block format)
    formats: list[str] = field(default_factory=lambda: list(BLOCK_FORMATS))
    template: str | None = None  # the GGUF file the model came from (or a built-in's name), for like_input
    mcq_format: McqFormat = "choice"  # "letter" for models that follow A-D prompts
    eval_batch_size: int = 16  # prompts per forward pass

    def __post_init__(self) -> None:
        """Check the formats.

        Raises:
            ConfigError: naming every field out of range.
        """
        require(
            self,
            "attack",
            [
                (
                    "formats",
                    f"a non-empty list of {[*BLOCK_FORMATS, 'like_input', TORCH_INT8]}",
                    bool(self.formats) and set(self.formats) <= {*BLOCK_FORMATS, "like_input", TORCH_INT8},
                ),
                (
                    "template",
                    "the GGUF file the model came from, when formats has like_input",
                    "like_input" not in self.formats or self.template is not None,
                ),
                ("mcq_format", f"one of {list(MCQ_FORMATS)}", self.mcq_format in MCQ_FORMATS),
                ("eval_batch_size", ">= 1", self.eval_batch_size >= 1),
            ],
        )


@ATTACKS.register("quantize", Config, "GGUF round trip of every linear weight (Q8_0 ... Q4_0), no training")
class Quantize:
    """Score V on the model as unlearned, then after each format's round trip."""

    trajectory_axis = "attack: 0 = as unlearned, then one GGUF block format each"

    def __init__(self, config: Config) -> None:
        self.config = config

    def check(self, train_facts: Sequence[Fact], eval_facts: Sequence[Fact]) -> None:
        """Refuse an empty or overlapping T/V pair (T is not used, but the bench passes one).

        Raises:
            DataError: if T or V is empty or they overlap.
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
        """Score V as unlearned (epoch 0), then after each format's round trip (epochs 1..F).

        The weights are put back after each format, so the model leaves as it came. A few scorings
        need no bar: `progress` and `label` are unused.

        Raises:
            DataError: as `check`.
        """
        self.check(train_facts, eval_facts)
        config = self.config
        # the budget's snapshot store puts the weights back after each format
        weights = [cast(nn.Parameter, m.weight) for m in linear_modules(model).values()]
        originals = EpochSnapshots(weights)
        history, skipped = [], {}
        types = self._input_types(model) if "like_input" in config.formats else {}
        with Stopwatch() as watch:
            history.append(
                AttackEpoch.of(0, self._score(model, tokenizer, eval_facts, probes), None, watch.seconds)
            )
            try:
                for epoch, name in enumerate(config.formats, start=1):
                    done = round_trip_types(model, types) if name == "like_input" else round_trip(model, name)
                    skipped[name] = done.skipped
                    scores = self._score(model, tokenizer, eval_facts, probes)
                    history.append(AttackEpoch.of(epoch, scores, None, watch.seconds))
                    originals.restore(0)
            finally:
                originals.restore(0)
        details = {"formats": list(config.formats), "skipped": skipped}
        definition = QUANTIZE_DEFINITION.format(formats=", ".join(config.formats))
        return attack_result(
            config, history, 1, "done", watch.seconds, details=details, definition=definition
        )

    def reach(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        train_facts: list[Fact],
        eval_facts: list[Fact],
        epoch: int,
    ) -> None:
        """Put `model` through the round trip `run` scored at `epoch` (format `epoch`, 0 = none), in place."""
        if epoch > 0:
            name = self.config.formats[epoch - 1]
            if name == "like_input":
                round_trip_types(model, self._input_types(model))
            else:
                round_trip(model, name)

    def _input_types(self, model: PreTrainedModel) -> dict[str, str]:
        """Each linear module's type in the template file.

        Raises:
            ModelError: for a missing template, or a model whose weights are not the file's.
        """
        from cir.export import template_path  # the built-ins' GGUF files live with the export

        assert self.config.template is not None  # the config's check
        reader = gguf.GGUFReader(template_path(self.config.template))
        return stored_types(model, reader)

    def _score(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        facts: list[Fact],
        probes: Sequence[str],
    ) -> FactTable:
        config = self.config
        return score_facts(model, tokenizer, facts, config.mcq_format, config.eval_batch_size, probes=probes)
