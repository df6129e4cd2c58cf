"""NPO on tiny models built from config (Llama and GPT-2's Conv1D)."""

import math
import re

import pytest
import torch

import tiny
from cir.errors import ConfigError
from cir.losses import sequence_logprob
from cir.methods.npo import NPO, Config


def setup_method(arch="llama", **overrides):
    return tiny.set_up(NPO, Config(**overrides), arch)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_two_epochs_lower_the_forget_loss(arch):
    model, forget, method = setup_method(arch)
    before, after = tiny.forget_loss_before_after(method, len(forget))
    assert after < before - 0.1


def test_only_trained_parameters_change():
    model, forget, method = setup_method(trained_layers=[1])
    trained = {id(p) for p in method.trained_parameters()}
    assert len(trained) == 3
    before = tiny.parameters(model)
    tiny.run_epochs(method, len(forget), epochs=1)
    tiny.assert_only_trained_changed(model, before, method)


@pytest.mark.parametrize("beta", [0.1, 2.0])
def test_loss_at_the_reference_model_is_two_over_beta_log_two(beta):
    model, forget, method = setup_method(beta=beta)
    batch = forget[1]
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(
        method.references[1], sequence_logprob(logits, batch.input_ids, batch.attention_mask)
    )
    logs = method.step(1, 0, epoch=0)  # the logged loss is measured before the update
    assert logs["forget_loss"] == pytest.approx(2 / beta * math.log(2), rel=1e-6)
    with torch.no_grad():
        assert float(method.forget_loss(1)) < logs["forget_loss"]  # and one step lowers it


@pytest.mark.parametrize("beta", [0.0, -1.0])
def test_non_positive_beta_is_a_config_error(beta):
    with pytest.raises(ConfigError, match=re.escape(f"method.beta must be > 0, got {beta}")):
        NPO(Config(beta=beta))
