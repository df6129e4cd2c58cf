"""The Method protocol, the base of method configs, and the little every MLP-training method shares.

That little is the config, the trained weights and an empty epoch end; the real shared work lives
in pure functions (losses, collapse, hooks, optim), not in parent classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Protocol, TypeVar

import torch
from torch import nn
from transformers import PreTrainedModel

from cir.data.batches import Batch
from cir.modules import TrainedModule


@dataclass
class MethodConfig:
    """Base of every method's config dataclass (fields are each method's own).

    Two class-level facts tell the shared loop how to scale a method's step (back-off, data size):
    which fields are step sizes, and whether the weights move at every batch or once per epoch.
    """

    step_fields: ClassVar[tuple[str, ...]] = ("step_norm",)  # multiplied by the loop's step scale
    updates_per_batch: ClassVar[bool] = True  # False: one update per epoch, in end_epoch (no in-epoch check)

    def step_grows_with_batches(self) -> bool:
        """Whether an epoch's movement grows with its number of batches at a fixed step setting.

        True for a method that steps every batch; a once-per-epoch method says whether its one update
        is a sum over the epoch's batches. `UnlearnConfig.data_scale` divides such a step by the
        batches (per `reference_batches`).
        """
        return self.updates_per_batch


C = TypeVar("C", bound=MethodConfig)


def scaled_step(config: C, scale: float) -> C:
    """A copy of `config` with each of its step fields (that is set) multiplied by `scale`."""
    if scale == 1.0:
        return config
    fields = {name: getattr(config, name) for name in config.step_fields}
    return replace(config, **{name: value * scale for name, value in fields.items() if value is not None})


class Method(Protocol):
    """One unlearning method, driven by the shared loop in `cir.unlearn`."""

    config: MethodConfig  # the loop swaps in a copy with a scaled step between steps

    def setup(self, model: PreTrainedModel, forget: Sequence[Batch], retain: Sequence[Batch]) -> None:
        """Cache what the method needs from the original model before any update."""

    def trained_parameters(self) -> list[nn.Parameter]:
        """The parameters the method updates (snapshotted by the budget, unfrozen by the loop)."""

    def step(self, forget_index: int, retain_index: int, epoch: int) -> dict[str, float | torch.Tensor]:
        """One update on forget batch `forget_index` and retain batch `retain_index`; returns losses.

        Values may be 0-d device tensors: the loop sums them on the device and reads them once per
        epoch, so a step never waits for the host.
        """

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Called after each epoch's steps (e.g. to refit the collapse bases); returns extra metrics."""


class MLPMethod:
    """What every method that trains a list of MLP modules (`self.modules`, set in setup) shares."""

    modules: list[TrainedModule]

    def __init__(self, config: MethodConfig) -> None:
        self.config = config

    def trained_parameters(self) -> list[nn.Parameter]:
        """The weights of the trained MLP modules."""
        return [m.weight for m in self.modules]

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Nothing to refresh between epochs (methods that refit something override this)."""
        return {}
