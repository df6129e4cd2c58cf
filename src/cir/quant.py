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

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import gguf
import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize, quantize
from torch import nn
from transformers.pytorch_utils import Conv1D

from cir.errors import ConfigError, ModelError

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


TORCH_INT8 = "torch_int8"  # torch's own dynamic int8 (quantize_dynamic's weights), not a GGUF type


def round_trip_torch_int8(weight: torch.Tensor) -> torch.Tensor:
    """`weight` as `torch.ao.quantization.quantize_dynamic` stores it (qint8, one symmetric per-tensor
    scale from its default weight observer) and back, same dtype and device.
    """  # noqa: D205
    from torch.ao.quantization import default_weight_observer

    values = weight.detach().to("cpu", torch.float32)
    observer = default_weight_observer()
    observer(values)
    scale, zero = observer.calculate_qparams()
    with warnings.catch_warnings():  # torch 2.13 marks its quantized tensors deprecated (for torchao)
        warnings.simplefilter("ignore", UserWarning)
        restored = torch.quantize_per_tensor(values, float(scale), int(zero), torch.qint8).dequantize()
    return restored.to(weight.device, weight.dtype)


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
    """Quantize every linear weight of `model` to format `name` (a block format or torch_int8) and back."""
    if name == TORCH_INT8:
        modules = linear_modules(model)
        for module in modules.values():
            weight = cast(torch.Tensor, module.weight)
            weight.copy_(round_trip_torch_int8(weight))
        return RoundTrip(list(modules), [])
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


def gguf_field(reader: gguf.GGUFReader, key: str) -> object:
    """A metadata field's value.

    Raises:
        ModelError: naming the file if it has no such field.
    """
    field = reader.get_field(key)
    if field is None:
        raise ModelError(f"{reader.data.filename}: no {key} in its metadata")
    return field.contents()


def gguf_parameter_names(reader: gguf.GGUFReader, parameters: Iterable[str]) -> dict[str, str]:
    """GGUF tensor name -> the model's parameter name, by the gguf package's tensor-name map.

    Raises:
        ModelError: if a parameter has no tensor in the file (the model did not come from it).
    """
    arch = str(gguf_field(reader, "general.architecture"))
    blocks = int(gguf_field(reader, f"{arch}.block_count"))  # type: ignore[call-overload]
    kinds = {name: kind for kind, name in gguf.MODEL_ARCH_NAMES.items()}
    names = gguf.get_tensor_name_map(kinds[arch], blocks)
    in_file = {t.name for t in reader.tensors}
    mapped = {}
    for hf_name in parameters:
        base, _, suffix = hf_name.rpartition(".")
        tensor = names.get_name(base)
        if tensor is not None and f"{tensor}.{suffix}" in in_file:
            mapped[f"{tensor}.{suffix}"] = hf_name
        else:
            raise ModelError(
                f"{hf_name}: no tensor for it in {reader.data.filename}: not the model's template"
            )
    return mapped


def stored_types(model: nn.Module, reader: gguf.GGUFReader) -> dict[str, str]:
    """Each linear module's name -> the GGML type its weight has in the GGUF file the model came from.

    A weight tied to another (an output layer sharing the embedding) is found under the name the
    model lists it by, the embedding's, as the file stores it once.

    Raises:
        ModelError: if a weight has no tensor in the file.
    """
    canonical = {id(p): name for name, p in model.named_parameters()}  # a tied weight under its first name
    modules = {canonical[id(m.weight)]: name for name, m in linear_modules(model).items()}
    by_tensor = gguf_parameter_names(reader, modules)
    types = {t.name: GGMLQuantizationType(t.tensor_type).name for t in reader.tensors}
    return {modules[hf_name]: types[tensor] for tensor, hf_name in by_tensor.items()}


@torch.no_grad()
def round_trip_types(model: nn.Module, types: Mapping[str, str]) -> RoundTrip:
    """Each linear weight through its own type (`stored_types`): what re-running llama.cpp's quantizer
    with the input file's types does. F32 weights are exact already; F16 ones are rounded to float16;
    a block format is `round_trip_rows`'; any other type (the K-quants, which gguf cannot write) and a
    module without a type are left as they are and named in `skipped`.
    """  # noqa: D205
    quantized, skipped = [], []
    for module_name, module in linear_modules(model).items():
        kind = types.get(module_name)
        weight = cast(torch.Tensor, module.weight)
        transposed = isinstance(module, Conv1D)
        rows = weight.T if transposed else weight
        if kind == "F32":
            quantized.append(module_name)
        elif kind == "F16":
            weight.copy_(weight.to(torch.float16).to(weight.dtype))
            quantized.append(module_name)
        elif kind in BLOCK_FORMATS and rows.shape[-1] % GGML_QUANT_SIZES[quant_type(kind)][0] == 0:
            restored = round_trip_rows(rows, kind)
            weight.copy_(restored.T if transposed else restored)
            quantized.append(module_name)
        else:
            skipped.append(module_name)
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
