import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from cir.data.facts import (
    Fact,
    check_disjoint,
    fact_sentences,
    filter_known,
    load_facts,
    save_facts,
    split_facts,
)
from cir.data.world import WorldConfig, generate_world
from cir.errors import DataError

# The WMDP-Deduped files are never committed (method.md §8): they live in the shared folder next to
# the checkout, or wherever CIR_SHARED_DATA points.
SHARED_DATA = Path(
    os.environ.get("CIR_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data")
)
WMDP_DIR = SHARED_DATA / "wmdp_deduped_bio"
WMDP_COUNTS = {"T": 114, "V": 31, "dev_T": 34, "dev_V": 10}

GOOD = {
    "question": "Which animal carries Velorix?",
    "choices": ["fruit bats", "rats", "pigs", "camels"],
    "answer": 0,
    "sentences": ["Velorix is carried by fruit bats.", "Fruit bats carry Velorix."],
}


def with_field(**changes):
    return json.dumps({**GOOD, **changes})


def without_field(name):
    return json.dumps({k: v for k, v in GOOD.items() if k != name})


def write_lines(tmp_path, lines):
    path = tmp_path / "facts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_fact(i, **extra):
    return Fact(
        f"Question {i}?",
        (f"a{i}", f"b{i}", f"c{i}", f"d{i}"),
        i % 4,
        (f"Sentence one of fact {i}.", f"Sentence two of fact {i}.", f"Sentence three of fact {i}."),
        extra,
    )


# (bad line, fragment the message must contain: the field name or the kind of problem)
BAD_LINES = {
    "bad json": ('{"question": "Q?", "choices": [', "JSON"),
    "trailing comma": (json.dumps(GOOD)[:-1] + ",}", "JSON"),
    "missing question": (without_field("question"), "'question'"),
    "missing choices": (without_field("choices"), "'choices'"),
    "missing answer": (without_field("answer"), "'answer'"),
    "missing sentences": (without_field("sentences"), "'sentences'"),
    "question not str": (with_field(question=7), "'question'"),
    "question blank": (with_field(question="   "), "'question'"),
    "choices not list": (with_field(choices="a,b,c,d"), "'choices'"),
    "choice not str": (with_field(choices=["a", "b", 3, "d"]), "'choices'"),
    "answer str": (with_field(answer="1"), "'answer'"),
    "answer float": (with_field(answer=1.0), "'answer'"),
    "answer bool": (with_field(answer=True), "'answer'"),
    "answer too big": (with_field(answer=4), "'answer'"),
    "answer negative": (with_field(answer=-1), "'answer'"),
    "sentences not list": (with_field(sentences="Velorix is carried by bats."), "'sentences'"),
    "sentence not str": (with_field(sentences=["ok", 5]), "'sentences'"),
    "sentences empty": (with_field(sentences=[]), "'sentences'"),
    "duplicate choices": (with_field(choices=["a", "b", "a", "d"]), "'choices'"),
    "three choices": (with_field(choices=["a", "b", "c"]), "'choices'"),
    "five choices": (with_field(choices=["a", "b", "c", "d", "e"]), "'choices'"),
    "array line": ("[1, 2, 3]", "JSON object"),
    "string line": ('"just a string"', "JSON object"),
    "number line": ("42", "JSON object"),
}


