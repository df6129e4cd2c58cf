"""`cir tune` on a tiny saved model: seeded, resumable studies; search spaces; `cir bench --tuned`."""

import math
from pathlib import Path

import optuna
import pytest

import tiny
from cir.bench import run_bench
from cir.cli import main
from cir.config import from_dict
from cir.errors import ConfigError
from cir.modules import ModelShape
from cir.registry import METHODS
from cir.space import STEP_NORMS
from cir.tune import (
    UNRECORDED_SHAPE,
    TuneConfig,
    enqueue_untried,
    load_tuned,
    tune,
    tune_all,
    tune_config,
)

DEMO_DB = Path(__file__).parents[1] / "benchmarks" / "demo-tune.db"
SMOLLM2_DB = Path(__file__).parents[1] / "benchmarks" / "smollm2-tune.db"
SHAPES = [ModelShape(3, 32), ModelShape(4, 128), ModelShape(30, 576), ModelShape(32, 4096)]
LAYER_FIELDS = ("forget_layers", "trained_layers")

FAST = {
    "bench": {"known_threshold": 0, "val_fraction": 0.34},
    "eval": {"probes": []},
    "unlearn": {"max_epochs": 1, "batch_size": 2, "track_kl": False},
    "attack": {"epochs": 1, "batch_size": 2},
}


def settings(storage, **tune_section):
    """FAST with a `tune:` section: the given keys, `storage` as a string."""
    return {**FAST, "tune": {"storage": str(storage), **tune_section}}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tiny.write_workspace(tmp_path_factory.mktemp("tune"), layers=4)


def inputs(files):
    return tiny.workspace_inputs(files, forget=[files.facts])


def input_args(files):
    return [
        *("--model", str(files.model), "--facts", str(files.facts)),
        *("--retain", str(files.retain), "--general", str(files.general), "--device", "cpu"),
    ]


@pytest.fixture(scope="module")
def study(files):
    return tune(
        inputs(files), settings(files.root / "a.db", trials=3, budget=1.0), "grad_diff", progress=False
    )


def test_study_completes_seeded_with_values_and_attrs(study, files):
    assert study.study_name == "grad_diff-budget1.0"
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert len(study.trials) == 3
    assert (study.user_attrs["layers"], study.user_attrs["hidden"]) == (4, 32)  # the tiny model's shape
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert math.isfinite(trial.value) and 0 < trial.value < 1
        assert trial.value == trial.user_attrs["v_post_attack"]["answer_prob"]
        assert trial.user_attrs["epochs"] in (0, 1)
        assert {"v_before", "v_unlearned", "general_loss_after"} <= set(trial.user_attrs)
        config = trial.user_attrs["method_config"]
        assert config["step_norm"] == pytest.approx(trial.params["step_norm"])
    assert len({t.params["step_norm"] for t in study.trials}) == 3
    again = tune(
        inputs(files), settings(files.root / "b.db", trials=1, budget=1.0), "grad_diff", progress=False
    )
    assert again.trials[0].params == study.trials[0].params  # same seed, fresh study: same first proposal
    assert again.trials[0].value == pytest.approx(study.trials[0].value)  # and the same bench run
    other_worker = tune(
        inputs(files),
        settings(files.root / "c.db", trials=1, budget=1.0, worker=1),
        "grad_diff",
        progress=False,
    )
    assert other_worker.trials[0].params != study.trials[0].params  # machines sharing a study differ


def test_tune_resumes_the_same_study_from_the_cli(study, files, capsys):
    storage = f"sqlite:///{files.root / 'a.db'}"
    args = ["tune", "--method", "grad_diff", "--trials", "2", "--storage", storage, "--budget", "1.0"]
    assert main([*args, *input_args(files), *tiny.FAST_BENCH_ARGS]) == 0
    resumed = optuna.load_study(study_name="grad_diff-budget1.0", storage=storage)
    assert len(resumed.trials) == 3 + 2
    assert resumed.trials[3].params != resumed.trials[0].params  # a resumed sampler does not repeat itself
    out = capsys.readouterr().out
    assert f"grad_diff-budget1.0: best answer_prob {resumed.best_value:.4f}" in out
    assert f"(trial {resumed.best_trial.number}, 5 trials)" in out


