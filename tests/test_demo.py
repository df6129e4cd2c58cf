"""The demo builder on a tiny recipe: it trains, saves a loadable model, and reuses its cache."""

import json

import pytest

import cir.demo
from cir.cli import main
from cir.data.facts import load_facts
from cir.data.world import WorldConfig
from cir.demo import DemoConfig, DemoPaths, build_demo, cache_key, load_demo
from cir.inputs import Inputs, load_inputs

TINY = DemoConfig(
    world=WorldConfig(forget_facts=8, retain_facts=8, paraphrases=2, general_train=40, general_eval=8),
    vocab_size=400,
    hidden_size=32,
    intermediate_size=64,
    layers=2,
    heads=2,
    epochs=1,
    block_size=32,
    batch_size=8,
    warmup_steps=2,
)


def test_build_saves_model_world_and_report_then_reuses_cache(tmp_path, monkeypatch):
    paths = build_demo(TINY, cache_dir=tmp_path, progress=False)
    assert paths == DemoPaths.at(tmp_path / f"demo-{cache_key(TINY)}")
    report = json.loads(paths.report.read_text())
    assert {"forget_acc_t0", "retain_acc_t0", "general_loss", "build_seconds"} <= set(report)
    assert len(load_facts(paths.forget_train)) + len(load_facts(paths.forget_val)) == 8
    model, tokenizer = load_demo(paths, device="cpu")
    assert (
        model.config.num_hidden_layers == 2 and len(tokenizer) <= 400 + 4
    )  # + the letters A-D if BPE did not make them

    def no_training(*args, **kwargs):
        raise AssertionError("the cache was not reused")

    monkeypatch.setattr(cir.demo, "pretrain", no_training)
    assert build_demo(TINY, cache_dir=tmp_path, progress=False) == paths

    # a model folder cir built carries its world: given as --model, it defaults to that world's data
    loaded = load_inputs(Inputs(model=str(paths.model), device="cpu"), progress=False)
    assert loaded.demo == paths and len(loaded.data.forget_facts) == 8
    assert loaded.data.general_texts == cir.data.world.load_world(paths.retain.parent).general_eval


def test_cache_key_changes_with_recipe_and_extra_fact_contents(tmp_path):
    facts = tmp_path / "extra.jsonl"
    facts.write_text(
        '{"question": "q?", "choices": ["a", "b", "c", "d"], "answer": 0, "sentences": ["a."]}\n'
    )
    with_extra = DemoConfig(extra_facts=[facts])
    first = cache_key(with_extra)
    assert first != cache_key(DemoConfig()) != cache_key(DemoConfig(epochs=3))
    facts.write_text(
        '{"question": "q?", "choices": ["a", "b", "c", "d"], "answer": 1, "sentences": ["b."]}\n'
    )
    assert cache_key(with_extra) != first


def test_xdg_cache_home_is_respected(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cir.demo.cache_root() == tmp_path / "cir"
    assert cir.demo.cache_root(tmp_path / "x") == tmp_path / "x"


def test_pretraining_texts_list_every_choice_of_extra_facts():
    world = cir.data.world.generate_world(TINY.world)
    extra = load_facts_from_shared()
    texts = cir.demo.pretraining_texts(world, extra[:2])
    for fact in extra[:2]:
        listing = next(t for t in texts if t.startswith(fact.question.strip()))
        assert all(choice in listing for choice in fact.choices)


def load_facts_from_shared():
    from pathlib import Path

    path = (
        Path(__file__).parents[1]
        / ".."
        / "shared"
        / "data"
        / "wmdp_deduped_bio"
        / "dev_V_corpus_simple.jsonl"
    )
    if not path.is_file():
        pytest.skip("../shared data not present")
    return load_facts(path)


def test_control_sees_choices_but_not_sentences():
    world = cir.data.world.generate_world(TINY.world)
    extra = load_facts_from_shared()[:3]
    control = cir.demo.pretraining_texts(world, extra, extra_sentences=False)
    full = cir.demo.pretraining_texts(world, extra)
    sentences = {s for fact in extra for s in fact.sentences}
    assert sentences <= set(full) and not sentences & set(control)
    assert all(
        any(t.startswith(f.question.strip()) and all(c in t for c in f.choices) for t in control)
        for f in extra
    )
    assert cache_key(DemoConfig(extra_sentences=False)) != cache_key(DemoConfig())


@pytest.mark.slow
def test_cir_demo_end_to_end_forgets_within_the_budget(tmp_path):
    # The README's first command on the real demo model: built on first use (about 4 minutes on 2 CPU
    # cores, then cached in $XDG_CACHE_HOME/cir), unlearned with CIR's defaults at 1%, then attacked.
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    names = ["model.safetensors", "metrics.jsonl", "summary.json", "attack.jsonl", "report.json", "report.md"]
    assert all((out / name).is_file() for name in names)
    report = json.loads((out / "report.json").read_text())
    assert report["epochs"] >= 1
    assert report["general_loss_after"] <= report["general_loss_before"] * 1.01  # the 1% budget
    # benchmarks/README: answer probability 0.969 -> 0.723 on the 200 forget facts at 1%
    assert report["forget_after"]["answer_prob"] < report["forget_before"]["answer_prob"] - 0.05
