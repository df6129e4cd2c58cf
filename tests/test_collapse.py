import pytest
import torch

from cir.collapse import (
    Collapse,
    collapsed_weight_grad,
    fit_basis,
    fit_collapse,
    principal_components,
    project_out,
    projector,
)


def spread_vectors(n: int = 400, d: int = 24, seed: int = 0) -> torch.Tensor:
    """Vectors with a nonzero mean and a clearly decaying spectrum (distinct eigenvalues)."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.logspace(1, -1, d)  # 10 ... 0.1
    return torch.randn(n, d, generator=generator) * scales + 3.0


@pytest.mark.parametrize("count", [1, 2, 5, 9])
def test_basis_is_orthonormal_and_contains_mean(count):
    vectors = spread_vectors()
    basis = fit_basis(vectors, count)
    assert basis.shape == (count, vectors.shape[1])
    torch.testing.assert_close(basis @ basis.T, torch.eye(count), atol=1e-5, rtol=0)
    mean = vectors.mean(0)
    assert project_out(mean[None], basis).norm() < 1e-4 * mean.norm()


def test_zero_components_is_empty_basis():
    vectors = spread_vectors()
    basis = fit_basis(vectors, 0)
    assert basis.shape == (0, 24)
    assert torch.equal(project_out(vectors, basis), vectors)


def test_projector_idempotent_symmetric_and_orthogonal_to_basis():
    basis = fit_basis(spread_vectors(), 6)
    p = projector(basis)
    torch.testing.assert_close(p @ p, p, atol=1e-5, rtol=0)
    torch.testing.assert_close(p, p.T, atol=1e-6, rtol=0)
    assert (basis @ p).abs().max() < 1e-5
    # P has rank d - r
    assert torch.linalg.matrix_rank(p).item() == 24 - 6


def test_randomised_pca_matches_eigh_oracle_on_top_components():
    vectors = spread_vectors(n=1000, d=64)
    fast = principal_components(vectors, 6)
    exact = principal_components(vectors, 6, exact=True)
    # same directions up to sign: |cos| of matched components near 1
    cosines = (fast * exact).sum(-1).abs()
    assert cosines.min() > 0.999, cosines
    # and the eigh oracle is right: its first component has the largest variance
    centred = vectors - vectors.mean(0)
    variances = (centred @ exact.T).var(0)
    assert torch.all(variances[:-1] >= variances[1:])
    assert variances[0] >= (centred @ torch.linalg.qr(torch.randn(64, 8))[0]).var(0).max()


def test_basis_subspace_matches_exact():
    vectors = spread_vectors(n=800, d=48)
    fast, exact = fit_basis(vectors, 8), fit_basis(vectors, 8, exact=True)
    torch.testing.assert_close(projector(fast), projector(exact), atol=1e-3, rtol=0)


def test_dependent_directions_are_dropped():
    # all vectors equal: the mean is the only direction, PCs of zero spread are dropped
    vectors = torch.ones(50, 8)
    basis = fit_basis(vectors, 4, exact=True)
    assert basis.shape[0] == 1


def test_collapsed_grad_without_components_is_plain_outer_product_sum():
    x, g = torch.randn(30, 7), torch.randn(30, 5)
    empty_act, empty_grad = fit_basis(x, 0), fit_basis(g, 0)
    torch.testing.assert_close(collapsed_weight_grad(x, g, empty_act, empty_grad), g.T @ x)
    expected = sum(torch.outer(g[t], x[t]) for t in range(30))
    torch.testing.assert_close(
        collapsed_weight_grad(x, g, empty_act, empty_grad), expected, atol=1e-5, rtol=1e-5
    )


def test_collapsed_grad_has_no_component_along_collapsed_directions():
    x, g = spread_vectors(200, 16, seed=1), spread_vectors(200, 12, seed=2)
    act, grad = fit_basis(x, 4), fit_basis(g, 3)
    update = collapsed_weight_grad(x, g, act, grad)  # (12, 16)
    assert (update @ act.T).abs().max() < 1e-3 * update.abs().max()
    assert (grad @ update).abs().max() < 1e-3 * update.abs().max()
    # and the rest of the gradient is kept: the orthogonal complement part is unchanged
    plain = g.T @ x
    torch.testing.assert_close(projector(grad) @ plain @ projector(act), update, atol=1e-2, rtol=1e-4)


def known_spectrum_vectors(n=64, variances=(16.0, 9.0, 4.0, 1.0, 0.25, 0.09, 0.04, 0.01), seed=0):
    """Vectors whose scatter matrix is exactly diag(variances) and whose mean (5 e_7) is orthogonal
    to the top principal axes e_0, e_1, ..., so the soft weights have an exact oracle."""
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, len(variances), generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(raw - raw.mean(0))  # (n, d): orthonormal, zero-mean columns
    mean = torch.zeros(len(variances), dtype=torch.float64)
    mean[-1] = 5.0
    return (q * torch.tensor(variances, dtype=torch.float64).sqrt() + mean).float()


def test_hard_collapse_is_soft_code_with_zero_keep_weights():
    vectors = spread_vectors()
    hard = fit_collapse(vectors, 5, exact=True)
    assert torch.equal(hard.keep, torch.zeros(5))
    assert torch.equal(hard.basis, fit_basis(vectors, 5, exact=True))
    assert torch.equal(project_out(vectors, hard), project_out(vectors, hard.basis))
    # a soft collapse whose keep-weights are all 0 is exactly the hard projector
    soft = fit_collapse(vectors, 5, soft=True, exact=True)
    assert torch.equal(soft.basis, hard.basis) and torch.all(soft.keep[1:] > 0)
    zeroed = Collapse(soft.basis, torch.zeros_like(soft.keep))
    torch.testing.assert_close(projector(zeroed), projector(soft.basis), atol=0, rtol=0)
    torch.testing.assert_close(project_out(vectors, zeroed), project_out(vectors, soft.basis), atol=0, rtol=0)


@pytest.mark.parametrize("exact", [True, False])
def test_soft_keep_weights_follow_eigenvalue_ratio(exact):
    vectors = known_spectrum_vectors()
    collapse = fit_collapse(vectors, 4, soft=True, exact=exact)
    # mean removed; PCs 1..3 (λ = 16, 9, 4) kept with λ_4 / λ_i, λ_4 = 1 the first PC not collapsed
    expected = torch.tensor([0.0, 1 / 16, 1 / 9, 1 / 4])
    torch.testing.assert_close(collapse.keep, expected, atol=1e-5, rtol=1e-4)
    # the directions are the mean axis e_7, then the principal axes e_0, e_1, e_2 (up to sign)
    torch.testing.assert_close(collapse.basis.abs(), torch.eye(8)[[7, 0, 1, 2]], atol=1e-4, rtol=0)


def test_soft_keep_weights_are_zero_without_an_uncollapsed_component():
    vectors = known_spectrum_vectors(variances=(4.0, 1.0, 0.0, 0.0))  # only two axes vary
    collapse = fit_collapse(vectors, 3, soft=True, exact=True)  # mean + both varying PCs: none left
    assert torch.equal(collapse.keep, torch.zeros(3))


def test_soft_operator_is_symmetric_and_shrinks_each_direction_by_its_weight():
    vectors = spread_vectors(n=500, d=24)
    collapse = fit_collapse(vectors, 6, soft=True)
    keep = collapse.keep
    assert keep[0] == 0 and torch.all((keep[1:] > 0) & (keep[1:] < 1)), keep
    assert torch.all(keep[1:-1] <= keep[2:])  # larger spread, smaller weight
    p = projector(collapse)
    torch.testing.assert_close(p, p.T, atol=1e-6, rtol=0)
    torch.testing.assert_close(collapse.basis @ p, keep[:, None] * collapse.basis, atol=1e-6, rtol=0)
    # vectors orthogonal to the basis pass unchanged; project_out agrees with the dense operator
    outside = project_out(torch.randn(10, 24), collapse.basis)
    torch.testing.assert_close(project_out(outside, collapse), outside, atol=1e-5, rtol=0)
    torch.testing.assert_close(project_out(vectors, collapse), vectors @ p, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("soft", [False, True])
def test_more_components_than_dimensions_collapse_everything(soft):
    vectors = spread_vectors(n=100, d=8)
    collapse = fit_collapse(vectors, 12, soft=soft)
    assert collapse.basis.shape == (8, 8) and collapse.keep.shape == (8,)
    assert project_out(vectors, fit_collapse(vectors, 12)).abs().max() < 1e-4
