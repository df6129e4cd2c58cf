"""Fact sets a model knows, built from the knowledge domains and cached.

The domains are sliced (40 cities, 20 facts of each other domain) so that a build with a tiny random
Llama takes well under a second; a random model knows little, so `known_threshold` is low.
"""

import functools
import json

import pytest
import torch

import cir.fact_sets as fact_sets
import tiny
from cir.data.facts import Fact, load_facts
from cir.data.knowledge import capital, city_country, country_continent, element_symbol
from cir.data.prose import fortune_budget_text, python_docs_paragraphs
from cir.errors import ConfigError, DataError, OutputExistsError
from cir.evals.mcq import choice_likelihood_mcq
from cir.fact_sets import SURFACE_BOUND, FactSetConfig, FactSetPaths, build_fact_sets, fact_sets_for

DOMAIN_NAMES = ["city_country", "capital", "element_symbol", "country_continent"]
THRESHOLD = 0.01  # a random model's per-fact acc_t1 is set by token counts: the shortest choice wins
FILES = [
    "forget.jsonl",
    "forget_T.jsonl",
    "forget_V.jsonl",
    "retain.jsonl",
    "heldout.jsonl",
    "general_train.txt",
    "general_eval.txt",
    "general_eval_fortunes.txt",
    "build.json",
]


@functools.cache
def sliced(name: str, seed: int) -> tuple[Fact, ...]:
    generators = {
        "city_country": lambda: city_country(seed, limit=40),
        "capital": lambda: capital(seed)[:20],
        "element_symbol": lambda: element_symbol(seed)[:20],
        "country_continent": lambda: country_continent(seed)[:20],
    }
    return tuple(generators[name]())


def cue(seed: int) -> list[Fact]:
    """A domain whose answer is the first letters of its subject: the surface control must catch it."""
    facts = []
    for i in range(12):
        subject = f"Zorblax{'abcdefghijkl'[i]}"
        choices = ("Zorb", "Quen", "Melt", "Drav")
        facts.append(Fact(f"What is {subject}?", choices, 0, ("s",), {"subject": subject}, f"{subject} is"))
    return facts


@pytest.fixture(autouse=True)
def small_domains(monkeypatch):
    domains = {name: functools.partial(lambda n, seed: list(sliced(n, seed)), name) for name in DOMAIN_NAMES}
    monkeypatch.setattr(fact_sets, "DOMAINS", {**domains, "cue": cue})


