"""Recipes that read top to bottom: load -> unlearn (budget-stopped) -> attack -> report.

The CLI only parses arguments and calls these. Each writes one output folder atomically.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.attacks.base import AttackConfig
from cir.config import from_dict, load_yaml, merge, parse_overrides, split_sections, to_dict
from cir.data.facts import Fact, fact_sentences, load_facts, load_texts
from cir.demo import DemoPaths, build_demo
from cir.errors import ConfigError
from cir.fact_sets import FactSetPaths, fact_sets_for, heldout_facts
from cir.methods.base import MethodConfig
from cir.model_io import load_model
from cir.outputs import atomic_output_dir, check_output_dir, write_json_atomic
from cir.pretrained import BUILTIN_MODELS
from cir.records import AttackResult, RunReport
from cir.registry import ATTACKS, METHODS
from cir.report import run_markdown
from cir.runtime import peak_memory_bytes
from cir.unlearn import UnlearnConfig, UnlearnData, UnlearnResult, unlearn

PRESETS = Path(__file__).parent / "presets"
UNLEARN_SECTIONS = ["unlearn", "method"]
RUN_SECTIONS = ["unlearn", "method", "attack"]
Probe = Callable[[str, PreTrainedModel, PreTrainedTokenizerBase], None]  # (stage, model, tokenizer)


@dataclass
class Inputs:
    """What to run on. With no model, the embedded demo model and its world fill every gap.

    A built-in model (`smollm2-135m`) likewise brings its own fact sets and prose (`cir.fact_sets`).
    """

    model: str | None = None  # folder, hub id, .gguf or built-in name; None = the demo model
    forget: list[Path] = field(default_factory=list)  # fact files to forget; demo: its forget facts (T + V)
    train: Path | None = None  # T facts the attack trains on (a run forgets T + V); demo: its T split
    eval: Path | None = None  # V facts the attack is scored on; demo: its V split
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


def config_source(config: str | Path | None) -> dict[str, Any]:
    """Read `--config`: a YAML path or the name of a shipped preset (e.g. `paper_llama8b`).

    Raises:
        ConfigError: if it is neither, or the file cannot be read as a YAML mapping (`load_yaml`).
    """
    if config is None:
        return {}
    path = Path(config)
    if not path.suffix and not path.exists() and (PRESETS / f"{config}.yaml").is_file():
        path = PRESETS / f"{config}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise ConfigError(f"{config}: no such config file or preset (presets: {known})")
    return load_yaml(path)


def unlearn_configs(
    sections: dict[str, dict[str, Any]], source: str = "config"
) -> tuple[UnlearnConfig, MethodConfig]:
    """Build the loop's and the chosen method's config from the `unlearn` and `method` sections.

    Raises:
        ConfigError: naming every bad key.
    """
    loop = from_dict(UnlearnConfig, sections["unlearn"], f"{source}: unlearn")
    method: MethodConfig = from_dict(
        METHODS.get(loop.method).config_class, sections["method"], f"{source}: method"
    )
    return loop, method


def attack_config(name: str, sections: dict[str, dict[str, Any]], source: str = "config") -> AttackConfig:
    """The config of attack `name` from the `attack` section.

    Raises:
        ConfigError: for an unknown attack or a bad key.
    """
    return from_dict(ATTACKS.get(name).config_class, sections["attack"], f"{source}: attack")


def attack_facts(inputs: Inputs, demo: DemoPaths | FactSetPaths | None) -> tuple[list[Fact], list[Fact]]:
    """T and V: the given files, or the demo's split.

    Raises:
        ConfigError: if one is missing and there is no demo to take it from.
    """
    if inputs.train is not None and inputs.eval is not None:
        return load_facts(inputs.train), load_facts(inputs.eval)
    if demo is None:
        raise ConfigError("with --model, give --train T.jsonl and --eval V.jsonl (the attack's split)")
    return load_facts(demo.forget_train), load_facts(demo.forget_val)


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
    for path in [*inputs.forget, inputs.train, inputs.eval, inputs.heldout]:
        if path is not None:
            load_facts(path)
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
    forget = [f for path in inputs.forget for f in load_facts(path)] or demo_forget(demo)
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


def run_unlearn(
    inputs: Inputs, raw_config: dict[str, Any], out: Path, force: bool = False, progress: bool = True
) -> UnlearnResult:
    """Unlearn and write `out`: the model (safetensors), metrics.jsonl and summary.json.

    Raises:
        OutputExistsError: if `out` exists and not `force` (checked before any work).
        ConfigError, DataError, ModelError: for bad input (configs and files before the model loads).
    """
    loop, method = unlearn_configs(split_sections(raw_config, UNLEARN_SECTIONS, "config"))
    check_output_dir(out, force)
    loaded = load_inputs(inputs, progress)
    result = unlearn(loaded.model, loaded.tokenizer, loaded.data, loop, method, progress)
    with atomic_output_dir(out, force, protected=[loaded.source] if loaded.source else []) as staging:
        write_unlearned(staging, result, loop, method, loaded)
    return result


def write_unlearned(
    folder: Path, result: UnlearnResult, loop: UnlearnConfig, method: MethodConfig, loaded: Loaded
) -> None:
    """The unlearned model and tokenizer, metrics.jsonl (one EpochRecord a line) and summary.json."""
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    write_jsonl(folder / "metrics.jsonl", result.history.to_json())
    write_json_atomic(folder / "summary.json", unlearn_summary(result, loop, method))


def unlearn_summary(result: UnlearnResult, loop: UnlearnConfig, method: MethodConfig) -> dict[str, Any]:
    """What summary.json holds: config, seed, epochs, stop reason, cost, before/after records."""
    device = next(result.model.parameters()).device
    return {
        "config": {"unlearn": to_dict(loop), "method": to_dict(result.method_config or method)},
        "seed": loop.seed,
        "stop_reason": result.stop_reason,
        "epochs": result.epochs,
        "budget_limit": result.budget.limit,
        "data_scale": result.data_scale,
        "backoffs": [b.to_json() for b in result.backoffs],
        "unlearn_seconds": result.seconds,
        "check_seconds": result.check_seconds,
        "seconds_per_fact": result.seconds_per_fact,
        "facts": result.facts,
        "peak_memory_bytes": peak_memory_bytes(device),
        "device": str(device),
        "before": result.history.before.to_json(),
        "after": result.kept.to_json(),
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """One JSON object a line."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def raw_config(config: str | Path | None, overrides: list[str]) -> dict[str, Any]:
    """The config file (or preset) with `key=value` overrides merged on top."""
    return merge(config_source(config), parse_overrides(overrides))


