"""The few-shot attack: k solved train facts before each eval question, seeded, weights untouched."""

import random
from dataclasses import replace

import pytest
import torch

import tiny
from cir.attacks.few_shot import Config, FewShot, solved_block, with_shots
from cir.data.facts import Fact
from cir.errors import ConfigError, DataError
from cir.evals.metrics import answer_context
from cir.evals.scores import evaluate_facts

EXTRA = [
    Fact(f"Which colour is item {i}?", ("red", "blue", "green", "yellow"), i % 4, (f"Item {i} is painted.",))
    for i in range(3)
]
TRAIN, EVAL = [*tiny.FACTS[:2], *EXTRA], list(tiny.FACTS[2:])


def test_prompts_have_k_seeded_solved_blocks():
    evaluated = [*EVAL, EXTRA[0]]
    train = TRAIN[:2] + EXTRA[1:]
    prompted = with_shots(evaluated, train, 3, seed=5)
    generator = random.Random(5)
    for fact, original in zip(prompted, evaluated):
        chosen = generator.sample(train, 3)
        assert len({id(t) for t in chosen}) == 3
        assert fact.question == "".join(solved_block(t) for t in chosen) + original.question
        assert fact.question.count("\nAnswer: ") == 3
        assert fact == Fact(fact.question, original.choices, original.answer, original.sentences)
    assert solved_block(TRAIN[0]) == "Which animal carries Velorix?\nAnswer: fruit bats\n\n"
    assert with_shots(evaluated, train, 3, seed=5) == prompted
    assert with_shots(evaluated, train, 3, seed=6) != prompted


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_scores_zero_then_k_shot_without_touching_the_weights(arch):
    model = tiny.model(arch)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = FewShot(Config(shots=2, seed=1)).run(model, tiny.tokenizer(), TRAIN, EVAL, progress=False)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert len(result.history) == 2 and [h.epoch for h in result.history] == [0, 1]
    zero = evaluate_facts(model, tiny.tokenizer(), EVAL).to_json()
    two = evaluate_facts(model, tiny.tokenizer(), with_shots(EVAL, TRAIN, 2, seed=1)).to_json()
    assert zero != two
    for entry, expected in zip(result.history, (zero, two)):
        assert entry.facts.to_json() == pytest.approx(expected, rel=1e-6)
        assert entry.train_loss is None
    assert result.final.to_json() == pytest.approx(two)
    best = {k: (min if k == "recall_loss" else max)(zero[k], two[k]) for k in zero}
    assert result.post_attack.to_json() == pytest.approx(best)
    assert "0-shot and 2-shot" in result.post_attack_definition
    assert result.trained_parameters == [] and result.changes is None and result.stop_reason == "done"
    assert result.details["shots"] == 2 and result.details["example_question"].count("\nAnswer: ") == 2


def test_bad_shots_and_overlap_are_refused_before_any_model():
    with pytest.raises(ConfigError, match=r"attack\.shots must be in 1\.\.5"):
        FewShot(Config(shots=6)).check(TRAIN, EVAL)
    with pytest.raises(ConfigError, match=r"invalid config: attack\.shots must be >= 1, got 0"):
        Config(shots=0)
    with pytest.raises(DataError, match="V overlaps T"):
        FewShot(Config()).check(TRAIN, TRAIN[:1])
    with pytest.raises(DataError, match="V overlaps T"):  # run checks too
        FewShot(Config()).run(tiny.model("llama"), tiny.tokenizer(), TRAIN, TRAIN[:1])


CITIES = [
    ("Osaka", "Japan"),
    ("Lyon", "France"),
    ("Porto", "Portugal"),
    ("Cusco", "Peru"),
    ("Izmir", "Turkey"),
]
CLOZE = [
    Fact(
        f"In which country is the city of {city}?",
        (land, "Chile", "Kenya", "Nepal"),
        0,
        (f"{city} is a city in {land}.",),
        prompt=f"The city of {city} is located in",
    )
    for city, land in CITIES
]


def test_cloze_facts_get_cloze_examples_before_their_prompt():
    assert solved_block(CLOZE[0]) == "The city of Osaka is located in Japan.\n"
    assert solved_block(replace(CLOZE[0], prompt="  The city of Osaka is located in ")) == solved_block(
        CLOZE[0]
    )
    train, evaluated = CLOZE[:4], CLOZE[4:]
    prompted = with_shots(evaluated, train, 3, seed=2)
    chosen = random.Random(2).sample(train, 3)
    examples = "".join(f"{t.prompt} {t.answer_text}.\n" for t in chosen)
    assert prompted[0].prompt == examples + "The city of Izmir is located in"
    assert prompted[0].question == examples + evaluated[0].question
    assert prompted[0].prompt.count(" is located in") == 4 and "Answer:" not in prompted[0].prompt
    assert answer_context(prompted[0]) == prompted[0].prompt  # what the metrics score after
    assert (prompted[0].choices, prompted[0].answer, prompted[0].sentences) == (
        evaluated[0].choices,
        evaluated[0].answer,
        evaluated[0].sentences,
    )


def test_few_shot_attack_scores_cloze_facts_after_the_examples():
    model, tokenizer = tiny.model("llama"), tiny.tokenizer()
    result = FewShot(Config(shots=2, seed=0)).run(model, tokenizer, CLOZE[:4], CLOZE[4:], progress=False)
    two = evaluate_facts(model, tokenizer, with_shots(CLOZE[4:], CLOZE[:4], 2, seed=0)).to_json()
    assert result.history[1].facts.to_json() == pytest.approx(two, rel=1e-6)
    assert two != pytest.approx(evaluate_facts(model, tokenizer, CLOZE[4:]).to_json(), rel=1e-4)
    example = result.details["example_question"]
    assert example.count(" is located in ") == 2 and example.endswith(
        "\nIn which country is the city of Izmir?"
    )
