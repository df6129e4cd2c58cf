"""The LoRA relearning attack: the adapter trains, the base model is untouched and left adapter-free."""

import pytest
import torch

import tiny
from cir.attacks.base import post_attack_scores
from cir.attacks.lora import Config, Lora, target_modules
from cir.errors import ConfigError, DataError
from cir.modules import mlp_modules

TRAIN, EVAL = list(tiny.FACTS[:2]), list(tiny.FACTS[2:])
MLP_LEAVES = {"llama": ("gate_proj", "up_proj", "down_proj"), "gpt2": ("c_fc", "c_proj")}


def attack(model, train=TRAIN, **overrides):
    config = Config(**{"epochs": 4, "batch_size": 2, "lr": 1e-2, "rank": 4, **overrides})
    return Lora(config).run(model, tiny.tokenizer(), train, EVAL, progress=False)


def snapshot(model):
    names = [(n, type(m).__name__) for n, m in model.named_modules()]
    params = {n: (p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()}
    return names, params


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_adapter_trains_then_leaves_the_model_exactly_as_it_was(arch, recwarn):
    model = tiny.model(arch)
    model.lm_head.weight.requires_grad_(False)
    names, params = snapshot(model)
    ids = tiny.tokenizer()(tiny.TEXTS[:2], return_tensors="pt", padding=True)
    logits = model(**ids).logits.detach()
    result = attack(model)
    history = result.history
    assert len(history) == 5 and history[-1].train_loss < history[0].train_loss - 0.05
    assert not any("lora" in n for n, _ in model.named_modules())
    assert [(n, type(m).__name__) for n, m in model.named_modules()] == names
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter.detach(), params[name][0]), name
        assert parameter.requires_grad == params[name][1], name
    assert torch.equal(model(**ids).logits, logits)
    assert not hasattr(model, "peft_config")
    # every MLP linear of every layer got an adapter A (rank, d_in) and B (d_out, rank), and both moved
    modules = mlp_modules(model)
    assert result.details["target_modules"] == [m.name for m in modules]
    assert result.details["adapter_parameters"] == sum(4 * sum(m.weight.shape) for m in modules)
    assert len(result.trained_parameters) == 2 * len(modules)
    assert sorted(result.changes.changed_parameters) == sorted(result.trained_parameters)
    assert result.changes.unchanged_claimed == [] and result.changes.changed_unclaimed == []
    assert result.post_attack == post_attack_scores(history, 3)
    assert not [w for w in recwarn if "fan_in_fan_out" in str(w.message)]  # Conv1D was detected


def test_adapter_is_removed_even_when_training_fails(monkeypatch):
    model = tiny.model("llama")
    names, _ = snapshot(model)

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("cir.attacks.lora.train_epochs", fail)
    with pytest.raises(RuntimeError, match="boom"):
        attack(model)
    assert [(n, type(m).__name__) for n, m in model.named_modules()] == names
    assert all(p.requires_grad for p in model.parameters())


def test_target_modules_by_suffix_and_errors():
    model = tiny.model("gpt2")
    # GPT-2's attention also has a c_proj: the default names MLP modules in full to leave it alone
    expected = [f"transformer.h.{i}.mlp.{n}" for i in range(4) for n in ("c_fc", "c_proj")]
    assert target_modules(model, None) == expected
    assert target_modules(model, ["mlp.c_fc"]) == [f"transformer.h.{i}.mlp.c_fc" for i in range(4)]
    with pytest.raises(ConfigError, match="'q_proj' matches no linear module"):
        target_modules(model, ["q_proj"])
    result = attack(tiny.model("llama"), target_modules=["down_proj"], epochs=1)
    assert result.details["target_modules"] == [f"model.layers.{i}.mlp.down_proj" for i in range(4)]


def test_overlap_and_bad_rank_are_refused():
    with pytest.raises(DataError, match="V overlaps T"):
        attack(tiny.model("llama"), train=list(tiny.FACTS))
    with pytest.raises(ConfigError, match=r"attack\.rank must be >= 1.*\n.*attack\.alpha must be > 0"):
        Config(rank=0, alpha=0.0)
