"""`cir tune`: one Optuna study per method at one disruption budget, minimising V's post-attack metric.

Each trial is one bench run (`cir.point.bench_point`: one seed, one budget) with the trial's method config,
drawn from the method's registered search space: unlearn T + V, keep the last epoch within the
budget, attack with T, score V. Every trial respects the budget by construction; a config whose
first epoch already exceeds it leaves the model unchanged (epoch 0), which scores badly. Explicit
`methods.<name>` overrides win over the trial's values (so they hold a setting fixed).

A study is named f"{method}-budget{budget}" and lives in any Optuna storage (SQLite by default), so
it resumes where it stopped, several machines can share it, and `cir bench --tuned` finds it.
Search spaces follow the model's shape (`cir.space`); the study records it (user attributes
"layers" and "hidden") so that `load_tuned` rebuilds its best config in the same space. The
config's `tune:` section (`TuneConfig`) sets the trials, budget, seed, worker, storage and study.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from tqdm.auto import tqdm

from cir.attacks.base import AttackConfig
from cir.config import from_dict, require, split_sections, to_dict
from cir.data.facts import Fact, split_facts
from cir.errors import ConfigError
from cir.experiment import BenchConfig, Experiment, per_method_configs
from cir.inputs import Inputs, Loaded
from cir.modules import ModelShape, model_shape
from cir.point import bench_point, load_bench
from cir.registry import ATTACKS, METHODS
from cir.unlearn import UnlearnConfig

DEFAULT_DB = "cir-tune.db"  # in the working directory
STUDY_NAME = re.compile(r"(?P<method>.+)-budget(?P<budget>.+)")
TRIAL_ATTRS = ["epochs", "v_before", "v_unlearned", "v_post_attack", "general_loss_before"]
TRIAL_ATTRS += ["general_loss_after", "seconds_per_fact"]  # bench-run numbers kept on each trial
# studies made before the shape was recorded (benchmarks/demo-tune.db) were made on the demo model
UNRECORDED_SHAPE = ModelShape(layers=4, hidden=128)


@dataclass
class Setup:
    """What every trial shares: configs, the loaded model and data, and the original weights."""

    bench: BenchConfig
    loop: UnlearnConfig
    attack: AttackConfig
    overrides: dict[str, Any]  # the explicit `methods.<name>` sections
    loaded: Loaded
    facts: list[Fact]
    original: dict[str, torch.Tensor]
    shape: ModelShape  # the loaded model's, which the search spaces follow


@dataclass
class TuneConfig:
    """The `tune:` section: how many trials, at which budget and seed, in which storage and study."""

    trials: int = 20  # trials to add to each study (a resumed study keeps the ones it has)
    budget: float = 0.01  # the disruption budget every trial is held to (relative general-loss rise)
    seed: int = 0  # the T/V split and data order of every trial; seeds the sampler
    worker: int = 0  # this machine's number when several share a study, so that their samplers differ
    storage: str | None = None  # an Optuna storage URL or SQLite path; None = ./cir-tune.db
    study: str | None = None  # the study name (one method only); None = f"{method}-budget{budget}"
    # method -> points to try first, each {param: value} in the search space's terms (layer windows
    # as text, "6,7,8"); a point the study already tried is not tried again; omitted params are sampled
    start_points: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: naming every field out of range.
        """
        require(
            self,
            "tune",
            [
                ("trials", ">= 1", self.trials >= 1),
                ("budget", "> 0", self.budget > 0),
                ("seed", ">= 0", self.seed >= 0),
                ("worker", ">= 0", self.worker >= 0),
            ],
        )


def default_study_name(method: str, budget: float) -> str:
    """The study `cir bench --tuned` looks for: e.g. "cir-budget0.01"."""
    return f"{method}-budget{budget}"


def storage_url(storage: str | Path | None, must_exist: bool = False) -> str:
    """An Optuna storage URL: a URL as is, a plain path as sqlite:///path, None as ./cir-tune.db.

    Raises:
        ConfigError: if `must_exist` and the SQLite file is missing.
    """
    text = str(storage if storage is not None else Path.cwd() / DEFAULT_DB)
    if "://" in text:
        path = Path(text[len("sqlite:///") :]) if text.startswith("sqlite:///") else None
    else:
        path, text = Path(text), f"sqlite:///{Path(text).resolve()}"
    if must_exist and path is not None and not path.is_file():
        raise ConfigError(f"{path}: no such tuning database (run `cir tune` first)")
    return text


def tune_config(raw_config: Mapping[str, Any]) -> TuneConfig:
    """The `tune:` section of a config as a TuneConfig (the other known sections are not read here).

    Raises:
        ConfigError: naming an unknown section (with a did-you-mean), and every unknown key, wrong
            type or out-of-range value in `tune:`.
    """
    section = split_sections(raw_config, ["tune"], "config")["tune"]
    return from_dict(TuneConfig, section, "config: tune")


