"""The retain step of method.md §2, shared by CIR and Circuit Breakers.

After each forget step, an ordinary (uncollapsed) plain-SGD step on a retain batch pulls the
residual stream after the last forget layer back toward the original model's:

    L_retain = mean_t ||h_t - h0_t|| / mean_t ||h0_t||
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from cir.data.batches import Batch
from cir.hooks import kept_outputs, layer_outputs
from cir.losses import residual_distance
from cir.optim import sgd_step


class ResidualAnchor:
    """Caches h0 after `layer` on every retain batch, then takes retain steps toward it."""

    def __init__(self, model: PreTrainedModel, batches: Sequence[Batch], layer: int) -> None:
        self.model, self.batches, self.layer = model, batches, layer
        self.block = layer_outputs(model, [layer])
        with torch.no_grad():
            self.originals = [self._residual(batch) for batch in batches]  # (tokens, d) each

    def step(self, index: int, parameters: Sequence[nn.Parameter], lr: float) -> torch.Tensor:
        """One SGD step of learning rate `lr` on retain batch `index`; returns the loss before it."""
        loss = residual_distance(self._residual(self.batches[index]), self.originals[index])
        loss.backward()
        sgd_step(parameters, lr)
        return loss.detach()

    def _residual(self, batch: Batch) -> torch.Tensor:
        return kept_outputs(self.model, batch, self.block, self.layer)[0]
