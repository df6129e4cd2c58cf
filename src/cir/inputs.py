"""What a command runs on: the model and the data, from paths (or the demo's and built-in worlds).

Every file the user names is read and checked before any model is built or loaded (`read_given`);
then the world that fills the gaps (the demo's, or a built-in model's fact sets) is built or reused,
and the model is loaded next to its already checked data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.data.facts import Fact, fact_sentences, load_facts, load_texts
from cir.demo import DemoPaths, build_demo
from cir.errors import ConfigError
from cir.fact_sets import FactSetPaths, fact_sets_for, heldout_facts
from cir.model_io import load_model
from cir.pretrained import BUILTIN_MODELS
from cir.unlearn import UnlearnData

Facts = Path | list[Fact]  # a fact file, or facts already in memory (a library caller's, the demos')


def facts_of(source: Facts) -> list[Fact]:
    """The facts of a file (read and checked) or of a list (as given).

    Raises:
        DataError: for a bad file, naming it (and the line and field).
    """
    return list(source) if isinstance(source, list) else load_facts(source)


@dataclass
class Inputs:
    """What to run on. With no model, the embedded demo model and its world fill every gap.

    A built-in model (`smollm2-135m`) likewise brings its own fact sets and prose (`cir.fact_sets`).
    """

    model: str | None = None  # folder, hub id, .gguf or built-in name; None = the demo model
    forget: list[Facts] = field(default_factory=list)  # fact files (or lists) to forget; demo: T + V
    train: Facts | None = None  # T facts the attack trains on (a run forgets T + V); demo: its T split
    eval: Facts | None = None  # V facts the attack is scored on; demo: its V split
    retain: Path | None = None  # retain texts (.jsonl facts or .txt lines); demo: its retain facts + general
    general: Path | None = None  # held-out general text for the budget; demo: its general_eval
    heldout: Path | None = None  # facts of other domains, for selectivity; built-in model: its heldout.jsonl
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    device_map: str | None = None  # e.g. "auto": accelerate spreads a model larger than one GPU
    cache_dir: Path | None = None  # demo model, fact sets, converted models (default $XDG_CACHE_HOME/cir)


@dataclass
class Loaded:
    """The model and data an Inputs resolves to."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    data: UnlearnData
    source: Path | None  # the input model folder, never to be overwritten
    demo: DemoPaths | FactSetPaths | None  # the world that filled the gaps, if any
    heldout: list[Fact] = field(default_factory=list)  # other domains' facts (selectivity); may be empty


def load_inputs(inputs: Inputs, progress: bool = True) -> Loaded:
    """Load the model and the forget/retain/general data, defaulting to the demo's.

    Every file is read and checked before the model is loaded.

    Raises:
        ConfigError: if a model is given without forget facts or general text.
        DataError, ModelError: for bad files or models.
    """
    read_given(inputs)
    demo = default_world(inputs, progress)
    heldout = load_heldout(inputs, demo)
    return replace(open_model(inputs, demo, load_data(inputs, demo), progress), heldout=heldout)


def read_given(inputs: Inputs) -> None:
    """Read and check every file the user named, before any model is built or loaded.

    Building the demo model or a built-in model's fact sets takes minutes on a fresh machine; a typo
    in a fact file must not wait for it. The files are small and read again where they are used.

    Raises:
        DataError: for a bad file, naming it (and the line and field).
    """
    for source in [*inputs.forget, inputs.train, inputs.eval, inputs.heldout]:
        if source is not None:
            facts_of(source)
    for path in (inputs.retain, inputs.general):
        if path is not None:
            load_texts(path)


def load_heldout(inputs: Inputs, demo: DemoPaths | FactSetPaths | None) -> list[Fact]:
    """Facts never trained on, from other domains: `inputs.heldout`, else a built-in fact set's, else none.

    Raises:
        DataError: for a bad file, naming it (and the line).
    """
    if inputs.heldout is not None:
        return load_facts(inputs.heldout)
    return heldout_facts(demo) if isinstance(demo, FactSetPaths) else []


