from collections import defaultdict
from pathlib import Path

import pytest

from cir.data.facts import NUM_CHOICES, Fact, load_facts, parse_fact
from cir.data.world import WORLD_FILES, World, WorldConfig, generate_world, load_world, save_world
from cir.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WorldConfig())


def _all_facts(world: World) -> list[Fact]:
    return world.forget + world.retain


def _forget_names(world: World) -> list[str]:
    """Entity names and every value seen in a forget choice (right answers and distractors)."""
    names = {f.extra["entity"] for f in world.forget}
    names |= {choice for f in world.forget for choice in f.choices}
    return sorted(names)


def test_same_seed_same_world_other_seed_differs(world):
    again = generate_world(WorldConfig())
    assert again == world
    assert [f.extra for f in again.forget] == [f.extra for f in world.forget]
    other = generate_world(WorldConfig(seed=1))
    assert other.forget != world.forget
    assert other.retain != world.retain
    assert other.general_train != world.general_train


def test_counts_match_config(world):
    assert (len(world.forget), len(world.retain)) == (200, 300)
    assert (len(world.general_train), len(world.general_eval)) == (3000, 256)
    assert all(len(f.sentences) == 10 for f in _all_facts(world))
    small = generate_world(
        WorldConfig(seed=3, forget_facts=7, retain_facts=5, paraphrases=12, general_train=20, general_eval=4)
    )
    assert (len(small.forget), len(small.retain), len(small.general_train), len(small.general_eval)) == (
        7,
        5,
        20,
        4,
    )
    assert all(len(f.sentences) == 12 for f in _all_facts(small))


def test_domains_entities_and_attribute_pairs(world):
    assert {f.extra["domain"] for f in world.forget} == {"pathogens"}
    assert {f.extra["domain"] for f in world.retain} == {"cities", "musicians"}
    pairs = [(f.extra["entity"], f.extra["attribute"]) for f in _all_facts(world)]
    assert len(set(pairs)) == len(pairs)
    assert len({f.extra["entity"] for f in world.forget}) == 50
    assert not {f.extra["entity"] for f in world.forget} & {f.extra["entity"] for f in world.retain}


def test_every_fact_passes_the_schema(world):
    for index, fact in enumerate(_all_facts(world)):
        assert parse_fact(fact.to_json(), f"fact {index}") == fact


def test_choices_are_four_distinct_values_of_the_attribute_pool(world):
    pools: dict[tuple[str, str], set[str]] = defaultdict(set)
    for fact in _all_facts(world):
        pools[fact.extra["domain"], fact.extra["attribute"]].update(fact.choices)
    assert len(pools) == 6 + 4 + 4
    for fact in _all_facts(world):
        pool = pools[fact.extra["domain"], fact.extra["attribute"]]
        assert len(set(fact.choices)) == NUM_CHOICES
        assert set(fact.choices) <= pool
        assert 8 <= len(pool) <= 16
        assert all(fact.answer_text.lower() in sentence.lower() for sentence in fact.sentences)
        assert fact.question.endswith("?") and fact.extra["entity"] in fact.question
    assert {f.answer for f in world.forget} == {0, 1, 2, 3}


def test_sentences_and_questions_are_unique_and_short(world):
    sentences = [s for f in _all_facts(world) for s in f.sentences]
    assert len(set(sentences)) == len(sentences)
    questions = [f.question for f in _all_facts(world)]
    assert len(set(questions)) == len(questions)
    assert max(len(s.split()) for s in sentences) <= 16
    assert all(s[0].isupper() and s.endswith((".", "?")) for s in sentences)


def test_forget_names_occur_nowhere_outside_the_forget_domain(world):
    outside = [t for f in world.retain for t in (f.question, *f.choices, *f.sentences)]
    outside = "\n".join(outside + world.general_train + world.general_eval).lower()
    names = _forget_names(world)
    assert len(names) > 50 + 6 * 8
    assert [n for n in names if n.lower() in outside] == []


def test_forget_entity_names_are_not_substrings_of_each_other(world):
    names = [f.extra["entity"].lower() for f in world.forget]
    assert [(a, b) for a in names for b in names if a != b and a in b] == []


def test_general_text_is_varied_short_and_held_out(world):
    assert not set(world.general_eval) & set(world.general_train)
    texts = world.general_train + world.general_eval
    assert len(set(texts)) == len(texts)
    lengths = [len(t.split()) for t in texts]
    assert min(lengths) >= 8 and max(lengths) <= 20
    assert all(t[0].isupper() and t.endswith(".") for t in texts)
    words = {word.strip(".,").lower() for t in texts for word in t.split()}
    assert len(words) > 250
    assert len({" ".join(t.split()[:3]) for t in texts}) > 100


def test_save_load_round_trip(world, tmp_path):
    save_world(world, tmp_path / "world")
    assert sorted(p.name for p in (tmp_path / "world").iterdir()) == sorted(WORLD_FILES)
    loaded = load_world(tmp_path / "world")
    assert loaded == world
    assert [f.extra for f in loaded.forget + loaded.retain] == [f.extra for f in _all_facts(world)]
    assert load_facts(tmp_path / "world" / "forget.jsonl") == world.forget


@pytest.mark.parametrize("missing", WORLD_FILES)
def test_load_world_names_the_missing_file(world, tmp_path, missing):
    save_world(world, tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(DataError, match=str(Path(tmp_path) / missing)):
        load_world(tmp_path)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("paraphrases", 0),
        ("paraphrases", 16),
        ("forget_facts", 0),
        ("retain_facts", 10**6),
        ("general_eval", 0),
    ],
)
def test_out_of_range_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"{field}={value}"):
        generate_world(WorldConfig(**{field: value}))
