"""SAM + NPO: the forget gradient taken at W + ε, the perturbation undone, rho = 0 is NPO."""

import copy
import re

import pytest
import torch

import tiny
from cir.errors import ConfigError
from cir.hooks import forward_cross_entropy
from cir.methods.npo import NPO
from cir.methods.npo import Config as NPOConfig
from cir.methods.sam_npo import SAMNPO, Config
from cir.modules import weight_update


def setup_method(arch="llama", **overrides):
    return tiny.set_up(SAMNPO, Config(**overrides), arch)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_the_step_uses_the_forget_gradient_at_the_perturbed_weights(arch):
    model, forget, method = setup_method(arch, rho=0.5, retain_weight=0.7, step_norm=0.3)
    reference = copy.deepcopy(model)
    weights = [m.weight for m in method.modules]
    ref_modules = dict(reference.named_modules())
    ref_weights = [ref_modules[m.name].weight for m in method.modules]

    # by hand, on a copy: ε from the gradient at W, the forget gradient at W + ε, the retain one at W
    def npo_loss(net):
        batch = forget[0]
        from cir.hooks import full_logits
        from cir.losses import npo, sequence_logprob

        logprob = sequence_logprob(full_logits(net, batch), batch.input_ids, batch.attention_mask)
        return npo(logprob, method.references[0], method.config.beta)

    grads = torch.autograd.grad(npo_loss(reference), ref_weights)
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    with torch.no_grad():
        for w, g in zip(ref_weights, grads, strict=True):
            w.add_(0.5 * g / norm)
    sharp = torch.autograd.grad(npo_loss(reference), ref_weights)
    with torch.no_grad():
        for w, g in zip(ref_weights, grads, strict=True):
            w.sub_(0.5 * g / norm)
    retain = torch.autograd.grad(0.7 * forward_cross_entropy(reference, method.retain[0]), ref_weights)
    total = [s + r for s, r in zip(sharp, retain, strict=True)]
    total_norm = torch.sqrt(sum(g.pow(2).sum() for g in total))
    expected = [w.detach() - 0.3 * g / total_norm for w, g in zip(ref_weights, total, strict=True)]

    method.step(0, 0, epoch=0)
    for got, want in zip(weights, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert all(weight_update(m, m.weight).shape[0] > 0 for m in method.modules)


def test_rho_zero_is_npo_exactly():
    model, forget, sam = setup_method(rho=0.0)
    twin, _, npo = tiny.set_up(NPO, NPOConfig(), "llama")
    for index in range(len(forget)):
        sam.step(index, 0, epoch=0)
        npo.step(index, 0, epoch=0)
    for a, b in zip(sam.trained_parameters(), npo.trained_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_the_perturbation_is_undone_even_if_the_second_pass_fails(monkeypatch):
    model, forget, method = setup_method(rho=1.0)
    before = tiny.parameters(model)
    calls = []
    real = SAMNPO.forget_loss

    def failing_second(self, index):
        calls.append(index)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return real(self, index)

    monkeypatch.setattr(SAMNPO, "forget_loss", failing_second)
    with pytest.raises(RuntimeError, match="out of memory"):
        method.step(0, 0, epoch=0)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_negative_rho_is_a_config_error():
    with pytest.raises(ConfigError, match=re.escape("method.rho must be >= 0, got -0.1")):
        SAMNPO(Config(rho=-0.1))
