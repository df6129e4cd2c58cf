"""CIR: Collapse of Irrelevant Representations (Sondej & Yang, arXiv 2509.11816; method.md §2-3).

Each forget step breaks the MLP outputs of the forget layers (MLP-breaking loss), but builds the
weight update only from the parts of each module's input activations and output gradients that are
NOT shared across forget tokens: the mean and top principal components of the previous epoch's
vectors are projected out first. Epoch 0 only gathers those statistics. After each forget step, a
plain SGD retain step keeps the residual stream after the last forget layer close to the original.
With `collapse="soft"` each collapsed principal component is shrunk rather than removed
(RepSelect's Mahalanobis-style variant, `cir.collapse.fit_collapse`).

Left unset, the forget layers and component counts follow the model's shape (`shaped_defaults`):
layers 6-11 with k_act 24 / k_grad 36 on Llama-3.1-8B (32 x 4096, the paper's) and on SmolLM2-135M
(30 x 576), layers 0-2 with 24 / 24 on the 4-layer, 128-wide demo model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import torch
from transformers import PreTrainedModel

from cir.collapse import Collapse, collapsed_weight_grad, fit_collapse
from cir.config import require
from cir.data.batches import Batch
from cir.hooks import forward, kept_outputs, on_kept, record
from cir.losses import mlp_breaking
from cir.methods.base import MethodConfig, MLPMethod
from cir.modules import (
    ModelShape,
    TrainedModule,
    check_layers,
    mlp_blocks,
    model_shape,
    select_trained,
    weight_update,
)
from cir.optim import normalised_step
from cir.registry import METHODS
from cir.retain import ResidualAnchor
from cir.space import layer_windows, long_window, suggest_components, suggest_layers, suggest_step_norm

if TYPE_CHECKING:
    from optuna import Trial

FORGET_START = 20  # percent of depth where shaped_defaults' forget window starts (one of cir.space's)
PAPER_K_ACT, PAPER_K_GRAD = 24, 36  # the paper's component counts: shaped_defaults' caps


@dataclass
class Config(MethodConfig):
    """CIR settings. Bracketed values are the paper's Llama-3.1-8B settings (preset `paper_llama8b`).

    forget_layers, k_act and k_grad left at None follow the model's shape (`shaped_defaults`); step
    norm and retain rate are the best of 8 `cir tune` trials on the demo model at the 1% budget
    (benchmarks/demo-tune.db, trial 4, rounded), see benchmarks/README.md. That step, 0.1 per batch
    at the demo's 38 forget batches an epoch, is 0.24 in the loop's default per-epoch meaning
    (`UnlearnConfig.step_per`, 16 reference batches: 0.1 x 38 / 16).
    """

    forget_layers: list[int] | None = None  # MLP outputs the loss breaks; None = shaped_defaults [6..11]
    trained_layers: list[int] | None = None  # MLPs updated; None = every layer up to the last forget layer
    module_patterns: list[str] | None = None  # fnmatch names overriding the built-in MLP-linear rule
    k_act: int | None = None  # input-side directions: mean + (k_act - 1) PCs; 0 = none [24]
    k_grad: int | None = None  # output-gradient-side directions, same rule [36]
    collapse: Literal["hard", "soft"] = "hard"  # hard removes the directions; soft shrinks PC i by λ_k/λ_i
    step_norm: float = 0.24  # η, the norm of each whole forget update at 16 batches an epoch [0.2]
    retain_lr: float = 0.2  # SGD learning rate of the retain step; 0 turns it off [3e-4]
    exact_pca: bool = False  # eigh instead of randomised PCA (slow; a test oracle)
    stats_on_cpu: bool = False  # keep each epoch's vectors on CPU (large models on a small GPU)

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: naming every field out of range.
        """
        require(
            self,
            "method",
            [
                ("forget_layers", "non-empty or null", self.forget_layers != []),
                ("k_act", ">= 0 or null", self.k_act is None or self.k_act >= 0),
                ("k_grad", ">= 0 or null", self.k_grad is None or self.k_grad >= 0),
                ("step_norm", "> 0", self.step_norm > 0),
                ("retain_lr", ">= 0", self.retain_lr >= 0),
            ],
        )


