"""RMU on tiny models built from config (Llama and GPT-2's Conv1D)."""

import pytest
import torch

import tiny
from cir.errors import ConfigError, ModelError
from cir.methods.rmu import RMU, Config, random_direction


def setup_method(arch="llama", **overrides):
    return tiny.set_up(RMU, Config(**overrides), arch)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_two_epochs_lower_the_forget_loss(arch):
    model, forget, method = setup_method(arch)
    before, after = tiny.forget_loss_before_after(method, len(forget))
    assert after < 0.99 * before


def test_only_trained_parameters_change_and_default_layers_end_at_layer():
    model, forget, method = setup_method(layer=1)
    assert sorted({m.layer for m in method.modules}) == [0, 1]  # layer-2..layer, clipped at 0
    before = tiny.parameters(model)
    tiny.run_epochs(method, len(forget), epochs=1)
    tiny.assert_only_trained_changed(model, before, method)


def test_direction_is_a_seeded_unit_vector_and_the_coefficient_scales_the_original_norm():
    model, forget, method = setup_method(layer=1, steering_scale=3.0, seed=7)
    u = method.direction
    assert u.shape == (32,) and float(u.norm()) == pytest.approx(1.0, abs=1e-6)
    assert bool((u >= 0).all())  # entries drawn from [0, 1) before normalising, as the authors do
    assert torch.equal(u, random_direction(32, 7))
    assert not torch.allclose(u, random_direction(32, 8))
    with torch.no_grad():  # oracle: HF's hidden states, entry 2 = residual stream after layer 1
        norms = [
            model(input_ids=b.input_ids, attention_mask=b.attention_mask, output_hidden_states=True)
            .hidden_states[2][b.kept_tokens()]
            .norm(dim=-1)
            for b in forget
        ]
    assert method.steering_coeff == pytest.approx(3.0 * float(torch.cat(norms).mean()), rel=1e-5)


def test_bad_layers_are_named():
    with pytest.raises(ModelError, match="layer 3 is out of range"):
        setup_method(layer=3)
    with pytest.raises(ConfigError, match=r"trained_layers \[0, 2\]: layers above 1"):
        setup_method(layer=1, trained_layers=[0, 2])
    with pytest.raises(ConfigError, match=r"method\.steering_scale must be > 0"):
        RMU(Config(steering_scale=0.0))