def tune(inputs: Inputs, raw_config: dict[str, Any], method: str, progress: bool = True) -> optuna.Study:
    """Add `tune.trials` trials to `method`'s study (created, or resumed if it exists) and return it.

    Args:
        inputs: the model and data, as for `cir bench`.
        raw_config: section tune (`TuneConfig`), and bench, unlearn, attack and methods as for
            `cir bench`.
        method: a registered method with a search space.
        progress: show a bar over trials, and under it each trial's epochs and attack (`bench_point`).

    Raises:
        ConfigError, DataError, ModelError: for bad input (configs are checked before loading).
    """
    config = tune_config(raw_config)
    name = config.study or default_study_name(method, config.budget)
    setup, _ = prepare(inputs, raw_config, method, config.seed, progress)
    check_start_points(config, [method], setup.shape)
    return optimize(setup, method, config, name, progress)


def tune_all(inputs: Inputs, raw_config: dict[str, Any], progress: bool = True) -> list[optuna.Study]:
    """`tune` every method in bench.methods, each in its default study, loading the model once.

    Raises:
        ConfigError: if tune.study is set (it names one study), or as `tune`.
        DataError, ModelError: as `tune`.
    """
    config = tune_config(raw_config)
    if config.study is not None:
        raise ConfigError("tune.study (--study) names one study: tune one method with it, not `all`")
    setup, methods = prepare(inputs, raw_config, None, config.seed, progress)
    check_start_points(config, methods, setup.shape)
    return [optimize(setup, m, config, default_study_name(m, config.budget), progress) for m in methods]


def prepare(
    inputs: Inputs, raw_config: dict[str, Any], method: str | None, seed: int, progress: bool
) -> tuple[Setup, list[str]]:
    """Check the configs, load the model and data once, and check the trials' T/V split; also the methods.

    Raises:
        ConfigError: for a bad config, or a method (`method`, else every one in bench.methods)
            without a search space.
        DataError: if the split at `seed` leaves a side empty, or the attack refuses it.
    """
    experiment = Experiment.for_bench(raw_config, [method] if method else [], "cir tune")
    bench, loop, attack, overrides = experiment.bench_parts()
    methods = [method] if method else bench.methods
    untunable = [m for m in methods if METHODS.get(m).search_space is None]
    if untunable:
        raise ConfigError(f"methods {untunable} have no search space (register one to tune them)")
    if bench.folds:
        raise ConfigError("cir tune scores a trial on one T/V split: set bench.folds to 0")
    # a trial's objective is the bench metric under the bench's attack alone: the extra probes and
    # attacks would only cost time
    bench.probes, bench.extra_attacks, bench.extra_configs = [], [], {}
    loaded, facts, original = load_bench(inputs, bench, loop, progress)
    ATTACKS.build(bench.attack, attack).check(*split_facts(facts, bench.val_fraction, seed, bench.split))
    shape = model_shape(loaded.model)
    return Setup(bench, loop, attack, overrides, loaded, facts, original, shape), methods


def optimize(setup: Setup, method: str, config: TuneConfig, name: str, progress: bool) -> optuna.Study:
    """Run `config.trials` trials of `method`'s study `name` in `config.storage`, Optuna's logging quietened.

    The TPE sampler is seeded with `config.seed` plus the number of trials already in the study, so a
    fresh study repeats exactly and a resumed one does not re-propose its first trials; machines
    sharing a study pass distinct `config.worker` numbers so that their samplers differ while the
    data stays the same.
    """
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=storage_url(config.storage), study_name=name, direction="minimize", load_if_exists=True
        )
        # 4 random trials, then TPE: small studies (a CPU budget of ~10 trials) still get guided ones
        study.sampler = optuna.samplers.TPESampler(
            n_startup_trials=4, seed=config.seed + 100_003 * config.worker + len(study.trials)
        )
        attrs = {"method": method, "budget": config.budget, "seed": config.seed, "metric": setup.bench.metric}
        attrs |= {"layers": setup.shape.layers, "hidden": setup.shape.hidden}
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        enqueue_untried(study, config.start_points.get(method, []))
        with tqdm(total=config.trials, desc=name, disable=not progress) as bar:
            run = objective(setup, method, config.budget, config.seed, progress)
            study.optimize(run, n_trials=config.trials, callbacks=[advance(bar)])
    finally:
        optuna.logging.set_verbosity(verbosity)
    return study


def enqueue_untried(study: optuna.Study, points: list[dict[str, Any]]) -> None:
    """Queue each start point the study has not tried yet, in order.

    Tried means a trial with these params that completed, waits in the queue or is running (maybe on
    another machine). A failed one, e.g. stopped with Ctrl-C, is queued again, so that a stopped
    study loses no point. (Optuna's own `skip_if_exists` would skip failed ones too.)
    """
    done = optuna.trial.TrialState.FAIL
    tried = [
        t.system_attrs.get("fixed_params", t.params)
        for t in study.get_trials(deepcopy=False)
        if t.state != done
    ]
    for point in points:
        if dict(point) not in tried:
            study.enqueue_trial(dict(point))


