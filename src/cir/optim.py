"""The update rules the methods share: normalised SGD (CIR's step) and plain SGD."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from cir.modules import TrainedModule, weight_update


@torch.no_grad()
def normalised_step(
    modules: Sequence[TrainedModule], grads: Sequence[torch.Tensor], step_norm: float
) -> torch.Tensor:
    """W <- W - η G / N with N = sqrt(Σ_modules ||G||_F²) (method.md §2); returns N (a 0-d tensor).

    Normalising globally makes η the norm of the whole step, independent of the loss scale. `grads`
    are (d_out, d_in), oriented per module on the way in (Conv1D stores the transpose). Nothing is
    copied to the host: N stays on the device (a zero gradient makes a zero step).
    """
    norm = global_norm(grads)
    scale = step_norm / norm.clamp_min(torch.finfo(torch.float32).tiny)
    for module, grad in zip(modules, grads, strict=True):
        update = weight_update(module, grad).to(module.weight.device, module.weight.dtype)
        module.weight.sub_(update * scale.to(update.device, update.dtype))
    return norm


def global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """sqrt(Σ ||t||_F²) over tensors that may sit on several devices (accelerate's device_map), as a
    0-d tensor on the first one; summed in order, so runs repeat bit for bit.
    """  # noqa: D205
    device = tensors[0].device
    squares = torch.zeros((), device=device)
    for t in tensors:
        squares = squares + t.float().pow(2).sum().to(device)
    return torch.sqrt(squares)


@torch.no_grad()
def sgd_step(parameters: Sequence[nn.Parameter], lr: float) -> None:
    """Plain SGD, no momentum: p <- p - lr * p.grad; clears the gradients."""
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.sub_(parameter.grad, alpha=lr)
            parameter.grad = None


def weighted_step(
    modules: Sequence[TrainedModule],
    terms: Sequence[tuple[str, float, Callable[[], torch.Tensor]]],
    step_norm: float,
) -> dict[str, torch.Tensor]:
    """One normalised step on the gradient of Σᵢ wᵢ Lᵢ; returns each loss and the update norm.

    Args:
        modules: the trained modules (their weights are the only parameters differentiated).
        terms: (log name, weight wᵢ, function computing Lᵢ) triples; a term of weight 0 is not computed.
        step_norm: η of `normalised_step`.
    """
    logs, weighted = {}, []
    for name, weight, compute in terms:
        if weight != 0:
            loss = compute()
            logs[name] = loss.detach()  # a device tensor: the loop reads it once per epoch
            weighted.append(weight * loss)
    grads = torch.autograd.grad(
        torch.stack(weighted).sum(), [m.weight for m in modules]
    )  # each shaped like its weight
    updates = [weight_update(m, g) for m, g in zip(modules, grads, strict=True)]  # (d_out, d_in)
    logs["update_norm"] = normalised_step(modules, updates, step_norm)
    return logs
