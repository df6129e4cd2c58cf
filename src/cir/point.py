"""One bench point: a method and a seed, unlearned on T + V, each budget's model attacked with T.

`bench_point` is the public entry point that the bench and tune recipes share: for one seed it splits
the known facts into T and V, unlearns T + V (once up to the largest budget where one trajectory
serves every budget, else once per budget), and attacks each budget's model, scoring V before,
after unlearning and after the attack (and the other domains' facts, for selectivity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from transformers import PreTrainedModel

from cir.attacks.base import Attack, AttackConfig, Reachable
from cir.budget import last_epoch_within
from cir.data.facts import Fact, filter_known, fold_splits, split_facts, without_scored_prefix
from cir.errors import ConfigError
from cir.evals.mcq import MCQ_SCORERS
from cir.evals.scores import McqFormat, score_facts
from cir.experiment import BenchConfig, per_method_configs
from cir.inputs import Inputs, Loaded, load_inputs
from cir.methods.base import MethodConfig
from cir.modules import ModelShape
from cir.records import (
    LOWER_IS_BETTER,
    AttackResult,
    BenchRun,
    ControlRun,
    FactRecord,
    FactTable,
    TrajectoryPoint,
    post_attack_stage,
)
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


def point_splits(facts: Sequence[Fact], bench: BenchConfig, seed: int) -> list[tuple[list[Fact], list[Fact]]]:
    """The (T, V) pairs of one seed: K folds (`bench.folds` >= 2), else one split by `val_fraction`.

    Raises:
        DataError, ConfigError: for a side left empty or too few facts (answers) for the folds.
    """
    if bench.folds:
        return fold_splits(facts, bench.folds, seed, bench.split)
    return [split_facts(facts, bench.val_fraction, seed, bench.split)]


def check_splits(facts: Sequence[Fact], bench: BenchConfig, attack: Attack) -> None:
    """Split the facts for every seed and let the attack check each T/V pair, before any unlearning.

    Raises:
        DataError, ConfigError: for a side left empty, an overlap, or a T/V pair the attack refuses.
    """
    for seed in bench.seed_range:
        for train, val in point_splits(facts, bench, seed):
            attack.check(train, val)
    if bench.eval_prompts == "held_out":
        without_scored_prefix(facts)  # a fact every sentence of which starts with its prompt is refused


def fact_ids(loaded: Loaded) -> dict[Fact, str]:
    """Each loaded fact's id for per-fact records: "<role>:<index in its file>" ("forget:12", "heldout:3")."""
    ids = {fact: f"heldout:{i}" for i, fact in enumerate(loaded.heldout)}
    return ids | {fact: f"forget:{i}" for i, fact in enumerate(loaded.data.forget_facts)}


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
    before: FactTable
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
        scores = score_facts(loaded.model, loaded.tokenizer, facts, loop.mcq_format, loop.eval_batch_size)
        return cls(facts, scores, loop.mcq_format, loop.eval_batch_size)

    def score(self, loaded: Loaded) -> FactTable:
        """The loaded model's per-fact scores on the held-out facts now."""
        return score_facts(loaded.model, loaded.tokenizer, self.facts, self.mcq_format, self.batch_size)

    def records(self, ids: Mapping[Fact, str], stage: str, table: FactTable) -> list[FactRecord]:
        """Per-fact records of `table` (this set's scores at `stage`), each fact's split its domain."""
        splits = [str(f.extra.get("domain", "heldout")) for f in self.facts]
        return stage_records(ids, self.facts, splits, stage, table)


