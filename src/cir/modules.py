"""Find the trainable MLP linear modules of any HF causal LM, and the decoder layers they sit in.

Supported by name: Llama, Qwen2/3, Mistral, Gemma (`mlp.gate_proj/up_proj/down_proj`), GPT-NeoX
(`mlp.dense_h_to_4h/dense_4h_to_h`), GPT-2 (`mlp.c_fc/c_proj`, `Conv1D` with the weight stored
transposed) and any block whose MLP is a `mlp`/`feed_forward`/`ffn` child made of linear layers.
User-given `fnmatch` patterns select other modules.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from cir.errors import ConfigError, ModelError

MLP_CHILD_NAMES = ("mlp", "feed_forward", "ffn")


@dataclass(frozen=True)
class TrainedModule:
    """One linear module whose weight the unlearning updates."""

    name: str  # full module name, e.g. "model.layers.3.mlp.down_proj"
    layer: int  # index of the decoder layer holding it
    module: nn.Module

    @property
    def weight(self) -> nn.Parameter:
        """The weight parameter (shape (d_out, d_in) for Linear, (d_in, d_out) for Conv1D)."""
        return cast(nn.Parameter, self.module.weight)

    @property
    def transposed(self) -> bool:
        """True for GPT-2's Conv1D, which computes y = x W with W of shape (d_in, d_out)."""
        return isinstance(self.module, Conv1D)


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """Return the list of decoder blocks (the longest ModuleList of the base model).

    Raises:
        ModelError: if the model has no list of blocks.
    """
    lists = [m for m in model.base_model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ModelError(f"{type(model).__name__}: no list of decoder layers found")
    expected = getattr(model.config, "num_hidden_layers", None)
    matching = [m for m in lists if len(m) == expected] or lists
    return max(matching, key=len)


@dataclass(frozen=True)
class ModelShape:
    """What the shape-following defaults and search spaces read of a model (`cir.space`)."""

    layers: int  # decoder layers
    hidden: int  # width of the residual stream (d_model)


def model_shape(model: PreTrainedModel) -> ModelShape:
    """The number of decoder layers and the residual-stream width (the input embeddings' size).

    Raises:
        ModelError: if the model has no list of decoder layers.
    """
    embeddings = cast(nn.Embedding, model.get_input_embeddings())
    return ModelShape(len(decoder_layers(model)), embeddings.embedding_dim)


def layer_index_map(model: PreTrainedModel) -> dict[str, int]:
    """Map the module-name prefix of each decoder layer (e.g. "model.layers.3") to its index."""
    by_id = {id(layer): index for index, layer in enumerate(decoder_layers(model))}
    return {name: by_id[id(module)] for name, module in model.named_modules() if id(module) in by_id}


def check_layers(model: PreTrainedModel, layers: Sequence[int]) -> list[int]:
    """Return `layers` sorted, after checking each is a valid decoder-layer index.

    Raises:
        ModelError: naming the first index out of range and the valid range.
    """
    count = len(decoder_layers(model))
    for layer in layers:
        if not 0 <= layer < count:
            raise ModelError(f"layer {layer} is out of range: the model has {count} layers (0..{count - 1})")
    return sorted(set(layers))


def mlp_modules(
    model: PreTrainedModel, layers: Sequence[int] | None = None, patterns: Sequence[str] | None = None
) -> list[TrainedModule]:
    """Find the MLP linear modules of `layers` (all layers when None), in layer order.

    Args:
        model: any HF causal LM.
        layers: decoder-layer indices to take modules from.
        patterns: optional `fnmatch` patterns on full module names (e.g. "*.mlp.*_proj"); when given,
            they replace the built-in rule "linear children of the block's mlp".

    Raises:
        ModelError: if a layer is out of range, or nothing matches (the message lists candidates).
    """
    blocks = decoder_layers(model)
    wanted = check_layers(model, range(len(blocks)) if layers is None else layers)
    prefixes = layer_index_map(model)
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, Conv1D)):
            continue
        prefix, layer = _owning_layer(name, prefixes)
        if layer is None or layer not in wanted:
            continue
        relative = name[len(prefix) + 1 :]
        if patterns is not None:
            selected = any(fnmatch.fnmatchcase(name, p) for p in patterns)
        else:
            selected = relative.split(".")[0] in MLP_CHILD_NAMES
        if selected:
            found.append(TrainedModule(name, layer, module))
    if not found:
        raise ModelError(_no_match_message(model, prefixes, patterns))
    return found


