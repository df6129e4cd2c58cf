"""Each loss of `cir.losses` against a value worked out by hand."""

import math

import pytest
import torch

from cir import losses

T = torch.tensor


def test_mlp_breaking_is_the_mean_over_layers_of_the_clipped_normalised_dot_product():
    outputs = [T([[1.0, 0.0], [0.0, 1.0]]), T([[-1.0, 0.0]])]
    originals = [T([[1.0, 0.0], [1.0, 0.0]]), T([[1.0, 0.0]])]
    norms = [T(1.0), T(2.0)]
    # layer 1: dots 1 and 0 (mean 0.5); layer 2: -1/4, clipped to 0
    assert losses.mlp_breaking(outputs, originals, norms).item() == pytest.approx(0.25)


def test_residual_distance_is_relative_to_the_original_norm():
    assert losses.residual_distance(T([[3.0, 4.0]]), T([[3.0, 0.0]])).item() == pytest.approx(4 / 3)
    assert losses.residual_distance(T([[3.0, 0.0]]), T([[3.0, 0.0]])).item() == 0.0


def test_rerouting_clips_negative_cosines():
    hidden, originals = [T([[2.0, 0.0]]), T([[-1.0, 0.0]])], [T([[1.0, 0.0]]), T([[1.0, 0.0]])]
    assert losses.rerouting(hidden, originals).item() == pytest.approx(0.5)  # cos 1 and relu(-1) = 0


def test_cross_entropy_counts_only_targets_predicted_from_real_tokens():
    vocab = 8
    logits = torch.zeros(1, 3, vocab)  # uniform: every next token has log p = -log 8
    logits[0, 0, 5] = 100.0  # the pad position's prediction: must not count
    ids, mask = T([[0, 5, 6]]), T([[0, 1, 1]])  # left-padded
    assert losses.target_mask(mask).tolist() == [[0.0, 1.0]]
    assert losses.cross_entropy(logits, ids, mask).item() == pytest.approx(math.log(vocab))
    assert losses.sequence_logprob(logits, ids, mask).tolist() == pytest.approx([-math.log(vocab)])


def test_npo_and_simnpo_at_their_balance_points():
    beta = 0.5
    same = T([-3.0, -1.0])
    assert losses.npo(same, same, beta).item() == pytest.approx(2 / beta * math.log(2))
    assert losses.simnpo(T([0.0]), T([4.0]), beta, 0.0).item() == pytest.approx(2 / beta * math.log(2))
    # a sequence already less likely than the reference costs less
    assert losses.npo(same - 5, same, beta).item() < losses.npo(same, same, beta).item()


def test_mean_squared_broadcasts_the_target():
    assert losses.mean_squared(T([[1.0, 2.0], [3.0, 2.0]]), T([1.0, 2.0])).item() == pytest.approx(1.0)
