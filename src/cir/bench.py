"""`cir bench`: every method at the same budgets, the same attack and the same seeds, side by side.

For each seed the known forget facts are split into T and V; for each method the model is unlearned
once on T + V up to the largest budget, with the trained weights kept after every epoch, so the
model at each smaller budget is the last epoch within it (the same trajectory a run stopped at that
budget would follow). Each budget's model is then attacked with T and scored on V.

With tuned studies (`cir tune`, then `cir bench --tuned`), each budget uses its own study's best
params where one exists, else the nearest tuned budget's; budgets sharing a config share one run.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from cir.attacks.base import AttackConfig, AttackResult
from cir.config import from_dict, merge, split_sections, to_dict
from cir.data.facts import Fact, split_facts
from cir.errors import ConfigError
from cir.evals.mcq import choice_likelihood_mcq, letter_mcq
from cir.evals.metrics import evaluate_facts
from cir.methods.base import MethodConfig
from cir.model_io import atomic_output_dir, check_output_dir, write_json_atomic
from cir.pipeline import Inputs, Loaded, attack_config, load_inputs, unlearn_configs
from cir.plots import bench_plots
from cir.registry import ATTACKS
from cir.report import STAGES, V_METRICS, bench_markdown
from cir.unlearn import UnlearnConfig, UnlearnData, UnlearnResult, unlearn

ABLATIONS = ("cir", "mlp_breaking")  # not baselines: CIR itself and CIR without the collapse
BENCH_SECTIONS = ["bench", "unlearn", "attack", "methods"]
Tuned = Mapping[str, Mapping[float, Mapping[str, Any]]]  # method -> budget -> best trial (`tune.load_tuned`)


@dataclass
class BenchConfig:
    """What the bench compares and how."""

    methods: list[str] = field(
        default_factory=lambda: ["cir", "mlp_breaking", "grad_diff", "circuit_breakers"]
    )
    budgets: list[float] = field(default_factory=lambda: [0.001, 0.01])  # relative general-loss rises
    seeds: int = 3  # seeds 0..seeds-1: each its own T/V split, data order and attack shuffle
    attack: str = "finetune"  # a registered attack (`cir attacks`)
    val_fraction: float = 0.2  # share of known facts in V
    known_threshold: float = 0.25  # keep facts whose prior acc_t1 is at least this (the paper's rule)
    prior_field: str | None = None  # fact field holding the prior acc_t1; None = measure it with the model
    metric: str = "answer_prob"  # the headline V metric: answer_prob, acc_t1 or acc_t0


def known_facts(loaded: Loaded, facts: Sequence[Fact], config: BenchConfig, mcq_format: str) -> list[Fact]:
    """Facts the model knows before unlearning: prior acc_t1 >= threshold (field or measured)."""
    if config.prior_field is not None:
        return [f for f in facts if f.extra.get(config.prior_field, 0.0) >= config.known_threshold]
    scorer = letter_mcq if mcq_format == "letter" else choice_likelihood_mcq
    scores = scorer(loaded.model, loaded.tokenizer, facts).per_fact_t1
    return [f for f, p in zip(facts, scores, strict=True) if p >= config.known_threshold]


class EpochWeights:
    """The trained weights after every epoch of one unlearning run (CPU copies)."""

    def __init__(self) -> None:
        self.by_epoch: dict[int, list[torch.Tensor]] = {}
        self.parameters: list[nn.Parameter] = []

    def __call__(self, entry: dict[str, float], parameters: list[nn.Parameter]) -> None:
        """The unlearning loop's per-epoch callback."""
        self.parameters = parameters
        self.by_epoch[int(entry["epoch"])] = [p.detach().to("cpu", copy=True) for p in parameters]

    @torch.no_grad()
    def load(self, epoch: int, original: dict[str, torch.Tensor], model: nn.Module) -> None:
        """Put the model in its state after `epoch` (0 = the original)."""
        model.load_state_dict(original)
        if epoch > 0:
            for parameter, value in zip(self.parameters, self.by_epoch[epoch], strict=True):
                parameter.copy_(value)


