"""The update rules the methods share: normalised SGD (CIR's step) and plain SGD."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cir.modules import TrainedModule, weight_update


@torch.no_grad()
def normalised_step(
    modules: Sequence[TrainedModule], grads: Sequence[torch.Tensor], step_norm: float
) -> float:
    """W <- W - η G / N with N = sqrt(Σ_modules ||G||_F²) (method.md §2); returns N.

    Normalising globally makes η the norm of the whole step, independent of the loss scale. `grads`
    are (d_out, d_in), oriented per module on the way in (Conv1D stores the transpose).
    """
    norm = torch.sqrt(sum(g.float().pow(2).sum() for g in grads))
    if norm == 0:
        return 0.0
    for module, grad in zip(modules, grads, strict=True):
        update = weight_update(module, grad).to(module.weight.device, module.weight.dtype)
        module.weight.sub_(update * (step_norm / norm).to(update.dtype))
    return float(norm)


@torch.no_grad()
def sgd_step(parameters: Sequence[nn.Parameter], lr: float) -> None:
    """Plain SGD, no momentum: p <- p - lr * p.grad; clears the gradients."""
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.sub_(parameter.grad, alpha=lr)
            parameter.grad = None