def test_tune_all_gives_the_ablation_a_study_of_its_own(files):
    config = settings(files.root / "all.db", trials=1, budget=1.0)
    config["bench"] = {**FAST["bench"], "methods": ["cir", "mlp_breaking"]}
    studies = tune_all(inputs(files), config, progress=False)
    assert [s.study_name for s in studies] == ["cir-budget1.0", "mlp_breaking-budget1.0"]
    ablation = studies[1].trials[0]
    assert "k_act" not in ablation.params and ablation.user_attrs["method_config"]["k_act"] == 0
    assert studies[0].trials[0].params["forget_layers"] in {"0,1", "0,1,2", "1,2", "1,2,3", "2,3"}  # 4 layers


def test_start_points_are_tried_first_once_and_the_rest_sampled(files):
    points = [{"step_norm": 0.05}, {"step_norm": 0.2}]
    others = {"rmu": [{"step_norm": 0.1}]}  # another method's, left for the run that tunes it
    config = settings(
        files.root / "start.db", trials=3, budget=1.0, start_points={"grad_diff": points, **others}
    )
    first = tune(inputs(files), config, "grad_diff", progress=False)
    steps = [t.params["step_norm"] for t in first.trials]
    assert steps[:2] == [0.05, 0.2]
    assert steps[2] not in (0.05, 0.2)  # sampled
    resumed = tune(
        inputs(files), {**config, "tune": {**config["tune"], "trials": 1}}, "grad_diff", progress=False
    )
    assert len(resumed.trials) == 4 and resumed.trials[3].params["step_norm"] not in (0.05, 0.2)


def test_a_failed_start_point_is_queued_again_and_a_finished_one_is_not():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    points = [{"x": 0.5}, {"x": 0.25}]
    enqueue_untried(study, points)
    first = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(first, state=optuna.trial.TrialState.FAIL)  # e.g. Ctrl-C
    second = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(second, 1.0)
    enqueue_untried(study, points)  # a resumed run
    waiting = study.get_trials(states=[optuna.trial.TrialState.WAITING])
    assert [t.system_attrs["fixed_params"] for t in waiting] == [{"x": 0.5}]
    enqueue_untried(study, points)  # queued once only
    assert len(study.get_trials(states=[optuna.trial.TrialState.WAITING])) == 1


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ({"rmo": [{"step_norm": 0.1}]}, r"tune\.start_points\.rmo: not a method with a search space"),
        ({"grad_diff": [{"lr": 0.1}]}, r"start_points\.grad_diff\[0\]\.lr: not a param of grad_diff's space"),
        ({"grad_diff": [{"step_norm": 50.0}]}, r"start_points\.grad_diff\[0\]\.step_norm: 50\.0 is outside"),
        ({"grad_diff": [0.1]}, r"start_points\.grad_diff\[0\]: expected a mapping"),
    ],
)
def test_bad_start_points_are_named_before_any_trial(files, points, message):
    config = settings(files.root / "bad.db", trials=1, budget=1.0, start_points=points)
    with pytest.raises(ConfigError, match=message):
        tune(inputs(files), config, "grad_diff", progress=False)
    assert optuna.get_all_study_summaries(f"sqlite:///{files.root / 'bad.db'}") == []


def test_tune_section_defaults_checks_and_did_you_mean():
    assert tune_config({"bench": {"seeds": "not read here"}}) == TuneConfig()
    config = tune_config({"tune": {"trials": 5, "budget": 1, "seed": 7, "storage": "x.db"}})
    assert (config.trials, config.budget, config.seed, config.storage) == (5, 1.0, 7, "x.db")
    with pytest.raises(ConfigError, match=r"config: tune: unknown key 'trails' \(did you mean 'trials'\?\)"):
        tune_config({"tune": {"trails": 3}})
    with pytest.raises(ConfigError, match="config: tune: seed: expected int, got 'seven'"):
        tune_config({"tune": {"seed": "seven"}})
    with pytest.raises(ConfigError, match=r"tune\.trials must be >= 1, got 0\n.*tune\.budget must be > 0"):
        tune_config({"tune": {"trials": 0, "budget": 0}})
    with pytest.raises(ConfigError, match=r"unknown section 'tuen' \(did you mean 'tune'\?\)"):
        tune_config({"tuen": {"trials": 3}})


