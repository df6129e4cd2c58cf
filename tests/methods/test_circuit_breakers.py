"""Circuit Breakers (representation rerouting) on tiny models built from config."""

import pytest
import torch

import tiny
from cir.data.batches import make_batches
from cir.errors import ConfigError
from cir.methods.circuit_breakers import CircuitBreakers, Config

FORGET = [s for f in tiny.FACTS for s in f.sentences] + ["A quiet dog slept under the kitchen table."]
RETAIN = tiny.TEXTS[3:5]


def setup_method(arch="llama", **overrides):
    model = tiny.model(arch, layers=3)
    forget = make_batches(tiny.tokenizer(), FORGET, batch_size=3)
    retain = make_batches(tiny.tokenizer(), RETAIN, batch_size=2)
    method = CircuitBreakers(Config(**overrides))
    method.setup(model, forget, retain)
    return model, forget, method


def run_epochs(method, forget, epochs=2):
    for epoch in range(epochs):
        for index in range(len(forget)):
            method.step(index, 0, epoch)
        method.end_epoch(epoch)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_two_epochs_lower_the_forget_loss(arch):
    model, forget, method = setup_method(arch)
    with torch.no_grad():
        before = float(method.forget_loss(0))
    assert before == pytest.approx(1.0)  # cos(h0, h0) = 1 at the original weights
    run_epochs(method, forget)
    with torch.no_grad():
        after = float(method.forget_loss(0))
    assert after < 0.95


def test_only_trained_parameters_change():
    model, forget, method = setup_method(forget_layers=[1])
    assert sorted({m.layer for m in method.modules}) == [0, 1]  # default: up to the last forget layer
    trained = {id(p) for p in method.trained_parameters()}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    run_epochs(method, forget, epochs=1)
    for name, parameter in model.named_parameters():
        changed = not torch.equal(before[name], parameter.detach())
        assert changed == (id(parameter) in trained), name


def test_retain_step_lowers_the_retain_loss():
    model, forget, method = setup_method(retain_lr=0.2)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # move the trained weights off the original, where the retain loss is 0
        for parameter in method.trained_parameters():
            parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    losses = [method.anchor.step(0, method.trained_parameters(), method.config.retain_lr) for _ in range(3)]
    assert losses[0] > 0.01
    assert losses[2] < losses[1] < losses[0]
    assert all(p.grad is None for p in method.trained_parameters())  # the retain step clears its grads


def test_trained_layer_above_the_last_forget_layer_is_a_config_error():
    with pytest.raises(
        ConfigError, match=r"method\.trained_layers \[2\]: layers above 1, the last layer the loss"
    ):
        setup_method(forget_layers=[0, 1], trained_layers=[2])
