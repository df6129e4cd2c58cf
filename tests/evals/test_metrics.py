import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import tiny
from cir.data.batches import encode, pad, pad_id
from cir.errors import ConfigError, DataError
from cir.evals.mcq import choice_likelihood_mcq, letter_mcq
from cir.evals.metrics import (
    answer_context,
    answer_recall,
    continuation_logprobs,
    general_loss,
    kl_to_reference,
    loss_and_kl,
    question_prompt,
    reference_logprobs,
)
from cir.evals.scores import MCQ_FORMATS, evaluate_facts, score_facts
from cir.records import FACT_METRICS, FactScores


def text_batches(side: str, batch_size: int = 3):
    tokenizer = tiny.tokenizer()
    rows = encode(tokenizer, tiny.TEXTS)
    return [pad(rows[i : i + batch_size], pad_id(tokenizer), side) for i in range(0, len(rows), batch_size)]


def test_answer_recall_matches_hand_computation():
    model, tokenizer = tiny.model("llama"), tiny.tokenizer()
    fact = tiny.FACTS[1]
    context = encode(tokenizer, [question_prompt(fact)])[0]
    ids = encode(tokenizer, [f"{question_prompt(fact)} {fact.answer_text}"])[0]
    assert ids[: len(context)] == context and len(ids) > len(context) + 1
    with torch.no_grad():
        logprobs = model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)  # (seq - 1, vocab)
    answer = [float(logprobs[t - 1, ids[t]]) for t in range(len(context), len(ids))]
    loss = -sum(answer) / len(answer)
    got = answer_recall(model, tokenizer, [fact])
    assert got.recall_loss == pytest.approx(loss, abs=1e-5)
    assert got.answer_prob == pytest.approx(math.exp(-loss), abs=1e-6)
    assert got.per_fact_prob == pytest.approx([math.exp(-loss)], abs=1e-6)


@pytest.mark.parametrize("arch", tiny.ARCHITECTURES)
def test_padding_side_does_not_change_fact_metrics(arch):
    model, tokenizer = tiny.model(arch), tiny.tokenizer()
    contexts = [question_prompt(f) for f in tiny.FACTS]
    answers = [f" {f.answer_text}" for f in tiny.FACTS]
    right = continuation_logprobs(model, tokenizer, contexts, answers, 3, "right")
    left = continuation_logprobs(model, tokenizer, contexts, answers, 3, "left")
    assert [r.dtype for r in right] == [torch.float32] * 3
    for r, lft in zip(right, left, strict=True):
        torch.testing.assert_close(lft, r, atol=1e-5, rtol=0)
    for mcq_format in MCQ_FORMATS:
        on_right = evaluate_facts(model, tokenizer, tiny.FACTS, mcq_format, padding_side="right")
        on_left = evaluate_facts(model, tokenizer, tiny.FACTS, mcq_format, padding_side="left")
        assert on_left.to_json() == pytest.approx(on_right.to_json(), abs=1e-5)


@pytest.mark.parametrize("arch", tiny.ARCHITECTURES)
def test_padding_side_does_not_change_text_metrics(arch):
    model = tiny.model(arch)
    right, left = text_batches("right"), text_batches("left")
    assert general_loss(model, left) == pytest.approx(general_loss(model, right), abs=1e-5)
    reference = reference_logprobs(model, right)
    with torch.no_grad():
        weight = model.get_output_embeddings().weight
        weight.add_(0.5 * torch.randn_like(weight))
    kl = kl_to_reference(model, right, reference)
    assert kl > 1e-3 and kl_to_reference(model, left, reference) == pytest.approx(kl, abs=1e-5)


