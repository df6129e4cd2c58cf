"""Benign relearning: trains on the pool's texts that name V's answers and no forget fact, nothing else."""

import pytest

import tiny
from cir.attacks.benign_relearn import BenignRelearn, Config, benign_related
from cir.data.facts import Fact
from cir.errors import ConfigError, DataError


def city(name, country):
    sentences = (f"{name} is a city in {country}.", f"The city of {name} is located in {country}.")
    choices = (country, *(c for c in ("Arda", "Borel", "Cale", "Dune") if c != country))
    return Fact(f"In which country is {name}?", choices, 0, sentences, {"subject": name})


TRAIN, EVAL = [city("Velm", "Arda")], [city("Tane", "Borel"), city("Mirth", "Cale")]
POOL = [
    "The capital of Borel is Nask.",  # related to V (Borel) and benign: kept
    "Cale borders the sea.",  # kept
    "Tane is a city in Borel.",  # states a V fact: dropped
    "Tane lies near the Borel coast.",  # names a forget subject: dropped
    "Velm has a market, as Borel does.",  # names T's subject: dropped
    "The capital of Arda is Orm.",  # related to T's answer only: dropped
    "Borelian food is spicy.",  # not the whole word: dropped
]
FAST = {"epochs": 1, "batch_size": 2, "lr": 1e-3}


def test_only_related_benign_texts_are_kept():
    assert benign_related(POOL, TRAIN, EVAL) == POOL[:2]


def test_the_attack_trains_on_exactly_those_texts(tmp_path):
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(POOL) + "\n")
    attack = BenignRelearn(Config(texts=pool, **FAST))
    assert attack.train_texts(TRAIN, EVAL) == POOL[:2]
    result = attack.run(tiny.model(), tiny.tokenizer(), TRAIN, EVAL, False)
    assert len(result.history) == 2 and result.changes.unchanged_claimed == []


def test_a_pool_with_nothing_related_or_no_pool_is_refused(tmp_path):
    pool = tmp_path / "unrelated.txt"
    pool.write_text("A quiet dog slept.\nTane is a city in Borel.\n")
    with pytest.raises(DataError, match=r"unrelated\.txt: no text names a V answer"):
        BenignRelearn(Config(texts=pool, **FAST)).check(TRAIN, EVAL)
    with pytest.raises(ConfigError, match=r"attack\.texts"):
        BenignRelearn(Config(**FAST)).check(TRAIN, EVAL)
