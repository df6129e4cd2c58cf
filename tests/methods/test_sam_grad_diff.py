"""SAM + Gradient Difference: the forget gradient (of -CE) at W + ε, the perturbation undone, rho = 0."""

import copy

import pytest
import torch

import tiny
from cir.errors import ConfigError
from cir.hooks import forward_cross_entropy
from cir.methods.grad_diff import Config as GradDiffConfig
from cir.methods.grad_diff import GradDiff
from cir.methods.sam_grad_diff import Config, SAMGradDiff


def test_the_step_uses_the_forget_gradient_at_the_perturbed_weights():
    model, forget, method = tiny.set_up(SAMGradDiff, Config(rho=0.5, retain_weight=0.7, step_norm=0.3))
    reference = copy.deepcopy(model)
    ref_modules = dict(reference.named_modules())
    ref_weights = [ref_modules[m.name].weight for m in method.modules]

    def forget_loss():
        return -forward_cross_entropy(reference, forget[0])

    grads = torch.autograd.grad(forget_loss(), ref_weights)
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    with torch.no_grad():
        for w, g in zip(ref_weights, grads, strict=True):
            w.add_(0.5 * g / norm)
    sharp = torch.autograd.grad(forget_loss(), ref_weights)
    with torch.no_grad():
        for w, g in zip(ref_weights, grads, strict=True):
            w.sub_(0.5 * g / norm)
    retain = torch.autograd.grad(0.7 * forward_cross_entropy(reference, method.retain[0]), ref_weights)
    total = [s + r for s, r in zip(sharp, retain, strict=True)]
    total_norm = torch.sqrt(sum(g.pow(2).sum() for g in total))
    expected = [w.detach() - 0.3 * g / total_norm for w, g in zip(ref_weights, total, strict=True)]

    _, _, grad_diff = tiny.set_up(GradDiff, GradDiffConfig(retain_weight=0.7, step_norm=0.3))
    method.step(0, 0, epoch=0)
    for module, want in zip(method.modules, expected, strict=True):
        torch.testing.assert_close(module.weight, want, rtol=1e-4, atol=1e-6)
    grad_diff.step(0, 0, epoch=0)  # the same step without SAM lands elsewhere: the perturbation matters
    plain = [m.weight for m in grad_diff.modules]
    assert any(not torch.allclose(a, m.weight, atol=1e-6) for a, m in zip(plain, method.modules, strict=True))


def test_rho_zero_is_gradient_difference_exactly():
    _, forget, sam = tiny.set_up(SAMGradDiff, Config(rho=0.0))
    _, _, plain = tiny.set_up(GradDiff, GradDiffConfig())
    for index in range(len(forget)):
        sam.step(index, 0, epoch=0)
        plain.step(index, 0, epoch=0)
    for a, b in zip(sam.trained_parameters(), plain.trained_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_negative_rho_is_a_config_error():
    with pytest.raises(ConfigError, match=r"method\.rho must be >= 0"):
        SAMGradDiff(Config(rho=-0.1))
