"""Gradient Difference on tiny models built from config (Llama and GPT-2's Conv1D)."""

import pytest
import torch

import tiny
from cir.errors import ConfigError, ModelError
from cir.losses import cross_entropy
from cir.methods.grad_diff import Config, GradDiff
from cir.modules import weight_update


def setup_method(arch="llama", **overrides):
    return tiny.set_up(GradDiff, Config(**overrides), arch)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_two_epochs_lower_the_forget_loss(arch):
    model, forget, method = setup_method(arch)
    before, after = tiny.forget_loss_before_after(method, len(forget))
    assert after < before - 0.01  # -CE falls: the forget text gets less likely


def test_only_trained_parameters_change():
    model, forget, method = setup_method(trained_layers=[0, 2])
    trained = {id(p) for p in method.trained_parameters()}
    assert len(trained) == 6  # gate, up, down of layers 0 and 2
    before = tiny.parameters(model)
    tiny.run_epochs(method, len(forget), epochs=1)
    tiny.assert_only_trained_changed(model, before, method)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_without_retain_the_step_is_normalised_gradient_ascent(arch):
    model, forget, method = setup_method(arch, retain_weight=0.0, step_norm=0.05)
    batch = forget[0]
    ce = cross_entropy(
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits,
        batch.input_ids,
        batch.attention_mask,
    )
    grads = torch.autograd.grad(ce, method.trained_parameters())  # oracle: plain autograd on CE
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    before = [p.detach().clone() for p in method.trained_parameters()]
    logs = method.step(0, 0, epoch=0)
    assert "retain_loss" not in logs
    assert logs["update_norm"] == pytest.approx(float(norm), rel=1e-5)
    for module, old, grad in zip(method.modules, before, grads):
        delta = module.weight.detach() - old  # stored orientation, (d_in, d_out) for Conv1D
        assert weight_update(module, delta).shape == weight_update(module, grad).shape
        torch.testing.assert_close(delta, 0.05 * grad / norm, atol=1e-7, rtol=1e-4)


def test_bad_settings_are_reported_together():
    with pytest.raises(ConfigError, match=r"method\.step_norm must be > 0") as caught:
        GradDiff(Config(step_norm=0.0, retain_weight=-1.0))
    assert "method.retain_weight must be >= 0, got -1.0" in str(caught.value)
    with pytest.raises(ModelError, match="layer 3 is out of range"):
        setup_method(trained_layers=[3])
