"""Fine-tuning on other data: what a user's own fine-tune does to forgotten facts.

After unlearning, users fine-tune the model on data of their own that states none of the forgotten
facts, and that alone can bring them back (arXiv 2505.22310). This attack trains exactly as
`finetune` does (same optimizer, epochs, layers and checks that every claimed weight changed), but
on the texts of `attack.texts`, a file the user names: the method's own retain data, or any corpus
(one text a line, or a `.jsonl` fact file whose sentences are used). T is not trained on; V is scored
before and after every epoch. A text that states a V fact (one of its sentences, verbatim) is
refused: it would be the T/V attack by another name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cir.attacks.base import check_attack_facts
from cir.attacks.finetune import Config as FinetuneConfig
from cir.attacks.finetune import Finetune
from cir.data.facts import Fact, load_texts
from cir.errors import ConfigError, DataError
from cir.registry import ATTACKS


@dataclass
class Config(FinetuneConfig):
    """`finetune`'s settings, and the texts to train on instead of T's sentences."""

    texts: Path | None = None  # one text a line, or .jsonl facts (their sentences); required


@ATTACKS.register("other_data", Config, "fine-tune on text of the user's own (e.g. retain data), score V")
class OtherData(Finetune):
    """Full fine-tuning of the claimed parameters on texts that state none of the eval facts."""

    trajectory_axis = "attack epoch (fine-tuning on other data)"
    name = "other_data"
    config: Config

    def check(self, train_facts: Sequence[Fact], eval_facts: Sequence[Fact]) -> None:
        """Refuse a missing or bad texts file, texts stating a V sentence, or an empty/overlapping T/V.

        Raises:
            ConfigError: if `attack.texts` is not set.
            DataError: for a bad file (named), a V sentence in it, or T/V as `finetune` refuses them.
        """
        check_attack_facts(train_facts, eval_facts)
        texts = self.train_texts(train_facts, eval_facts)
        stated = {s.strip() for fact in eval_facts for s in fact.sentences} & {t.strip() for t in texts}
        if stated:
            raise DataError(f"{self.config.texts}: states an eval (V) fact verbatim: {sorted(stated)[0]!r}")

    def train_texts(self, train_facts: Sequence[Fact], eval_facts: Sequence[Fact] = ()) -> list[str]:
        """The texts of `attack.texts` (T is not used).

        Raises:
            ConfigError: if `attack.texts` is not set.
            DataError: for a missing, unreadable or empty file, naming it.
        """
        if self.config.texts is None:
            raise ConfigError("attack.texts: name the text file to fine-tune on (e.g. the retain data)")
        return load_texts(self.config.texts)