def epoch_within(history: Sequence[dict[str, float]], budget: float, metric: str) -> int:
    """The last epoch before the first one whose disruption exceeds `budget` (0 = none was within)."""
    base = history[0][metric]
    limit = base * (1 + budget) if metric == "general_loss" else budget
    kept = 0
    for entry in history[1:]:
        if entry[metric] > limit:
            break
        kept = int(entry["epoch"])
    return kept


def run_bench(
    inputs: Inputs,
    raw: dict[str, Any],
    out: Path,
    force: bool = False,
    progress: bool = True,
    tuned: Tuned | None = None,
) -> dict[str, Any]:
    """Run the comparison and write results.json, results.md and the plots into `out`.

    Args:
        inputs: the model and data.
        raw: the config, sections bench, unlearn, attack and methods.
        out: the output folder.
        force: replace an existing `out`.
        progress: show progress bars.
        tuned: best trials of `cir tune` studies; a method's `methods.<name>` overrides win over them.

    Raises:
        OutputExistsError, ConfigError, DataError, ModelError: for bad input (checked before the work).
    """
    bench, loop, attack, overrides = bench_configs(raw)
    studies = tuned_studies(bench, tuned or {})
    jobs = bench_jobs(bench, overrides, studies)
    check_output_dir(out, force)
    loaded, facts, original = load_bench(inputs, bench, loop, progress)
    runs = []
    seeded = [(seed, *job) for seed in range(bench.seeds) for job in jobs]
    for seed, name, budgets, config in tqdm(seeded, desc="bench", disable=not progress):
        group = replace(bench, budgets=budgets)
        runs += bench_one(loaded, facts, group, loop, name, config, attack, seed, original)
    largest = max(bench.budgets)
    results = {
        "config": {
            "bench": to_dict(bench),
            "unlearn": to_dict(loop),
            "attack": to_dict(attack),
            "methods": {n: to_dict(c) for n, budgets, c in jobs if largest in budgets},  # at the largest
            "tuned": {n: {str(b): dict(t) for b, t in chosen.items()} for n, chosen in studies.items()},
        },
        "facts": len(facts),
        "definition": definitions(runs),
        "runs": runs,
        "table": aggregate(runs, bench),
    }
    with atomic_output_dir(out, force) as staging:
        write_json_atomic(staging / "results.json", results)
        (staging / "results.md").write_text(bench_markdown(results), encoding="utf-8")
        bench_plots(results, staging)
    return results


def bench_configs(
    raw: dict[str, Any], extra_methods: Sequence[str] = ()
) -> tuple[BenchConfig, UnlearnConfig, AttackConfig, dict[str, Any]]:
    """The bench, loop and attack configs, and the `methods` section (checked, still raw overrides).

    Raises:
        ConfigError: naming every bad key, or a `methods.<name>` section for a method not benched
            (nor in `extra_methods`).
    """
    sections = split_sections(raw, BENCH_SECTIONS, "config")
    bench = from_dict(BenchConfig, sections["bench"], "config: bench")
    loop = from_dict(UnlearnConfig, sections["unlearn"], "config: unlearn")
    per_method_configs([*bench.methods, *extra_methods], sections["methods"])
    return bench, loop, attack_config(bench.attack, sections), sections["methods"]


def load_bench(
    inputs: Inputs, bench: BenchConfig, loop: UnlearnConfig, progress: bool = True
) -> tuple[Loaded, list[Fact], dict[str, torch.Tensor]]:
    """Load the model and data, pick the known facts, and keep a CPU copy of the original weights.

    Raises:
        ConfigError, DataError, ModelError: for bad input.
    """
    loaded = load_inputs(inputs, progress)
    facts = known_facts(loaded, loaded.data.forget_facts, bench, loop.mcq_format)
    original = {k: v.detach().to("cpu", copy=True) for k, v in loaded.model.state_dict().items()}
    return loaded, facts, original


