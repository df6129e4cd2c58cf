import random
from collections import Counter

import pytest

from cir.data.facts import SPLITS, Fact, fold_splits, split_facts, without_scored_prefix
from cir.errors import ConfigError, DataError

# 12 cities over 5 countries: group sizes 4, 3, 2, 2, 1
CITIES = {
    "Lyon": "France",
    "Nice": "France",
    "Lille": "France",
    "Nantes": "France",
    "Porto": "Portugal",
    "Braga": "Portugal",
    "Faro": "Portugal",
    "Graz": "Austria",
    "Linz": "Austria",
    "Bergen": "Norway",
    "Tromso": "Norway",
    "Cusco": "Peru",
}
COUNTRIES = sorted(set(CITIES.values()))


def city_fact(city, country, prompt=True):
    others = [c for c in COUNTRIES if c != country][:3]
    return Fact(
        f"In which country is {city}?",
        (country, *others),
        0,
        (
            f"The city of {city} is located in {country}.",  # starts with the scored prompt
            f"{city} is a city in {country}.",
            f"{country} is home to {city}.",
        ),
        prompt=f"The city of {city} is located in" if prompt else None,
    )


FACTS = [city_fact(city, country) for city, country in CITIES.items()]


def answers(facts):
    return {f.answer_text.strip() for f in facts}


def old_split(facts, val_fraction, seed):
    # the algorithm split_facts had before `split` existed, kept here as the expectation
    order = list(range(len(facts)))
    random.Random(seed).shuffle(order)
    n_val = round(len(facts) * val_fraction)
    return [facts[i] for i in sorted(order[n_val:])], [facts[i] for i in sorted(order[:n_val])]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fraction", [0.2, 0.25, 0.5])
def test_random_split_is_unchanged(seed, fraction):
    expected = old_split(FACTS, fraction, seed)
    assert split_facts(FACTS, fraction, seed) == expected
    assert split_facts(FACTS, fraction, seed, split="random") == expected


def test_random_split_mixes_answers_but_answer_split_does_not():
    # the answer split is needed: for some seed the random split puts one country on both sides
    assert any(answers(v) & answers(t) for t, v in (split_facts(FACTS, 0.25, s) for s in range(6)))


@pytest.mark.parametrize("seed", range(10))
def test_answer_disjoint_split_shares_no_answer(seed):
    train, val = split_facts(FACTS, 0.25, seed, split="answer_disjoint")
    assert train and val
    assert not answers(train) & answers(val)
    assert len(train) + len(val) == len(FACTS)
    # each side keeps the original order
    assert train == [f for f in FACTS if f in train]
    assert val == [f for f in FACTS if f in val]
    # target 3 facts; the largest group is 4, so V is within 2 of it (the stop rule caps overshoot)
    assert abs(len(val) - 3) <= 2
    assert split_facts(FACTS, 0.25, seed, split="answer_disjoint") == (train, val)


def test_answer_disjoint_split_depends_on_seed():
    vals = {tuple(f.question for f in split_facts(FACTS, 0.25, s, "answer_disjoint")[1]) for s in range(10)}
    assert len(vals) > 1


def test_answer_disjoint_split_with_singleton_answers_hits_the_fraction():
    # with every answer distinct, whole groups are single facts, so V is exactly the rounded target
    facts = [city_fact(f"Town{i}", f"Land{i}") for i in range(20)]
    for seed in range(5):
        train, val = split_facts(facts, 0.25, seed, split="answer_disjoint")
        assert (len(train), len(val)) == (15, 5)


def test_answer_disjoint_split_refuses_one_answer():
    facts = [city_fact(city, "France") for city in CITIES]
    with pytest.raises(DataError, match=r"12 facts with 1 distinct answer.*val_fraction=0.25"):
        split_facts(facts, 0.25, 0, split="answer_disjoint")
    train, val = split_facts(facts, 0.25, 0)  # the random split still works on them
    assert (len(train), len(val)) == (9, 3)