def by_domain(facts: list[Fact]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for fact in facts:
        counts[fact.extra["domain"]] = counts.get(fact.extra["domain"], 0) + 1
    return counts


@pytest.fixture(scope="module")
def net():
    return tiny.model("llama", layers=2)


def test_build_writes_every_file_with_consistent_counts(net, tmp_path):
    config = FactSetConfig(known_threshold=THRESHOLD, val_fraction=0.25, general_heldout=30)
    report = build_fact_sets(net, tiny.tokenizer(), tmp_path / "facts", config)
    paths = FactSetPaths.at(tmp_path / "facts")
    assert sorted(p.name for p in paths.folder.iterdir()) == sorted(FILES)
    assert json.loads(paths.report.read_text()) == report

    forget, train, val = (load_facts(p) for p in (paths.forget, paths.forget_train, paths.forget_val))
    scores = choice_likelihood_mcq(net, tiny.tokenizer(), list(sliced("city_country", 0)))
    expected = [
        f for f, p in zip(sliced("city_country", 0), scores.per_fact_t1, strict=True) if p >= THRESHOLD
    ]
    assert [f.question for f in forget] == [f.question for f in expected]
    assert 5 <= len(forget) < 40  # the rule keeps some and drops others
    assert not {f.question for f in train} & {f.question for f in val}
    assert sorted(f.question for f in train + val) == sorted(f.question for f in forget)
    assert (report["forget_T"], report["forget_V"]) == (len(train), len(val)) and len(val) == round(
        len(forget) / 4
    )

    retain, heldout = load_facts(paths.retain), load_facts(paths.heldout)
    assert set(by_domain(retain)) == {"capital"} and set(by_domain(heldout)) == {
        "element_symbol",
        "country_continent",
    }
    files = {"city_country": len(forget), **by_domain(retain), **by_domain(heldout)}
    domains = report["domains"]
    assert {name: domains[name]["known"] for name in domains} == files
    assert {name: domains[name]["facts"] for name in domains} == {
        "city_country": 40,
        "capital": 20,
        "element_symbol": 20,
        "country_continent": 20,
    }
    assert domains["city_country"]["acc_t1"] == pytest.approx(scores.acc_t1, abs=1e-9)
    assert all(0 < d["answer_prob"] < 0.05 for d in domains.values())  # a random model: near 1/vocab

    general_train = paths.general_train.read_text().splitlines()
    general_eval = paths.general_eval.read_text().splitlines()
    assert len(general_eval) == 30 and len(general_train) > len(python_docs_paragraphs()) - 30  # sentences
    assert report["general_paragraphs"] == {"train": len(general_train), "eval": 30}
    assert report["forget_controls"]["surface_heuristic_acc"] <= SURFACE_BOUND
    assert report["config"]["known_threshold"] == THRESHOLD and report["config"]["forget"] == "city_country"


def test_build_refuses_an_existing_folder_without_force(net, tmp_path):
    (tmp_path / "facts").mkdir()
    config = FactSetConfig(known_threshold=THRESHOLD, retain=[], heldout=[])
    with pytest.raises(OutputExistsError, match="facts already exists"):
        build_fact_sets(net, tiny.tokenizer(), tmp_path / "facts", config)
    build_fact_sets(net, tiny.tokenizer(), tmp_path / "facts", config, force=True)
    assert load_facts(FactSetPaths.at(tmp_path / "facts").forget)


def test_a_higher_threshold_keeps_fewer_facts(net, tmp_path):
    scores = choice_likelihood_mcq(net, tiny.tokenizer(), list(sliced("city_country", 0))).per_fact_t1
    for threshold in (0.001, 0.5):
        config = FactSetConfig(known_threshold=threshold, retain=[], heldout=["element_symbol"])
        report = build_fact_sets(net, tiny.tokenizer(), tmp_path / str(threshold), config)
        known = report["domains"]["city_country"]["known"]
        assert known == sum(p >= threshold for p in scores)
    assert sum(p >= 0.001 for p in scores) > sum(p >= 0.5 for p in scores) >= 5


def test_surface_control_above_the_bound_is_refused(net, tmp_path):
    config = FactSetConfig(forget="cue", known_threshold=THRESHOLD, retain=[], heldout=[])
    with pytest.raises(DataError, match=r"domain cue: .*string heuristic 1\.000 > 0\.35"):
        build_fact_sets(net, tiny.tokenizer(), tmp_path / "facts", config)
    assert not (tmp_path / "facts").exists()


def test_no_known_forget_fact_is_a_data_error(tmp_path):
    uniform = tiny.model("llama", layers=2)
    with torch.no_grad():
        uniform.get_output_embeddings().weight.zero_()  # every choice of "cue" (equal lengths) gets 0.25
    config = FactSetConfig(forget="cue", known_threshold=0.5, retain=[], heldout=[])
    with pytest.raises(DataError, match="domain cue: the model knows 0 of its facts"):
        build_fact_sets(uniform, tiny.tokenizer(), tmp_path / "facts", config)


def test_config_refuses_unknown_or_repeated_domains():
    with pytest.raises(ConfigError, match=r"unknown domain\(s\) \['city_contry'\]"):
        FactSetConfig(forget="city_contry")
    with pytest.raises(ConfigError, match=r"unknown domain\(s\) \['planets'\]"):
        FactSetConfig(heldout=["element_symbol", "planets"])
    with pytest.raises(ConfigError, match="plays two roles"):
        FactSetConfig(retain=["capital", "city_country"])
    with pytest.raises(ConfigError, match="plays two roles"):
        FactSetConfig(retain=["capital"], heldout=["capital"])
    for threshold in (0.0, 1.5):
        with pytest.raises(ConfigError, match="known_threshold"):
            FactSetConfig(known_threshold=threshold)
    assert FactSetConfig().heldout == ["element_symbol", "country_continent"]


def test_fact_sets_for_builds_once_per_model_and_config(net, tmp_path, monkeypatch):
    loads = []

    def load_model(name, device, cache_dir):
        loads.append((name, device, cache_dir))
        return net, tiny.tokenizer()

    monkeypatch.setattr(fact_sets, "load_model", load_model)
    config = FactSetConfig(known_threshold=THRESHOLD, retain=[], heldout=["capital"], general_heldout=10)
    paths = fact_sets_for("tiny-builtin", tmp_path, config, device="cpu")
    assert loads == [("tiny-builtin", "cpu", tmp_path)]
    assert paths.folder.parent == tmp_path and paths.folder.name.startswith("facts-tiny-builtin-")
    assert all(p.is_file() for p in (paths.forget, paths.forget_train, paths.forget_val, paths.report))
    built = paths.report.stat().st_mtime_ns

    again = fact_sets_for("tiny-builtin", tmp_path, FactSetConfig(**vars(config)), device="cpu")
    assert again == paths and len(loads) == 1 and paths.report.stat().st_mtime_ns == built
    fortunes = paths.general_eval_fortunes.read_text().splitlines()
    assert fortunes == fortune_budget_text(10, config.seed)
    paths.general_eval_fortunes.unlink()  # a folder built before the file existed gains it, with no model
    fact_sets_for("tiny-builtin", tmp_path, FactSetConfig(**vars(config)), device="cpu")
    assert paths.general_eval_fortunes.read_text().splitlines() == fortunes and len(loads) == 1

    other = fact_sets_for("tiny-builtin", tmp_path, FactSetConfig(known_threshold=0.3, retain=[], heldout=[]))
    assert other.folder != paths.folder and len(loads) == 2