@pytest.fixture
def tune_calls(monkeypatch):
    """`cir tune` with `tune` and `tune_all` replaced by recorders of the TuneConfig they would use."""
    calls = []
    monkeypatch.setattr("cir.cli.tune", lambda inputs, raw, method: calls.append(tune_config(raw)))
    monkeypatch.setattr("cir.cli.tune_all", lambda inputs, raw: [calls.append(tune_config(raw))])
    monkeypatch.setattr("cir.cli.best_text", str)
    return calls


def test_cli_tune_reads_the_tune_section_and_its_flags_override_it(tmp_path, tune_calls):
    config = tmp_path / "tune.yaml"
    config.write_text("tune: {trials: 8, budget: 0.001, seed: 7, storage: shared.db}\nbench: {seeds: 1}\n")
    assert main(["tune", "--method", "cir", "--config", str(config)]) == 0
    assert tune_calls[-1] == TuneConfig(trials=8, budget=0.001, seed=7, storage="shared.db")
    flags = ["--trials", "2", "tune.seed=3", "--worker", "1"]  # a flag or an override wins over the file
    assert main(["tune", "--method", "all", "--config", str(config), *flags]) == 0
    assert tune_calls[-1] == TuneConfig(trials=2, budget=0.001, seed=3, worker=1, storage="shared.db")