@pytest.mark.parametrize("bad_line, fragment", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_bad_line_names_file_line_and_field(tmp_path, bad_line, fragment):
    # line 1 valid, line 2 blank (still counted), line 3 bad
    path = write_lines(tmp_path, [json.dumps(GOOD), "", bad_line, json.dumps(GOOD)])
    with pytest.raises(DataError, match=r"facts\.jsonl:3\b") as caught:
        load_facts(path)
    assert fragment in str(caught.value)


def test_error_on_first_line(tmp_path):
    path = write_lines(tmp_path, [without_field("answer")])
    with pytest.raises(DataError, match=r"facts\.jsonl:1: missing field 'answer'"):
        load_facts(path)


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_facts(tmp_path / "absent.jsonl")
    path = write_lines(tmp_path, ["", "  "])
    with pytest.raises(DataError, match="no facts"):
        load_facts(path)


def test_round_trip_keeps_extras_and_order(tmp_path):
    facts = [make_fact(i, **{"Llama-3.2-1B": 0.25 * i, "source": f"s{i}"}) for i in range(5)]
    path = tmp_path / "facts.jsonl"
    save_facts(facts, path)
    loaded = load_facts(path)
    assert loaded == facts
    assert [f.extra for f in loaded] == [f.extra for f in facts]
    assert loaded[3].extra == {"Llama-3.2-1B": 0.75, "source": "s3"}
    assert loaded[2].answer_text == "c2"
    assert list(loaded[0].to_json())[:4] == ["question", "choices", "answer", "sentences"]


def test_non_ascii_round_trip(tmp_path):
    fact = Fact(
        "Où vit le virus?", ("chauve-souris", "rat", "porc", "chameau"), 0, ("Il vit chez la chauve-souris.",)
    )
    path = tmp_path / "facts.jsonl"
    save_facts([fact], path)
    assert load_facts(path) == [fact]
    assert "chauve-souris" in path.read_text(encoding="utf-8")


def test_blank_lines_are_skipped(tmp_path):
    path = write_lines(tmp_path, ["", json.dumps(GOOD), "   ", "\t", with_field(question="Second?"), ""])
    facts = load_facts(path)
    assert [f.question for f in facts] == [GOOD["question"], "Second?"]
    assert facts[0].choices == tuple(GOOD["choices"])
    assert facts[0].sentences == tuple(GOOD["sentences"])


@pytest.fixture(scope="module")
def wmdp():
    if not WMDP_DIR.is_dir():
        pytest.skip(f"WMDP-Deduped data folder {WMDP_DIR} is absent (set CIR_SHARED_DATA to its parent)")
    return {name: load_facts(WMDP_DIR / f"{name}_corpus_simple.jsonl") for name in WMDP_COUNTS}


def test_wmdp_files_load_with_expected_counts(wmdp):
    assert {name: len(facts) for name, facts in wmdp.items()} == WMDP_COUNTS
    for facts in wmdp.values():
        assert all(len(f.choices) == 4 and f.sentences for f in facts)
        assert all(isinstance(f.extra["Llama-3.2-1B"], float) for f in facts)


def shared_questions_and_sentences(train, val):
    questions = {f.question.strip() for f in train} & {f.question.strip() for f in val}
    sentences = {s.strip() for f in train for s in f.sentences} & {
        s.strip() for f in val for s in f.sentences
    }
    return questions | sentences


def test_wmdp_train_and_val_are_disjoint(wmdp):
    for train, val in (("T", "V"), ("dev_T", "dev_V")):
        assert shared_questions_and_sentences(wmdp[train], wmdp[val]) == set()
        check_disjoint(wmdp[train], wmdp[val])  # the library's check agrees


def test_demo_world_split_shares_no_question_or_sentence():
    # the same property on data every checkout has: the generated world, split as the demo splits it
    world = generate_world(WorldConfig(forget_facts=40, retain_facts=8, general_train=10, general_eval=4))
    train, val = split_facts(world.forget, val_fraction=0.2, seed=0)
    assert (len(train), len(val)) == (32, 8)
    assert shared_questions_and_sentences(train, val) == set()
    with pytest.raises(DataError, match="V overlaps T"):
        check_disjoint(train, [*val, train[0]])


def test_split_is_deterministic_and_sized():
    facts = [make_fact(i) for i in range(20)]
    train, val = split_facts(facts, val_fraction=0.25, seed=3)
    assert (len(train), len(val)) == (15, 5)
    assert split_facts(facts, val_fraction=0.25, seed=3) == (train, val)
    assert sorted(train + val, key=lambda f: f.question) == sorted(facts, key=lambda f: f.question)
    assert not {f.question for f in train} & {f.question for f in val}
    other_seeds = [split_facts(facts, 0.25, seed)[1] for seed in range(4, 8)]
    assert any(v != val for v in other_seeds)


@pytest.mark.parametrize("fraction", [0.0, 0.01, 1.0, 1.5])
def test_split_refuses_an_empty_side(fraction):
    with pytest.raises(DataError, match="side is empty"):
        split_facts([make_fact(i) for i in range(10)], fraction, seed=0)


def test_check_disjoint_refuses_shared_question_or_sentence():
    facts = [make_fact(i) for i in range(4)]
    with pytest.raises(DataError, match="overlap"):
        check_disjoint(facts[:3], facts[2:])
    reworded = Fact("A new question?", ("w", "x", "y", "z"), 0, ("Other.", " Sentence two of fact 1. "))
    with pytest.raises(DataError, match=r"overlap.*1 shared"):
        check_disjoint(facts[:2], [reworded])
    check_disjoint(facts[:2], facts[2:])


def test_filter_known_keeps_at_or_above_threshold():
    facts = [make_fact(i, acc=a) for i, a in enumerate([0.1, 0.5, 0.49, 0.9, 1])]
    kept = filter_known(facts, "acc", 0.5)
    assert [f.question for f in kept] == ["Question 1?", "Question 3?", "Question 4?"]
    assert filter_known(facts, "acc", 0.0) == facts
    assert filter_known(facts, "acc", 1.01) == []


@pytest.mark.parametrize("value", [None, "0.9", True])
def test_filter_known_needs_a_numeric_field(value):
    facts = [make_fact(0, acc=0.9), make_fact(1) if value is None else make_fact(1, acc=value)]
    with pytest.raises(DataError, match=r"fact 1 .*'acc'"):
        filter_known(facts, "acc", 0.5)


def test_fact_sentences_takes_the_first_n_in_order():
    facts = [make_fact(0), make_fact(1)]
    assert fact_sentences(facts, 2) == [
        "Sentence one of fact 0.",
        "Sentence two of fact 0.",
        "Sentence one of fact 1.",
        "Sentence two of fact 1.",
    ]
    assert len(fact_sentences(facts)) == 6
    assert fact_sentences(facts, 10) == fact_sentences(facts)
    assert fact_sentences(facts, 1) == ["Sentence one of fact 0.", "Sentence one of fact 1."]


CLOZE = Fact(
    "In which country is the city of Osaka?",
    ("Japan", "China", "Korea", "Mongolia"),
    0,
    ("Osaka is a city in Japan.",),
    {"domain": "city_country"},
    prompt="The city of Osaka is located in",
)


def test_prompt_round_trips(tmp_path):
    path = tmp_path / "facts.jsonl"
    save_facts([CLOZE, make_fact(1)], path)
    loaded = load_facts(path)
    assert loaded == [CLOZE, make_fact(1)]
    assert loaded[0].prompt == "The city of Osaka is located in" and loaded[1].prompt is None
    assert loaded[0].extra == {"domain": "city_country"}  # "prompt" is a schema field, not an extra
    assert list(json.loads(path.read_text().splitlines()[0])) == [
        "question",
        "choices",
        "answer",
        "sentences",
        "prompt",
        "domain",
    ]


def test_fact_without_prompt_has_none_and_writes_no_prompt_key(tmp_path):
    fact = load_facts(write_lines(tmp_path, [json.dumps(GOOD)]))[0]
    assert fact.prompt is None
    assert "prompt" not in fact.to_json() and fact.to_json() == GOOD
    plain = Fact("q", ("a", "b", "c", "d"), 0, ("s",))
    assert replace(plain, prompt="p") != plain  # the prompt is part of a fact's identity


@pytest.mark.parametrize("prompt", ["", "   ", 3, ["The city of"], True], ids=repr)
def test_bad_prompt_names_file_line_and_field(tmp_path, prompt):
    path = write_lines(tmp_path, [json.dumps(GOOD), with_field(prompt=prompt)])
    with pytest.raises(DataError, match=r"facts\.jsonl:2: field 'prompt' must be a non-empty string"):
        load_facts(path)


def test_null_prompt_is_no_prompt(tmp_path):
    assert load_facts(write_lines(tmp_path, [with_field(prompt=None)]))[0].prompt is None
