"""A seeded, offline fictional fact world: the demo model's pretraining text and its fact sets.

The forget domain (invented pathogens) stands in for hazardous knowledge; the retain domains (invented
cities and musicians) and the general prose share none of its names, so that unlearning the forget
domain has a clean target. Each fact's value is drawn independently and uniformly from its attribute's
pool, so no fact can be inferred from another (a T/V split must not leak V through T). Every draw comes
from one `random.Random(seed)`: the same config gives the same world. The vocabulary (names, attributes,
templates, word pools) is package data in `world_vocab.yaml`; this module holds only the generator.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cir.config import config_error
from cir.data.facts import NUM_CHOICES, Fact, load_facts, save_facts
from cir.errors import DataError

FACTS_PER_ENTITY = 4  # attributes stated per entity; the last entity of a domain may get fewer
WORLD_FILES = ("forget.jsonl", "retain.jsonl", "general_train.txt", "general_eval.txt")
VOCAB_FILE = "world_vocab.yaml"  # package data in cir.data: names, attributes, templates, word pools


@dataclass
class WorldConfig:
    """How big the fact world is and which seed draws it."""

    seed: int = 0  # every draw comes from random.Random(seed)
    forget_facts: int = 200  # facts in the forget domain (pathogens)
    retain_facts: int = 300  # facts in the retain domains (cities, musicians), split evenly
    paraphrases: int = 10  # distinct sentences stating each fact (at most 15)
    general_train: int = 3000  # general-text sentences for pretraining
    general_eval: int = 256  # held-out general-text sentences (disruption metric)


@dataclass
class World:
    """The generated facts and general text."""

    forget: list[Fact]
    retain: list[Fact]
    general_train: list[str]
    general_eval: list[str]


@dataclass(frozen=True)
class _Attribute:
    name: str
    relation: str  # reads as "the {relation} of {entity}"
    question: str
    article: str  # put before a value inside a sentence ("the marsh vole"), not in the choices
    pool: tuple[str, ...]
    templates: tuple[str, ...]  # sentences only this attribute can use (verbs, passives)


@dataclass(frozen=True)
class _Domain:
    name: str
    label: str  # how a question names an entity: "the pathogen Velorix"
    joiner: str  # between name parts: syllables join with "", first and last names with " "
    name_shapes: tuple[tuple[tuple[str, ...], ...], ...]  # each shape: one pool per name part
    attributes: tuple[_Attribute, ...]


@dataclass(frozen=True)
class _Vocab:
    """Everything the generator draws from, read from `VOCAB_FILE` (see the comments there)."""

    generic: tuple[str, ...]  # templates any attribute can use; placeholders {e} {label} {r} {v}
    forget: _Domain
    retain: tuple[_Domain, ...]
    general_templates: tuple[str, ...]  # everyday-prose templates, one {slot} per general pool
    general_pools: dict[str, tuple[str, ...]]  # drawn from in this order for every sentence


def _load_vocab() -> _Vocab:
    """Read the package data file `VOCAB_FILE`; YAML keeps its order, which the draws depend on."""
    raw = yaml.safe_load(resources.files("cir.data").joinpath(VOCAB_FILE).read_text(encoding="utf-8"))
    _check_strings(raw)
    domains = {name: _domain(name, spec) for name, spec in raw["domains"].items()}
    general = raw["general"]
    return _Vocab(
        tuple(raw["generic_templates"]),
        domains[raw["forget_domain"]],
        tuple(domains[name] for name in raw["retain_domains"]),
        tuple(general["templates"]),
        {slot: tuple(pool) for slot, pool in general["pools"].items()},
    )


def _domain(name: str, spec: dict[str, Any]) -> _Domain:
    """One `domains.<name>` entry, its name shapes resolved to the name-part pools they list."""
    parts = {part: tuple(pool) for part, pool in spec["name_parts"].items()}
    shapes = tuple(tuple(parts[part] for part in shape) for shape in spec["name_shapes"])
    attributes = tuple(
        _Attribute(
            key, at["relation"], at["question"], at["article"], tuple(at["pool"]), tuple(at["templates"])
        )
        for key, at in spec["attributes"].items()
    )
    return _Domain(name, spec["label"], spec["joiner"], shapes, attributes)


def _check_strings(node: Any, where: str = "") -> None:
    """Raise DataError at the first key or leaf YAML did not read as a string (an unquoted `no` is False)."""
    if isinstance(node, dict):
        for key, value in node.items():
            _check_strings(key, f"a key in {where or 'the top level'}")
            _check_strings(value, f"{where}.{key}".lstrip("."))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _check_strings(item, f"{where}[{index}]")
    elif not isinstance(node, str):
        raise DataError(f"{VOCAB_FILE}: {where} is {node!r}, not a string (quote it)")


def generate_world(config: WorldConfig) -> World:
    """Draw the fact world described by `config`; the same config always gives the same world.

    Args:
        config: sizes and seed of the world.

    Returns:
        The forget facts (pathogens), retain facts (cities, then musicians) and general prose, with
        `general_eval` disjoint from `general_train`.

    Raises:
        ConfigError: naming the field if a size is below 1 or above what the name pools and
            templates can produce.

    """
    vocab = _load_vocab()
    _validate(config, vocab)
    rng = random.Random(config.seed)
    forget = _domain_facts(rng, vocab, vocab.forget, config.forget_facts, config.paraphrases)
    per_domain = [config.retain_facts // len(vocab.retain)] * len(vocab.retain)
    per_domain[0] += config.retain_facts % len(vocab.retain)
    retain = [
        fact
        for domain, count in zip(vocab.retain, per_domain, strict=True)
        for fact in _domain_facts(rng, vocab, domain, count, config.paraphrases)
    ]
    general = _general_sentences(rng, vocab, config.general_train + config.general_eval)
    world = World(forget, retain, general[: config.general_train], general[config.general_train :])
    _check_world(world, vocab.forget)
    return world


def save_world(world: World, folder: Path) -> None:
    """Write `world` into `folder` (created if needed) as the four files of `WORLD_FILES`.

    Args:
        world: the world to write.
        folder: the destination; existing world files in it are overwritten.

    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_facts(world.forget, folder / "forget.jsonl")
    save_facts(world.retain, folder / "retain.jsonl")
    for name, texts in (("general_train.txt", world.general_train), ("general_eval.txt", world.general_eval)):
        (folder / name).write_text("".join(text + "\n" for text in texts), encoding="utf-8")


