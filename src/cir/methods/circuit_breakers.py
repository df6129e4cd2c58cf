"""Circuit Breakers: representation rerouting (Zou et al. 2024, arXiv 2406.04313; method.md §6).

Drives the residual stream h_l after each forget layer l, on forget tokens, orthogonal to (or away
from) the original h0_l:

    L_forget = mean_l mean_t max(0, cos(h_lt, h0_lt))

and, after each forget step, takes the retain step of method.md §2 exactly as CIR does: plain SGD
(lr `retain_lr`) on mean_t ||h_t - h0_t|| / mean_t ||h0_t|| at the residual stream after the last
forget layer, on a retain batch. The forget step is CIR's global-norm-scaled SGD step. Forward
passes stop after the last forget layer.

At the original weights cos = 1 is the loss's maximum, where its gradient vanishes. Training noise
(e.g. LoRA dropout in the authors' setup) breaks that tie; the shared loop runs the model in eval
mode, so here the first step's direction comes from floating-point rounding (a gradient norm near
1e-8 in fp32, scaled up to `step_norm` by the normalised step), and later steps follow the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedModel

from cir.data.batches import Batch
from cir.errors import ConfigError
from cir.hooks import forward, layer_outputs, record
from cir.losses import rerouting, residual_distance
from cir.methods.base import MethodConfig
from cir.modules import TrainedModule, check_layers, freeze_all_but, mlp_modules, weight_update
from cir.optim import normalised_step, sgd_step
from cir.registry import METHODS


@dataclass
class Config(MethodConfig):
    """Circuit Breakers settings. Bracketed values are the authors' Llama-3-8B settings."""

    forget_layers: list[int] = field(default_factory=lambda: [1, 2])  # residual streams rerouted [10, 20]
    trained_layers: list[int] | None = None  # MLPs updated; None = every layer up to the last forget layer
    module_patterns: list[str] | None = None  # fnmatch names overriding the built-in MLP-linear rule
    step_norm: float = 0.2  # η, the norm of each whole forget update (CIR's rule); tune at matched budget
    retain_lr: float = 3e-4  # SGD learning rate of the retain step (CIR's, method.md §2); 0 turns it off


@METHODS.register("circuit_breakers", Config, "reroute forget-token residual streams away from the original")
class CircuitBreakers:
    """Representation rerouting with CIR's normalised forget update and CIR's retain step."""

    def __init__(self, config: Config) -> None:
        """Check the settings that need no model.

        Raises:
            ConfigError: naming every setting out of range at once (no forget layer, empty trained_layers,
                step_norm <= 0, retain_lr < 0).
        """
        problems = [
            f"method.{name} must be {rule}, got {getattr(config, name)}"
            for name, rule, ok in (
                ("forget_layers", "non-empty", len(config.forget_layers) > 0),
                ("trained_layers", "non-empty or null", config.trained_layers != []),
                ("step_norm", "> 0", config.step_norm > 0),
                ("retain_lr", ">= 0", config.retain_lr >= 0),
            )
            if not ok
        ]
        if problems:
            raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
        self.config = config

    def setup(self, model: PreTrainedModel, forget: Sequence[Batch], retain: Sequence[Batch]) -> None:
        """Pick the modules and cache the original residual streams on forget and retain tokens.

        Raises:
            ModelError: if a layer is out of range or no module matches.
            ConfigError: if a trained layer lies above the last forget layer (no gradient reaches it).
        """
        config = self.config
        self.model, self.forget, self.retain = model, forget, retain
        self.forget_layers = check_layers(model, config.forget_layers)
        self.last_layer = self.forget_layers[-1]
        trained = config.trained_layers if config.trained_layers is not None else range(self.last_layer + 1)
        if max(trained) > self.last_layer:
            raise ConfigError(
                f"method.trained_layers {list(trained)}: layers above the last forget "
                f"layer {self.last_layer} get no gradient from the rerouting loss"
            )
        self.modules: list[TrainedModule] = mlp_modules(model, trained, config.module_patterns)
        freeze_all_but(model, self.trained_parameters())
        self.blocks = layer_outputs(model, self.forget_layers)
        with torch.no_grad():
            self.originals = [self._residuals(batch) for batch in forget]  # per batch, per layer (tokens, d)
            self.retain_originals = [self._residuals(batch)[-1] for batch in retain]  # (tokens, d) each

    def trained_parameters(self) -> list[nn.Parameter]:
        """The weights of the trained MLP modules."""
        return [m.weight for m in self.modules]

    def forget_loss(self, forget_index: int) -> torch.Tensor:
        """mean_l mean_t max(0, cos(h_lt, h0_lt)) on forget batch `forget_index`, attached to the graph."""
        return rerouting(self._residuals(self.forget[forget_index]), self.originals[forget_index])

    def step(self, forget_index: int, retain_index: int, epoch: int) -> dict[str, float]:
        """Normalised forget step on the rerouting loss, then the retain step."""
        loss = self.forget_loss(forget_index)
        grads = torch.autograd.grad(loss, self.trained_parameters())  # each shaped like its weight
        updates = [weight_update(m, g) for m, g in zip(self.modules, grads, strict=True)]  # (d_out, d_in)
        logs = {
            "forget_loss": float(loss.detach()),
            "update_norm": normalised_step(self.modules, updates, self.config.step_norm),
        }
        if self.config.retain_lr > 0:
            logs["retain_loss"] = self._retain_step(retain_index)
        return logs

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Nothing to refresh between epochs."""
        return {}

    def _retain_step(self, retain_index: int) -> float:
        """Plain SGD on residual_distance at the last forget layer (method.md §2); returns the loss."""
        batch = self.retain[retain_index]
        loss = residual_distance(self._residuals(batch)[-1], self.retain_originals[retain_index])
        loss.backward()
        sgd_step(self.trained_parameters(), self.config.retain_lr)
        return float(loss.detach())

    def _residuals(self, batch: Batch) -> list[torch.Tensor]:
        """The residual stream after each forget layer on the batch's kept tokens, (tokens, d) each."""
        with record(self.blocks) as residual:
            forward(self.model, batch, self.last_layer)
        kept = batch.kept_tokens()
        return [r.outputs[0][kept] for r in residual]
