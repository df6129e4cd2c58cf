"""Real English prose from the Python docs shipped with CPython: enough, clean, and split by seed."""

from cir.data.prose import MIN_CHARS, python_docs_paragraphs, sentences, split_prose


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
