"""The collapse: project the directions shared by all forget tokens out of each update (method.md §2).

For a trained linear module y_t = W x_t, ordinary backprop gives dL/dW = Σₜ gₜ xₜᵀ. CIR replaces it
with the collapsed weight gradient

    G = Σₜ (P_grad gₜ)(P_act xₜ)ᵀ,

where P = I - Bᵀ B projects onto the orthogonal complement of span{mean, top principal components}
of the vectors (B: an orthonormal basis, one row per direction). The authors subtract the directions
one after another without orthonormalising them; orthonormalising first (QR) makes P an exact
orthogonal projector, so the result no longer depends on the order of the directions.
"""

from __future__ import annotations

import torch


def principal_components(vectors: torch.Tensor, count: int, exact: bool = False) -> torch.Tensor:
    """Top `count` principal directions of `vectors` (n, d), as rows (count, d), in fp32.

    Randomised (`torch.pca_lowrank`, centred, 4 power iterations) by default; `exact` uses `eigh`
    of the covariance, the test oracle. Signs are arbitrary; only the span matters here. Directions
    of (numerically) zero spread are left out, so fewer than `count` rows may come back.
    """
    data = vectors.float()
    count = min(count, data.shape[0], data.shape[1])
    if count == 0:
        return data.new_zeros((0, data.shape[1]))
    if exact:
        centred = data - data.mean(dim=0)
        eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred)  # ascending, (d,), (d, d)
        spread, directions = (
            eigenvalues.flip(-1)[:count].clamp_min(0).sqrt(),
            eigenvectors.flip(-1)[:, :count].T,
        )
    else:
        oversampled = min(count + 8, data.shape[0], data.shape[1])
        _, singular, v = torch.pca_lowrank(data, q=oversampled, center=True, niter=4)  # v: (d, q)
        spread, directions = singular[:count], v[:, :count].T
    # Directions along which the vectors do not vary are numerical noise, not shared structure.
    scale = data.norm() / max(data.shape[0], 1) ** 0.5
    return directions[spread > 1e-5 * scale]


def fit_basis(vectors: torch.Tensor, count: int, exact: bool = False) -> torch.Tensor:
    """Orthonormal basis (r, d), r <= count, of span{mean, top (count - 1) PCs} of `vectors` (n, d).

    count = 0 gives an empty basis (no collapse); count = 1 collapses the mean only. PCs are of the
    centred vectors, computed from the raw (uncollapsed) vectors, in fp32. Directions that are
    linearly dependent on earlier ones are dropped.
    """
    dim = vectors.shape[1]
    if count == 0:
        return vectors.new_zeros((0, dim), dtype=torch.float32)
    mean = vectors.float().mean(dim=0, keepdim=True)  # (1, d)
    directions = torch.cat([mean, principal_components(vectors, count - 1, exact)])  # (count, d)
    q, r = torch.linalg.qr(directions.T)  # q: (d, count), columns orthonormal
    scale = r.diagonal().abs().max().clamp_min(torch.finfo(torch.float32).tiny)
    independent = r.diagonal().abs() > 1e-6 * scale
    return q[:, independent].T.contiguous()


def project_out(vectors: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """P v = v - Bᵀ(B v) for each row v of `vectors` (n, d), in the dtype of `vectors`."""
    if basis.shape[0] == 0:
        return vectors
    basis = basis.to(vectors.device, vectors.dtype)
    return vectors - (vectors @ basis.T) @ basis  # (n, r) @ (r, d) -> (n, d)


def projector(basis: torch.Tensor) -> torch.Tensor:
    """The dense projector P = I - Bᵀ B (d, d); for tests and small models."""
    dim = basis.shape[1]
    return torch.eye(dim, dtype=basis.dtype, device=basis.device) - basis.T @ basis


def collapsed_weight_grad(
    inputs: torch.Tensor, output_grads: torch.Tensor, act_basis: torch.Tensor, grad_basis: torch.Tensor
) -> torch.Tensor:
    """G = Σₜ (P_grad gₜ)(P_act xₜ)ᵀ, shape (d_out, d_in), in fp32.

    Args:
        inputs: module inputs xₜ of the kept tokens, (tokens, d_in).
        output_grads: gradients gₜ = dL/dyₜ of the same tokens, (tokens, d_out).
        act_basis: orthonormal rows (r_act, d_in) to collapse on the input side.
        grad_basis: orthonormal rows (r_grad, d_out) to collapse on the output side.
    """
    x = project_out(inputs.float(), act_basis)  # (tokens, d_in)
    g = project_out(output_grads.float(), grad_basis)  # (tokens, d_out)
    return g.T @ x  # (d_out, d_in)
