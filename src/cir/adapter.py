"""A LoRA adapter (Hu et al. 2021, arXiv 2106.09685) injected in place and removed without merging.

Each targeted linear map W x becomes W x + (alpha / rank) B A x with A (rank, d_in) and B (d_out,
rank), B = 0 at the start. Shared by the `lora` attack and RepSelect's adversarial relearning; it
knows nothing of either, only module names, a rank and an alpha.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

ADAPTER_NAME = "cir_adapter"  # the adapter's name inside peft; its parameters are named lora_A/B.<this>


@contextmanager
def lora_adapter(
    model: PreTrainedModel, targets: Sequence[str], rank: int, alpha: float
) -> Iterator[dict[str, nn.Parameter]]:
    """Inject a LoRA adapter into the modules named `targets` of `model`; unload it (no merge) on exit.

    Args:
        model: the model, changed in place while inside.
        targets: full names of Linear or GPT-2 Conv1D modules.
        rank: r, the inner dimension of B A.
        alpha: the update is scaled by alpha / rank.

    Yields:
        The adapter's parameters by name. GPT-2's Conv1D stores W as (d_in, d_out), which peft is
        told with `fan_in_fan_out`.
    """
    from peft import LoraConfig, LoraModel  # imported here: importing peft takes seconds

    modules = dict(model.named_modules())
    lora_config = LoraConfig(
        r=rank,
        lora_alpha=alpha,  # type: ignore[arg-type]  # peft annotates an int, uses it as a float
        lora_dropout=0.0,  # the model runs in eval mode while adapted, where dropout is inert anyway
        target_modules=list(targets),
        fan_in_fan_out=any(isinstance(modules[name], Conv1D) for name in targets),
        bias="none",
    )
    tuner = LoraModel(model, lora_config, ADAPTER_NAME)
    try:
        model.eval()  # the injected modules start in training mode
        yield {n: p for n, p in model.named_parameters() if f".{ADAPTER_NAME}." in f"{n}."}
    finally:
        tuner.unload()
