"""The collapse: project the directions shared by all forget tokens out of each update (method.md §2).

For a trained linear module y_t = W x_t, ordinary backprop gives dL/dW = Σₜ gₜ xₜᵀ. CIR replaces it
with the collapsed weight gradient

    G = Σₜ (P_grad gₜ)(P_act xₜ)ᵀ,

where P = I - Bᵀ B projects onto the orthogonal complement of span{mean, top principal components}
of the vectors (B: an orthonormal basis, one row per direction). The authors subtract the directions
one after another without orthonormalising them; orthonormalising first (QR) makes P an exact
orthogonal projector, so the result no longer depends on the order of the directions.

RepSelect's soft (Mahalanobis-style) collapse (§5) shrinks each direction instead of removing it:
P v = v - Σⱼ (1 - wⱼ) <v, bⱼ> bⱼ with keep-weights wⱼ ∈ [0, 1]. P is symmetric with P bⱼ = wⱼ bⱼ;
the hard projector is the same code with every wⱼ = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Collapse:
    """The operator P v = v - Σⱼ (1 - wⱼ) <v, bⱼ> bⱼ: directions to collapse and how much of each to keep."""

    basis: torch.Tensor  # (r, d), orthonormal rows bⱼ
    keep: torch.Tensor  # (r,), keep-weights wⱼ in [0, 1]; all 0 = the hard projector I - Bᵀ B

    @classmethod
    def hard(cls, basis: torch.Tensor) -> Collapse:
        """The hard projector I - Bᵀ B of an orthonormal basis (r, d): every keep-weight 0."""
        return cls(basis, basis.new_zeros(basis.shape[0]))


Basis = torch.Tensor | Collapse  # a bare orthonormal basis (r, d) stands for its hard Collapse


def _spectrum(vectors: torch.Tensor, count: int, exact: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Top `count` (eigenvalue λ (r,), direction (r, d)) pairs of the covariance of `vectors` (n, d)."""
    data = vectors.float()
    count = min(count, data.shape[0], data.shape[1])
    if count == 0:
        return data.new_zeros(0), data.new_zeros((0, data.shape[1]))
    if exact:
        centred = data - data.mean(dim=0)
        eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred)  # ascending, (d,), (d, d)
        spread = eigenvalues.flip(-1)[:count].clamp_min(0).sqrt()  # (count,)
        directions = eigenvectors.flip(-1)[:, :count].T  # (count, d)
    else:
        oversampled = min(count + 8, data.shape[0], data.shape[1])
        _, singular, v = torch.pca_lowrank(data, q=oversampled, center=True, niter=4)  # v: (d, q)
        spread, directions = singular[:count], v[:, :count].T
    # Directions along which the vectors do not vary are numerical noise, not shared structure.
    scale = data.norm() / max(data.shape[0], 1) ** 0.5
    varies = spread > 1e-5 * scale
    return spread[varies].pow(2), directions[varies]  # λ ∝ spread², the scatter's eigenvalues


def principal_components(vectors: torch.Tensor, count: int, exact: bool = False) -> torch.Tensor:
    """Top `count` principal directions of `vectors` (n, d), as rows (count, d), in fp32.

    Randomised (`torch.pca_lowrank`, centred, 4 power iterations) by default; `exact` uses `eigh`
    of the covariance, the test oracle. Signs are arbitrary; only the span matters here. Directions
    of (numerically) zero spread are left out, so fewer than `count` rows may come back.
    """
    return _spectrum(vectors, count, exact)[1]


