"""`cir export --gguf`: write an unlearned model as a GGUF file for llama.cpp, ollama and friends.

The model must have come from a GGUF file (the template): the export keeps the template's metadata
and tokenizer, its tensor order and names, and writes each tensor
- unchanged by unlearning: as the template stored it (its bytes, exactly), or re-quantized from its
  de-quantized values when another type is asked for;
- changed by unlearning: quantized from the unlearned weights to the template tensor's type
  (`quant="like_input"`, the default) or to the one asked for.

"Changed" is decided against the template's own conversion (`cir.pretrained.resolve_model`), the
model unlearning started from. Transformers re-orders some tensors on load (Llama's attention
q/k rows for llama.cpp's rotary layout); such a tensor is only ever copied, and an export that would
have to write a changed one is refused. The reading and writing are the `gguf` package's (its
GGUFReader, GGUFWriter, tensor-name map and quantizers), as llama.cpp's own scripts use them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import gguf
import numpy as np
import torch
from gguf.quants import dequantize, quantize
from safetensors.torch import load_file
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from cir.errors import ConfigError, ModelError
from cir.outputs import atomic_output_dir, check_output_dir
from cir.pretrained import BUILTIN_MODELS, builtin_gguf, resolve_model
from cir.quant import BLOCK_FORMATS, gguf_field, gguf_parameter_names

WRITABLE = ("like_input", *BLOCK_FORMATS, "F16", "F32")  # types `cir export` can write


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote, `export.json` beside the file."""

    template: str  # the GGUF file the model came from
    gguf: str  # the file written
    quant: str  # "like_input" or the type asked for
    copied: list[str]  # tensors written as the template stored them
    requantized: list[str]  # unchanged tensors written in another type
    changed: list[str]  # tensors unlearning changed, written from the model


def template_path(template: str | Path) -> Path:
    """A GGUF file path, or a built-in model's name (its wheel's file).

    Raises:
        ModelError: if the file does not exist or the built-in's wheel is not installed.
    """
    path = builtin_gguf(str(template)) if str(template) in BUILTIN_MODELS else Path(template)
    if not path.is_file():
        raise ModelError(f"{path}: no such GGUF file (the template the model was converted from)")
    return path


