"""One bench point: a method and a seed, unlearned on T + V, each budget's model attacked with T.

`bench_point` is the public entry point that the bench and tune recipes share: for one seed it splits
the known facts into T and V, unlearns T + V (once up to the largest budget where one trajectory
serves every budget, else once per budget), and attacks each budget's model, scoring V before,
after unlearning and after the attack (and the other domains' facts, for selectivity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers import PreTrainedModel

from cir.attacks.base import Attack, AttackConfig
from cir.budget import last_epoch_within
from cir.data.facts import Fact, filter_known, split_facts
from cir.errors import ConfigError
from cir.evals.mcq import MCQ_SCORERS
from cir.evals.scores import McqFormat, evaluate_facts
from cir.experiment import BenchConfig, per_method_configs
from cir.inputs import Inputs, Loaded, load_inputs
from cir.methods.base import MethodConfig
from cir.modules import ModelShape
from cir.records import AttackResult, BenchRun, FactScores, TrajectoryPoint
from cir.registry import ATTACKS
from cir.unlearn import UnlearnConfig, UnlearnData, UnlearnResult, unlearn

Tuned = Mapping[str, Mapping[float, Mapping[str, Any]]]  # method -> budget -> best trial (`tune.load_tuned`)


def known_facts(loaded: Loaded, facts: Sequence[Fact], config: BenchConfig, mcq_format: str) -> list[Fact]:
    """Facts the model knows before unlearning: prior acc_t1 >= threshold (field or measured)."""
    if config.prior_field is not None:
        return filter_known(facts, config.prior_field, config.known_threshold)
    scores = MCQ_SCORERS[mcq_format](loaded.model, loaded.tokenizer, facts, 16, "right").per_fact_t1
    return [f for f, p in zip(facts, scores, strict=True) if p >= config.known_threshold]


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


def check_splits(facts: Sequence[Fact], bench: BenchConfig, attack: Attack) -> None:
    """Split the facts for every seed and let the attack check each T/V pair, before any unlearning.

    Raises:
        DataError, ConfigError: for a side left empty, an overlap, or a T/V pair the attack refuses.
    """
    for seed in range(bench.seeds):
        attack.check(*split_facts(facts, bench.val_fraction, seed))


def check_tuned_shape(studies: Mapping[str, Mapping[float, Mapping[str, Any]]], shape: ModelShape) -> None:
    """Refuse a study tuned on a model of another depth: its layer windows would land elsewhere.

    Only depth is compared: a component count too large for a narrower model is refused by the
    method's own check, and a narrower model of the same depth (a test's) may reuse a study with
    its counts overridden.

    Raises:
        ConfigError: naming the study, its depth and the model's.
    """
    for chosen in studies.values():
        for best in chosen.values():
            layers = best.get("shape", (shape.layers, shape.hidden))[0]
            if layers != shape.layers:
                raise ConfigError(
                    f"--tuned: study {best['study']} was tuned on a model of {layers} layers; this one "
                    f"has {shape.layers}: tune it on this model"
                )


def tuned_studies(bench: BenchConfig, tuned: Tuned) -> dict[str, dict[float, Mapping[str, Any]]]:
    """Per benched method with a study at any bench budget: the study each bench budget uses.

    A budget uses its own study where there is one, else the nearest tuned bench budget's (the
    larger on a tie). Studies at budgets the bench does not run are ignored.
    """
    chosen = {}
    for name in bench.methods:
        own = {b: tuned[name][b] for b in bench.budgets if b in tuned.get(name, {})}
        if own:
            nearest = {b: min(own, key=lambda t, b=b: (abs(t - b), -t)) for b in bench.budgets}  # type: ignore[misc]
            chosen[name] = {b: own[nearest[b]] for b in bench.budgets}
    return chosen


def bench_jobs(
    bench: BenchConfig,
    loop: UnlearnConfig,
    overrides: Mapping[str, Any],
    studies: Mapping[str, Mapping[float, Mapping[str, Any]]],
) -> list[tuple[str, list[float], MethodConfig]]:
    """(method, budgets, config): one unlearning run per seed for each group of budgets sharing a config.

    Untuned, a method is one group of every budget, unlearned once up to the largest. A budget read
    off a longer run's history is the run that budget would get only when the loop stops at the
    first breach (`single_trajectory`); otherwise every budget is its own group.
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
            groups = [budgets] if single_trajectory(loop) else [[b] for b in budgets]
            jobs += [(name, group, config) for group in groups]
    return jobs


