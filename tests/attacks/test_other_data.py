"""Fine-tuning on other data: trains as finetune does, on the named texts, and refuses texts stating V."""

import pytest
import torch

import tiny
from cir.attacks.finetune import Config as FinetuneConfig
from cir.attacks.finetune import Finetune
from cir.attacks.other_data import Config, OtherData
from cir.data.facts import fact_sentences
from cir.errors import ConfigError, DataError

TRAIN, EVAL = list(tiny.FACTS[:2]), list(tiny.FACTS[2:])
FAST = {"epochs": 2, "batch_size": 2, "lr": 1e-2}


def test_on_t_sentences_it_is_exactly_the_finetune_attack(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(fact_sentences(TRAIN)) + "\n")
    ours = OtherData(Config(texts=texts, **FAST)).run(tiny.model(), tiny.tokenizer(), TRAIN, EVAL, False)
    theirs = Finetune(FinetuneConfig(**FAST)).run(tiny.model(), tiny.tokenizer(), TRAIN, EVAL, False)
    assert [e.facts for e in ours.history] == [e.facts for e in theirs.history]
    assert ours.changes == theirs.changes and ours.changes.unchanged_claimed == []


def test_other_texts_train_every_claimed_weight_and_move_v(tmp_path):
    texts = tmp_path / "prose.txt"
    texts.write_text("\n".join(tiny.TEXTS[3:5]) + "\n")
    model = tiny.model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = OtherData(Config(texts=texts, **FAST)).run(model, tiny.tokenizer(), TRAIN, EVAL, False)
    assert result.changes.unchanged_claimed == [] and result.changes.changed_unclaimed == []
    assert all(
        not torch.equal(before[n], p) for n, p in model.named_parameters() if n in result.trained_parameters
    )
    assert result.history[-1].facts != result.history[0].facts


def test_refuses_no_texts_a_bad_file_and_texts_that_state_v(tmp_path):
    with pytest.raises(ConfigError, match=r"attack\.texts"):
        OtherData(Config(**FAST)).check(TRAIN, EVAL)
    with pytest.raises(DataError, match=r"missing\.txt"):
        OtherData(Config(texts=tmp_path / "missing.txt", **FAST)).check(TRAIN, EVAL)
    leaky = tmp_path / "leaky.txt"
    leaky.write_text(f"Some prose.\n{EVAL[0].sentences[0]}\n")
    with pytest.raises(DataError, match=r"leaky\.txt: states an eval"):
        OtherData(Config(texts=leaky, **FAST)).check(TRAIN, EVAL)
