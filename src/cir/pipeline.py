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

from cir.attacks.base import AttackConfig, AttackResult
from cir.config import from_dict, load_yaml, merge, parse_overrides, split_sections, to_dict
from cir.data.facts import Fact, fact_sentences, load_facts, load_texts
from cir.demo import DemoPaths, build_demo
from cir.errors import ConfigError
from cir.fact_sets import FactSetPaths, fact_sets_for
from cir.methods.base import MethodConfig
from cir.model_io import atomic_output_dir, check_output_dir, load_model, write_json_atomic
from cir.pretrained import BUILTIN_MODELS
from cir.registry import ATTACKS, METHODS
from cir.report import table
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
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    device_map: str | None = None  # e.g. "auto": accelerate spreads a model larger than one GPU
    cache_dir: Path | None = None  # demo model cache (default $XDG_CACHE_HOME/cir)


@dataclass
class Loaded:
    """The model and data an Inputs resolves to."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    data: UnlearnData
    source: Path | None  # the input model folder, never to be overwritten
    demo: DemoPaths | FactSetPaths | None  # the world that filled the gaps, if any


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


def unlearn_configs(
    sections: dict[str, dict[str, Any]], source: str = "config"
) -> tuple[UnlearnConfig, MethodConfig]:
    """Build the loop's and the chosen method's config from the `unlearn` and `method` sections.

    Raises:
        ConfigError: naming every bad key.
    """
    loop = from_dict(UnlearnConfig, sections["unlearn"], f"{source}: unlearn")
    method = from_dict(METHODS.get(loop.method).config_class, sections["method"], f"{source}: method")
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

    Raises:
        ConfigError: if a model is given without forget facts or general text.
        DataError, ModelError: for bad files or models.
    """
    demo = default_world(inputs, progress)
    name = str(demo.model) if isinstance(demo, DemoPaths) else inputs.model
    if inputs.train is not None and inputs.eval is not None:  # a run forgets T + V
        inputs = replace(inputs, forget=[inputs.train, inputs.eval])
    if demo is None and (not inputs.forget or inputs.general is None):
        raise ConfigError(
            "with --model, give --forget FILE... and --general FILE (held-out text for the budget)"
        )
    model, tokenizer = load_model(
        name, inputs.device, inputs.dtype, inputs.trust_remote_code, inputs.device_map
    )
    forget = [f for path in inputs.forget for f in load_facts(path)] or demo_forget(demo)
    retain = load_texts(inputs.retain) if inputs.retain else demo_retain(demo, inputs)
    general = load_texts(inputs.general or demo.general_eval)  # type: ignore[union-attr]
    source = Path(name) if Path(name).is_dir() else None
    return Loaded(model, tokenizer, UnlearnData(forget, retain, general), source, demo)


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
) -> dict[str, Any]:
    """Unlearn and write `out`: the model (safetensors), metrics.jsonl and summary.json.

    Raises:
        OutputExistsError: if `out` exists and not `force` (checked before any work).
        ConfigError, DataError, ModelError: for bad input.
    """
    loop, method = unlearn_configs(split_sections(raw_config, UNLEARN_SECTIONS, "config"))
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


