"""The paraphrase probe: held-out wordings only, and a fact taught under one of them scores as known."""

import pytest
import torch

import tiny
from cir.data.facts import Fact
from cir.errors import DataError
from cir.probes.paraphrase import Config, Paraphrase, contexts

FACT = Fact(
    "In which country is the city of Velm?",
    ("Arda", "Borel", "Cale", "Dune"),
    0,
    ("Velm is a city in Arda.", "The city of Velm is located in Arda."),
    {"domain": "city_country", "subject": "Velm"},
    "The city of Velm is located in",
)
OTHER = Fact(
    "In which country is the city of Orsk?",
    ("Borel", "Arda", "Cale", "Dune"),
    0,
    ("Orsk is a city in Borel.",),
    {"domain": "city_country", "subject": "Orsk"},
    "The city of Orsk is located in",
)


def memorise(model, texts, steps=60):
    """Train a tiny model on `texts` until it has them by heart (a model that knows these facts)."""
    tokenizer = tiny.tokenizer()
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def test_contexts_are_the_question_formats_and_domain_wordings_never_a_trained_prefix():
    found = contexts(FACT, 10)
    assert "Question: In which country is the city of Velm?\nAnswer:" in found
    assert "In which country is the city of Velm?\nAnswer:" in found  # the question form of a cloze fact
    assert "The country that contains the city of Velm is" in found
    trained = replace_sentences(FACT, ("Velm, a city in the country of Arda.",))
    assert "Velm, a city in the country of" not in contexts(trained, 10)
    assert len(contexts(FACT, 2)) == 2


def replace_sentences(fact, sentences):
    from dataclasses import replace

    return replace(fact, sentences=sentences)


def test_a_fact_taught_under_a_held_out_wording_scores_higher_than_one_that_was_not():
    probe = Paraphrase(Config())
    tokenizer = tiny.tokenizer()
    taught = contexts(FACT, 10)
    model = memorise(tiny.model("llama", layers=2), [f"{c} Arda" for c in taught])
    scores = probe.score(model, tokenizer, [FACT, OTHER], batch_size=4)
    assert set(scores) == {"paraphrase_acc_t1", "paraphrase_max_acc_t1"}
    known, unknown = scores["paraphrase_acc_t1"]
    assert known > 0.9 and known > unknown + 0.3
    assert all(
        m >= a for m, a in zip(scores["paraphrase_max_acc_t1"], scores["paraphrase_acc_t1"], strict=True)
    )


def test_a_fact_with_no_held_out_wording_is_named():
    bare = Fact(
        "Q?", ("a", "b", "c", "d"), 0, ("Question: Q?\nAnswer: a", "Q: Q?\nA: a", "Q? The answer is a")
    )
    with pytest.raises(DataError, match=r"fact 1 \('Q\?'\)"):
        Paraphrase(Config(max_contexts=3)).score(tiny.model(), tiny.tokenizer(), [FACT, bare], batch_size=4)