def per_method_configs(
    names: Sequence[str], overrides: Mapping[str, Any], tuned: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """Each method's config: its defaults, then its `tuned` overrides, then the `methods.<name>` section's.

    Raises:
        ConfigError: for a section naming a method not benched, or a bad key.
    """
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ConfigError(f"config: methods: {unknown} not in bench.methods {list(names)}")
    tuned = tuned or {}
    return {
        name: unlearn_configs(
            {"unlearn": {"method": name}, "method": merge(tuned.get(name, {}), overrides.get(name, {}))},
            f"config: methods.{name}",
        )[1]
        for name in names
    }


def tuned_studies(bench: BenchConfig, tuned: Tuned) -> dict[str, dict[float, Mapping[str, Any]]]:
    """Per benched method with a study at any bench budget: the study each bench budget uses.

    A budget uses its own study where there is one, else the nearest tuned bench budget's (the
    larger on a tie). Studies at budgets the bench does not run are ignored.
    """
    chosen = {}
    for name in bench.methods:
        own = {b: tuned[name][b] for b in bench.budgets if b in tuned.get(name, {})}
        if own:
            nearest = {b: min(own, key=lambda t, b=b: (abs(t - b), -t)) for b in bench.budgets}
            chosen[name] = {b: own[nearest[b]] for b in bench.budgets}
    return chosen


def bench_jobs(
    bench: BenchConfig, overrides: Mapping[str, Any], studies: Mapping[str, Mapping[float, Mapping[str, Any]]]
) -> list[tuple[str, list[float], MethodConfig]]:
    """(method, budgets, config): one unlearning run per seed for each group of budgets sharing a config.

    Untuned, a method is one group of every budget, unlearned once up to the largest.
    """
    jobs = []
    for name in bench.methods:
        chosen: Mapping[float, Mapping[str, Any] | None] = studies.get(name, dict.fromkeys(bench.budgets))
        study_of = {b: t["study"] if t else None for b, t in chosen.items()}
        for study in dict.fromkeys(study_of.values()):  # each distinct study, in budget order
            budgets = [b for b in bench.budgets if study_of[b] == study]
            best = chosen[budgets[0]]
            tuned = {name: best["overrides"]} if best else None
            config = per_method_configs([name], {name: overrides.get(name, {})}, tuned)[name]
            jobs.append((name, budgets, config))
    return jobs


def bench_one(
    loaded: Loaded,
    facts: list[Fact],
    bench: BenchConfig,
    loop: UnlearnConfig,
    name: str,
    method_config: Any,
    attack_cfg: Any,
    seed: int,
    original: dict[str, torch.Tensor],
) -> list[dict[str, Any]]:
    """One method and seed: unlearn up to the largest budget, then attack each budget's model."""
    model, tokenizer = loaded.model, loaded.tokenizer
    train, val = split_facts(facts, bench.val_fraction, seed)
    model.load_state_dict(original)
    before = evaluate_facts(model, tokenizer, val, loop.mcq_format, loop.eval_batch_size)
    data = UnlearnData(train + val, loaded.data.retain_texts, loaded.data.general_texts, monitor_facts=val)
    config = UnlearnConfig(**{**to_dict(loop), "method": name, "budget": max(bench.budgets), "seed": seed})
    weights = EpochWeights()
    result = unlearn(model, tokenizer, data, config, method_config, progress=False, on_epoch=weights)
    runs = []
    for budget in bench.budgets:
        epoch = epoch_within(result.history, budget, loop.budget_metric)
        weights.load(epoch, original, model)
        attack = ATTACKS.build(bench.attack, attack_cfg).run(model, tokenizer, train, val, progress=False)
        run = {"method": name, "seed": seed, "budget": budget, "epochs": epoch, "v_before": before}
        runs.append(run | run_numbers(result, epoch, attack, len(train + val)))
    model.load_state_dict(original)
    return runs


def run_numbers(result: UnlearnResult, epoch: int, attack: AttackResult, facts: int) -> dict[str, Any]:
    """What a bench run records of its unlearning (up to `epoch`) and of the attack that followed."""
    kept = result.history[epoch]
    return {
        "v_unlearned": {k[len("forget_") :]: v for k, v in kept.items() if k.startswith("forget_")},
        "v_post_attack": {k[len("eval_") :]: v for k, v in attack.summary["post_attack"].items()},
        "general_loss_before": result.history[0]["general_loss"],
        "general_loss_after": kept["general_loss"],
        "seconds_per_fact": kept.get("seconds", 0.0) / facts,
        "unlearn_trajectory": [
            {k: h[k] for k in h if k in ("epoch", "general_loss") or k.startswith("forget_")}
            for h in result.history
        ],
        "attack_trajectory": [
            {k: h[k] for k in h if k == "epoch" or k.startswith("eval_")} for h in attack.history
        ],
        "post_attack_definition": attack.summary["post_attack_definition"],
        "stop_reasons": {"unlearn": result.stop_reason, "attack": attack.summary.get("stop_reason")},
    }


def definitions(runs: Sequence[dict[str, Any]]) -> dict[str, str]:
    """What each reported number means."""
    return {
        "post_attack": runs[0]["post_attack_definition"] if runs else "",
        "drop": "V metric before unlearning minus V metric post-attack (higher = more robustly forgotten)",
        "ratio": "CIR's drop / the best baseline's drop at the same budget, per seed, then mean and std",
        "answer_prob": "exp(-mean cross-entropy of the answer tokens after the question), mean over V",
        "acc_t1": "mean renormalised probability of the right choice",
        "acc_t0": "argmax accuracy",
        "general_loss_change": "relative change of held-out general-text loss, in percent",
        "seconds_per_fact": "unlearning wall time (setup, steps, budget checks) up to the kept epoch / facts",
    }


def aggregate(runs: Sequence[dict[str, Any]], bench: BenchConfig) -> list[dict[str, Any]]:
    """One row per (budget, method): mean and std over seeds, the drop, and the ratio to the best baseline."""
    metric = bench.metric
    rows = []
    for budget in bench.budgets:
        drops = {
            name: {
                r["seed"]: r["v_before"][metric] - r["v_post_attack"][metric]
                for r in runs
                if r["method"] == name and r["budget"] == budget
            }
            for name in bench.methods
        }
        baselines = [n for n in bench.methods if n not in ABLATIONS and drops[n]]
        best = max(baselines, key=lambda n: statistics.fmean(drops[n].values()), default=None)
        for name in bench.methods:
            mine = [r for r in runs if r["method"] == name and r["budget"] == budget]
            rows.append(
                {
                    "budget": budget,
                    "method": name,
                    **summarise(mine, metric),
                    **ratio(drops[name], drops[best] if best else {}, best),
                }
            )
    return rows


def summarise(runs: Sequence[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Mean and std over seeds of the row's numbers."""

    def stats(key: str, values: list[float]) -> dict[str, float]:
        return {
            key: statistics.fmean(values),
            f"{key}_std": statistics.stdev(values) if len(values) > 1 else 0.0,
        }

    columns = {
        "before": [r["v_before"][metric] for r in runs],
        "unlearned": [r["v_unlearned"][metric] for r in runs],
        "post_attack": [r["v_post_attack"][metric] for r in runs],
        "drop": [r["v_before"][metric] - r["v_post_attack"][metric] for r in runs],
        # every V metric at every stage (e.g. acc_t0_unlearned), the headline one included
        **{
            f"{name}_{stage}": [r[f"v_{stage}"][name] for r in runs] for name in V_METRICS for stage in STAGES
        },
        "general_loss_change": [100 * (r["general_loss_after"] / r["general_loss_before"] - 1) for r in runs],
        "epochs": [float(r["epochs"]) for r in runs],
        "seconds_per_fact": [r["seconds_per_fact"] for r in runs],
    }
    row: dict[str, Any] = {"seeds": len(runs)}
    for key, values in columns.items():
        row |= stats(key, values)
    return row


def ratio(mine: dict[int, float], best: dict[int, float], best_name: str | None) -> dict[str, Any]:
    """Drop / best baseline's drop, per seed, then mean and std (None where the baseline's drop <= 0)."""
    per_seed = [mine[s] / best[s] for s in mine if s in best and best[s] > 0]
    return {
        "best_baseline": best_name,
        "ratio": statistics.fmean(per_seed) if per_seed else None,
        "ratio_std": statistics.stdev(per_seed) if len(per_seed) > 1 else None,
    }