def run_attack(
    model: str,
    train: Path,
    evaluate: Path,
    attack: str,
    raw: dict[str, Any],
    out: Path,
    force: bool = False,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Attack a (typically unlearned) model; write attack.jsonl and attack_summary.json to `out`.

    Raises:
        OutputExistsError, ConfigError, DataError, ModelError: for bad input.
    """
    config = attack_config(attack, split_sections(raw, ["attack"], "config"))
    check_output_dir(out, force)
    loaded_model, tokenizer = load_model(model, device)
    result = ATTACKS.build(attack, config).run(
        loaded_model, tokenizer, load_facts(train), load_facts(evaluate), progress
    )
    with atomic_output_dir(out, force, protected=[Path(model)]) as staging:
        write_attack(staging, attack, result)
    return result.summary


def run(
    inputs: Inputs,
    raw: dict[str, Any],
    attack: str,
    out: Path,
    force: bool = False,
    progress: bool = True,
    probe: Probe | None = None,
) -> dict[str, Any]:
    """Unlearn T + V under the budget, save the model, attack with T, and report V, in one folder.

    `probe(stage, model, tokenizer)`, if given, is called before unlearning, after it and after the
    attack (e.g. a `cir.probes.StageProbe` scoring held-out knowledge).

    Raises:
        OutputExistsError, ConfigError, DataError, ModelError: for bad input (checked before the work).
    """
    sections = split_sections(raw, RUN_SECTIONS, "config")
    loop, method = unlearn_configs(sections)
    attack_cfg = attack_config(attack, sections)
    check_output_dir(out, force)
    loaded = load_inputs(inputs, progress)
    train, evaluate = attack_facts(inputs, loaded.demo)
    probe = probe or (lambda stage, model, tokenizer: None)
    with atomic_output_dir(out, force, protected=[loaded.source] if loaded.source else []) as staging:
        probe("before unlearning", loaded.model, loaded.tokenizer)
        result = unlearn(loaded.model, loaded.tokenizer, loaded.data, loop, method, progress)
        summary = unlearn_summary(result, loop, method, loaded)
        probe("after unlearning", loaded.model, loaded.tokenizer)
        loaded.model.save_pretrained(staging)  # the unlearned model, before the attack changes it
        loaded.tokenizer.save_pretrained(staging)
        write_jsonl(staging / "metrics.jsonl", result.history)
        write_json_atomic(staging / "summary.json", summary)
        attacked = ATTACKS.build(attack, attack_cfg).run(
            loaded.model, loaded.tokenizer, train, evaluate, progress
        )
        write_attack(staging, attack, attacked)
        probe("after the attack", loaded.model, loaded.tokenizer)
        report = run_report(summary, attacked, method=loop.method, attack=attack)
        write_json_atomic(staging / "report.json", report)
        (staging / "report.md").write_text(report_markdown(report), encoding="utf-8")
    return report


def write_attack(folder: Path, attack: str, result: AttackResult) -> None:
    """attack.jsonl (one line per epoch) and attack_summary.json."""
    write_jsonl(folder / "attack.jsonl", result.history)
    write_json_atomic(folder / "attack_summary.json", {"attack": attack, **result.summary})


def run_report(summary: dict[str, Any], attacked: AttackResult, method: str, attack: str) -> dict[str, Any]:
    """V's metrics before unlearning, after it and after the attack, plus the disruption."""
    before_attack = attacked.history[0]
    return {
        "method": method,
        "attack": attack,
        "post_attack_definition": attacked.summary["post_attack_definition"],
        "v_after_unlearning": {
            k[len("eval_") :]: v for k, v in before_attack.items() if k.startswith("eval_")
        },
        "v_post_attack": {k[len("eval_") :]: v for k, v in attacked.summary["post_attack"].items()},
        "forget_before": {
            k[len("forget_") :]: v for k, v in summary["before"].items() if k.startswith("forget_")
        },
        "forget_after": {
            k[len("forget_") :]: v for k, v in summary["after"].items() if k.startswith("forget_")
        },
        "general_loss_before": summary["before"]["general_loss"],
        "general_loss_after": summary["after"]["general_loss"],
        "epochs": summary["epochs"],
        "stop_reason": summary["stop_reason"],
        "seconds_per_fact": summary["seconds_per_fact"],
    }


def report_markdown(report: dict[str, Any]) -> str:
    """A short Markdown report of a run."""
    keys = list(report["v_post_attack"])
    rows = [
        {"stage": "all forget facts, before unlearning", **report["forget_before"]},
        {"stage": "all forget facts, after unlearning", **report["forget_after"]},
        {"stage": "V, after unlearning", **report["v_after_unlearning"]},
        {"stage": "V, post-attack", **report["v_post_attack"]},
    ]
    return (
        f"# {report['method']} then {report['attack']}\n\n{table(rows, ['stage', *keys], markdown=True)}\n\n"
        f"Post-attack: {report['post_attack_definition']}.\n\n"
        f"General-text loss {report['general_loss_before']:.4f} -> {report['general_loss_after']:.4f}; "
        f"{report['epochs']} epoch(s) kept ({report['stop_reason']}); "
        f"{report['seconds_per_fact']:.3f} s per fact.\n"
    )
