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
