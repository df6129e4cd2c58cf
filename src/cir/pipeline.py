"""Recipes that read top to bottom: load -> unlearn (budget-stopped) -> attack -> report.

The CLI only parses arguments and calls these. Each writes one output folder atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.config import from_dict, load_yaml, merge, parse_overrides, split_sections, to_dict
from cir.data.facts import Fact, fact_sentences, load_facts, load_texts
from cir.demo import DemoPaths, build_demo, world_of
from cir.errors import ConfigError
from cir.methods.base import MethodConfig
from cir.model_io import atomic_output_dir, check_output_dir, load_model, write_json_atomic
from cir.registry import METHODS
from cir.runtime import peak_memory_bytes
from cir.unlearn import UnlearnConfig, UnlearnData, UnlearnResult, unlearn

PRESETS = Path(__file__).parent / "presets"
UNLEARN_SECTIONS = ["unlearn", "method"]


@dataclass
class Inputs:
    """What to run on. With no model, the embedded demo model and its world fill every gap."""

    model: str | None = None  # local folder or hub id; None = the demo model (built on first use)
    forget: list[Path] = field(default_factory=list)  # fact files to forget; demo: its forget facts (T + V)
    retain: Path | None = None  # retain texts (.jsonl facts or .txt lines); demo: its retain facts + general
    general: Path | None = None  # held-out general text for the budget; demo: its general_eval
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    cache_dir: Path | None = None  # demo model cache (default $XDG_CACHE_HOME/cir)


@dataclass
class Loaded:
    """The model and data an Inputs resolves to."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    data: UnlearnData
    source: Path | None  # the input model folder, never to be overwritten
    demo: DemoPaths | None


def config_source(config: str | Path | None) -> dict[str, Any]:
    """Read `--config`: a YAML path or the name of a shipped preset (e.g. `paper_llama8b`).

    Raises:
        ConfigError: if it is neither.
    """
    if config is None:
        return {}
    path = Path(config)
    if not path.suffix and (PRESETS / f"{config}.yaml").is_file():
        path = PRESETS / f"{config}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise ConfigError(f"{config}: no such config file or preset (presets: {known})")
    return load_yaml(path)


def unlearn_configs(raw: dict[str, Any], source: str = "config") -> tuple[UnlearnConfig, MethodConfig]:
    """Build the loop's and the chosen method's config from a raw mapping with sections unlearn/method.

    Raises:
        ConfigError: naming every bad key.
    """
    sections = split_sections(raw, UNLEARN_SECTIONS, source)
    loop = from_dict(UnlearnConfig, sections["unlearn"], f"{source}: unlearn")
    method = from_dict(METHODS.get(loop.method).config_class, sections["method"], f"{source}: method")
    return loop, method


def load_inputs(inputs: Inputs, progress: bool = True) -> Loaded:
    """Load the model and the forget/retain/general data, defaulting to the demo's.

    Raises:
        ConfigError: if a model is given without forget facts or general text.
        DataError, ModelError: for bad files or models.
    """
    demo = build_demo(cache_dir=inputs.cache_dir, progress=progress) if inputs.model is None else None
    name = str(demo.model) if demo else inputs.model
    if demo is None and (not inputs.forget or inputs.general is None):
        raise ConfigError(
            "with --model, give --forget FILE... and --general FILE (held-out text for the budget)"
        )
    model, tokenizer = load_model(name, inputs.device, inputs.dtype, inputs.trust_remote_code)
    forget = [f for path in inputs.forget for f in load_facts(path)] or demo_forget(demo)
    retain = load_texts(inputs.retain) if inputs.retain else demo_retain(demo, inputs)
    general = load_texts(inputs.general) if inputs.general else world_of(demo).general_eval
    source = Path(name) if Path(name).is_dir() else None
    return Loaded(model, tokenizer, UnlearnData(forget, retain, general), source, demo)


def demo_forget(demo: DemoPaths | None) -> list[Fact]:
    """All forget facts of the demo world (T then V)."""
    assert demo is not None  # load_inputs checked: no forget files only with the demo
    return load_facts(demo.forget_train) + load_facts(demo.forget_val)


def demo_retain(demo: DemoPaths | None, inputs: Inputs) -> list[str]:
    """The demo's retain texts: 3 sentences of every retain fact, plus as many general sentences.

    Raises:
        ConfigError: if there is no demo to take them from.
    """
    if demo is None:
        raise ConfigError("with --model, give --retain FILE (texts to keep: .jsonl facts or .txt lines)")
    world = world_of(demo)
    retain = fact_sentences(world.retain, 3)
    return retain + world.general_train[: len(retain)]


def run_unlearn(
    inputs: Inputs, raw_config: dict[str, Any], out: Path, force: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Unlearn and write `out`: the model (safetensors), metrics.jsonl and summary.json.

    Raises:
        OutputExistsError: if `out` exists and not `force` (checked before any work).
        ConfigError, DataError, ModelError: for bad input.
    """
    loop, method = unlearn_configs(raw_config)
    check_output_dir(out, force)
    loaded = load_inputs(inputs, progress)
    result = unlearn(loaded.model, loaded.tokenizer, loaded.data, loop, method, progress)
    summary = unlearn_summary(result, loop, method, loaded)
    with atomic_output_dir(out, force, protected=[loaded.source] if loaded.source else []) as staging:
        loaded.model.save_pretrained(staging)
        loaded.tokenizer.save_pretrained(staging)
        write_jsonl(staging / "metrics.jsonl", result.history)
        write_json_atomic(staging / "summary.json", summary)
    return summary


def unlearn_summary(
    result: UnlearnResult, loop: UnlearnConfig, method: MethodConfig, loaded: Loaded
) -> dict[str, Any]:
    """What summary.json holds: config, seed, epochs, stop reason, cost, before/after metrics."""
    device = next(loaded.model.parameters()).device
    return {
        "config": {"unlearn": to_dict(loop), "method": to_dict(method)},
        "seed": loop.seed,
        **result.summary,
        "peak_memory_bytes": peak_memory_bytes(device),
        "device": str(device),
        "before": result.history[0],
        "after": result.history[result.epochs],
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """One JSON object a line."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def raw_config(config: str | Path | None, overrides: list[str]) -> dict[str, Any]:
    """The config file (or preset) with `key=value` overrides merged on top."""
    return merge(config_source(config), parse_overrides(overrides))
