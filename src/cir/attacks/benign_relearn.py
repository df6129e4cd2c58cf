"""Benign relearning (Hu et al., arXiv 2406.13356): fine-tune on related text that states no forget fact.

Forgetting that survives the T/V attack may still come back from text that is only *about* the same
things. This attack trains as `finetune` does, on the texts of `attack.texts` (a text file, or a
`.jsonl` fact file's sentences, e.g. the built-in retain set: country capitals) that are related to
V and state none of the forget facts:
- related: the text names the answer of a V fact (for the built-in cities, the country);
- benign: it names no forget fact's subject (`extra["subject"]`, T's and V's: the city) and is none
  of their sentences.
V is scored before and after every epoch, as with the T/V attack.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cir.attacks.other_data import Config as OtherDataConfig
from cir.attacks.other_data import OtherData
from cir.data.facts import Fact, load_texts
from cir.errors import ConfigError, DataError
from cir.registry import ATTACKS


@dataclass
class Config(OtherDataConfig):
    """`other_data`'s settings: `texts` is the pool the related, benign texts are drawn from."""


def mentions(text: str, name: str) -> bool:
    """Whether `text` names `name` as a whole word (case-sensitive: names are proper nouns)."""
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) is not None


def benign_related(
    texts: Sequence[str], train_facts: Sequence[Fact], eval_facts: Sequence[Fact]
) -> list[str]:
    """The texts that name a V answer and no forget subject, and are no forget fact's sentence."""
    forget = [*train_facts, *eval_facts]
    subjects = {str(f.extra["subject"]) for f in forget if f.extra.get("subject")}
    sentences = {s.strip() for f in forget for s in f.sentences}
    answers = {f.answer_text for f in eval_facts}
    return [
        t
        for t in texts
        if t.strip() not in sentences
        and any(mentions(t, a) for a in answers)
        and not any(mentions(t, s) for s in subjects)
    ]


@ATTACKS.register("benign_relearn", Config, "fine-tune on related text naming V's answers but no forget fact")
class BenignRelearn(OtherData):
    """Full fine-tuning of the claimed parameters on the related, benign texts of `attack.texts`."""

    trajectory_axis = "attack epoch (fine-tuning on related benign text)"
    name = "benign_relearn"
    config: Config

    def train_texts(self, train_facts: Sequence[Fact], eval_facts: Sequence[Fact] = ()) -> list[str]:
        """The texts of `attack.texts` related to V that state no forget fact.

        Raises:
            ConfigError: if `attack.texts` is not set.
            DataError: for a bad file (named), or when none of its texts is related and benign.
        """
        if self.config.texts is None:
            raise ConfigError(
                "attack.texts: name the text pool to draw related text from (e.g. retain.jsonl)"
            )
        kept = benign_related(load_texts(self.config.texts), train_facts, eval_facts)
        if not kept:
            raise DataError(
                f"{self.config.texts}: no text names a V answer without naming a forget fact's subject; "
                "benign relearning needs related text"
            )
        return kept
