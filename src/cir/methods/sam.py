"""Sharpness-aware unlearning (Fan et al. 2025, arXiv 2502.05374; method.md §6), for any loss-based method.

Relearning attacks undo forgetting that sits in a sharp minimum of the forget loss: a few steps of
fine-tuning climb back out. SAM makes the forget loss low in a whole neighbourhood instead: the
forget gradient is taken at the worst nearby weights,

    ε = ρ ∇L_f(W) / ||∇L_f(W)||,    G = ∇L_f(W + ε) + retain_weight ∇CE_retain(W),

then the perturbation is undone and W <- W - η G / ||G|| (CIR's normalised step, the same step-size
knob as every method here). ρ is the perturbation's norm over all trained weights; ρ = 0 is the
base method exactly. `SharpnessAware` is mixed into a method that has `forget_loss(index)`,
`modules`, `retain` and a config with `rho`, `retain_weight` and `step_norm` (NPO, Gradient
Difference): `sam_npo` and `sam_grad_diff` are each that one line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from cir.config import require
from cir.hooks import forward_cross_entropy
from cir.modules import ModelShape, weight_update
from cir.optim import global_norm, normalised_step

if TYPE_CHECKING:
    from optuna import Trial


@dataclass
class SharpnessConfig:
    """The perturbation's radius, mixed in before a base config: `Config(SharpnessConfig, NPOConfig)`."""

    rho: float = 0.01  # ||ε|| over all trained weights; 0 = the base method

    def __post_init__(self) -> None:
        """Check the base method's ranges, then rho's.

        Raises:
            ConfigError: naming every field out of range.
        """
        super().__post_init__()  # type: ignore[misc]  # the base method's config, next in the MRO
        require(self, "method", [("rho", ">= 0", self.rho >= 0)])


def with_rho(base_space: Callable[[Trial, ModelShape], dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """`cir tune`'s space of the SAM variant: the base method's plus a log-scaled rho over 1e-3..1."""

    def search_space(trial: Trial, shape: ModelShape) -> dict[str, Any]:
        return {**base_space(trial, shape), "rho": trial.suggest_float("rho", 1e-3, 1.0, log=True)}

    return search_space


class SharpnessAware:
    """The SAM step: forget gradient at W + ε, retain gradient at W, one normalised step from W."""

    config: Any
    modules: Any
    model: Any
    retain: Any
    forget_loss: Callable[[int], torch.Tensor]  # the base method's (an annotation: it must not shadow it)

    def step(self, forget_index: int, retain_index: int, epoch: int) -> dict[str, torch.Tensor]:
        """Forget gradient at W + ε, retain gradient at W, one normalised step from W."""
        weights = [m.weight for m in self.modules]
        loss = self.forget_loss(forget_index)
        grads = torch.autograd.grad(loss, weights)
        originals = [w.detach().clone() for w in weights]  # W itself: W + ε - ε is not W in floats
        with torch.no_grad():
            for weight, shift in zip(weights, self._perturbation(grads), strict=True):
                weight.add_(shift)
        try:
            sharp = torch.autograd.grad(self.forget_loss(forget_index), weights)
        finally:
            with torch.no_grad():  # undone even if the second pass fails: the weights are W again
                for weight, original in zip(weights, originals, strict=True):
                    weight.copy_(original)
        total = list(sharp)
        logs = {"forget_loss": loss.detach()}
        if self.config.retain_weight != 0:
            retain = forward_cross_entropy(self.model, self.retain[retain_index])
            logs["retain_loss"] = retain.detach()
            retained = torch.autograd.grad(self.config.retain_weight * retain, weights)
            total = [g + r for g, r in zip(total, retained, strict=True)]
        updates = [weight_update(m, g) for m, g in zip(self.modules, total, strict=True)]
        logs["update_norm"] = normalised_step(self.modules, updates, self.config.step_norm)
        return logs

    def _perturbation(self, grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """ε = ρ g / ||g|| with the norm over every trained weight (zero for a zero gradient)."""
        scale = self.config.rho / global_norm(grads).clamp_min(torch.finfo(torch.float32).tiny)
        return [g * scale.to(g.device, g.dtype) for g in grads]