def single_trajectory(loop: UnlearnConfig) -> bool:
    """Whether one run to the largest budget passes through every smaller budget's run.

    True when the loop stops at the first epoch that leaves the budget and checks only at epoch
    ends: then a run held to a smaller budget follows the same epochs and stops earlier. With
    back-off or in-epoch checks, a smaller budget changes the trajectory itself.
    """
    return loop.max_backoffs == 0 and loop.check_every == 0


@dataclass
class Selectivity:
    """The other domains' facts (never trained on) and the original model's scores on them."""

    facts: list[Fact]
    before: FactScores
    mcq_format: McqFormat
    batch_size: int

    @classmethod
    def of(cls, loaded: Loaded, bench: BenchConfig, loop: UnlearnConfig) -> Selectivity | None:
        """At most `bench.heldout_max` of `loaded.heldout`, evenly spaced, scored on the loaded model.

        Evenly spaced rather than the first ones, so that every domain of the file is represented.
        None when there are no held-out facts or `heldout_max` is 0.
        """
        facts = evenly_spaced(loaded.heldout, bench.heldout_max)
        if not facts:
            return None
        scores = evaluate_facts(loaded.model, loaded.tokenizer, facts, loop.mcq_format, loop.eval_batch_size)
        return cls(facts, scores, loop.mcq_format, loop.eval_batch_size)

    def score(self, loaded: Loaded) -> FactScores:
        """The loaded model's scores on the held-out facts now."""
        return evaluate_facts(loaded.model, loaded.tokenizer, self.facts, self.mcq_format, self.batch_size)