def check_start_points(config: TuneConfig, methods: list[str], shape: ModelShape) -> None:
    """Check `tune.start_points` of the methods tuned against their search spaces at `shape`.

    One experiment file may hold start points for every method; those of methods not tuned in this
    run are left for the run that tunes them, but must name a method that has a search space.

    Raises:
        ConfigError: naming a method without a search space, a parameter the method's space does not
            have, or a value outside it (e.g. a layer window the shape's rule does not offer).
    """
    for method, points in config.start_points.items():
        search_space = METHODS.get(method).search_space if method in METHODS.names() else None
        if search_space is None:
            raise ConfigError(f"config: tune.start_points.{method}: not a method with a search space")
        if method not in methods:
            continue
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        probe = optuna.create_study().ask()  # an in-memory trial, to read the space's distributions
        optuna.logging.set_verbosity(verbosity)
        search_space(probe, shape)
        for index, point in enumerate(points):
            where = f"config: tune.start_points.{method}[{index}]"
            if not isinstance(point, Mapping):
                raise ConfigError(f"{where}: expected a mapping of param: value, got {point!r}")
            for key, value in point.items():
                distribution = probe.distributions.get(key)
                if distribution is None:
                    params = sorted(probe.params)
                    raise ConfigError(f"{where}.{key}: not a param of {method}'s space {params}")
                try:
                    inside = distribution._contains(distribution.to_internal_repr(value))
                except (ValueError, TypeError):
                    inside = False
                if not inside:
                    raise ConfigError(f"{where}.{key}: {value!r} is outside the space ({distribution})")


def objective(setup: Setup, method: str, budget: float, seed: int, progress: bool = False) -> Any:
    """The trial function: bench `method` at `budget` and `seed`; returns V's post-attack metric.

    With `progress`, each trial shows its epochs and attack in bars (`cir.point.bench_point`).
    """
    search_space = METHODS.get(method).search_space
    assert search_space is not None  # prepare checked

    def run(trial: optuna.Trial) -> float:
        explicit = {method: setup.overrides.get(method, {})}
        config = per_method_configs([method], explicit, {method: search_space(trial, setup.shape)})[method]
        (result,) = bench_point(
            setup.loaded,
            setup.facts,
            setup.bench,
            setup.loop,
            method,
            config,
            setup.attack,
            seed,
            setup.original,
            [budget],
            progress,
        )
        if "interrupted" in result.stop_reasons.values():
            raise KeyboardInterrupt  # a cut-short trial must not score: Optuna marks it failed
        recorded = result.to_json()
        for key in TRIAL_ATTRS:
            trial.set_user_attr(key, recorded[key])
        trial.set_user_attr("method_config", to_dict(config))
        return result.v_post_attack.metric(setup.bench.metric)

    return run


def best_text(study: optuna.Study) -> str:
    """One line: the study's best value of its metric, at which trial of how many, with its params."""
    best = study.best_trial
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
    return (
        f"{study.study_name}: best {study.user_attrs['metric']} {best.value:.4f} "
        f"(trial {best.number}, {len(study.trials)} trials); {params}"
    )


def advance(bar: tqdm) -> Any:
    """A study callback that moves `bar` on one trial and shows the best value so far."""

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        bar.update()
        if trial.state == optuna.trial.TrialState.COMPLETE:
            bar.set_postfix(best=f"{study.best_value:.4g}")

    return callback


def load_tuned(storage: str | Path) -> dict[str, dict[float, dict[str, Any]]]:
    """The best trial of every `<method>-budget<budget>` study in `storage`, for `cir bench --tuned`.

    Returns:
        method -> budget -> {study, shape, trial, value, params, overrides}, where `overrides` is the
        method's search space, for the study's recorded model shape (`UNRECORDED_SHAPE` if none),
        evaluated at the best params (`optuna.trial.FixedTrial`). Studies of unknown or untunable
        methods, and studies with no completed trial, are left out.

    Raises:
        ConfigError: if `storage` is a path to a missing file.
    """
    tuned: dict[str, dict[float, dict[str, Any]]] = {}
    for summary in optuna.get_all_study_summaries(storage_url(storage, must_exist=True)):
        match = STUDY_NAME.fullmatch(summary.study_name)
        method, budget = (match["method"], parse_float(match["budget"])) if match else (None, None)
        best = summary.best_trial
        search_space = METHODS.get(method).search_space if method in METHODS.names() else None
        if search_space is None or budget is None or best is None:
            continue
        shape = study_shape(summary.user_attrs)
        tuned.setdefault(str(method), {})[budget] = {
            "study": summary.study_name,
            "shape": [shape.layers, shape.hidden],  # of the model it was tuned on: the bench checks it
            "trial": best.number,
            "value": best.value,
            "params": best.params,
            "overrides": search_space(optuna.trial.FixedTrial(best.params), shape),  # type: ignore[arg-type]
        }
    return tuned


def study_shape(attrs: dict[str, Any]) -> ModelShape:
    """The model shape a study recorded in its user attributes, or `UNRECORDED_SHAPE` if none."""
    if "layers" not in attrs or "hidden" not in attrs:
        return UNRECORDED_SHAPE
    return ModelShape(int(attrs["layers"]), int(attrs["hidden"]))


def parse_float(text: str) -> float | None:
    """`text` as a float, or None if it is not one."""
    try:
        return float(text)
    except ValueError:
        return None