def fit_collapse(vectors: torch.Tensor, count: int, soft: bool = False, exact: bool = False) -> Collapse:
    """Collapse of span{mean, top (count - 1) PCs} of `vectors` (n, d); r <= count directions.

    Hard: every keep-weight is 0. Soft: the mean is removed (w = 0) and PC i (eigenvalue λᵢ of the
    covariance, i = 1..count-1) is kept with wᵢ = λₖ / λᵢ, where λₖ (k = count) is the eigenvalue of
    the first PC not collapsed (one extra PC is computed; λₖ = 0 when there is none, which is hard).
    The basis is orthonormalised (QR) with the mean first, so wᵢ shrinks bᵢ, the part of PC i
    orthogonal to the mean, not PC i itself: exact when the mean is orthogonal to the PCs. A
    direction linearly dependent on earlier ones is dropped with its weight.
    """
    dim = vectors.shape[1]
    if count == 0:
        return Collapse.hard(vectors.new_zeros((0, dim), dtype=torch.float32))
    mean = vectors.float().mean(dim=0, keepdim=True)  # (1, d)
    eigenvalues, components = _spectrum(vectors, count if soft else count - 1, exact)  # (p,), (p, d)
    first_left = eigenvalues[count - 1] if eigenvalues.shape[0] >= count else eigenvalues.new_zeros(())
    eigenvalues, components = eigenvalues[: count - 1], components[: count - 1]
    keep = torch.cat([eigenvalues.new_zeros(1), (first_left / eigenvalues).clamp(0, 1)])[:dim]  # (p + 1,)
    directions = torch.cat([mean, components])[:dim]  # at most d directions span the whole space
    q, r = torch.linalg.qr(directions.T)  # q: (d, p + 1), columns orthonormal
    scale = r.diagonal().abs().max().clamp_min(torch.finfo(torch.float32).tiny)
    independent = r.diagonal().abs() > 1e-6 * scale
    return Collapse(q[:, independent].T.contiguous(), keep[independent])


def fit_basis(vectors: torch.Tensor, count: int, exact: bool = False) -> torch.Tensor:
    """Orthonormal basis (r, d), r <= count, of span{mean, top (count - 1) PCs} of `vectors` (n, d).

    count = 0 gives an empty basis (no collapse); count = 1 collapses the mean only. PCs are of the
    centred vectors, computed from the raw (uncollapsed) vectors, in fp32. The hard `fit_collapse`.
    """
    return fit_collapse(vectors, count, exact=exact).basis


def project_out(vectors: torch.Tensor, basis: Basis) -> torch.Tensor:
    """P v = v - Σⱼ (1 - wⱼ) <v, bⱼ> bⱼ for each row v of `vectors` (n, d), in their dtype.

    `basis` is a `Collapse`, or orthonormal rows B (r, d) for the hard P v = v - Bᵀ(B v).
    """
    collapse = basis if isinstance(basis, Collapse) else Collapse.hard(basis)
    if collapse.basis.shape[0] == 0:
        return vectors
    rows = collapse.basis.to(vectors.device, vectors.dtype)  # (r, d)
    removed = (1 - collapse.keep).to(vectors.device, vectors.dtype)  # (r,), 1 - wⱼ
    return vectors - ((vectors @ rows.T) * removed) @ rows  # (n, r) @ (r, d) -> (n, d)


def projector(basis: Basis) -> torch.Tensor:
    """The dense operator P = I - Bᵀ diag(1 - w) B (d, d); I - Bᵀ B for a bare basis. For tests."""
    rows = basis.basis if isinstance(basis, Collapse) else basis  # (r, d)
    return project_out(torch.eye(rows.shape[1], dtype=rows.dtype, device=rows.device), basis)  # P symmetric


def collapsed_weight_grad(
    inputs: torch.Tensor, output_grads: torch.Tensor, act_basis: Basis, grad_basis: Basis
) -> torch.Tensor:
    """G = Σₜ (P_grad gₜ)(P_act xₜ)ᵀ, shape (d_out, d_in), in fp32.

    Args:
        inputs: module inputs xₜ of the kept tokens, (tokens, d_in).
        output_grads: gradients gₜ = dL/dyₜ of the same tokens, (tokens, d_out).
        act_basis: input-side `Collapse` (r_act directions of d_in), or orthonormal rows for a hard one.
        grad_basis: output-side `Collapse` (r_grad directions of d_out), or orthonormal rows.
    """
    x = project_out(inputs.float(), act_basis)  # (tokens, d_in)
    g = project_out(output_grads.float(), grad_basis)  # (tokens, d_out)
    return g.T @ x  # (d_out, d_in)