def shaped_defaults(shape: ModelShape) -> dict[str, Any]:
    """CIR's forget layers and component counts for a model of this shape (the fields' None).

    Layers: the long window of `cir.space` starting at 20% of depth (floored): 20% of the layers
    (rounded), at least 3. Components: 3/16 of the width, at most the paper's 24 (k_act) and 36
    (k_grad), at least 1. It gives:

    | model | layers x width | forget_layers | k_act / k_grad |
    |---|---|---|---|
    | the demo model | 4 x 128 | 0-2 (its tuned layers) | 24 / 24 (tuned: 54 / 24) |
    | SmolLM2-135M | 30 x 576 | 6-11 (method.md §9 hand-set 4-9) | 24 / 36 (§9's) |
    | Llama-3.1-8B | 32 x 4096 | 6-11 (the paper's) | 24 / 36 (the paper's) |
    """
    width = 3 * shape.hidden // 16
    return {
        "forget_layers": long_window(shape, FORGET_START),
        "k_act": max(1, min(PAPER_K_ACT, width)),
        "k_grad": max(1, min(PAPER_K_GRAD, width)),
    }


def resolve(config: Config, shape: ModelShape) -> Config:
    """A copy of `config` with each field left at None (forget_layers, k_act, k_grad) set by the rule."""
    rule = shaped_defaults(shape)
    return replace(config, **{key: value for key, value in rule.items() if getattr(config, key) is None})


class EpochVectors:
    """Every kept forget token's module input x and output gradient g of one epoch, per module.

    Only the sides with components to collapse are stored. Memory: tokens x sum over modules of
    (d_in + d_out) values in the model dtype; e.g. 90k tokens through 6 Llama-8B layers (3 modules
    each) in bf16 is about 58 GB, so large runs set `stats_on_cpu` or use fewer forget tokens.
    """

    def __init__(self, modules: Sequence[TrainedModule], config: Config) -> None:
        assert config.k_act is not None and config.k_grad is not None  # resolved by `resolve`
        self.k_act, self.k_grad = config.k_act, config.k_grad
        self.config = config
        self.device = torch.device("cpu") if config.stats_on_cpu else None
        # (d_out, d_in) of each module, whatever way round its weight is stored
        self.shapes = [weight_update(m, m.weight).shape for m in modules]
        self.inputs: list[list[torch.Tensor]] = [[] for _ in modules]
        self.grads: list[list[torch.Tensor]] = [[] for _ in modules]

    def add(self, index: int, inputs: torch.Tensor, grads: torch.Tensor) -> None:
        """Store one batch's (tokens, d_in) inputs and (tokens, d_out) gradients of module `index`."""
        if self.k_act > 0:
            self.inputs[index].append(inputs.to(self.device or inputs.device))
        if self.k_grad > 0:
            self.grads[index].append(grads.to(self.device or grads.device, inputs.dtype))

    def collapses(self) -> list[tuple[Collapse, Collapse]]:
        """Per module, the (input-side, output-gradient-side) collapse to apply next epoch."""
        return [
            (self._collapse(xs, self.k_act, d_in), self._collapse(gs, self.k_grad, d_out))
            for xs, gs, (d_out, d_in) in zip(self.inputs, self.grads, self.shapes, strict=True)
        ]

    def _collapse(self, vectors: list[torch.Tensor], count: int, dim: int) -> Collapse:
        if count == 0 or not vectors:
            return Collapse.hard(torch.zeros((0, dim)))
        soft = self.config.collapse == "soft"
        return fit_collapse(torch.cat(vectors), count, soft, self.config.exact_pca)


def search_space(trial: Trial, shape: ModelShape, components: bool = True) -> dict[str, Any]:
    """`cir tune`'s space: forget layers, step_norm and retain_lr; k_act and k_grad if `components`.

    The forget layers are a window of `cir.space`; the rates are log-scaled; each k runs from 1 to
    min(64, width / 2), log-scaled.
    """
    overrides = {
        "forget_layers": suggest_layers(trial, "forget_layers", layer_windows(shape)),
        "step_norm": suggest_step_norm(trial),
        "retain_lr": trial.suggest_float("retain_lr", 1e-4, 1.0, log=True),
    }
    if components:
        overrides["k_act"] = suggest_components(trial, "k_act", shape)
        overrides["k_grad"] = suggest_components(trial, "k_grad", shape)
    return overrides