def test_one_pass_loss_and_kl_equal_the_definitions():
    model = tiny.model("llama")
    batches = text_batches("right")
    reference = reference_logprobs(model, batches)
    with torch.no_grad():
        weight = model.get_output_embeddings().weight
        weight.add_(0.5 * torch.randn_like(weight))
    loss_sum, targets, kl_sum, tokens = 0.0, 0, 0.0, 0
    with torch.no_grad():
        for batch, stored in zip(batches, reference, strict=True):
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
            for row, mask in enumerate(batch.attention_mask.bool()):
                n = int(mask.sum())  # right padding: the real tokens come first
                loss_sum += F.cross_entropy(logits[row, : n - 1], batch.input_ids[row, 1:n], reduction="sum")
                targets += n - 1
                tokens += n
            ref = stored.float().log_softmax(-1)
            current = logits[batch.attention_mask.bool()].log_softmax(-1)
            kl_sum += (ref.exp() * (ref - current)).sum()
    loss, kl = loss_and_kl(model, batches, reference)
    assert loss == pytest.approx(float(loss_sum) / targets, rel=1e-5)
    assert kl == pytest.approx(float(kl_sum) / tokens, rel=1e-4) and kl > 1e-3
    assert (loss, kl) == (general_loss(model, batches), kl_to_reference(model, batches, reference))
    assert loss_and_kl(model, batches) == (loss, None)


@pytest.mark.parametrize("arch", tiny.ARCHITECTURES)
def test_evaluate_facts_fields_and_ranges(arch):
    model, tokenizer = tiny.model(arch), tiny.tokenizer()
    recall = answer_recall(model, tokenizer, tiny.FACTS)
    for mcq_format, scorer in (("letter", letter_mcq), ("choice", choice_likelihood_mcq)):
        scores = evaluate_facts(model, tokenizer, tiny.FACTS, mcq_format)
        assert isinstance(scores, FactScores) and list(scores.to_json()) == list(FACT_METRICS)
        assert all(0.0 <= scores.metric(k) <= 1.0 for k in FACT_METRICS if k != "recall_loss")
        # Jensen: mean exp(-ce) >= exp(-mean ce)
        assert scores.answer_prob >= math.exp(-scores.recall_loss)
        mcq = scorer(model, tokenizer, tiny.FACTS)
        # the means of the per-fact table, summed exactly
        got = (scores.acc_t0, scores.acc_t1, scores.answer_prob, scores.recall_loss)
        want = (mcq.acc_t0, mcq.acc_t1, recall.answer_prob, recall.recall_loss)
        assert got == pytest.approx(want, abs=1e-6)  # the scorers average in float32
        table = score_facts(model, tokenizer, tiny.FACTS, mcq_format)
        assert table.means() == scores and len(table) == len(tiny.FACTS)
        assert table.values["acc_t1"] == tuple(mcq.per_fact_t1)
        assert table.values["acc_t0"] == tuple(mcq.per_fact_t0)
        assert set(table.values["acc_t0"]) <= {0.0, 1.0}
        assert table.values["recall_loss"] == tuple(recall.per_fact_loss)
        assert FactScores.from_json(scores.to_json()) == scores


def test_uniform_model_gives_chance_and_one_over_vocab():
    model, tokenizer = tiny.model("qwen2"), tiny.tokenizer()
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()
    scores = evaluate_facts(model, tokenizer, tiny.FACTS, "letter")
    assert scores.acc_t1 == pytest.approx(0.25)
    assert scores.answer_prob == pytest.approx(1 / len(tokenizer), rel=1e-5)
    assert scores.recall_loss == pytest.approx(math.log(len(tokenizer)), abs=1e-5)


def test_general_loss_equals_the_models_own_loss_and_is_token_weighted():
    model, tokenizer = tiny.model("llama"), tiny.tokenizer()
    rows = encode(tokenizer, tiny.TEXTS[:2])
    single = [pad([row], pad_id(tokenizer)) for row in rows]
    with torch.no_grad():
        own = [float(model(b.input_ids, labels=b.input_ids).loss) for b in single]
    assert general_loss(model, single[:1]) == pytest.approx(own[0], abs=1e-5)
    weights = [len(row) - 1 for row in rows]
    pooled = (own[0] * weights[0] + own[1] * weights[1]) / sum(weights)
    assert general_loss(model, single) == pytest.approx(pooled, abs=1e-5)
    assert abs(pooled - sum(own) / 2) > 1e-4  # token weighting is distinguishable from batch weighting


def test_kl_to_reference_is_zero_for_same_model_and_positive_after_a_change():
    model = tiny.model("gpt2")
    batches = text_batches("right")
    reference = reference_logprobs(model, batches)
    real = sum(b.num_tokens for b in batches)
    assert [r.dtype for r in reference] == [torch.bfloat16] * len(batches)
    assert sum(r.shape[0] for r in reference) == real and reference[0].device.type == "cpu"
    assert kl_to_reference(model, batches, reference) == pytest.approx(0.0, abs=1e-4)
    with torch.no_grad():
        weight = model.transformer.h[1].mlp.c_fc.weight
        weight.add_(0.5 * torch.randn_like(weight))
    assert kl_to_reference(model, batches, reference) > 1e-3


