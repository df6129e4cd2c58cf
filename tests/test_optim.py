"""The shared update rules: one global step norm across modules (either weight layout), plain SGD."""

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from cir.modules import TrainedModule
from cir.optim import normalised_step, sgd_step, weighted_step


def modules():
    torch.manual_seed(0)
    linear, conv = nn.Linear(3, 2, bias=False), Conv1D(2, 3)  # both compute 3 -> 2
    return [TrainedModule("a", 0, linear), TrainedModule("b", 0, conv)]


def test_normalised_step_has_norm_eta_across_modules_and_orients_conv1d():
    trained = modules()
    before = [m.weight.detach().clone() for m in trained]
    grads = [torch.full((2, 3), 1.0), torch.full((2, 3), 2.0)]  # (d_out, d_in) for both
    norm = normalised_step(trained, grads, 0.5)
    assert norm.item() == pytest.approx(30**0.5)  # sqrt(6 * 1 + 6 * 4)
    scale = 0.5 / 30**0.5
    torch.testing.assert_close(trained[0].weight, before[0] - scale * grads[0])
    torch.testing.assert_close(trained[1].weight, before[1] - scale * grads[1].T)  # Conv1D: (d_in, d_out)
    moved = sum((m.weight - b).pow(2).sum() for m, b in zip(trained, before, strict=True)) ** 0.5
    assert moved.item() == pytest.approx(0.5)


def test_a_zero_gradient_makes_a_zero_step():
    trained = modules()
    before = [m.weight.detach().clone() for m in trained]
    normalised_step(trained, [torch.zeros(2, 3), torch.zeros(2, 3)], 1.0)
    assert all(torch.equal(m.weight, b) for m, b in zip(trained, before, strict=True))


def test_sgd_step_moves_by_lr_times_grad_and_clears_it():
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    a.grad = torch.tensor([1.0, -2.0])  # b has no gradient: left alone
    sgd_step([a, b], 0.1)
    assert a.tolist() == pytest.approx([0.9, 1.2]) and a.grad is None and b.tolist() == [1.0, 1.0]


def test_weighted_step_follows_the_weighted_sum_and_skips_zero_weights():
    trained = modules()
    weights = [m.weight for m in trained]
    x = torch.ones(1, 3)

    def first():
        return trained[0].module(x).sum()

    def second():
        return trained[1].module(x).pow(2).sum()

    def never():
        raise AssertionError("a term of weight 0 must not be computed")

    expected = modules()
    grads = torch.autograd.grad(
        2.0 * expected[0].module(x).sum() - expected[1].module(x).pow(2).sum(), [m.weight for m in expected]
    )
    oriented = [grads[0], grads[1].T]
    normalised_step(expected, oriented, 0.3)
    logs = weighted_step(trained, [("f", 2.0, first), ("r", -1.0, second), ("z", 0.0, never)], 0.3)
    assert set(logs) == {"f", "r", "update_norm"}
    for got, want in zip(weights, expected, strict=True):
        torch.testing.assert_close(got, want.weight)
