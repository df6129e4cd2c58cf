"""Build the fact sets a pretrained model actually knows, from data packages, and cache them.

`cir facts build` generates every domain of `cir.data.knowledge`, scores each fact with the model
(choice likelihood after the cloze prompt), keeps the facts it knows by the bench's rule (per-fact
acc_t1 >= threshold), and writes one folder:

    forget.jsonl, forget_T.jsonl, forget_V.jsonl   the forget domain's known facts, and a T/V split
    retain.jsonl                                   the retain domain's known facts
    heldout.jsonl                                  known facts of the other domains (selectivity)
    general_train.txt, general_eval.txt            real English prose (retain part, budget part)
    build.json                                     per-domain prior accuracy, known counts, controls

A built-in model gets its fact sets built once into the cache (`fact_sets_for`), so
`--model smollm2-135m` needs no other input, like the embedded demo model.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.config import to_dict
from cir.data.facts import Fact, load_facts, save_facts, split_facts
from cir.data.knowledge import DOMAINS, frequent_answer_accuracy, surface_heuristic_accuracy
from cir.data.prose import fortune_budget_text, split_prose
from cir.errors import ConfigError, DataError
from cir.evals.mcq import choice_likelihood_mcq
from cir.evals.metrics import answer_recall
from cir.model_io import load_model
from cir.outputs import atomic_output_dir, write_json_atomic, write_text_atomic
from cir.runtime import cache_root

BUILD_VERSION = 4  # bump when the generators or the rule change what a config produces
SURFACE_BOUND = 0.35  # the forget set's string-heuristic control must stay at or under this


@dataclass
class FactSetConfig:
    """Which domains play which role, and the known-fact rule."""

    forget: str = "city_country"  # the stand-in for hazardous knowledge
    retain: list[str] = field(default_factory=lambda: ["capital"])  # trained on by the retain step
    heldout: list[str] = field(  # never trained on: selectivity
        default_factory=lambda: ["element_symbol", "country_continent"]
    )
    known_threshold: float = 0.5  # keep facts whose per-fact acc_t1 is at least this (0.5: argmax right)
    val_fraction: float = 0.2  # share of the forget facts in V
    general_heldout: int = 100  # prose paragraphs held out for the budget; the rest are retain text
    seed: int = 0  # distractor draws and the T/V split

    def __post_init__(self) -> None:
        roles = [self.forget, *self.retain, *self.heldout]
        unknown = [name for name in roles if name not in DOMAINS]
        if unknown:
            raise ConfigError(f"facts: unknown domain(s) {unknown}; known: {sorted(DOMAINS)}")
        if len(set(roles)) != len(roles):
            raise ConfigError(f"facts: a domain plays two roles in {roles}; each may appear once")
        if not 0 < self.known_threshold <= 1:
            raise ConfigError(f"facts: known_threshold must be in (0, 1], got {self.known_threshold}")


@dataclass(frozen=True)
class FactSetPaths:
    """The files of a built fact-set folder."""

    folder: Path
    forget: Path  # every known forget fact
    forget_train: Path  # T: forget facts the attack may train on
    forget_val: Path  # V: forget facts the attack is scored on
    retain: Path
    heldout: Path
    general_train: Path
    general_eval: Path
    report: Path  # build.json

    @property
    def general_eval_fortunes(self) -> Path:
        """The budget text from another source than the retain text (written by `fact_sets_for`)."""
        return self.folder / "general_eval_fortunes.txt"

    @classmethod
    def at(cls, folder: Path) -> FactSetPaths:
        """The layout under `folder`."""
        names = ["forget", "forget_T", "forget_V", "retain", "heldout"]
        facts = [folder / f"{name}.jsonl" for name in names]
        texts = [folder / "general_train.txt", folder / "general_eval.txt"]
        return cls(folder, *facts, *texts, folder / "build.json")  # type: ignore[call-arg]


def build_fact_sets(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out: Path,
    config: FactSetConfig | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Score every domain with the model, keep the known facts, and write the folder `out`.

    Returns:
        The build report (also written to build.json).

    Raises:
        OutputExistsError: if `out` exists and not `force`.
        DataError: if the model knows too few forget facts for a T/V split, or the forget set's
            string-heuristic control is above `SURFACE_BOUND`.

    """
    config = config or FactSetConfig()
    start = time.perf_counter()
    known: dict[str, list[Fact]] = {}
    domains: dict[str, dict[str, float]] = {}
    for name in [config.forget, *config.retain, *config.heldout]:
        facts = DOMAINS[name](config.seed)
        known[name], domains[name] = _known(model, tokenizer, facts, config.known_threshold)
    forget = known[config.forget]
    if len(forget) < 2:
        raise DataError(
            f"domain {config.forget}: the model knows {len(forget)} of its facts (per-fact acc_t1 >= "
            f"{config.known_threshold}); a T/V split needs at least 2: lower --threshold or use another model"
        )
    controls = {"surface_heuristic_acc": surface_heuristic_accuracy(forget)}
    controls["answer_rate_acc"] = frequent_answer_accuracy(forget)
    if controls["surface_heuristic_acc"] > SURFACE_BOUND:
        raise DataError(
            f"domain {config.forget}: its answers show in the prompts' surface (string heuristic "
            f"{controls['surface_heuristic_acc']:.3f} > {SURFACE_BOUND}); draw other distractors"
        )
    train, val = split_facts(forget, config.val_fraction, config.seed)
    general_train, general_eval = split_prose(config.general_heldout, config.seed)
    report = {
        "config": to_dict(config),
        "model": str(getattr(model, "name_or_path", "")),
        "domains": domains,
        "forget_controls": controls,
        "forget_T": len(train),
        "forget_V": len(val),
        "general_paragraphs": {"train": len(general_train), "eval": len(general_eval)},
        "build_seconds": time.perf_counter() - start,
    }
    with atomic_output_dir(out, force=force) as staging:
        paths = FactSetPaths.at(staging)
        save_facts(forget, paths.forget)
        save_facts(train, paths.forget_train)
        save_facts(val, paths.forget_val)
        save_facts([f for name in config.retain for f in known[name]], paths.retain)
        save_facts([f for name in config.heldout for f in known[name]], paths.heldout)
        paths.general_train.write_text("\n".join(general_train) + "\n", encoding="utf-8")
        paths.general_eval.write_text("\n".join(general_eval) + "\n", encoding="utf-8")
        write_fortune_budget_text(paths, config)
        write_json_atomic(paths.report, report)
    return report