def export_gguf(
    model: PreTrainedModel,
    template: str | Path,
    out: Path,
    quant: str = "like_input",
    force: bool = False,
    cache_dir: Path | None = None,
) -> ExportSummary:
    """Write `model` as `out/<template stem>-unlearned-<quant>.gguf` with `out/export.json`.

    Raises:
        ConfigError: for a type it cannot write, or a changed tensor it cannot write in its type.
        ModelError: for a missing template, or a model whose tensors do not match the template's.
        OutputExistsError: if `out` exists and not `force` (checked before any work).
    """
    if quant not in WRITABLE:
        raise ConfigError(f"--type {quant!r} cannot be written; choose one of {', '.join(WRITABLE)}")
    source = template_path(template)
    check_output_dir(out, force, protected=[source.parent])
    reader = gguf.GGUFReader(source)
    # the model unlearning started from: a built-in's own conversion, else the file's
    origin = str(template) if str(template) in BUILTIN_MODELS else str(source)
    original = _state(Path(resolve_model(origin, cache_dir, progress=False)))
    current = {name: p.detach().to("cpu", torch.float32) for name, p in model.named_parameters()}
    transposed = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, Conv1D)}
    hf_names = gguf_parameter_names(reader, current)
    name = f"{source.stem}-unlearned-{quant}.gguf"
    copied, requantized, changed = [], [], []
    with atomic_output_dir(out, force, protected=[source.parent]) as staging:
        writer = gguf.GGUFWriter(staging / name, arch=str(gguf_field(reader, "general.architecture")))
        _copy_metadata(reader, writer, None if quant == "like_input" else quant)
        for tensor in reader.tensors:
            hf_name = hf_names.get(tensor.name)
            stored = gguf.GGMLQuantizationType(tensor.tensor_type)
            keep = quant == "like_input" or len(tensor.shape) < 2  # norms and biases keep their type
            target = stored if keep else gguf.GGMLQuantizationType[quant]
            if hf_name is not None and _changed(current[hf_name], original[hf_name]):
                flip = hf_name in transposed  # GPT-2's Conv1D holds (d_in, d_out); the file (d_out, d_in)
                values = _writable(tensor, reader, current[hf_name], original[hf_name], flip)
                changed.append(tensor.name)
            elif target == stored:
                writer.add_tensor(tensor.name, tensor.data, raw_dtype=stored)
                copied.append(tensor.name)
                continue
            else:
                values = _dequantized(tensor)
                requantized.append(tensor.name)
            writer.add_tensor(tensor.name, _encoded(values, target, tensor.name), raw_dtype=target)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        summary = ExportSummary(str(source), str(out / name), quant, copied, requantized, changed)
        (staging / "export.json").write_text(json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8")
    return summary


def _state(folder: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        state.update({k: v.to(torch.float32) for k, v in load_file(file).items()})
    return state


def _dequantized(tensor: gguf.ReaderTensor) -> np.ndarray:
    """The template tensor's values in its file layout (rows of the last dimension)."""
    return dequantize(tensor.data, gguf.GGMLQuantizationType(tensor.tensor_type)).astype(np.float32)


def _changed(current: torch.Tensor, original: torch.Tensor) -> bool:
    """Whether unlearning changed a weight: it differs from the original, even rounded to 16 bits.

    A model unlearned in bfloat16 (or float16) and saved so holds the original rounded; that is not a
    change, and such tensors are still copied from the template.
    """
    return not any(
        torch.equal(current, original.to(dtype).float())
        for dtype in (torch.float32, torch.bfloat16, torch.float16)
    )


def _writable(
    tensor: gguf.ReaderTensor, reader: gguf.GGUFReader, value: torch.Tensor, base: torch.Tensor, flip: bool
) -> np.ndarray:
    """The unlearned values of a changed tensor, in the file's layout (`flip`: the model holds it transposed).

    Raises:
        ConfigError: if transformers stores this tensor in another layout than the file (it cannot be
            written from the model).
    """
    value, base = (value.T, base.T) if flip else (value, base)
    stored = _dequantized(tensor).reshape(base.shape)
    step = np.abs(stored).max() / 127 + 1e-12  # far coarser than the re-ordering it must detect
    if not np.allclose(stored, base.numpy(), atol=step):
        raise ConfigError(
            f"{tensor.name}: unlearning changed it, but transformers re-orders it on load "
            f"({reader.data.filename}'s layout differs), so it cannot be exported"
        )
    return np.ascontiguousarray(value.numpy())


def _encoded(values: np.ndarray, qtype: gguf.GGMLQuantizationType, name: str) -> np.ndarray:
    """`values` in type `qtype`, as the writer takes them.

    Raises:
        ConfigError: for a type the gguf package cannot quantize to (e.g. the K-quants), or rows that
            are not whole blocks.
    """
    if qtype == gguf.GGMLQuantizationType.F32:
        return values.astype(np.float32)
    if qtype == gguf.GGMLQuantizationType.F16:
        return values.astype(np.float16)
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if values.shape[-1] % block:
        raise ConfigError(f"{name}: rows of {values.shape[-1]} values are not whole {qtype.name} blocks")
    try:
        return quantize(np.ascontiguousarray(values, np.float32), qtype)
    except NotImplementedError as error:
        raise ConfigError(
            f"{name}: the gguf package cannot write {qtype.name}; choose --type {' or '.join(WRITABLE[1:])}"
        ) from error


def _copy_metadata(reader: gguf.GGUFReader, writer: gguf.GGUFWriter, quant: str | None) -> None:
    """Every key of the template but those the writer sets itself (as gguf's own metadata script does).

    With `quant` (one type for every matrix), `general.file_type` says that type instead.
    """
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = int(alignment.contents())  # type: ignore[call-overload]
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        if quant is not None and field.name == gguf.Keys.General.FILE_TYPE:
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    if quant is not None:
        file_type = "ALL_F32" if quant == "F32" else f"MOSTLY_{quant}"
        writer.add_file_type(gguf.LlamaFileType[file_type])