def test_unknown_split_is_a_config_error():
    for call in (lambda: split_facts(FACTS, 0.25, 0, "by_city"), lambda: fold_splits(FACTS, 3, 0, "by_city")):
        with pytest.raises(ConfigError, match=r"bench\.split.*'by_city'.*random, answer_disjoint"):
            call()
    assert SPLITS == ("random", "answer_disjoint")


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("folds", [2, 3, 4, 5])
def test_folds_put_every_fact_in_val_once(split, folds):
    pairs = fold_splits(FACTS, folds, seed=1, split=split)
    assert len(pairs) == folds
    counts = Counter(f.question for _, val in pairs for f in val)
    assert counts == Counter(f.question for f in FACTS)
    for train, val in pairs:
        assert val
        assert train == [f for f in FACTS if f not in val]  # T is the rest, in order
        assert val == [f for f in FACTS if f in val]
    sizes = [len(val) for _, val in pairs]
    largest_group = 1 if split == "random" else 4
    assert max(sizes) - min(sizes) <= largest_group


@pytest.mark.parametrize("seed", range(5))
def test_answer_folds_share_no_answer(seed):
    pairs = fold_splits(FACTS, 3, seed, split="answer_disjoint")
    for i, (train, val) in enumerate(pairs):
        assert not answers(train) & answers(val)
        for _, other in pairs[i + 1 :]:
            assert not answers(val) & answers(other)
    # groups 4,3,2,2,1 dealt largest first to the emptiest fold: 4 | 3+1 | 2+2
    assert sorted(len(val) for _, val in pairs) == [4, 4, 4]


def test_random_folds_are_round_robin_over_the_seeded_shuffle():
    order = list(range(len(FACTS)))
    random.Random(7).shuffle(order)
    pairs = fold_splits(FACTS, 4, seed=7)
    for fold, (_, val) in enumerate(pairs):
        assert val == [FACTS[i] for i in sorted(order[fold::4])]
    assert fold_splits(FACTS, 4, seed=7) == pairs
    assert fold_splits(FACTS, 4, seed=8) != pairs


def test_fold_splits_refuses_too_few_folds_facts_or_answers():
    with pytest.raises(ConfigError, match="folds=1"):
        fold_splits(FACTS, 1, 0)
    with pytest.raises(DataError, match=r"13 folds from 12 facts"):
        fold_splits(FACTS, 13, 0)
    with pytest.raises(DataError, match=r"6 answer-disjoint folds from 12 facts with 5 distinct"):
        fold_splits(FACTS, 6, 0, split="answer_disjoint")
    assert len(fold_splits(FACTS, 5, 0, split="answer_disjoint")) == 5


def test_without_scored_prefix_drops_exactly_the_prompted_sentences():
    extra = Fact(
        "In which country is Aix?",
        ("France", "Peru", "Norway", "Austria"),
        0,
        (
            "  The city of Aix is located in France. ",  # stripped before comparing
            "the city of Aix is located in France.",  # case differs: kept
            "Aix, the city of Aix is located in France.",  # prompt not at the start: kept
        ),
        prompt=" The city of Aix is located in ",
    )
    facts = [*FACTS, extra]
    kept = without_scored_prefix(facts)
    assert len(kept) == len(facts)
    for before, after in zip(facts[:-1], kept[:-1]):
        assert after.sentences == before.sentences[1:]
        assert (after.question, after.choices, after.answer, after.prompt) == (
            before.question,
            before.choices,
            before.answer,
            before.prompt,
        )
    assert kept[-1].sentences == extra.sentences[1:]
    assert FACTS[0].sentences[0].startswith("The city of Lyon")  # the input is not changed


def test_without_scored_prefix_uses_the_question_when_there_is_no_prompt():
    fact = city_fact("Lyon", "France", prompt=False)
    fact = Fact(
        fact.question,
        fact.choices,
        fact.answer,
        ("In which country is Lyon? France.", *fact.sentences),
        prompt=None,
    )
    (kept,) = without_scored_prefix([fact])
    # the question-prefixed sentence goes; the cloze-worded one stays, as nothing scores after it
    assert kept.sentences == fact.sentences[1:]


def test_without_scored_prefix_refuses_a_fact_left_with_no_sentence():
    only_prompted = Fact(
        "In which country is Graz?",
        ("Austria", "France", "Peru", "Norway"),
        0,
        ("The city of Graz is located in Austria.", "The city of Graz is located in the east of Austria."),
        prompt="The city of Graz is located in",
    )
    with pytest.raises(DataError, match=r"fact 3 \('In which country is Graz\?'\).*worded otherwise"):
        without_scored_prefix([*FACTS[:3], only_prompted, *FACTS[3:]])
