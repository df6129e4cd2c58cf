"""SimNPO on tiny models built from config (Llama and GPT-2's Conv1D).

A random tiny model gives every text a per-token log-probability near -log(vocab) ~ -5.8, where
SimNPO's default β = 2.5 saturates the loss (~1e-7); the tests use a smaller β to stay off that.
"""

import pytest
import torch
import torch.nn.functional as F

import tiny
from cir.errors import ConfigError
from cir.methods.simnpo import Config, SimNPO


def setup_method(arch="llama", **overrides):
    return tiny.set_up(SimNPO, Config(**{"beta": 0.2, **overrides}), arch)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_two_epochs_lower_the_forget_loss(arch):
    model, forget, method = setup_method(arch)
    before, after = tiny.forget_loss_before_after(method, len(forget))
    assert after < before - 0.005


def test_only_trained_parameters_change():
    model, forget, method = setup_method(trained_layers=[0])
    trained = {id(p) for p in method.trained_parameters()}
    assert len(trained) == 3
    before = tiny.parameters(model)
    tiny.run_epochs(method, len(forget), epochs=1)
    tiny.assert_only_trained_changed(model, before, method)


def test_loss_normalises_by_each_sequence_real_target_length():
    model, forget, method = setup_method(beta=0.7, gamma=0.3)
    batch = forget[0]
    lengths = batch.attention_mask.sum(dim=-1) - 1  # real tokens minus BOS: the targets
    assert lengths.unique().numel() > 1  # rows of different lengths, so padding is present
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        token_ce = F.cross_entropy(  # oracle: per-target CE, padding targets masked out below
            logits[:, :-1].transpose(1, 2), batch.input_ids[:, 1:], reduction="none"
        )
        mean_ce = (token_ce * batch.attention_mask[:, 1:]).sum(dim=-1) / lengths  # (batch,)
        expected = -(2 / 0.7) * F.logsigmoid(0.7 * mean_ce - 0.3).mean()
        torch.testing.assert_close(method.forget_loss(0), expected, atol=1e-6, rtol=1e-5)


def test_non_positive_beta_is_a_config_error():
    with pytest.raises(ConfigError, match=r"method\.beta must be > 0, got 0\.0"):
        SimNPO(Config(beta=0.0))
