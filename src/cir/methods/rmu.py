"""RMU: Representation Misdirection for Unlearning (Li et al. 2024, WMDP, arXiv 2403.03218; method.md §6).

Scrambles the residual stream h_l after decoder layer `layer` on forget tokens by pushing it toward
a fixed random direction, while holding it at the original h0_l on retain tokens:

    L = mean_squared(h_l(forget), c u) + alpha * mean_squared(h_l(retain), h0_l(retain))

u is a unit vector with entries drawn uniformly from [0, 1) (as the authors do), seeded by
`seed`. The steering coefficient c = steering_scale x the original mean residual norm at `layer`
over the forget tokens: the authors' absolute c (6.5 on Zephyr-7B) is tied to that model's
activation scale, so a tiny model needs it relative to its own. The forward passes stop after
`layer`. Each step is CIR's global-norm-scaled SGD step (method.md §2) on the whole L. The
authors' code updates one MLP matrix per layer (the down-projection); here every MLP linear of the
trained layers is updated, like CIR, unless `module_patterns` narrows it (e.g. ["*.mlp.down_proj"]).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedModel

from cir.config import require
from cir.data.batches import Batch
from cir.hooks import kept_outputs, layer_outputs
from cir.losses import mean_squared
from cir.methods.base import MethodConfig, MLPMethod
from cir.modules import ModelShape, check_layers, select_trained
from cir.optim import weighted_step
from cir.registry import METHODS
from cir.space import suggest_step_norm, window_ends

if TYPE_CHECKING:
    from optuna import Trial


@dataclass
class Config(MethodConfig):
    """RMU settings. Bracketed values are the authors' Zephyr-7B settings."""

    layer: int = 2  # decoder layer whose output (residual stream) is steered [7 of 32]
    trained_layers: list[int] | None = None  # MLPs updated; None = layer-2..layer, clipped at 0 [5, 6, 7]
    module_patterns: list[str] | None = None  # fnmatch names overriding the built-in MLP-linear rule
    steering_scale: float = 4.0  # c / mean original residual norm at `layer`; a few x leaves the manifold
    alpha: float = 100.0  # weight of the retain MSE; raise it if general loss rises first [1200]
    step_norm: float = 0.2  # η, the norm of each whole update (CIR's rule); tune at matched budget
    seed: int = 0  # seeds the random direction u

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: naming every field out of range.
        """
        require(
            self,
            "method",
            [
                ("steering_scale", "> 0", self.steering_scale > 0),
                ("alpha", ">= 0", self.alpha >= 0),
                ("step_norm", "> 0", self.step_norm > 0),
            ],
        )


def search_space(trial: Trial, shape: ModelShape) -> dict[str, Any]:
    """`cir tune`'s space: the steered layer, and log-scaled steering_scale, alpha and step_norm.

    The layer is the last of one of `cir.space`'s windows (RMU trains it and the two below).
    """
    return {
        "layer": trial.suggest_categorical("layer", window_ends(shape)),
        "steering_scale": trial.suggest_float("steering_scale", 1.0, 32.0, log=True),
        "alpha": trial.suggest_float("alpha", 1.0, 1000.0, log=True),
        "step_norm": suggest_step_norm(trial),
    }


@METHODS.register(
    "rmu",
    Config,
    "steer a middle layer's forget activations to a fixed random direction",
    search_space=search_space,
)
class RMU(MLPMethod):
    """RMU with CIR's normalised update on the same MLP modules."""

    config: Config

    def setup(self, model: PreTrainedModel, forget: Sequence[Batch], retain: Sequence[Batch]) -> None:
        """Pick the modules, draw u, and cache c and the original retain residual stream at `layer`.

        Raises:
            ModelError: if `layer` or a trained layer is out of range, or no module matches.
            ConfigError: if a trained layer lies above `layer` (no gradient reaches it).
        """
        config = self.config
        self.model, self.forget, self.retain = model, forget, retain
        self.layer = check_layers(model, [config.layer])[0]
        trained = config.trained_layers
        if trained is None:  # the RMU paper's choice: the steered layer and the two below it
            trained = list(range(max(0, self.layer - 2), self.layer + 1))
        self.modules = select_trained(model, trained, config.module_patterns, self.layer)
        self.block = layer_outputs(model, [self.layer])
        with torch.no_grad():
            forget_hidden = torch.cat([self._residual(batch) for batch in forget])  # (tokens, d)
            self.retain_originals = [self._residual(batch) for batch in retain]  # (tokens, d) each
        self.steering_coeff = config.steering_scale * float(forget_hidden.float().norm(dim=-1).mean())
        self.direction = random_direction(forget_hidden.shape[-1], config.seed).to(forget_hidden.device)

    def forget_loss(self, forget_index: int) -> torch.Tensor:
        """mean_squared(h_l(forget), c u) on forget batch `forget_index`, attached to the graph."""
        hidden = self._residual(self.forget[forget_index])  # (tokens, d)
        return mean_squared(hidden, self.steering_coeff * self.direction)  # target (d,) broadcast

    def retain_loss(self, retain_index: int) -> torch.Tensor:
        """mean_squared(h_l(retain), h0_l(retain)) on retain batch `retain_index` (alpha not applied)."""
        hidden = self._residual(self.retain[retain_index])  # (tokens, d)
        return mean_squared(hidden, self.retain_originals[retain_index])

    def step(self, forget_index: int, retain_index: int, epoch: int) -> dict[str, torch.Tensor]:
        """One normalised step W <- W - η G / ||G|| with G = ∇_W (forget MSE + alpha retain MSE)."""
        return weighted_step(
            self.modules,
            [
                ("forget_loss", 1.0, lambda: self.forget_loss(forget_index)),
                ("retain_loss", self.config.alpha, lambda: self.retain_loss(retain_index)),
            ],
            self.config.step_norm,
        )

    def _residual(self, batch: Batch) -> torch.Tensor:
        """The residual stream after `layer` on the batch's kept tokens, (tokens, d)."""
        return kept_outputs(self.model, batch, self.block, self.layer)[0]


def random_direction(size: int, seed: int) -> torch.Tensor:
    """RMU's u: entries uniform in [0, 1), scaled to unit norm, from a generator seeded by `seed`, (size,)."""
    generator = torch.Generator().manual_seed(seed)
    vector = torch.rand(size, generator=generator)  # (size,)
    return vector / vector.norm()