def load_world(folder: Path) -> World:
    """Read a world written by `save_world`.

    Args:
        folder: the folder holding the four files of `WORLD_FILES`.

    Returns:
        The world, facts validated by `cir.data.facts.load_facts`.

    Raises:
        DataError: naming every missing file, or `file:line` of a malformed fact.

    """
    folder = Path(folder)
    missing = [str(folder / name) for name in WORLD_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(f"world file(s) not found: {', '.join(missing)}; write them with save_world")
    texts = [
        [line for line in (folder / name).read_text(encoding="utf-8").splitlines() if line.strip()]
        for name in WORLD_FILES[2:]
    ]
    return World(load_facts(folder / "forget.jsonl"), load_facts(folder / "retain.jsonl"), *texts)


def _validate(config: WorldConfig, vocab: _Vocab) -> None:
    """Collect every out-of-range field into one ConfigError."""
    most_paraphrases = len(vocab.generic) + min(
        len(a.templates) for d in (vocab.forget, *vocab.retain) for a in d.attributes
    )
    limits = {
        "forget_facts": _capacity(vocab.forget),
        "retain_facts": len(vocab.retain) * min(_capacity(d) for d in vocab.retain),
        "paraphrases": most_paraphrases,
        "general_train": 100_000,  # well below the ~870k distinct sentences of the grammar: draws stay quick
        "general_eval": 10_000,
    }
    errors = [
        f"world: {name}={getattr(config, name)} must be between 1 and {limit}"
        for name, limit in limits.items()
        if not 1 <= getattr(config, name) <= limit
    ]
    if errors:
        raise config_error(errors)


def _capacity(domain: _Domain) -> int:
    return len(_all_names(domain)) * min(FACTS_PER_ENTITY, len(domain.attributes))


def _all_names(domain: _Domain) -> list[str]:
    """Every name the domain's shapes can build, in a fixed order (a dict drops repeats, keeps order)."""
    shapes = domain.name_shapes
    joined = (domain.joiner.join(parts) for shape in shapes for parts in itertools.product(*shape))
    return list(dict.fromkeys(name[0].upper() + name[1:] for name in joined))


def _domain_facts(
    rng: random.Random, vocab: _Vocab, domain: _Domain, count: int, paraphrases: int
) -> list[Fact]:
    """`count` facts about distinct (entity, attribute) pairs, FACTS_PER_ENTITY per entity."""
    per_entity = min(FACTS_PER_ENTITY, len(domain.attributes))
    entities = rng.sample(_all_names(domain), -(-count // per_entity))
    facts: list[Fact] = []
    for index, entity in enumerate(entities):
        attributes = rng.sample(domain.attributes, min(per_entity, count - index * per_entity))
        facts.extend(
            _make_fact(rng, vocab.generic, domain, entity, attribute, paraphrases) for attribute in attributes
        )
    return facts


def _make_fact(
    rng: random.Random,
    generic: tuple[str, ...],
    domain: _Domain,
    entity: str,
    attribute: _Attribute,
    paraphrases: int,
) -> Fact:
    """One fact with a uniformly drawn value, 3 distractors from the same pool and sampled templates."""
    value = rng.choice(attribute.pool)
    choices = [value, *rng.sample([v for v in attribute.pool if v != value], NUM_CHOICES - 1)]
    rng.shuffle(choices)
    slots = {"e": entity, "label": domain.label, "r": attribute.relation, "v": attribute.article + value}
    templates = rng.sample(generic + attribute.templates, paraphrases)
    sentences = tuple(_capitalize(template.format(**slots)) for template in templates)
    extra = {"domain": domain.name, "entity": entity, "attribute": attribute.name}
    return Fact(attribute.question.format(**slots), tuple(choices), choices.index(value), sentences, extra)


def _general_sentences(rng: random.Random, vocab: _Vocab, count: int) -> list[str]:
    """`count` distinct sentences from the everyday-prose grammar, in draw order."""
    drawn: dict[str, None] = {}  # an ordered set: iteration order must not depend on hashing
    for _ in range(50 * count):
        if len(drawn) == count:
            break
        slots = {name: rng.choice(pool) for name, pool in vocab.general_pools.items()}
        drawn[_capitalize(rng.choice(vocab.general_templates).format(**slots))] = None
    assert len(drawn) == count, "the general grammar ran out of distinct sentences"
    return list(drawn)


def _capitalize(text: str) -> str:
    return text[0].upper() + text[1:]


def _check_world(world: World, forget: _Domain) -> None:
    """Invariants of the generator: unique questions and sentences, and no forget name outside it."""
    facts = world.forget + world.retain
    questions = [f.question for f in facts]
    sentences = [s for f in facts for s in f.sentences]
    assert len(set(questions)) == len(questions), "two facts share a question"
    assert len(set(sentences)) == len(sentences), "two facts share a sentence"
    assert not set(world.general_train) & set(world.general_eval), "general_eval overlaps general_train"
    outside = _outside_text(world)
    leaks = [name for name in _forget_names(world, forget) if name.lower() in outside]
    assert not leaks, f"forget names appear outside the forget domain: {leaks[:5]}"


def _forget_names(world: World, forget: _Domain) -> list[str]:
    """Return the forget domain's entity names and every value of its attribute pools."""
    entities = dict.fromkeys(str(fact.extra.get("entity", "")) for fact in world.forget)
    values = [value for attribute in forget.attributes for value in attribute.pool]
    return [name for name in [*entities, *values] if name]


def _outside_text(world: World) -> str:
    """All retain and general text, lower-cased and joined, for one substring search per name."""
    retain = [text for f in world.retain for text in (f.question, *f.choices, *f.sentences)]
    return "\n".join(retain + world.general_train + world.general_eval).lower()