def run_attack(
    inputs: Inputs, attack: str, raw: dict[str, Any], out: Path, force: bool = False, progress: bool = True
) -> AttackResult:
    """Attack `inputs.model` (typically unlearned) with `inputs.train`, scoring `inputs.eval`.

    Writes attack.jsonl and attack_summary.json to `out`. The config, the fact files and the T/V
    pair are checked before the model is loaded.

    Raises:
        OutputExistsError, ConfigError, DataError, ModelError: for bad input.
    """
    attacker = ATTACKS.build(attack, attack_config(attack, split_sections(raw, ["attack"], "config")))
    if inputs.model is None or inputs.train is None or inputs.eval is None:
        raise ConfigError("the attack needs --model, --train T.jsonl and --eval V.jsonl")
    train, evaluate = load_facts(inputs.train), load_facts(inputs.eval)
    attacker.check(train, evaluate)
    check_output_dir(out, force)
    loaded = open_model(inputs, None, UnlearnData(train + evaluate, [], []), progress)
    result = attacker.run(loaded.model, loaded.tokenizer, train, evaluate, progress)
    with atomic_output_dir(out, force, protected=[Path(inputs.model)]) as staging:
        write_attack(staging, attack, result)
    return result


def run(
    inputs: Inputs,
    raw: dict[str, Any],
    attack: str,
    out: Path,
    force: bool = False,
    progress: bool = True,
    probe: Probe | None = None,
) -> RunReport:
    """Unlearn T + V under the budget, save the model, attack with T, and report V, in one folder.

    Configs, fact files and the T/V pair are checked before the model is loaded.
    `probe(stage, model, tokenizer)`, if given, is called before unlearning, after it and after the
    attack (e.g. a `cir.probes.StageProbe` scoring held-out knowledge).

    Raises:
        OutputExistsError, ConfigError, DataError, ModelError: for bad input (checked before the work).
    """
    sections = split_sections(raw, RUN_SECTIONS, "config")
    loop, method = unlearn_configs(sections)
    attacker = ATTACKS.build(attack, attack_config(attack, sections))
    check_output_dir(out, force)
    read_given(inputs)
    demo = default_world(inputs, progress)
    train, evaluate = attack_facts(inputs, demo)
    attacker.check(train, evaluate)
    loaded = open_model(inputs, demo, load_data(inputs, demo), progress)
    probe = probe or (lambda stage, model, tokenizer: None)
    with atomic_output_dir(out, force, protected=[loaded.source] if loaded.source else []) as staging:
        probe("before unlearning", loaded.model, loaded.tokenizer)
        result = unlearn(loaded.model, loaded.tokenizer, loaded.data, loop, method, progress)
        probe("after unlearning", loaded.model, loaded.tokenizer)
        write_unlearned(staging, result, loop, method, loaded)  # before the attack changes the model
        attacked = attacker.run(loaded.model, loaded.tokenizer, train, evaluate, progress)
        write_attack(staging, attack, attacked)
        probe("after the attack", loaded.model, loaded.tokenizer)
        report = run_report(result, attacked, method=loop.method, attack=attack)
        write_json_atomic(staging / "report.json", report.to_json())
        (staging / "report.md").write_text(run_markdown(report), encoding="utf-8")
    return report


def write_attack(folder: Path, attack: str, result: AttackResult) -> None:
    """attack.jsonl (one AttackEpoch a line) and attack_summary.json."""
    write_jsonl(folder / "attack.jsonl", [epoch.to_json() for epoch in result.history])
    write_json_atomic(folder / "attack_summary.json", {"attack": attack, **result.to_json()})


def run_report(result: UnlearnResult, attacked: AttackResult, method: str, attack: str) -> RunReport:
    """V's scores before unlearning, after it and after the attack, plus the disruption."""
    return RunReport(
        method=method,
        attack=attack,
        post_attack_definition=attacked.post_attack_definition,
        v_after_unlearning=attacked.before,
        v_post_attack=attacked.post_attack,
        forget_before=result.history.before.facts,
        forget_after=result.kept.facts,
        general_loss_before=result.history.before.disruption.general_loss,
        general_loss_after=result.kept.disruption.general_loss,
        epochs=result.epochs,
        stop_reason=result.stop_reason,
        seconds_per_fact=result.seconds_per_fact,
    )
