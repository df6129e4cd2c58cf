"""Circuit Breakers: representation rerouting (Zou et al. 2024, arXiv 2406.04313; method.md §6).

Drives the residual stream h_l after each forget layer l, on forget tokens, orthogonal to (or away
from) the original h0_l:

    L_forget = mean_l mean_t max(0, cos(h_lt, h0_lt))

and, after each forget step, takes the retain step of method.md §2 exactly as CIR does: plain SGD
(lr `retain_lr`) on mean_t ||h_t - h0_t|| / mean_t ||h0_t|| at the residual stream after the last
forget layer, on a retain batch. The forget step is CIR's global-norm-scaled SGD step. Forward
passes stop after the last forget layer.

At the original weights cos = 1 is the loss's maximum, where its gradient vanishes. Training noise
(e.g. LoRA dropout in the authors' setup) breaks that tie. The shared loop runs the model in eval
mode, so with nothing else the first step's direction would come from floating-point rounding (a
gradient norm near 1e-8 in fp32, scaled up to `step_norm` by the normalised step): another CPU's
kernels then give another direction, and the same config kept 4 epochs on one machine and none on
another (benchmarks/README.md 7.14). So the cached targets h0 carry seeded noise of relative size
`tie_break` per token: the first step pushes h away along that noise, the same on every machine,
and once h has moved the noise no longer matters (its share of cos is about tie_break^2 / 2).
`tie_break: 0` restores the rounding-led start, which every result before 7.14 used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedModel

from cir.config import require
from cir.data.batches import Batch
from cir.hooks import kept_outputs, layer_outputs
from cir.losses import rerouting
from cir.methods.base import MethodConfig, MLPMethod
from cir.modules import ModelShape, check_layers, select_trained
from cir.optim import weighted_step
from cir.registry import METHODS
from cir.retain import ResidualAnchor
from cir.space import layer_windows, suggest_layers, suggest_step_norm

if TYPE_CHECKING:
    from optuna import Trial


@dataclass
class Config(MethodConfig):
    """Circuit Breakers settings. Bracketed values are the authors' Llama-3-8B settings."""

    forget_layers: list[int] = field(default_factory=lambda: [1, 2])  # residual streams rerouted [10, 20]
    trained_layers: list[int] | None = None  # MLPs updated; None = every layer up to the last forget layer
    module_patterns: list[str] | None = None  # fnmatch names overriding the built-in MLP-linear rule
    step_norm: float = 0.2  # η, the norm of each whole forget update (CIR's rule); tune at matched budget
    retain_lr: float = 3e-4  # SGD learning rate of the retain step (CIR's, method.md §2); 0 turns it off
    # relative size of the seeded noise on the cached targets h0 that sets the first step's direction
    # (see the module docstring); 0 leaves it to floating-point rounding, machine-dependent
    tie_break: float = 1e-3
    seed: int = 0  # seeds the tie-break noise

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: naming every field out of range.
        """
        require(
            self,
            "method",
            [
                ("forget_layers", "non-empty", len(self.forget_layers) > 0),
                ("step_norm", "> 0", self.step_norm > 0),
                ("retain_lr", ">= 0", self.retain_lr >= 0),
                ("tie_break", "in [0, 0.1]", 0 <= self.tie_break <= 0.1),
            ],
        )


def search_space(trial: Trial, shape: ModelShape) -> dict[str, Any]:
    """`cir tune`'s space: a window of rerouted layers (`cir.space`), log-scaled step_norm and retain_lr."""
    return {
        "forget_layers": suggest_layers(trial, "forget_layers", layer_windows(shape)),
        "step_norm": suggest_step_norm(trial),
        "retain_lr": trial.suggest_float("retain_lr", 1e-4, 1.0, log=True),
    }


@METHODS.register(
    "circuit_breakers",
    Config,
    "reroute forget-token residual streams away from the original",
    search_space=search_space,
)
class CircuitBreakers(MLPMethod):
    """Representation rerouting with CIR's normalised forget update and CIR's retain step."""

    config: Config

    def setup(self, model: PreTrainedModel, forget: Sequence[Batch], retain: Sequence[Batch]) -> None:
        """Pick the modules and cache the original residual streams on forget and retain tokens.

        Raises:
            ModelError: if a layer is out of range or no module matches.
            ConfigError: if a trained layer lies above the last forget layer (no gradient reaches it).
        """
        config = self.config
        self.model, self.forget = model, forget
        self.forget_layers = check_layers(model, config.forget_layers)
        self.last_layer = self.forget_layers[-1]
        self.modules = select_trained(model, config.trained_layers, config.module_patterns, self.last_layer)
        self.blocks = layer_outputs(model, self.forget_layers)
        generator = torch.Generator().manual_seed(config.seed)
        with torch.no_grad():  # per batch, per layer (tokens, d)
            self.originals = [
                [tie_broken(h0, config.tie_break, generator) for h0 in self._residuals(batch)]
                for batch in forget
            ]
        self.anchor = ResidualAnchor(model, retain, self.last_layer)

    def forget_loss(self, forget_index: int) -> torch.Tensor:
        """mean_l mean_t max(0, cos(h_lt, h0_lt)) on forget batch `forget_index`, attached to the graph."""
        return rerouting(self._residuals(self.forget[forget_index]), self.originals[forget_index])

    def step(self, forget_index: int, retain_index: int, epoch: int) -> dict[str, torch.Tensor]:
        """Normalised forget step on the rerouting loss, then the retain step."""
        logs = weighted_step(
            self.modules,
            [("forget_loss", 1.0, lambda: self.forget_loss(forget_index))],
            self.config.step_norm,
        )
        if self.config.retain_lr > 0:
            logs["retain_loss"] = self.anchor.step(
                retain_index, self.trained_parameters(), self.config.retain_lr
            )
        return logs

    def _residuals(self, batch: Batch) -> list[torch.Tensor]:
        """The residual stream after each forget layer on the batch's kept tokens, (tokens, d) each."""
        return kept_outputs(self.model, batch, self.blocks, self.last_layer)


def tie_broken(original: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    """`original` (tokens, d) plus Gaussian noise of norm about `scale` x each token's norm.

    The noise is drawn on the CPU from `generator`, so it is the same on every device and machine.
    """
    if scale == 0:
        return original
    noise = torch.randn(original.shape, generator=generator, dtype=torch.float32)
    noise = noise.to(original.device) / original.shape[-1] ** 0.5  # unit norm per token, on average
    per_token = original.float().norm(dim=-1, keepdim=True)
    return (original.float() + scale * per_token * noise).to(original.dtype)
