"""`cir tune` on a tiny saved model: seeded, resumable studies; search spaces; `cir bench --tuned`."""

import math

import optuna
import pytest

import tiny
from cir.cli import main
from cir.config import from_dict
from cir.pipeline import Inputs
from cir.registry import METHODS
from cir.tune import tune

FAST = {
    "bench": {"known_threshold": 0, "val_fraction": 0.34},
    "unlearn": {"max_epochs": 1, "batch_size": 2, "track_kl": False},
    "attack": {"epochs": 1, "batch_size": 2},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tiny.write_workspace(tmp_path_factory.mktemp("tune"), layers=4)


def inputs(files):
    return Inputs(
        model=str(files.model),
        forget=[files.facts],
        retain=files.retain,
        general=files.general,
        device="cpu",
    )


def input_args(files):
    return [
        *("--model", str(files.model), "--facts", str(files.facts)),
        *("--retain", str(files.retain), "--general", str(files.general), "--device", "cpu"),
    ]


@pytest.fixture(scope="module")
def study(files):
    return tune(
        inputs(files), FAST, "grad_diff", trials=3, storage=files.root / "a.db", budget=1.0, progress=False
    )


def test_study_completes_seeded_with_values_and_attrs(study, files):
    assert study.study_name == "grad_diff-budget1.0"
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert len(study.trials) == 3
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
        inputs(files), FAST, "grad_diff", trials=1, storage=files.root / "b.db", budget=1.0, progress=False
    )
    assert again.trials[0].params == study.trials[0].params  # same seed, fresh study: same first proposal
    assert again.trials[0].value == pytest.approx(study.trials[0].value)  # and the same bench run
    other_worker = tune(
        inputs(files),
        FAST,
        "grad_diff",
        trials=1,
        storage=files.root / "c.db",
        budget=1.0,
        progress=False,
        worker=1,
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


@pytest.mark.parametrize("name", METHODS.names())
def test_search_space_builds_a_valid_config(name):
    entry = METHODS.get(name)
    assert entry.search_space is not None, f"{name} has no search space: cir tune cannot tune it"
    sampled = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        trial = sampled.ask()
        overrides = entry.search_space(trial)
        config = from_dict(entry.config_class, overrides, f"{name} search space")
        assert overrides and all(getattr(config, k) == v for k, v in overrides.items())
        assert entry.search_space(optuna.trial.FixedTrial(trial.params)) == overrides  # best_params rebuild


def test_tune_progress_shows_each_trials_epochs_and_attack_under_the_trial_count(files, tmp_path, capsys):
    capsys.readouterr()
    storage = tmp_path / "progress.db"
    tune(inputs(files), FAST, "grad_diff", trials=2, storage=storage, budget=1.0, seed=1, progress=True)
    err = capsys.readouterr().err
    assert "grad_diff seed 1 epoch 0:" in err and "grad_diff seed 1 budget 1 finetune:" in err
    draws = err.split("\r")
    assert sum(d.startswith("grad_diff seed 1 epoch 0:") and "\x1b[A" in d for d in draws) >= 2  # nested
    assert draws[-1].startswith("grad_diff-budget1.0: 100%") and "| 2/2 [" in draws[-1]

    capsys.readouterr()
    tune(inputs(files), FAST, "grad_diff", trials=1, storage=storage, budget=1.0, seed=1, progress=False)
    assert capsys.readouterr().err == ""