def _known(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, facts: list[Fact], threshold: float
) -> tuple[list[Fact], dict[str, float]]:
    """The facts whose per-fact acc_t1 >= threshold, and the domain's prior scores over all facts."""
    scores = choice_likelihood_mcq(model, tokenizer, facts, batch_size=32)
    recall = answer_recall(model, tokenizer, facts, batch_size=32)
    kept = [fact for fact, p in zip(facts, scores.per_fact_t1, strict=True) if p >= threshold]
    summary = {
        "facts": len(facts),
        "known": len(kept),
        "acc_t0": scores.acc_t0,
        "acc_t1": scores.acc_t1,
        "answer_prob": recall.answer_prob,
        "surface_heuristic_acc": surface_heuristic_accuracy(facts),
    }
    return kept, summary


def fact_sets_for(
    model_name: str, cache_dir: Path | None = None, config: FactSetConfig | None = None, device: str = "auto"
) -> FactSetPaths:
    """The cached fact sets of a built-in model, built on first use (a few minutes on a CPU)."""
    config = config or FactSetConfig()
    key = hashlib.sha256(json.dumps([BUILD_VERSION, model_name, to_dict(config)]).encode()).hexdigest()[:12]
    paths = FactSetPaths.at(cache_root(cache_dir) / f"facts-{model_name}-{key}")
    if not paths.report.is_file():
        model, tokenizer = load_model(model_name, device=device, cache_dir=cache_dir)
        build_fact_sets(model, tokenizer, paths.folder, config, force=True)
    if not paths.general_eval_fortunes.is_file():  # folders built before it existed gain it here
        write_fortune_budget_text(paths, config)
    return paths


def write_fortune_budget_text(paths: FactSetPaths, config: FactSetConfig) -> None:
    """Write `config.general_heldout` fortunes as the folder's other budget text (atomically)."""
    text = "\n".join(fortune_budget_text(config.general_heldout, config.seed)) + "\n"
    write_text_atomic(paths.general_eval_fortunes, text)


def heldout_facts(paths: FactSetPaths) -> list[Fact]:
    """The held-out knowledge of a fact-set folder (empty if it has none)."""
    return load_facts(paths.heldout) if paths.heldout.is_file() else []
