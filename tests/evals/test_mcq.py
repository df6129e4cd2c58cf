import math
from dataclasses import replace

import pytest
import torch

import tiny
from cir.data.batches import encode
from cir.data.facts import Fact
from cir.errors import DataError, ModelError
from cir.evals.mcq import choice_likelihood_mcq, letter_mcq, letter_prompt, letter_token_ids, mcq_scores
from cir.evals.metrics import continuation_logprobs, question_prompt


def full_logits(model, ids: list[int]) -> torch.Tensor:
    """The model on one unpadded row, without mask or position ids: the reference for batching."""
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()  # (seq, vocab)


def expected(scores: list[list[float]], facts) -> tuple[float, float, list[float]]:
    probs = torch.tensor(scores, dtype=torch.float64).softmax(-1)
    right = [float(probs[i, f.answer]) for i, f in enumerate(facts)]
    t0 = sum(float(probs[i].argmax() == f.answer) for i, f in enumerate(facts)) / len(facts)
    return t0, sum(right) / len(right), right


def test_letter_prompt_is_lm_eval_wmdp_doc_to_text():
    fact = Fact("  What is it? ", ("w", "x", "y", "z"), 2, ("s",))
    assert letter_prompt(fact) == "What is it?\nA. w\nB. x\nC. y\nD. z\nAnswer:"


def test_letter_mcq_matches_hand_computation():
    model, tokenizer = tiny.model("llama"), tiny.tokenizer()
    letters = [tokenizer(f" {x}", add_special_tokens=False)["input_ids"][0] for x in "ABCD"]
    scores = []
    for fact in tiny.FACTS:
        logprobs = full_logits(model, encode(tokenizer, [letter_prompt(fact)])[0])[-1].log_softmax(-1)
        scores.append([float(logprobs[i]) for i in letters])
    t0, t1, per_fact = expected(scores, tiny.FACTS)
    got = letter_mcq(model, tokenizer, tiny.FACTS, batch_size=2)
    assert got.acc_t0 == pytest.approx(t0, abs=1e-5)
    assert got.acc_t1 == pytest.approx(t1, abs=1e-5)
    assert got.per_fact_t1 == pytest.approx(per_fact, abs=1e-5)


def test_choice_likelihood_mcq_matches_hand_computation():
    model, tokenizer = tiny.model("llama"), tiny.tokenizer()
    scores = []
    for fact in tiny.FACTS:
        context = encode(tokenizer, [question_prompt(fact)])[0]
        row = []
        for choice in fact.choices:
            ids = encode(tokenizer, [f"{question_prompt(fact)} {choice}"])[0]  # the single full string
            assert ids[: len(context)] == context  # the tiny tokenizer does not merge across the boundary
            logprobs = full_logits(model, ids)[:-1].log_softmax(-1)  # (seq - 1, vocab)
            row.append(sum(float(logprobs[t - 1, ids[t]]) for t in range(len(context), len(ids))))
        scores.append(row)
    t0, t1, per_fact = expected(scores, tiny.FACTS)
    got = choice_likelihood_mcq(model, tokenizer, tiny.FACTS, batch_size=5)
    assert got.acc_t0 == pytest.approx(t0, abs=1e-5)
    assert got.acc_t1 == pytest.approx(t1, abs=1e-5)
    assert got.per_fact_t1 == pytest.approx(per_fact, abs=1e-5)


@pytest.mark.parametrize("arch", tiny.ARCHITECTURES)
@pytest.mark.parametrize("scorer", [letter_mcq, choice_likelihood_mcq])
def test_left_and_right_padding_agree(arch, scorer):
    model, tokenizer = tiny.model(arch), tiny.tokenizer()
    right = scorer(model, tokenizer, tiny.FACTS, batch_size=3, padding_side="right")
    left = scorer(model, tokenizer, tiny.FACTS, batch_size=3, padding_side="left")
    assert left.per_fact_t1 == pytest.approx(right.per_fact_t1, abs=1e-5)
    assert left.acc_t0 == right.acc_t0
    unbatched = scorer(model, tokenizer, tiny.FACTS, batch_size=1)
    assert unbatched.per_fact_t1 == pytest.approx(right.per_fact_t1, abs=1e-5)


def uniform_model(arch: str):
    model = tiny.model(arch)
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()  # every logit 0: each token has probability 1/vocab
    return model


@pytest.mark.parametrize("arch", tiny.ARCHITECTURES)
@pytest.mark.parametrize("scorer", [letter_mcq, choice_likelihood_mcq])
def test_probabilities_are_renormalised(arch, scorer):
    scores = scorer(tiny.model(arch), tiny.tokenizer(), tiny.FACTS)
    assert all(0.0 < p < 1.0 for p in scores.per_fact_t1)
    assert scores.acc_t1 == pytest.approx(sum(scores.per_fact_t1) / 3, abs=1e-9)