def test_cli_tune_names_a_bad_tune_key_before_loading_anything(tmp_path, capsys):
    assert main(["tune", "--method", "cir", "tune.trails=3", "--model", str(tmp_path / "none")]) == 2
    assert "config: tune: unknown key 'trails' (did you mean 'trials'?)" in capsys.readouterr().err
    assert main(["tune", "--method", "all", "--study", "mine", "--model", str(tmp_path / "none")]) == 2
    assert "tune.study (--study) names one study" in capsys.readouterr().err


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s.layers}x{s.hidden}")
@pytest.mark.parametrize("name", METHODS.names())
def test_search_space_builds_a_valid_config_inside_the_model(name, shape):
    entry = METHODS.get(name)
    assert entry.search_space is not None, f"{name} has no search space: cir tune cannot tune it"
    sampled = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        trial = sampled.ask()
        overrides = entry.search_space(trial, shape)
        config = from_dict(entry.config_class, overrides, f"{name} search space")
        assert overrides and all(getattr(config, k) == v for k, v in overrides.items())
        layers = [*(overrides.get(f) or [] for f in LAYER_FIELDS), [overrides.get("layer", 0)]]
        assert all(0 <= layer < shape.layers for group in layers for layer in group)
        for key in ("k_act", "k_grad", "k"):
            assert overrides.get(key, 0) <= max(1, shape.hidden // 2)
        rebuilt = entry.search_space(optuna.trial.FixedTrial(trial.params), shape)
        assert rebuilt == overrides  # best_params rebuild


def test_every_method_tunes_its_step_norm_over_one_range():
    # Equal terms: a method tuned on a narrower η range could lose for the range, not the method.
    ranges = {}
    for name in METHODS.names():
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
        METHODS.get(name).search_space(trial, SHAPES[0])
        if "step_norm" in trial.distributions:
            ranges[name] = trial.distributions["step_norm"]
    assert {"cir", "mlp_breaking", "circuit_breakers", "rmu"} <= set(ranges)
    assert set(ranges.values()) == {optuna.distributions.FloatDistribution(*STEP_NORMS, log=True)}
    assert STEP_NORMS[1] > 0.5  # above the old top, where SmolLM2's CIR study put its best trial
    assert STEP_NORMS[0] < 0.002  # below Gradient Difference's steps that keep an epoch on SmolLM2


def test_committed_demo_study_replays_to_the_layers_it_searched():
    tuned = load_tuned(DEMO_DB)
    assert sorted(tuned) == ["cir", "circuit_breakers", "grad_diff", "npo", "repselect", "rmu", "simnpo"]
    best = {name: tuned[name][0.01]["overrides"] for name in tuned}
    cir = best["cir"]
    assert cir["forget_layers"] == [0, 1, 2] and (cir["k_act"], cir["k_grad"]) == (54, 24)
    assert best["circuit_breakers"]["forget_layers"] == [0, 1, 2] and best["rmu"]["layer"] == 2
    assert best["repselect"]["trained_layers"] == [2, 3] and best["simnpo"]["trained_layers"] == [2, 3]
    assert best["grad_diff"]["trained_layers"] == [0, 1, 2] == best["npo"]["trained_layers"]
    storage = optuna.storages.RDBStorage(f"sqlite:///{DEMO_DB}")  # every trial, not only the best
    for summary in optuna.get_all_study_summaries(storage):
        assert "layers" not in summary.user_attrs  # made before the shape was recorded
        search_space = METHODS.get(summary.study_name.split("-budget")[0]).search_space
        for trial in optuna.load_study(study_name=summary.study_name, storage=storage).trials:
            overrides = search_space(optuna.trial.FixedTrial(trial.params), UNRECORDED_SHAPE)
            for key in (k for k in LAYER_FIELDS if k in trial.params):
                label = trial.params[key]
                assert overrides[key] == (None if label == "default" else [int(x) for x in label.split(",")])


def test_load_tuned_rebuilds_in_the_shape_the_study_recorded(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shape.db'}"
    study = optuna.create_study(storage=storage, study_name="cir-budget0.01")
    study.set_user_attr("layers", 30)
    study.set_user_attr("hidden", 576)
    study.enqueue_trial({"forget_layers": "6,7,8,9,10,11", "k_act": 24, "k_grad": 36})
    trial = study.ask()
    METHODS.get("cir").search_space(trial, ModelShape(30, 576))
    study.tell(trial, 0.5)
    best = load_tuned(tmp_path / "shape.db")["cir"][0.01]
    assert best["overrides"]["forget_layers"] == [6, 7, 8, 9, 10, 11] and best["overrides"]["k_grad"] == 36
    assert best["shape"] == [30, 576]


def test_bench_refuses_a_study_tuned_on_another_shape(files, tmp_path):
    storage = tmp_path / "other.db"
    study = optuna.create_study(storage=f"sqlite:///{storage}", study_name="grad_diff-budget0.01")
    study.set_user_attr("layers", 30)
    study.set_user_attr("hidden", 576)
    study.enqueue_trial({"step_norm": 0.1})
    trial = study.ask()
    METHODS.get("grad_diff").search_space(trial, ModelShape(30, 576))
    study.tell(trial, 0.5)
    raw = {**FAST, "bench": {**FAST["bench"], "methods": ["grad_diff"], "budgets": [0.01]}}
    message = r"study grad_diff-budget0.01 was tuned on a model of 30 layers; this one has 4"
    with pytest.raises(ConfigError, match=message):
        run_bench(inputs(files), raw, tmp_path / "out", progress=False, tuned=load_tuned(storage))
    assert not (tmp_path / "out").exists()


def test_tune_progress_shows_each_trials_epochs_and_attack_under_the_trial_count(files, tmp_path, capsys):
    capsys.readouterr()
    storage = tmp_path / "progress.db"
    tune(inputs(files), settings(storage, trials=2, budget=1.0, seed=1), "grad_diff", progress=True)
    err = capsys.readouterr().err
    assert "grad_diff seed 1 epoch 0:" in err and "grad_diff seed 1 budget 1 finetune:" in err
    draws = err.split("\r")
    assert sum(d.startswith("grad_diff seed 1 epoch 0:") and "\x1b[A" in d for d in draws) >= 2  # nested
    assert draws[-1].startswith("grad_diff-budget1.0: 100%") and "| 2/2 [" in draws[-1]

    capsys.readouterr()
    tune(inputs(files), settings(storage, trials=1, budget=1.0, seed=1), "grad_diff", progress=False)
    assert capsys.readouterr().err == ""


def test_smollm2_tuning_record_gives_every_benched_method_the_same_trials():
    """Issue 13's equal terms: every benched method's 1% study has at least 8 finished trials, on
    SmolLM2's shape, and `cir bench --tuned` finds a best trial for each."""
    benched = ["cir", "circuit_breakers", "grad_diff", "mlp_breaking", "npo", "repselect", "rmu", "simnpo"]
    storage = optuna.storages.RDBStorage(f"sqlite:///{SMOLLM2_DB}")
    finished = {}
    for summary in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
        assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
        finished[summary.study_name] = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(finished) == sorted(f"{name}-budget0.01" for name in benched)
    assert min(finished.values()) >= 8, finished
    tuned = load_tuned(SMOLLM2_DB)
    # the shape each study recorded (`study_shape`), which the bench checks against the model's
    assert sorted(tuned) == benched and all(tuned[name][0.01]["shape"] == [30, 576] for name in benched)
