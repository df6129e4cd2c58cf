"""Recipes that read top to bottom: load -> unlearn (budget-stopped) -> attack -> report.

The CLI only parses arguments and calls these. Each writes one output folder atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.errors import ConfigError
from cir.experiment import Experiment
from cir.inputs import (
    Inputs,
    attack_facts,
    default_world,
    facts_of,
    load_data,
    load_inputs,
    open_model,
    read_given,
)
from cir.outputs import atomic_output_dir, check_output_dir, write_attack, write_json_atomic, write_unlearned
from cir.records import AttackResult, RunReport
from cir.registry import ATTACKS
from cir.report import run_markdown
from cir.unlearn import UnlearnData, UnlearnResult, unlearn

Probe = Callable[[str, PreTrainedModel, PreTrainedTokenizerBase], None]  # (stage, model, tokenizer)


def run_unlearn(
    inputs: Inputs, raw_config: dict[str, Any], out: Path, force: bool = False, progress: bool = True
) -> UnlearnResult:
    """Unlearn and write `out`: the model (safetensors), metrics.jsonl and summary.json.

    Raises:
        OutputExistsError: if `out` exists and not `force` (checked before any work).
        ConfigError, DataError, ModelError: for bad input (configs and files before the model loads).
    """
    experiment = Experiment.for_unlearn(raw_config)
    loop, method = experiment.unlearn, experiment.method
    assert method is not None  # for_unlearn builds it
    check_output_dir(out, force)
    loaded = load_inputs(inputs, progress)
    result = unlearn(loaded.model, loaded.tokenizer, loaded.data, loop, method, progress)
    with atomic_output_dir(out, force, protected=[loaded.source] if loaded.source else []) as staging:
        write_unlearned(staging, result, loop, method, loaded.tokenizer)
    return result


def run_attack(
    inputs: Inputs, attack: str, raw: dict[str, Any], out: Path, force: bool = False, progress: bool = True
) -> AttackResult:
    """Attack `inputs.model` (typically unlearned) with `inputs.train`, scoring `inputs.eval`.

    Writes attack.jsonl and attack_summary.json to `out`. The config, the fact files and the T/V
    pair are checked before the model is loaded.

    Raises:
        OutputExistsError, ConfigError, DataError, ModelError: for bad input.
    """
    experiment = Experiment.for_attack(raw, attack)
    attacker = ATTACKS.build(attack, experiment.attack)
    if inputs.model is None or inputs.train is None or inputs.eval is None:
        raise ConfigError("the attack needs --model, --train T.jsonl and --eval V.jsonl")
    train, evaluate = facts_of(inputs.train), facts_of(inputs.eval)
    attacker.check(train, evaluate)
    check_output_dir(out, force)
    loaded = open_model(inputs, None, UnlearnData(train + evaluate, [], []), progress)
    result = attacker.run(
        loaded.model, loaded.tokenizer, train, evaluate, progress, None, experiment.eval.probes
    )
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
    attack (e.g. a `cir.stages.StageProbe` scoring held-out knowledge).

    Raises:
        OutputExistsError, ConfigError, DataError, ModelError: for bad input (checked before the work).
    """
    experiment = Experiment.for_run(raw, attack)
    loop, method = experiment.unlearn, experiment.method
    assert method is not None  # for_run builds it
    attacker = ATTACKS.build(attack, experiment.attack)
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
        # written before the attack changes the model
        write_unlearned(staging, result, loop, method, loaded.tokenizer)
        attacked = attacker.run(
            loaded.model, loaded.tokenizer, train, evaluate, progress, None, experiment.eval.probes
        )
        write_attack(staging, attack, attacked)
        probe("after the attack", loaded.model, loaded.tokenizer)
        report = run_report(result, attacked, method=loop.method, attack=attack)
        write_json_atomic(staging / "report.json", report.to_json())
        (staging / "report.md").write_text(run_markdown(report), encoding="utf-8")
    return report


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
