"""The quantization attack: V after each GGUF round trip, weights put back, small edits undone."""

import pytest
import torch

import tiny
from cir.attacks.quantize import Config, Quantize
from cir.errors import ConfigError
from cir.evals.scores import evaluate_facts
from cir.quant import linear_modules, round_trip

TRAIN, EVAL = list(tiny.FACTS[:2]), list(tiny.FACTS[2:])


def test_unknown_format_is_refused():
    with pytest.raises(ConfigError, match="formats"):
        Config(formats=["Q4_1", "Q2_K"])


def test_scores_each_format_and_puts_the_weights_back():
    model = tiny.model("llama")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = Quantize(Config(formats=["Q8_0", "Q4_0"])).run(
        model, tiny.tokenizer(), TRAIN, EVAL, progress=False
    )
    assert [e.epoch for e in result.history] == [0, 1, 2]
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert result.history[0].facts == evaluate_facts(model, tiny.tokenizer(), EVAL, "choice", 16)
    assert result.history[2].facts != result.history[0].facts  # Q4_0 moves a random model's scores
    best = max(e.facts.acc_t1 for e in result.history)
    assert result.post_attack.acc_t1 == best and result.details["formats"] == ["Q8_0", "Q4_0"]


def test_a_small_edit_of_a_model_from_a_gguf_grid_is_undone():
    # a model de-quantized from a Q4_1 file, then "unlearned" by an edit under half a step
    original = tiny.model("llama")
    round_trip(original, "Q4_1")
    knows = evaluate_facts(original, tiny.tokenizer(), EVAL, "choice", 16)
    model = tiny.model("llama")
    model.load_state_dict(original.state_dict())
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, module in linear_modules(model).items():
            if "mlp" in name:  # every block's inner values moved by under a third of its Q4_1 step
                blocks = module.weight.view(module.weight.shape[0], -1, 32)
                high, low = blocks.amax(-1, keepdim=True), blocks.amin(-1, keepdim=True)
                shift = (torch.rand(blocks.shape, generator=generator) - 0.5) * 0.6 * (high - low) / 15
                blocks += torch.where((blocks != high) & (blocks != low), shift, torch.zeros(()))
    edited = evaluate_facts(model, tiny.tokenizer(), EVAL, "choice", 16)
    assert edited != knows
    result = Quantize(Config(formats=["Q4_1"])).run(model, tiny.tokenizer(), TRAIN, EVAL, progress=False)
    assert result.history[0].facts == edited and result.history[1].facts == knows


def test_like_input_returns_a_model_from_a_gguf_to_itself_and_erases_small_edits(tmp_path):
    from cir.export import export_gguf
    from cir.model_io import load_model
    from cir.quant import linear_modules
    from gguf_tiny import write_tiny_llama_gguf

    # a Q4_1 file, as the built-in SmolLM2's, and the model converted from it
    source = write_tiny_llama_gguf(tmp_path / "tiny.gguf", seed=0)
    model, _ = load_model(str(source), device="cpu", cache_dir=tmp_path / "cache")
    q41 = export_gguf(model, source, tmp_path / "q41", quant="Q4_1", cache_dir=tmp_path / "cache").gguf
    model, _ = load_model(q41, device="cpu", cache_dir=tmp_path / "cache")
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    import gguf

    from cir.quant import round_trip_types, stored_types

    types = stored_types(model, gguf.GGUFReader(q41))
    assert set(types.values()) == {"Q4_1"} and set(types) == set(linear_modules(model))
    round_trip_types(model, types)
    assert all(torch.equal(p, original[n]) for n, p in model.named_parameters())  # exact on its grid
    with torch.no_grad():
        for module in linear_modules(model).values():
            module.weight += 1e-6  # far below half a Q4_1 step
    done = round_trip_types(model, types)
    assert not done.skipped
    assert all(torch.equal(p, original[n]) for n, p in model.named_parameters())  # the edit is gone


def test_the_attack_runs_like_input_from_its_template_and_refuses_it_without_one(tmp_path):
    from cir.attacks.quantize import Config, Quantize
    from cir.errors import ConfigError
    from cir.export import export_gguf
    from cir.model_io import load_model
    from gguf_tiny import write_tiny_llama_gguf

    with pytest.raises(ConfigError, match="template"):
        Config(formats=["like_input"])
    source = write_tiny_llama_gguf(tmp_path / "tiny.gguf", seed=0)
    model, _ = load_model(str(source), device="cpu", cache_dir=tmp_path / "cache")
    q41 = export_gguf(model, source, tmp_path / "q41", quant="Q4_1", cache_dir=tmp_path / "cache").gguf
    model, tokenizer = load_model(q41, device="cpu", cache_dir=tmp_path / "cache")
    attack = Quantize(Config(formats=["like_input", "Q4_0"], template=q41))
    result = attack.run(model, tokenizer, list(tiny.FACTS[:1]), list(tiny.FACTS[1:]), False)
    assert result.history[1].facts == result.history[0].facts  # its own format changes nothing
    assert result.history[2].facts != result.history[0].facts  # another one does
    assert result.details["skipped"] == {"like_input": [], "Q4_0": []}