@METHODS.register(
    "cir",
    Config,
    "MLP breaking with shared directions collapsed out of every update (the paper)",
    search_space=search_space,
    role="headline",
)
class CIR(MLPMethod):
    """The CIR method; `mlp_breaking` is the same class with zero components."""

    config: Config

    def setup(self, model: PreTrainedModel, forget: Sequence[Batch], retain: Sequence[Batch]) -> None:
        """Pick the modules and cache the original MLP outputs and retain-layer residual stream.

        Raises:
            ModelError: if a layer is out of range or no module matches.
            ConfigError: if a trained layer lies above the last forget layer (no gradient reaches it).
        """
        config = self.config = resolve(self.config, model_shape(model))
        self.model, self.forget = model, forget
        assert config.forget_layers is not None  # resolved by `resolve`
        self.forget_layers = check_layers(model, config.forget_layers)
        self.last_layer = self.forget_layers[-1]
        self.modules = select_trained(model, config.trained_layers, config.module_patterns, self.last_layer)
        self.blocks = mlp_blocks(model, self.forget_layers)
        with torch.no_grad():
            self.originals = [kept_outputs(model, b, self.blocks, self.last_layer) for b in forget]
        self.norms = [[o.norm(dim=-1).mean() for o in outputs] for outputs in self.originals]
        self.anchor = ResidualAnchor(model, retain, self.last_layer)
        self.collapses: list[tuple[Collapse, Collapse]] | None = None
        self.vectors = EpochVectors(self.modules, config)

    @property
    def collapse_bases(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """Per module, the orthonormal (act_basis, grad_basis) rows collapsed now; None in epoch 0."""
        if self.collapses is None:
            return None
        return [(act.basis, grad.basis) for act, grad in self.collapses]

    def step(self, forget_index: int, retain_index: int, epoch: int) -> dict[str, torch.Tensor]:
        """Forget step with the collapsed, normalised update, then the retain step (none in epoch 0)."""
        batch = self.forget[forget_index]
        kept = batch.kept_tokens()
        with (
            record(self.blocks) as block_outputs,
            record([m.module for m in self.modules], inputs=True) as io,
        ):
            forward(self.model, batch, self.last_layer)
        outputs = [on_kept(r.outputs[0], kept) for r in block_outputs]  # per layer (tokens, d_model)
        loss = mlp_breaking(outputs, self.originals[forget_index], self.norms[forget_index])
        output_grads = torch.autograd.grad(  # per module (batch, seq, d_out)
            loss, [r.outputs[0] for r in io], allow_unused=True, materialize_grads=True
        )
        inputs = [on_kept(r.inputs[0], kept) for r in io]  # per module (tokens, d_in)
        grads = [on_kept(g, kept) for g in output_grads]  # per module (tokens, d_out)
        for index, (x, g) in enumerate(zip(inputs, grads, strict=True)):
            self.vectors.add(index, x, g)
        logs = {"forget_loss": loss.detach()}  # device tensors: the loop reads them once per epoch
        if self.collapses is None:  # epoch 0: statistics only
            return logs
        updates = [
            collapsed_weight_grad(x, g, act, grad)
            for x, g, (act, grad) in zip(inputs, grads, self.collapses, strict=True)
        ]
        logs["update_norm"] = normalised_step(self.modules, updates, self.config.step_norm)
        if self.config.retain_lr > 0:
            logs["retain_loss"] = self.anchor.step(
                retain_index, self.trained_parameters(), self.config.retain_lr
            )
        return logs

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Fit next epoch's collapses on this epoch's raw vectors, then start a new store."""
        self.collapses = self.vectors.collapses()
        self.vectors = EpochVectors(self.modules, self.config)
        return {}
