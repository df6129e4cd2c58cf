"""RepSelect (Sondej, Yang & Mahdi, arXiv 2606.17168; method.md §5): collapse the weight gradient itself.

Where CIR collapses each module's input activations and output gradients separately, RepSelect
collapses the weight gradient of a whole epoch. For every trained MLP module, the gradient of the
forget loss L = -CE summed over the epoch's forget batches, with its SVD,

    G = Σ_batches ∇_W L = Σᵢ sᵢ uᵢ vᵢᵀ   (d_out, d_in), s₀ ≥ s₁ ≥ ...,

has its top k singular directions collapsed, and one plain SGD step W <- W - lr G̃ is taken:

    hard: G̃ = G - Σ_{i<k} sᵢ uᵢ vᵢᵀ,
    soft: G̃ = G - Σ_{i<k} (1 - wᵢ) sᵢ uᵢ vᵢᵀ with wᵢ = s_k² / sᵢ² (sᵢ -> s_k² / sᵢ: shrunk by λ_k/λᵢ, λ = s²).

Both are `cir.collapse`'s operator on the output side, G̃ = P G with P = I - Σ_{i<k} (1 - wᵢ) uᵢ uᵢᵀ
(w = 0 for hard): it uses uᵢᵀ G for sᵢ vᵢᵀ, the same for an exact SVD and still an exact projection
for a randomised one. Optionally an adversarial LoRA adapter first relearns the forget set each epoch
and stays active while the gradient is gathered, so the update aims at what relearning would bring
back; it is unloaded (never merged) before the step, so the saved model holds no adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from transformers import PreTrainedModel

from cir.adapter import lora_adapter
from cir.collapse import Collapse, project_out
from cir.config import require
from cir.data.batches import Batch
from cir.hooks import forward_cross_entropy
from cir.methods.base import MethodConfig, MLPMethod
from cir.modules import ModelShape, freeze_all_but, select_trained, weight_update
from cir.optim import normalised_step
from cir.registry import METHODS
from cir.space import layer_windows, suggest_components, suggest_layers, suggest_step_norm

if TYPE_CHECKING:
    from optuna import Trial


@dataclass
class Config(MethodConfig):
    """RepSelect settings; run it with `unlearn.budget_metric=kl unlearn.budget=0.01`.

    Its disruption budget is the KL to the original model (§5, 0.01 nats per token), not the loop's
    default general-loss rise. The gradient is summed over an epoch's batches, so `lr` scales as
    1 / batches; 1.0 was picked on the demo model (24 facts, 5 batches of 16, hard, k = 8: KL 0.004
    after 4 epochs). `step_norm` makes the step independent of that scale, like CIR's.
    """

    step_fields: ClassVar[tuple[str, ...]] = ("lr", "step_norm")  # whichever sets the step
    updates_per_batch: ClassVar[bool] = False  # one update per epoch, in end_epoch

    def step_grows_with_batches(self) -> bool:
        """With `lr` the update is lr x the epoch's summed gradient, which grows with the batches."""
        return self.step_norm is None

    trained_layers: list[int] | None = None  # MLPs updated; None = every layer (the loss reads the logits)
    module_patterns: list[str] | None = None  # fnmatch names overriding the built-in MLP-linear rule
    k: int = 8  # top singular directions of each module's epoch gradient collapsed; 0 = none
    collapse: Literal["hard", "soft"] = "hard"  # hard removes them; soft shrinks sᵢ to s_k²/sᵢ
    oversampling: int = 8  # extra directions of the randomised SVD (q = k + oversampling), >= 1
    exact_svd: bool = False  # torch.linalg.svd instead of torch.svd_lowrank (slow; a test oracle)
    lr: float = 1.0  # SGD step size on the collapsed epoch gradient (a sum over forget batches)
    step_norm: float | None = None  # if set, scale each epoch's whole update to this norm instead
    adversarial_lora: bool = False  # relearn through a fresh LoRA adapter before each epoch's gradient
    lora_rank: int = 8  # r of the adversarial adapter
    lora_alpha: float = 16.0  # its update is scaled by alpha / rank
    lora_lr: float = 1e-3  # AdamW learning rate of the adapter (CE descent on the forget set)
    lora_epochs: int = 1  # passes over the forget set per unlearning epoch

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: naming every field out of range.
        """
        require(
            self,
            "method",
            [
                ("k", ">= 0", self.k >= 0),
                ("oversampling", ">= 1", self.oversampling >= 1),
                ("lr", "> 0", self.lr > 0),
                ("step_norm", "> 0 or null", self.step_norm is None or self.step_norm > 0),
                ("lora_rank", ">= 1", self.lora_rank >= 1),
                ("lora_alpha", "> 0", self.lora_alpha > 0),
                ("lora_lr", "> 0", self.lora_lr > 0),
                ("lora_epochs", ">= 1", self.lora_epochs >= 1),
            ],
        )


def collapse_gradient(
    grad: torch.Tensor, k: int, soft: bool = False, oversampling: int = 8, exact: bool = False
) -> torch.Tensor:
    """G̃ = P G, the top k singular directions of G (d_out, d_in) removed (hard) or shrunk (soft), fp32.

    P = I - Σ_{i<k} (1 - wᵢ) uᵢ uᵢᵀ with wᵢ = 0 (hard) or wᵢ = s_k² / sᵢ² (soft), s_k the (k+1)-th
    singular value (0 when G has rank <= k). Randomised SVD (`torch.svd_lowrank`, q = k +
    oversampling, 4 power iterations) unless `exact`.
    """
    grad = grad.float()
    k = min(k, *grad.shape)
    if k == 0:
        return grad
    if exact:
        u, s, _ = torch.linalg.svd(grad, full_matrices=False)  # (d_out, r), (r,)
    else:
        u, s, _ = torch.svd_lowrank(grad, q=min(k + oversampling, *grad.shape), niter=4)  # (d_out, q)
    first_left = s[k] if s.shape[0] > k else s.new_zeros(())
    keep = (first_left**2 / s[:k] ** 2).nan_to_num(0.0).clamp(0, 1) if soft else s.new_zeros(k)  # (k,)
    return project_out(grad.T, Collapse(u[:, :k].T, keep)).T  # (P G)ᵀ = Gᵀ P: P acts on columns


def search_space(trial: Trial, shape: ModelShape) -> dict[str, Any]:
    """`cir tune`'s space: directions collapsed, hard or soft, the step norm and which layers train.

    k runs from 1 to min(32, width / 2), log-scaled; the trained layers are all or a window of `cir.space`.
    """
    return {
        "k": suggest_components(trial, "k", shape, most=32),
        "collapse": trial.suggest_categorical("collapse", ["hard", "soft"]),
        "step_norm": suggest_step_norm(trial),
        "trained_layers": suggest_layers(trial, "trained_layers", [None, *layer_windows(shape)]),
    }


@METHODS.register(
    "repselect",
    Config,
    "-CE with each epoch's weight gradient collapsed along its top singular directions",
    search_space=search_space,
)
class RepSelect(MLPMethod):
    """Gather each epoch's forget gradient in `step`, collapse and apply it in `end_epoch`."""

    config: Config

    def setup(self, model: PreTrainedModel, forget: Sequence[Batch], retain: Sequence[Batch]) -> None:
        """Pick the trained modules and freeze every other parameter (no retain term: the budget bounds it).

        Raises:
            ModelError: if a trained layer is out of range or no module matches.
        """
        self.model, self.forget = model, forget
        self.modules = select_trained(model, self.config.trained_layers, self.config.module_patterns)
        self.gradients: list[torch.Tensor] | None = None  # per module, Σ_batches ∇_W L (d_out, d_in)
        self.adapter: ExitStack | None = None  # holds the adversarial adapter while it is injected
        self.lora_loss = 0.0

    def step(self, forget_index: int, retain_index: int, epoch: int) -> dict[str, torch.Tensor]:
        """Add ∇_W (-CE) of forget batch `forget_index` to the epoch's sum (no update here)."""
        try:
            if self.config.adversarial_lora and self.adapter is None:
                self.relearn()
            loss = -forward_cross_entropy(self.model, self.forget[forget_index])
            grads = torch.autograd.grad(loss, self.trained_parameters())  # each shaped like its weight
        except BaseException:
            self.unload()
            raise
        oriented = [weight_update(m, g).float() for m, g in zip(self.modules, grads, strict=True)]
        if self.gradients is None:
            self.gradients = oriented
        else:
            for total, grad in zip(self.gradients, oriented, strict=True):
                total.add_(grad)
        return {"forget_loss": loss.detach()}

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Unload the adapter, then W <- W - lr G̃ (or η G̃ / ||G̃||) with each module's collapsed sum.

        Returns:
            grad_norm ||G||, update_norm ||G̃||, removed_fraction ||G - G̃|| / ||G|| (Frobenius norms
            over all modules together) and, with the adversarial adapter, its mean training CE.
        """
        logs = self.unload()
        if self.gradients is None:
            return logs
        grads, self.gradients = self.gradients, None
        config = self.config
        collapsed = [
            collapse_gradient(g, config.k, config.collapse == "soft", config.oversampling, config.exact_svd)
            for g in grads
        ]
        norm = torch.stack([g.pow(2).sum() for g in grads]).sum().sqrt()
        residues = [(g - c).pow(2).sum() for g, c in zip(grads, collapsed, strict=True)]
        removed = torch.stack(residues).sum().sqrt()
        logs["grad_norm"], logs["removed_fraction"] = float(norm), float(removed / norm.clamp_min(1e-30))
        logs["update_norm"] = float(torch.stack([c.pow(2).sum() for c in collapsed]).sum().sqrt())
        if config.step_norm is not None:
            normalised_step(self.modules, collapsed, config.step_norm)
            return logs
        with torch.no_grad():
            for module, update in zip(self.modules, collapsed, strict=True):
                weight = module.weight
                weight.sub_(weight_update(module, update).to(weight.device, weight.dtype), alpha=config.lr)
        return logs

    def relearn(self) -> None:
        """Inject a fresh LoRA adapter into the trained modules and train it on the forget set (CE descent).

        It stays injected, frozen, until `unload`; the trained base weights are the only ones left
        requiring gradients, so the gathered gradient is w.r.t. them, through the adapted model.
        """
        config = self.config
        self.adapter = ExitStack()
        adapter = self.adapter.enter_context(
            lora_adapter(self.model, [m.name for m in self.modules], config.lora_rank, config.lora_alpha)
        )
        parameters = list(adapter.values())
        freeze_all_but(self.model, parameters)
        optimizer = torch.optim.AdamW(parameters, lr=config.lora_lr, weight_decay=0.0)
        losses = []
        for _ in range(config.lora_epochs):
            for batch in self.forget:
                loss = forward_cross_entropy(self.model, batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
        freeze_all_but(self.model, self.trained_parameters())
        self.lora_loss = sum(losses) / len(losses)

    def unload(self) -> dict[str, float]:
        """Remove the adversarial adapter without merging; returns its mean training CE, if there was one."""
        if self.adapter is None:
            return {}
        self.adapter.close()
        self.adapter = None
        freeze_all_but(self.model, self.trained_parameters())
        return {"lora_loss": self.lora_loss}