def load_data(inputs: Inputs, demo: DemoPaths | FactSetPaths | None) -> UnlearnData:
    """Read and check the forget facts, retain texts and general texts (the default world's where not given).

    Raises:
        ConfigError: if a model is given without forget facts or general text.
        DataError: for a bad file, naming it (and the line).
    """
    if inputs.train is not None and inputs.eval is not None:  # a run forgets T + V
        inputs = replace(inputs, forget=[inputs.train, inputs.eval])
    if demo is None and (not inputs.forget or inputs.general is None):
        raise ConfigError(
            "with --model, give --forget FILE... and --general FILE (held-out text for the budget)"
        )
    forget = [f for source in inputs.forget for f in facts_of(source)] or demo_forget(demo)
    retain = load_texts(inputs.retain) if inputs.retain else demo_retain(demo, inputs)
    general = load_texts(inputs.general or demo.general_eval)  # type: ignore[union-attr]
    return UnlearnData(forget, retain, general)


def open_model(
    inputs: Inputs, demo: DemoPaths | FactSetPaths | None, data: UnlearnData, progress: bool = True
) -> Loaded:
    """Load the model (the demo's, or `inputs.model`) next to its already checked data.

    `progress=False` silences transformers' loading bars.

    Raises:
        ModelError, ConfigError: for a model that cannot be loaded or a bad device.
    """
    name = str(demo.model) if isinstance(demo, DemoPaths) else inputs.model
    assert name is not None  # default_world builds the demo when no model is given
    model, tokenizer = load_model(
        name,
        inputs.device,
        inputs.dtype,
        inputs.trust_remote_code,
        inputs.device_map,
        inputs.cache_dir,
        progress,
    )
    source = Path(name) if Path(name).is_dir() else None
    return Loaded(model, tokenizer, data, source, demo)


def default_world(inputs: Inputs, progress: bool = True) -> DemoPaths | FactSetPaths | None:
    """The world that fills missing inputs: the demo's, a built-in model's fact sets, or None."""
    if inputs.model is None:
        return build_demo(cache_dir=inputs.cache_dir, progress=progress)
    if inputs.model in BUILTIN_MODELS:
        return fact_sets_for(inputs.model, inputs.cache_dir, device=inputs.device)
    return built_by_cir(inputs.model)


def built_by_cir(model: str) -> DemoPaths | None:
    """The world files of a model folder that `cir world build` made (it carries them), else None.

    Such a model (e.g. one built with --extra-facts) then defaults to its own world's retain and
    general text, like the demo model.
    """
    paths = DemoPaths.at(Path(model))
    return paths if paths.report.is_file() and paths.retain.is_file() else None


def demo_forget(demo: DemoPaths | FactSetPaths | None) -> list[Fact]:
    """All forget facts of the default world (T then V)."""
    assert demo is not None  # load_inputs checked: no forget files only with the demo
    return load_facts(demo.forget_train) + load_facts(demo.forget_val)


def demo_retain(demo: DemoPaths | FactSetPaths | None, inputs: Inputs) -> list[str]:
    """The default world's retain texts: 3 sentences of every retain fact, plus as many general texts.

    Raises:
        ConfigError: if there is no default world to take them from.
    """
    if demo is None:
        raise ConfigError("with --model, give --retain FILE (texts to keep: .jsonl facts or .txt lines)")
    retain = fact_sentences(load_facts(demo.retain), 3)
    return retain + load_texts(demo.general_train)[: len(retain)]


def attack_facts(inputs: Inputs, demo: DemoPaths | FactSetPaths | None) -> tuple[list[Fact], list[Fact]]:
    """T and V: the given files, or the demo's split.

    Raises:
        ConfigError: if one is missing and there is no demo to take it from.
    """
    if inputs.train is not None and inputs.eval is not None:
        return facts_of(inputs.train), facts_of(inputs.eval)
    if demo is None:
        raise ConfigError("with --model, give --train T.jsonl and --eval V.jsonl (the attack's split)")
    return load_facts(demo.forget_train), load_facts(demo.forget_val)
