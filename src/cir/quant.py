"""GGUF block quantization round trips: what shipping a model as a llama.cpp file does to its weights.

A block format stores each run of 32 consecutive weights of a row as small integers and one or two
per-block floats (scale, and for the `_1` types a minimum). Quantizing and de-quantizing maps every
weight onto its block's grid, so an edit smaller than half a grid step is erased, and weights that
already lie on the grid (a model de-quantized from a GGUF file) come back exactly (method.md §7,
Zhang et al. arXiv 2410.16454). The arithmetic is the `gguf` package's (`gguf.quants`), the
reference implementation llama.cpp's own converter uses; nothing here re-implements it.

GGUF quantizes along a tensor's contiguous row, which for a linear layer is the input dimension:
`nn.Linear` stores (d_out, d_in) and is quantized as it is; GPT-2's `Conv1D` stores (d_in, d_out) and
is transposed first. A weight whose rows are not a whole number of blocks is left as it is (llama.cpp
falls back to another type for such tensors) and named in the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize, quantize
from torch import nn
from transformers.pytorch_utils import Conv1D

from cir.errors import ConfigError

BLOCK_FORMATS = ("Q8_0", "Q5_0", "Q5_1", "Q4_1", "Q4_0")  # the llama.cpp block types gguf can write


def quant_type(name: str) -> GGMLQuantizationType:
    """The GGML type of a block format's name.

    Raises:
        ConfigError: for a name that is not one of BLOCK_FORMATS.
    """
    if name not in BLOCK_FORMATS:
        raise ConfigError(f"unknown quantization format {name!r}; known: {', '.join(BLOCK_FORMATS)}")
    return GGMLQuantizationType[name]


def round_trip_rows(weight: torch.Tensor, name: str) -> torch.Tensor:
    """`weight` (rows along its last dimension) quantized to format `name` and back, same dtype and device.

    Raises:
        ConfigError: for an unknown format, or rows that are not a whole number of blocks.
    """
    qtype = quant_type(name)
    block = GGML_QUANT_SIZES[qtype][0]
    if weight.shape[-1] % block:
        raise ConfigError(f"{name} needs rows of a multiple of {block} values, got {weight.shape[-1]}")
    values = weight.detach().to("cpu", torch.float32).numpy()
    restored = dequantize(quantize(np.ascontiguousarray(values), qtype), qtype)
    return torch.from_numpy(restored.reshape(values.shape)).to(weight.device, weight.dtype)


@dataclass(frozen=True)
class RoundTrip:
    """What `round_trip` did: the weights it quantized and those it left as they were."""

    quantized: list[str]  # module names
    skipped: list[str]  # rows not a whole number of blocks


def linear_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every linear layer (nn.Linear, GPT-2's Conv1D) by name; a weight tied to another is listed once."""
    seen: set[int] = set()
    modules: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, Conv1D)) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            modules[name] = module
    return modules


@torch.no_grad()
def round_trip(model: nn.Module, name: str) -> RoundTrip:
    """Quantize every linear weight of `model` to format `name` and back, in place."""
    quantized, skipped = [], []
    block = GGML_QUANT_SIZES[quant_type(name)][0]
    for module_name, module in linear_modules(model).items():
        transposed = isinstance(module, Conv1D)
        weight = cast(torch.Tensor, module.weight)
        rows = weight.T if transposed else weight
        if rows.shape[-1] % block:
            skipped.append(module_name)
            continue
        restored = round_trip_rows(rows, name)
        weight.copy_(restored.T if transposed else restored)
        quantized.append(module_name)
    return RoundTrip(quantized, skipped)


class GridWeights:
    """Trained weights held on a block format's grid, with float weights behind them (straight-through).

    The model always runs on grid weights, so what the loop measures, keeps and returns is a model that
    a round trip through `name` leaves unchanged: quantizing it after unlearning cannot undo the
    forgetting. The updates the method makes between two `commit`s are added to the float weights,
    which are then rounded onto the grid again, so many steps smaller than half a grid step still add
    up to a move. The arithmetic is `round_trip`'s; each commit costs one round trip of the trained
    weights (about 0.05 s per 576 x 1536 matrix on 2 CPU cores), so the loop commits at its budget
    checks, not after every step.
    """

    def __init__(self, model: nn.Module, parameters: list[nn.Parameter], name: str) -> None:
        quant_type(name)  # fails early on an unknown format
        if any(p.dtype != torch.float32 for p in parameters):
            raise ConfigError(
                f"unlearn.quant_format={name} needs float32 trained weights (--dtype float32): "
                "a bfloat16 or float16 copy would round them off the grid again"
            )
        transposed = {id(m.weight) for m in linear_modules(model).values() if isinstance(m, Conv1D)}
        self.parameters, self.name = parameters, name
        self.transposed = [id(p) in transposed for p in parameters]
        self.floats: list[torch.Tensor] = []
        self.committed: list[torch.Tensor] = []
        self.reset()
        self.commit()

    @torch.no_grad()
    def reset(self) -> None:
        """Take the weights as they are now as the float weights (after the loop restores a snapshot)."""
        self.floats = [p.detach().float().clone() for p in self.parameters]
        self.committed = [p.detach().clone() for p in self.parameters]

    @torch.no_grad()
    def commit(self) -> None:
        """Add the updates since the last commit to the float weights and put their rounding in the model."""
        for index, parameter in enumerate(self.parameters):
            self.floats[index] += (parameter.detach() - self.committed[index]).float()
            rows = self.floats[index].T if self.transposed[index] else self.floats[index]
            grid = round_trip_rows(rows, self.name)
            parameter.copy_(grid.T if self.transposed[index] else grid)
            self.committed[index] = parameter.detach().clone()