def evenly_spaced(items: Sequence[Fact], most: int) -> list[Fact]:
    """`items` if there are at most `most`, else `most` of them at evenly spaced positions."""
    if len(items) <= most:
        return list(items)
    return [items[i * len(items) // most] for i in range(most)]


@dataclass
class SweptAttack:
    """The attacker's best over its learning-rate sweep: the chosen run, its lr, and every run's history."""

    chosen: AttackResult
    lr: float | None  # the chosen run's lr; None without a sweep (the attack's own)
    runs: list[tuple[float | None, AttackResult]]  # (lr, result) of every run of the sweep


def sweep_attack(
    loaded: Loaded,
    bench: BenchConfig,
    attack_cfg: AttackConfig,
    seed: int,
    train: list[Fact],
    val: list[Fact],
    progress: bool = False,
    label: str | None = None,
) -> SweptAttack:
    """Attack the loaded model with T, scoring V, at each lr of `bench.attack_lrs`; keep the attacker's best.

    Every run starts from the weights the model has on entry and the model is left in them. The attack
    is seeded by the bench seed and stops on the bench's metric (where its config has those fields).
    The best run is the one whose post-attack value of `bench.metric` is best for the attacker. With
    `bench.probes_at: chosen` and an attack that can replay (`Reachable`), the extra probes score V
    once, at that run's best epoch (`probe_chosen_point`); otherwise at every epoch of every run.
    """
    model, tokenizer = loaded.model, loaded.tokenizer
    lrs: list[float | None] = list(bench.attack_lrs) or [None]
    start = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    once = bench.probes_at == "chosen" and isinstance(ATTACKS.build(bench.attack, attack_cfg), Reachable)
    runs = []
    for index, lr in enumerate(lrs):
        if index:
            model.load_state_dict(start)
        config = attack_config_for(attack_cfg, bench, seed, lr)
        name = f"{label} lr {lr:g}" if lr is not None and label else label
        attack = ATTACKS.build(bench.attack, config)
        probes = () if once else bench.probes
        runs.append((lr, attack.run(model, tokenizer, train, val, progress, name, probes)))
    model.load_state_dict(start)
    sign = -1 if bench.metric in LOWER_IS_BETTER else 1
    lr, chosen = max(runs, key=lambda run: sign * run[1].post_attack.metric(bench.metric))
    if once and bench.probes and chosen.post_attack_per_fact is not None:
        config = attack_config_for(attack_cfg, bench, seed, lr)
        probe_chosen_point(loaded, bench, ATTACKS.build(bench.attack, config), config, chosen, train, val)
        model.load_state_dict(start)
    return SweptAttack(chosen, lr, runs)


def probe_chosen_point(
    loaded: Loaded,
    bench: BenchConfig,
    attack: Reachable,
    config: AttackConfig,
    chosen: AttackResult,
    train: list[Fact],
    val: list[Fact],
) -> None:
    """Score the extra probes on the model at `chosen`'s best epoch of `bench.metric`, into `chosen`.

    The attack replays its run to that epoch (`Reachable.reach`) from the weights the model has on
    entry; each probe column joins `chosen.post_attack_per_fact` with that epoch as its best. The
    replayed headline metric must equal the run's own at that epoch: `details["replay_difference"]`
    records the largest per-fact gap (0 on CPU, where training is deterministic).
    """
    model, tokenizer = loaded.model, loaded.tokenizer
    epoch = chosen.best_epochs[bench.metric]
    attack.reach(model, tokenizer, train, val, epoch)
    mcq_format: McqFormat = getattr(config, "mcq_format", "choice")  # as the attack scored V
    table = score_facts(
        model, tokenizer, val, mcq_format, getattr(config, "eval_batch_size", 16), probes=bench.probes
    )
    scored = chosen.history[epoch].per_fact
    gap = (
        max(abs(a - b) for a, b in zip(table.values[bench.metric], scored.values[bench.metric], strict=True))
        if scored is not None
        else None
    )
    assert chosen.post_attack_per_fact is not None  # the caller's check
    extra = {k: v for k, v in table.values.items() if k not in chosen.post_attack_per_fact.values}
    chosen.post_attack_per_fact = FactTable({**chosen.post_attack_per_fact.values, **extra})
    chosen.best_epochs.update(dict.fromkeys(extra, epoch))
    chosen.details["probes_at"] = f"chosen point: epoch {epoch} of the chosen run, replayed"
    chosen.details["replay_difference"] = gap


def attack_config_for(
    attack_cfg: AttackConfig, bench: BenchConfig, seed: int, lr: float | None
) -> AttackConfig:
    """The attack's config for one bench run: seeded by the bench seed, stopping on its metric, at `lr`."""
    names = {f.name for f in fields(attack_cfg)}
    changes: dict[str, Any] = {"seed": seed} if "seed" in names else {}
    if "stop_metric" in names:
        changes["stop_metric"] = bench.metric
    if lr is not None:
        if "lr" not in names:
            raise ConfigError(f"bench.attack_lrs: the {bench.attack} attack has no learning rate")
        changes["lr"] = lr
    return replace(attack_cfg, **changes)


def attack_records(
    ids: Mapping[Fact, str], val: Sequence[Fact], swept: SweptAttack, attack: str | None = None
) -> list[FactRecord]:
    """V's per-fact records of every epoch of every run of the sweep, and at the chosen post-attack point.

    `attack` names an extra attack (`bench.extra_attacks`), whose stages carry its name:
    "<attack> epoch 2", "post_attack:<attack>"; the bench's own attack's are "attack epoch 2", "post_attack".
    """
    records = []
    for lr, result in swept.runs:
        prefix = attack or "attack"
        prefix += f" lr={lr:g}" if lr is not None else ""
        for entry in result.history:
            if entry.per_fact is not None:
                records += stage_records(ids, val, "V", f"{prefix} epoch {entry.epoch}", entry.per_fact)
    if swept.chosen.post_attack_per_fact is not None:
        stage = post_attack_stage(attack)
        records += stage_records(ids, val, "V", stage, swept.chosen.post_attack_per_fact)
    return records


def extra_attack_records(
    loaded: Loaded,
    bench: BenchConfig,
    seed: int,
    train: list[Fact],
    val: list[Fact],
    ids: Mapping[Fact, str],
    progress: bool = False,
    label: str | None = None,
) -> list[FactRecord]:
    """Each of `bench.extra_attacks` on the model as it is (left as it came), with the same T and V.

    Each is swept as the bench's attack is (over `bench.attack_lrs` when it has an lr, seeded by the
    bench seed, the extra probes at its chosen point); its records are named by `attack_records`.
    """
    records = []
    for name, config in bench.extra_configs.items():
        lrs = bench.attack_lrs if "lr" in {f.name for f in fields(config)} else []
        own = replace(bench, attack=name, attack_lrs=list(lrs), extra_attacks=[])
        own.probes = bench.probes
        swept = sweep_attack(loaded, own, config, seed, train, val, progress, label)
        records += attack_records(ids, val, swept, name)
    return records


def stage_records(
    ids: Mapping[Fact, str], facts: Sequence[Fact], split: str | Sequence[str], stage: str, table: FactTable
) -> list[FactRecord]:
    """One record per fact of `facts` (whose scores `table` holds, in order) at `stage`.

    `split` names every fact's split ("T", "V"), or is one name per fact (held-out domains).
    """
    splits = [split] * len(facts) if isinstance(split, str) else list(split)
    return [
        FactRecord(ids.get(f, f"?:{f.question}"), s, f.answer_text, stage, table.row(i))
        for i, (f, s) in enumerate(zip(facts, splits, strict=True))
    ]


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
    ids: Mapping[Fact, str] | None = None,
) -> list[BenchRun]:
    """One method and seed: unlearn the known facts up to the largest budget, attack each budget's model.

    With one split (`bench.folds` 0), the run unlearns T + V and attacks with T, scoring V: one
    `BenchRun` per budget. With K folds, unlearning all known facts is the same run for every fold,
    so it runs once and only the attack repeats, once per fold: K `BenchRun`s per budget, every known
    fact in V of one of them.

    `budgets` defaults to the bench's; the run's own loop holds the largest, so the budget is set in
    one place, the loop config the run is given (`bench_jobs` groups budgets one run can serve).
    Budgets that keep the same epoch share their attacks: their models are the same weights, and the
    attack is seeded, so a second run would repeat the first exactly.

    Every run carries per-fact records (`BenchRun.per_fact`, facts named by `ids`, default
    `fact_ids(loaded)`): T and V before and after unlearning, V at every attack epoch and at the
    post-attack point, and the held-out facts (`heldout`, selectivity) before and after unlearning.
    With `progress`, the epochs and each attack show a bar, named by the method and seed.
    """
    ids = fact_ids(loaded) if ids is None else ids
    splits = point_splits(facts, bench, seed)
    loaded.model.load_state_dict(original)
    before = score(loaded, facts, bench, loop)
    budgets = list(bench.budgets if budgets is None else budgets)
    config = replace(loop, method=name, seed=seed, budget=max(budgets))
    unlearned_facts, monitored = unlearning_sets(facts, splits, bench)
    label = f"{name} seed {seed}"
    result = unlearn_once(loaded, unlearned_facts, [], config, method_config, progress, label, monitored)
    runs = []
    # by kept epoch: V scored there, the held-out facts, each fold's attack and its extra attacks' records
    attacked: dict[int, tuple[FactTable, FactTable | None, list[SweptAttack], list[list[FactRecord]]]] = {}
    for budget in budgets:
        epoch = kept_epoch(result, budget)
        if epoch not in attacked:  # budgets keeping the same epoch share its model, so its attacks
            budget_model(result, budget, original)
            unlearned = score(loaded, facts, bench, loop)
            held = heldout.score(loaded) if heldout is not None else None
            swept, extra = [], []
            for k, (t, v) in enumerate(splits):
                fold_name = fold_label(label, budget, k, bench)
                swept.append(sweep_attack(loaded, bench, attack_cfg, seed, t, v, progress, fold_name))
                extra.append(extra_attack_records(loaded, bench, seed, t, v, ids, progress, fold_name))
            attacked[epoch] = (unlearned, held, swept, extra)
        unlearned, held, swept, extra = attacked[epoch]
        for fold, ((t, v), attack) in enumerate(zip(splits, swept, strict=True)):
            index = [facts.index(f) for f in v]
            run = bench_run(
                name, seed, budget, before.subset(index), result, epoch, unlearned.subset(index), attack
            )
            records = split_records(ids, facts, t, v, before, unlearned) + attack_records(ids, v, attack)
            records += extra[fold]
            if heldout is not None and held is not None:
                records += heldout.records(ids, "before", heldout.before)
                records += heldout.records(ids, "unlearned", held)
                run = replace(run, heldout_before=heldout.before.means(), heldout_unlearned=held.means())
            runs.append(replace(run, fold=fold, per_fact=records))
    loaded.model.load_state_dict(original)
    return runs


def unlearning_sets(
    facts: list[Fact], splits: Sequence[tuple[list[Fact], list[Fact]]], bench: BenchConfig
) -> tuple[list[Fact], list[Fact]]:
    """What one point unlearns, in order, and the facts it monitors each epoch.

    With folds, every known fact (in their order), monitored all; with one split, T then V (the
    order of `cir unlearn --forget T V`), monitoring V. With `eval_prompts: held_out` no fact keeps a
    sentence that starts with its scored prompt.
    """
    train, val = (facts, []) if bench.folds else splits[0]
    unlearned = [*train, *val]
    if bench.eval_prompts == "held_out":
        unlearned = without_scored_prefix(unlearned)
    return unlearned, facts if bench.folds else val


def fold_label(label: str, budget: float, fold: int, bench: BenchConfig) -> str:
    """The attack bar's name: "cir seed 1 budget 0.01", and " fold k" with folds."""
    return f"{label} budget {budget:g}" + (f" fold {fold}" if bench.folds else "")


def split_records(
    ids: Mapping[Fact, str],
    facts: Sequence[Fact],
    train: Sequence[Fact],
    val: Sequence[Fact],
    before: FactTable,
    unlearned: FactTable,
) -> list[FactRecord]:
    """T's and V's per-fact records before and after unlearning (`before`, `unlearned`: all of `facts`)."""
    records = []
    for split, part in (("T", train), ("V", val)):
        index = [facts.index(f) for f in part]
        for stage, table in (("before", before), ("unlearned", unlearned)):
            records += stage_records(ids, part, split, stage, table.subset(index))
    return records


def control_point(
    loaded: Loaded,
    facts: list[Fact],
    bench: BenchConfig,
    loop: UnlearnConfig,
    attack_cfg: AttackConfig,
    seed: int,
    original: dict[str, torch.Tensor],
    progress: bool = False,
    ids: Mapping[Fact, str] | None = None,
) -> list[ControlRun]:
    """The control of one seed: the same attack (splits, seed, lr sweep) on the never-unlearned model.

    What the attack alone does to V; a method's drop against it is V(original, attacked) minus
    V(unlearned, attacked), per fact. One `ControlRun` per fold (one without folds).
    """
    model = loaded.model
    ids = fact_ids(loaded) if ids is None else ids
    runs = []
    for fold, (train, val) in enumerate(point_splits(facts, bench, seed)):
        model.load_state_dict(original)
        before = score(loaded, val, bench, loop)
        label = f"control seed {seed}" + (f" fold {fold}" if bench.folds else "")
        swept = sweep_attack(loaded, bench, attack_cfg, seed, train, val, progress, label)
        records = stage_records(ids, val, "V", "before", before) + attack_records(ids, val, swept)
        records += extra_attack_records(loaded, bench, seed, train, val, ids, progress, label)
        chosen = swept.chosen
        runs.append(
            ControlRun(
                seed=seed,
                fold=fold,
                v_before=before.means(),
                v_post_attack=chosen.post_attack,
                attack_lr=swept.lr,
                attack_epoch=chosen.best_epochs.get(bench.metric),
                attack_trajectory=[TrajectoryPoint(e.epoch, e.facts) for e in chosen.history],
                stop_reason=chosen.stop_reason,
                per_fact=records,
            )
        )
    model.load_state_dict(original)
    return runs


def score(loaded: Loaded, facts: Sequence[Fact], bench: BenchConfig, loop: UnlearnConfig) -> FactTable:
    """The loaded model's per-fact scores of `facts`: the loop's MCQ format, recall and the bench's probes."""
    model, tokenizer = loaded.model, loaded.tokenizer
    return score_facts(model, tokenizer, facts, loop.mcq_format, loop.eval_batch_size, probes=bench.probes)


def unlearn_once(
    loaded: Loaded,
    train: list[Fact],
    val: list[Fact],
    loop: UnlearnConfig,
    method_config: MethodConfig,
    progress: bool = False,
    label: str | None = None,
    monitor: list[Fact] | None = None,
) -> UnlearnResult:
    """Unlearn T + V from the loaded model once under `loop` (its budget the largest served), monitoring V.

    Every epoch's trained weights are kept for `budget_model` when one run serves several budgets.
    The data, its order and the seed are those of `cir unlearn --forget T V` with the same settings,
    so the trajectory is the same. `monitor` (default `val`) is the fact set scored each epoch.
    `progress` and `label` are `unlearn`'s (a bar per epoch, f"{label} epoch {n}").
    """
    monitored = val if monitor is None else monitor
    data = UnlearnData(
        train + val, loaded.data.retain_texts, loaded.data.general_texts, monitor_facts=monitored
    )
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
    before: FactTable,
    result: UnlearnResult,
    epoch: int,
    unlearned: FactTable,
    attack: SweptAttack,
) -> BenchRun:
    """What a bench run records of V before, after unlearning (up to `epoch`) and after the attack."""
    kept = result.history[epoch]
    chosen = attack.chosen
    return BenchRun(
        method=method,
        seed=seed,
        budget=budget,
        epochs=epoch,
        v_before=before.means(),
        v_unlearned=unlearned.means(),
        v_post_attack=chosen.post_attack,
        general_loss_before=result.history.before.disruption.general_loss,
        general_loss_after=kept.disruption.general_loss,
        seconds_per_fact=kept.seconds / result.facts,
        unlearn_trajectory=[
            TrajectoryPoint(r.epoch, r.facts, r.disruption.general_loss) for r in result.history
        ],
        attack_trajectory=[TrajectoryPoint(e.epoch, e.facts) for e in chosen.history],
        post_attack_definition=chosen.post_attack_definition,
        stop_reasons={"unlearn": stop_reason_at(result, budget, epoch), "attack": chosen.stop_reason},
        attack_lr=attack.lr,
        attack_epochs={k: int(v) for k, v in chosen.best_epochs.items()},
    )


def stop_reason_at(result: UnlearnResult, budget: float, epoch: int) -> str:
    """Why a run held to `budget`, which keeps `epoch`, stops there.

    At the run's own budget, the run's reason. A `single_trajectory` run also serves every smaller
    budget: there, an epoch the run went on to after `epoch` is one that left that budget.
    """
    if budget == result.budget.budget or epoch == result.history[-1].epoch:
        return result.stop_reason
    return "budget"
