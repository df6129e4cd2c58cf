"""Real English prose from the Python docs shipped with CPython: enough, clean, and split by seed."""

from cir.data.prose import (
    FORTUNE_MIN_CHARS,
    MIN_CHARS,
    fortune_budget_text,
    fortune_paragraphs,
    python_docs_paragraphs,
    sentences,
    split_prose,
)


def test_paragraphs_are_long_prose_without_code():
    paragraphs = python_docs_paragraphs()
    assert len(paragraphs) >= 300
    assert MIN_CHARS == 200 and min(len(p) for p in paragraphs) >= 200
    assert not any(">>>" in p for p in paragraphs)
    assert all(p == " ".join(p.split()) for p in paragraphs)  # whitespace-normalised, one line each
    assert len(set(paragraphs)) == len(paragraphs)
    assert python_docs_paragraphs() == paragraphs


def test_split_is_deterministic_disjoint_and_sized():
    paragraphs = python_docs_paragraphs()
    train, held_out = split_prose(held_out=40, seed=3)
    assert len(held_out) == 40 and set(held_out) <= set(paragraphs)
    # the train part is the other paragraphs cut into sentences: the same text, nothing held out
    others = [p for p in paragraphs if p not in held_out]
    assert set(train) <= {s for p in others for s in sentences(p)} and len(set(train)) == len(train)
    assert " ".join(sentences(others[0])) == others[0]
    assert len(train) > 2 * len(others) and sum(map(len, train)) / len(train) < 200  # paragraphs: >= 200
    assert not any(s in h for s in train for h in held_out)  # the docs repeat some sentences
    assert split_prose(held_out=40, seed=3) == (train, held_out)
    assert split_prose(held_out=40, seed=4)[1] != held_out
    assert len(split_prose()[1]) == 100


def test_fortunes_are_another_kind_of_english_prose_than_the_retain_text():
    paragraphs = fortune_paragraphs()
    assert len(paragraphs) >= 500 and fortune_paragraphs() == paragraphs
    assert min(map(len, paragraphs)) >= FORTUNE_MIN_CHARS and len(set(paragraphs)) == len(paragraphs)
    assert all(p == " ".join(p.split()) for p in paragraphs)
    assert not any("-- Mark Twain" in p for p in paragraphs)  # attribution lines ("\t\t-- Name") are dropped
    assert any("Mark Twain" in p for p in paragraphs)
    docs = " ".join(python_docs_paragraphs())
    assert not any(p[:60] in docs for p in paragraphs)  # no overlap with the pydoc retain text

    budget = fortune_budget_text(40, seed=3)
    assert len(budget) == 40 and set(budget) <= set(paragraphs)
    assert fortune_budget_text(40, seed=3) == budget and fortune_budget_text(40, seed=4) != budget
