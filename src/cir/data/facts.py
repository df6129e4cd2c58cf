"""The one schema of every fact set, its validating JSONL loader, and the T/V splits and folds.

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from cir.errors import ConfigError, DataError
from cir.files import read_text

NUM_CHOICES = 4

# How facts are split into T and V: "random" shuffles facts; "answer_disjoint" keeps every answer on
# one side, so a V fact is never answered by relearning a T fact that shares its answer.
Split = Literal["random", "answer_disjoint"]
SPLITS: tuple[Split, ...] = ("random", "answer_disjoint")


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


def split_facts(
    facts: Sequence[Fact], val_fraction: float, seed: int, split: Split = "random"
) -> tuple[list[Fact], list[Fact]]:
    """Split into T (train, about 1 - val_fraction) and V (val) with `seed`; checked disjoint.

    `split="random"` shuffles the facts. `split="answer_disjoint"` shuffles the groups of facts that
    share an answer and moves whole groups into V until it holds about `val_fraction` of the facts, so
    no V answer is a T answer: an attack cannot then score on V by relearning answers it saw in T.
    Both sides keep the order of `facts`.

    Raises:
        ConfigError: if `split` is not one of `SPLITS`.
        DataError: if either side would be empty or the two sides overlap.
    """
    check_split(split)
    n_val = round(len(facts) * val_fraction)
    if split == "random":
        order = list(range(len(facts)))
        random.Random(seed).shuffle(order)
        if not 0 < n_val < len(facts):
            raise DataError(
                f"cannot split {len(facts)} facts with val_fraction={val_fraction}: a side is empty"
            )
        val_indices = set(order[:n_val])
    else:
        groups = answer_groups(facts)
        random.Random(seed).shuffle(groups)
        val_indices = set()
        for group in groups:
            if len(val_indices) >= n_val:
                break
            # stop before a group that would leave V farther above the target than it is below now
            if val_indices and len(val_indices) + len(group) - n_val > n_val - len(val_indices):
                break
            val_indices.update(group)
        if not 0 < len(val_indices) < len(facts):
            raise DataError(
                f"cannot split {len(facts)} facts with {len(groups)} distinct answer(s) and "
                f"val_fraction={val_fraction} so that no answer is on both sides: a side is empty"
            )
    val = [f for i, f in enumerate(facts) if i in val_indices]
    train = [f for i, f in enumerate(facts) if i not in val_indices]
    check_disjoint(train, val)
    return train, val


def fold_splits(
    facts: Sequence[Fact], folds: int, seed: int, split: Split = "random"
) -> list[tuple[list[Fact], list[Fact]]]:
    """K-fold cross-validation: `folds` (T, V) pairs, each fact in V of exactly one; checked disjoint.

    T is every fact outside V; both keep the order of `facts`. `split="random"` shuffles the facts
    with `seed` and deals them round-robin. `split="answer_disjoint"` shuffles the groups of facts that
    share an answer, then gives each group, largest first, to the fold with the fewest facts so far
    (ties: the lowest fold), so no answer is in two folds and fold sizes differ by at most the largest
    group.

    Raises:
        ConfigError: if `split` is not one of `SPLITS` or `folds` is below 2.
        DataError: if there are fewer facts ("random") or distinct answers ("answer_disjoint") than
            folds, or a T/V pair overlaps.
    """
    check_split(split)
    if folds < 2:
        raise ConfigError(f"cross-validation needs folds >= 2, got folds={folds}")
    fold_of = [0] * len(facts)
    if split == "random":
        if len(facts) < folds:
            raise DataError(f"cannot make {folds} folds from {len(facts)} facts: a fold would be empty")
        order = list(range(len(facts)))
        random.Random(seed).shuffle(order)
        for position, index in enumerate(order):
            fold_of[index] = position % folds
    else:
        groups = answer_groups(facts)
        if len(groups) < folds:
            raise DataError(
                f"cannot make {folds} answer-disjoint folds from {len(facts)} facts with "
                f"{len(groups)} distinct answer(s): a fold would be empty"
            )
        random.Random(seed).shuffle(groups)
        groups.sort(key=len, reverse=True)  # stable: equal sizes keep the seeded order
        sizes = [0] * folds
        for group in groups:
            fold = min(range(folds), key=lambda k: (sizes[k], k))
            sizes[fold] += len(group)
            for index in group:
                fold_of[index] = fold
    pairs = []
    for fold in range(folds):
        val = [f for i, f in enumerate(facts) if fold_of[i] == fold]
        train = [f for i, f in enumerate(facts) if fold_of[i] != fold]
        check_disjoint(train, val, f"T of fold {fold}", f"V of fold {fold}")
        pairs.append((train, val))
    return pairs


def check_split(split: str) -> None:
    """Refuse a split name that is not one of `SPLITS`.

    Raises:
        ConfigError: naming `bench.split` and the known values.
    """
    if split not in SPLITS:
        raise ConfigError(f"bench.split: unknown split {split!r}; known: {', '.join(SPLITS)}")


def answer_groups(facts: Sequence[Fact]) -> list[list[int]]:
    """Indices of the facts grouped by stripped answer text, groups in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for index, fact in enumerate(facts):
        groups.setdefault(fact.answer_text.strip(), []).append(index)
    return list(groups.values())


def without_scored_prefix(facts: Sequence[Fact]) -> list[Fact]:
    """Drop each fact's sentences that start with its scored context; new facts, same order.

    The scored context is the cloze `prompt` if the fact has one, else its question (its scored
    prompt is the question, then a line `Answer:`); both sides are compared stripped and
    case-sensitive. A method trained on a sentence whose prefix is the scored prompt can break that
    exact string instead of forgetting the fact, so the bench trains on the other sentences only.

    Raises:
        DataError: naming the fact's index and question if no sentence of it remains.
    """
    kept_facts = []
    for index, fact in enumerate(facts):
        context = fact.prompt.strip() if fact.prompt is not None else fact.question.strip()
        kept = tuple(s for s in fact.sentences if not s.strip().startswith(context))
        if not kept:
            raise DataError(
                f"every sentence of fact {index} ({fact.question[:60]!r}) starts with its scored prompt "
                f"{context[:60]!r}; add a sentence worded otherwise"
            )
        kept_facts.append(replace(fact, sentences=kept))
    return kept_facts


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