@pytest.mark.parametrize("arch", tiny.ARCHITECTURES)
def test_uniform_model_gives_chance_on_letters(arch):
    uniform = letter_mcq(uniform_model(arch), tiny.tokenizer(), tiny.FACTS)
    assert uniform.per_fact_t1 == pytest.approx([0.25] * 3, abs=1e-6)
    assert uniform.acc_t0 == pytest.approx(2 / 3)  # ties go to choice 0, right for 2 of the 3 facts


def test_uniform_model_scores_choices_by_token_count():
    tokenizer = tiny.tokenizer()
    uniform = choice_likelihood_mcq(uniform_model("llama"), tokenizer, tiny.FACTS)
    for fact, got in zip(tiny.FACTS, uniform.per_fact_t1, strict=True):
        ids = tokenizer([f" {c}" for c in fact.choices], add_special_tokens=False)["input_ids"]
        counts = torch.tensor([len(row) for row in ids])
        scores = -counts.double() * math.log(len(tokenizer))  # sum of log(1/vocab) over each choice's tokens
        assert got == pytest.approx(float(scores.softmax(-1)[fact.answer]), abs=1e-5)


def test_ties_go_to_the_lowest_index():
    facts = [Fact("q", ("a", "b", "c", "d"), answer, ("s",)) for answer in (0, 1, 2)]
    scores = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 2.0, 0.0], [1.0, 2.0, 2.0, 0.0]])
    got = mcq_scores(scores, facts)
    assert got.acc_t0 == pytest.approx(2 / 3)  # right for facts 0 (index 0) and 1 (index 1), not 2
    assert got.per_fact_t1[0] == pytest.approx(0.25)


def test_mode_is_restored_and_no_grad_is_left():
    model, tokenizer = tiny.model("llama"), tiny.tokenizer()
    model.train()
    model.model.layers[0].eval()  # a mixed state must come back as it was
    letter_mcq(model, tokenizer, tiny.FACTS)
    assert model.training and not model.model.layers[0].training and model.model.layers[1].training
    assert all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled()


def test_multi_token_letter_is_refused():
    class SplitsB:
        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [7, 8] if text == " B" else [5]}

    with pytest.raises(ModelError, match="' B' as 2 tokens"):
        letter_token_ids(SplitsB())


def test_bad_facts_are_refused():
    model, tokenizer = tiny.model("llama"), tiny.tokenizer()
    with pytest.raises(DataError, match="no facts"):
        letter_mcq(model, tokenizer, [])
    three = Fact("q?", ("a", "b", "c"), 0, ("s",))
    with pytest.raises(DataError, match=r"fact 1 .* 3 choices"):
        choice_likelihood_mcq(model, tokenizer, [tiny.FACTS[0], three])


def test_choice_likelihood_scores_after_the_prompt_when_present():
    model, tokenizer = tiny.model("qwen2"), tiny.tokenizer()
    prompts = ["Velorix is carried by", "The river of Amberfall is", "The answer to question one is"]
    cloze = [replace(fact, prompt=prompt) for fact, prompt in zip(tiny.FACTS, prompts, strict=True)]
    scores = []
    for fact in cloze:
        rows = continuation_logprobs(model, tokenizer, [fact.prompt] * 4, [f" {c}" for c in fact.choices])
        scores.append([float(row.sum()) for row in rows])
    t0, t1, per_fact = expected(scores, cloze)
    got = choice_likelihood_mcq(model, tokenizer, cloze, batch_size=3)
    assert got.per_fact_t1 == pytest.approx(per_fact, abs=1e-6)
    assert (got.acc_t0, got.acc_t1) == pytest.approx((t0, t1), abs=1e-6)
    reworded = [replace(fact, question="Something else entirely?") for fact in cloze]
    assert choice_likelihood_mcq(model, tokenizer, reworded).per_fact_t1 == pytest.approx(per_fact, abs=1e-7)

    questions = choice_likelihood_mcq(model, tokenizer, tiny.FACTS, batch_size=3)  # no prompt
    assert questions.per_fact_t1 != pytest.approx(per_fact, rel=1e-3)
    assert abs(questions.per_fact_t1[0] - per_fact[0]) > 1e-2
    # the letter format always shows the question and choices: a prompt changes nothing there
    letters = letter_mcq(model, tokenizer, cloze).per_fact_t1
    assert letters == pytest.approx(letter_mcq(model, tokenizer, tiny.FACTS).per_fact_t1, abs=1e-7)