def _owning_layer(name: str, prefixes: dict[str, int]) -> tuple[str, int | None]:
    for prefix, index in prefixes.items():
        if name.startswith(prefix + "."):
            return prefix, index
    return "", None


def _no_match_message(
    model: PreTrainedModel, prefixes: dict[str, int], patterns: Sequence[str] | None
) -> str:
    first = next(iter(prefixes), "")
    candidates = [
        n
        for n, m in model.named_modules()
        if n.startswith(first + ".") and isinstance(m, (nn.Linear, Conv1D))
    ]
    rule = (
        f"patterns {list(patterns)}"
        if patterns is not None
        else f"an MLP child named one of {MLP_CHILD_NAMES}"
    )
    return (
        f"{type(model).__name__}: no linear module matches {rule}. Linear modules of layer 0: "
        f"{', '.join(candidates) or 'none'}. Pass module patterns (e.g. method.module_patterns=['*.mlp.*'])."
    )


def mlp_blocks(model: PreTrainedModel, layers: Sequence[int]) -> list[nn.Module]:
    """The MLP block (the child holding the MLP linears) of each of `layers`, whose output the losses read.

    Raises:
        ModelError: if a layer has no child named mlp/feed_forward/ffn.
    """
    blocks = decoder_layers(model)
    result = []
    for layer in check_layers(model, layers):
        child = next((getattr(blocks[layer], n) for n in MLP_CHILD_NAMES if hasattr(blocks[layer], n)), None)
        if child is None:
            raise ModelError(
                f"layer {layer} ({type(blocks[layer]).__name__}) has no child named {MLP_CHILD_NAMES}"
            )
        result.append(child)
    return result


def freeze_all_but(model: PreTrainedModel, parameters: Sequence[nn.Parameter]) -> None:
    """Set requires_grad on exactly `parameters` (the trained weights) and clear it everywhere else."""
    keep = {id(p) for p in parameters}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in keep)


def weight_update(module: TrainedModule, grad: torch.Tensor) -> torch.Tensor:
    """Orient a (d_out, d_in) gradient like the module's weight (transposed for Conv1D)."""
    return grad.T if module.transposed else grad


def select_trained(
    model: PreTrainedModel,
    layers: Sequence[int] | None,
    patterns: Sequence[str] | None,
    highest: int | None = None,
) -> list[TrainedModule]:
    """The modules a method trains, with every other parameter frozen.

    Args:
        model: the model.
        layers: MLP layers to train; None = every layer up to `highest` (all layers when that is None).
        patterns: optional fnmatch names replacing the built-in MLP rule.
        highest: the last layer the method's losses read; layers above it get no gradient.

    Raises:
        ConfigError: if `layers` is empty or reaches above `highest`.
        ModelError: if a layer is out of range or nothing matches.
    """
    if layers is not None and not layers:
        raise ConfigError("method.trained_layers is empty; give layers or null (the method's default)")
    if layers is None:
        layers = None if highest is None else list(range(highest + 1))
    elif highest is not None and max(layers) > highest:
        raise ConfigError(
            f"method.trained_layers {list(layers)}: layers above {highest}, the last layer the loss "
            "reads, get no gradient"
        )
    modules = mlp_modules(model, layers, patterns)
    freeze_all_but(model, [m.weight for m in modules])
    return modules
