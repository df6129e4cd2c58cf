"""The paper's own attack as a preset (method.md §7): Deeb & Roger's T/V relearning as the CIR authors ran it.

`finetune` with their settings as defaults: plain SGD at lr 1e-5, 100 epochs, batch 32, every
layer's MLP linear weights, all of T's sentences. It is the same training loop and the same checks as
`finetune` (the full forward pass, every claimed weight changed, nothing else), so the authors' bug
(only the early layers retrained) cannot happen here. On a small model SGD at 1e-5 moves V slowly:
it is the attack to compare with the paper's numbers, `finetune` (AdamW) the attacker's stronger one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cir.attacks.finetune import Config as FinetuneConfig
from cir.attacks.finetune import Finetune
from cir.registry import ATTACKS


@dataclass
class Config(FinetuneConfig):
    """`finetune`'s settings at the paper's values."""

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 1e-5
    epochs: int = 100
    batch_size: int = 32
    trained: Literal["mlp", "all"] = "mlp"


@ATTACKS.register("paper_finetune", Config, "the paper's T/V attack: SGD lr 1e-5, 100 epochs, every MLP")
class PaperFinetune(Finetune):
    """Full fine-tuning of every MLP on T's sentences with the paper's optimizer and schedule."""

    trajectory_axis = "attack epoch (SGD fine-tuning on T, the paper's settings)"
    name = "paper_finetune"
