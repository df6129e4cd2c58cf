"""The one schema of every fact set, its validating JSONL loader, and the T/V split.

A fact is a JSON object on one line: `question` (str), `choices` (4 distinct str), `answer` (index
into choices), `sentences` (non-empty list of str stating the fact), and optionally `prompt`: a cloze
prefix that the answer completes ("The capital of Peru is" -> "Lima"); small models answer a cloze
far better than a question, so choice likelihood and answer probability score the answer after it
when it is present. Extra fields (e.g. per-model prior accuracies) are kept in `Fact.extra`. This is
the format of the WMDP-Deduped files (which have no `prompt`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cir.errors import DataError
from cir.files import read_text

NUM_CHOICES = 4


@dataclass(frozen=True)
class Fact:
    """One multiple-choice fact and the plain sentences that state it."""

    question: str
    choices: tuple[str, ...]
    answer: int
    sentences: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    prompt: str | None = None  # cloze prefix the answer completes; None: score after the question

    @property
    def answer_text(self) -> str:
        """The text of the right choice."""
        return self.choices[self.answer]

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object of this fact (schema fields first, extras after)."""
        return {
            "question": self.question,
            "choices": list(self.choices),
            "answer": self.answer,
            "sentences": list(self.sentences),
            **({"prompt": self.prompt} if self.prompt is not None else {}),
            **self.extra,
        }


def parse_fact(obj: Any, where: str) -> Fact:
    """Validate one decoded JSON object; `where` (e.g. `facts.jsonl:12`) prefixes every error.

    Raises:
        DataError: naming `where` and the field for a missing field, a wrong type, an answer out of
            range, duplicate choices, an empty sentence list or a `prompt` that is not a non-empty string.
    """
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for name in ("question", "choices", "answer", "sentences"):
        if name not in obj:
            raise DataError(f"{where}: missing field {name!r}")
    question, choices, answer, sentences = obj["question"], obj["choices"], obj["answer"], obj["sentences"]
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: field 'question' must be a non-empty string, got {question!r}")
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise DataError(f"{where}: field 'choices' must be a list of strings, got {choices!r}")
    if len(choices) != NUM_CHOICES:
        raise DataError(f"{where}: field 'choices' must have {NUM_CHOICES} entries, got {len(choices)}")
    if len(set(choices)) != len(choices):
        raise DataError(f"{where}: field 'choices' has duplicate entries: {choices!r}")
    if not isinstance(answer, int) or isinstance(answer, bool):
        raise DataError(f"{where}: field 'answer' must be an integer index, got {answer!r}")
    if not 0 <= answer < len(choices):
        raise DataError(f"{where}: field 'answer' is {answer}, out of range 0..{len(choices) - 1}")
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        raise DataError(
            f"{where}: field 'sentences' must be a list of strings, got {type(sentences).__name__}"
        )
    if not sentences:
        raise DataError(f"{where}: field 'sentences' is empty; each fact needs at least one sentence")
    prompt = obj.get("prompt")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise DataError(f"{where}: field 'prompt' must be a non-empty string (cloze prefix), got {prompt!r}")
    schema = ("question", "choices", "answer", "sentences", "prompt")
    extra = {k: v for k, v in obj.items() if k not in schema}
    return Fact(question, tuple(choices), answer, tuple(sentences), extra, prompt)


def load_facts(path: Path | str) -> list[Fact]:
    """Load and validate a JSONL fact file (blank lines are skipped).

    Raises:
        DataError: naming `file:line` and the field for every kind of malformed line, or naming the
            file if it is missing, a directory, unreadable, not UTF-8 or holds no facts.
    """
    path = Path(path)
    facts = []
    for number, line in enumerate(read_text(path, "fact file").split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from error
        facts.append(parse_fact(obj, where))
    if not facts:
        raise DataError(f"{path}: no facts in file")
    return facts


def save_facts(facts: Iterable[Fact], path: Path) -> None:
    """Write facts as JSONL (one object a line)."""
    lines = [json.dumps(f.to_json(), ensure_ascii=False) for f in facts]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def fact_sentences(facts: Sequence[Fact], per_fact: int | None = None) -> list[str]:
    """The first `per_fact` sentences of each fact (all when None), in fact order."""
    return [s for f in facts for s in (f.sentences if per_fact is None else f.sentences[:per_fact])]


def filter_known(facts: Sequence[Fact], field_name: str, threshold: float) -> list[Fact]:
    """Keep facts whose prior accuracy field `field_name` is at least `threshold`.

    Raises:
        DataError: if a fact lacks the field or it is not a number.
    """
    kept = []
    for index, fact in enumerate(facts):
        value = fact.extra.get(field_name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise DataError(f"fact {index} ({fact.question[:40]!r}): no numeric field {field_name!r}")
        if value >= threshold:
            kept.append(fact)
    return kept


def split_facts(facts: Sequence[Fact], val_fraction: float, seed: int) -> tuple[list[Fact], list[Fact]]:
    """Shuffle with `seed` and split into T (train, 1 - val_fraction) and V (val); checked disjoint.

    Raises:
        DataError: if either side would be empty or the two sides overlap.
    """
    order = list(range(len(facts)))
    random.Random(seed).shuffle(order)
    n_val = round(len(facts) * val_fraction)
    if not 0 < n_val < len(facts):
        raise DataError(f"cannot split {len(facts)} facts with val_fraction={val_fraction}: a side is empty")
    val = [facts[i] for i in sorted(order[:n_val])]
    train = [facts[i] for i in sorted(order[n_val:])]
    check_disjoint(train, val)
    return train, val


def check_disjoint(
    train: Sequence[Fact], val: Sequence[Fact], train_name: str = "T", val_name: str = "V"
) -> None:
    """Refuse a T/V pair where a V question or a V sentence also appears in T.

    Raises:
        DataError: naming the first shared question or sentence and how many there are.
    """
    train_questions = {f.question.strip() for f in train}
    train_sentences = {s.strip() for f in train for s in f.sentences}
    shared = [f.question for f in val if f.question.strip() in train_questions]
    shared += [s for f in val for s in f.sentences if s.strip() in train_sentences]
    if shared:
        raise DataError(
            f"{val_name} overlaps {train_name}: {len(shared)} shared question(s)/sentence(s), "
            f"e.g. {shared[0][:80]!r}; the attack would train on what it evaluates"
        )


def load_texts(path: Path | str) -> list[str]:
    """Texts for retain or general data, from a fact file or a plain text file.

    A `.jsonl` file gives every fact's sentences; any other file gives one text a line (blank lines
    skipped).

    Raises:
        DataError: naming the file if it is missing, a directory, unreadable, not UTF-8, malformed
            (for `.jsonl`, with the line) or holds no text.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        return fact_sentences(load_facts(path))
    texts = [line.strip() for line in read_text(path, "text file").splitlines() if line.strip()]
    if not texts:
        raise DataError(f"{path}: no text in file")
    return texts