def test_kl_refuses_a_reference_of_other_batches():
    model = tiny.model("llama")
    reference = reference_logprobs(model, text_batches("right"))
    with pytest.raises(DataError, match="reference tensors for"):
        kl_to_reference(model, text_batches("right")[:1], reference)
    with pytest.raises(DataError, match="batch 0: reference shape"):
        kl_to_reference(model, text_batches("right", batch_size=2)[:3], reference)


def test_mode_is_restored_and_no_grad_is_left():
    model, tokenizer = tiny.model("gpt_neox"), tiny.tokenizer()
    model.train()
    evaluate_facts(model, tokenizer, tiny.FACTS, "letter")
    general_loss(model, text_batches("left"))
    reference = reference_logprobs(model, text_batches("left"))
    kl_to_reference(model, text_batches("left"), reference)
    assert all(module.training for module in model.modules())
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    answer_recall(model, tokenizer, tiny.FACTS)
    assert not any(module.training for module in model.modules())


def test_bad_arguments_are_refused():
    model, tokenizer = tiny.model("llama"), tiny.tokenizer()
    for bad in ("letters", "both"):
        with pytest.raises(ConfigError, match="mcq_format"):
            evaluate_facts(model, tokenizer, tiny.FACTS, bad)
    with pytest.raises(ConfigError, match="unknown fact metric 'accuracy'"):
        evaluate_facts(model, tokenizer, tiny.FACTS).metric("accuracy")
    with pytest.raises(ConfigError, match="padding_side"):
        answer_recall(model, tokenizer, tiny.FACTS, padding_side="middle")
    with pytest.raises(DataError, match="no facts"):
        answer_recall(model, tokenizer, [])
    with pytest.raises(DataError, match="empty side"):
        continuation_logprobs(model, tokenizer, ["a"], [""])
    with pytest.raises(DataError, match="no real target tokens"):
        general_loss(model, [])


CLOZE_PROMPTS = ["Velorix is carried by", "The river of Amberfall is", "The answer to question one is"]
CLOZE = [replace(fact, prompt=prompt) for fact, prompt in zip(tiny.FACTS, CLOZE_PROMPTS, strict=True)]


def test_answer_context_is_the_prompt_when_present():
    assert answer_context(replace(CLOZE[0], prompt="  Velorix is carried by ")) == "Velorix is carried by"
    assert (
        answer_context(tiny.FACTS[0])
        == question_prompt(tiny.FACTS[0])
        == "Which animal carries Velorix?\nAnswer:"
    )


def test_answer_recall_scores_after_the_prompt_when_present():
    model, tokenizer = tiny.model("llama"), tiny.tokenizer()
    answers = [f" {fact.answer_text}" for fact in CLOZE]
    direct = continuation_logprobs(model, tokenizer, CLOZE_PROMPTS, answers)
    losses = [-float(row.mean()) for row in direct]
    got = answer_recall(model, tokenizer, CLOZE, batch_size=2)
    assert got.per_fact_prob == pytest.approx([math.exp(-loss) for loss in losses], abs=1e-6)
    assert got.recall_loss == pytest.approx(sum(losses) / 3, abs=1e-6)
    reworded = [replace(fact, question=f"Unrelated question {i}?") for i, fact in enumerate(CLOZE)]
    assert answer_recall(model, tokenizer, reworded).per_fact_prob == pytest.approx(
        got.per_fact_prob, abs=1e-7
    )

    questions = answer_recall(model, tokenizer, tiny.FACTS)  # no prompt: scored after question + "Answer:"
    by_question = continuation_logprobs(model, tokenizer, [question_prompt(f) for f in tiny.FACTS], answers)
    assert questions.recall_loss == pytest.approx(sum(-float(r.mean()) for r in by_question) / 3, abs=1e-6)
    # a random model's answer probabilities are all near 1/vocab: compare them in nats
    pairs = zip(questions.per_fact_prob, got.per_fact_prob, strict=True)
    assert all(abs(math.log(a) - math.log(b)) > 1e-2 for a, b in pairs)
