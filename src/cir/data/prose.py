"""Real English prose for the disruption budget and the retain step, available offline everywhere.

The text is the Python documentation's own prose as the standard library ships it
(`pydoc_data.topics`, the pages behind `help("if")` and the like): about 400 paragraphs of edited
technical English, present in every CPython install, so no download or extra package is needed.
Code samples, tables and interactive sessions are left out; what remains is paragraphs of
sentences. It is not general web text (it is about programming), but it is real, human-written
English that a pretrained model predicts far better than templated sentences, and that is what the
budget has to watch.
"""

from __future__ import annotations

import random
import re

MIN_CHARS = 200  # shorter blocks are headings, list items or fragments
MIN_LETTER_SHARE = 0.9  # letters and spaces; code and tables fall below this


def python_docs_paragraphs() -> list[str]:
    """Every prose paragraph of `pydoc_data.topics`, whitespace-normalised, in a fixed order."""
    from pydoc_data.topics import topics

    paragraphs = []
    for name in sorted(topics):
        for block in re.split(r"\n\s*\n", topics[name]):
            text = " ".join(block.split())
            if _is_prose(block, text):
                paragraphs.append(text)
    return list(dict.fromkeys(paragraphs))  # some topics repeat a paragraph


def _is_prose(block: str, text: str) -> bool:
    if len(text) < MIN_CHARS or ">>>" in block or block.startswith("   "):
        return False
    return sum(c.isalpha() or c == " " for c in text) / len(text) > MIN_LETTER_SHARE


def split_prose(held_out: int = 100, seed: int = 0) -> tuple[list[str], list[str]]:
    """Shuffle the paragraphs with `seed`; return (train sentences, `held_out` held-out paragraphs).

    The train part is retain text, cut into sentences: a retain batch is padded to its longest text,
    and whole paragraphs (up to 128 tokens) made the retain step 85% of a SmolLM2 unlearning step
    (py-spy) where forget sentences are ~12 tokens. The held-out part measures the general-text loss
    for the budget and stays whole, so the model is scored on running text.
    """
    paragraphs = python_docs_paragraphs()
    random.Random(seed).shuffle(paragraphs)
    evaluated = paragraphs[:held_out]
    train = [sentence for paragraph in paragraphs[held_out:] for sentence in sentences(paragraph)]
    # The docs repeat some sentences across topics: none that the budget reads may be trained on.
    train = [s for s in dict.fromkeys(train) if not any(s in paragraph for paragraph in evaluated)]
    return train, evaluated


def sentences(paragraph: str) -> list[str]:
    """The sentences of a paragraph: cut after ". ", "! " or "? " before a capital letter or a quote."""
    return [part.strip() for part in re.split(r"(?<=[.!?])\s+(?=[A-Z\"(])", paragraph) if part.strip()]