def evenly_spaced(items: Sequence[Fact], most: int) -> list[Fact]:
    """`items` if there are at most `most`, else `most` of them at evenly spaced positions."""
    if len(items) <= most:
        return list(items)
    return [items[i * len(items) // most] for i in range(most)]


def bench_point(
    loaded: Loaded,
    facts: list[Fact],
    bench: BenchConfig,
    loop: UnlearnConfig,
    name: str,
    method_config: MethodConfig,
    attack_cfg: AttackConfig,
    seed: int,
    original: dict[str, torch.Tensor],
    budgets: Sequence[float] | None = None,
    progress: bool = False,
    heldout: Selectivity | None = None,
) -> list[BenchRun]:
    """One method and seed: unlearn T + V up to the largest of `budgets`, then attack each budget's model.

    `budgets` defaults to the bench's; the run's own loop holds the largest, so the budget is set in
    one place, the loop config the run is given (`bench_jobs` groups budgets one run can serve).

    Budgets that keep the same epoch share one attack: their models are the same weights, and the
    attack is seeded, so a second run would repeat the first exactly.

    With `progress`, the epochs and each attack show a bar (nested under a caller's), named by the
    method and seed ("cir seed 1 epoch 3", "cir seed 1 budget 0.01 finetune"). With `heldout`, each
    budget's model is also scored on the other domains' facts before the attack (selectivity).
    """
    model, tokenizer = loaded.model, loaded.tokenizer
    train, val = split_facts(facts, bench.val_fraction, seed)
    model.load_state_dict(original)
    before = evaluate_facts(model, tokenizer, val, loop.mcq_format, loop.eval_batch_size)
    budgets = list(bench.budgets if budgets is None else budgets)
    config = replace(loop, method=name, seed=seed, budget=max(budgets))
    result = unlearn_once(loaded, train, val, config, method_config, progress, f"{name} seed {seed}")
    runs = []
    attacked: dict[int, tuple[AttackResult, FactScores | None]] = {}  # by kept epoch
    for budget in budgets:
        epoch = kept_epoch(result, budget)
        if epoch not in attacked:  # budgets keeping the same epoch share its model, so its attack
            budget_model(result, budget, original)
            unlearned = heldout.score(loaded) if heldout is not None else None
            attacker = ATTACKS.build(bench.attack, attack_cfg)
            label = f"{name} seed {seed} budget {budget:g}"
            attacked[epoch] = (attacker.run(model, tokenizer, train, val, progress, label), unlearned)
        attack, unlearned = attacked[epoch]
        run = bench_run(name, seed, budget, before, result, epoch, attack)
        if heldout is not None:
            run = replace(run, heldout_before=heldout.before, heldout_unlearned=unlearned)
        runs.append(run)
    model.load_state_dict(original)
    return runs


def unlearn_once(
    loaded: Loaded,
    train: list[Fact],
    val: list[Fact],
    loop: UnlearnConfig,
    method_config: MethodConfig,
    progress: bool = False,
    label: str | None = None,
) -> UnlearnResult:
    """Unlearn T + V from the loaded model once under `loop` (its budget the largest served), monitoring V.

    Every epoch's trained weights are kept for `budget_model` when one run serves several budgets.
    The data, its order and the seed are those of `cir unlearn --forget T V` with the same settings,
    so the trajectory is the same.
    `progress` and `label` are `unlearn`'s (a bar per epoch, f"{label} epoch {n}").
    """
    data = UnlearnData(train + val, loaded.data.retain_texts, loaded.data.general_texts, monitor_facts=val)
    return unlearn(
        loaded.model,
        loaded.tokenizer,
        data,
        loop,
        method_config,
        progress,
        keep_every_epoch=single_trajectory(loop),  # else only the kept epoch is needed: the model has it
        label=label,
    )


def kept_epoch(result: UnlearnResult, budget: float) -> int:
    """The epoch a run stopped at `budget` keeps: the run's own at its budget, else `last_epoch_within`.

    The second holds for a smaller budget only on a `single_trajectory` run (`bench_jobs`).
    """
    if budget == result.budget.budget:
        return result.epochs
    return last_epoch_within(result.history, replace(result.budget, budget=budget))


def budget_model(result: UnlearnResult, budget: float, original: dict[str, torch.Tensor]) -> int:
    """Put `result.model` in the state a run stopped at `budget` ends in; returns that (kept) epoch.

    The state is the original weights with the trained ones of `last_epoch_within(history, budget)`,
    from `result.snapshots` (an `unlearn(..., keep_every_epoch=True)` run to at least this budget).
    A run held to this very budget without snapshots already holds its kept weights.
    """
    if result.snapshots is None:
        assert budget == result.budget.budget  # only a single-trajectory run serves other budgets
        return result.epochs
    epoch = kept_epoch(result, budget)
    model: PreTrainedModel = result.model
    model.load_state_dict(original)
    result.snapshots.restore(epoch)
    return epoch


def bench_run(
    method: str,
    seed: int,
    budget: float,
    before: FactScores,
    result: UnlearnResult,
    epoch: int,
    attack: AttackResult,
) -> BenchRun:
    """What a bench run records of its unlearning (up to `epoch`) and of the attack that followed."""
    kept = result.history[epoch]
    return BenchRun(
        method=method,
        seed=seed,
        budget=budget,
        epochs=epoch,
        v_before=before,
        v_unlearned=kept.facts,
        v_post_attack=attack.post_attack,
        general_loss_before=result.history.before.disruption.general_loss,
        general_loss_after=kept.disruption.general_loss,
        seconds_per_fact=kept.seconds / result.facts,
        unlearn_trajectory=[
            TrajectoryPoint(r.epoch, r.facts, r.disruption.general_loss) for r in result.history
        ],
        attack_trajectory=[TrajectoryPoint(e.epoch, e.facts) for e in attack.history],
        post_attack_definition=attack.post_attack_definition,
        stop_reasons={"unlearn": stop_reason_at(result, budget, epoch), "attack": attack.stop_reason},
    )


def stop_reason_at(result: UnlearnResult, budget: float, epoch: int) -> str:
    """Why a run held to `budget`, which keeps `epoch`, stops there.

    At the run's own budget, the run's reason. A `single_trajectory` run also serves every smaller
    budget: there, an epoch the run went on to after `epoch` is one that left that budget.
    """
    if budget == result.budget.budget or epoch == result.history[-1].epoch:
        return result.stop_reason
    return "budget"
