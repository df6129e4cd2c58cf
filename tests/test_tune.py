"""`cir tune` on a tiny saved model: seeded, resumable studies; search spaces; `cir bench --tuned`."""

import json
import math

import optuna
import pytest

import tiny
from cir.bench import BenchConfig, bench_jobs, tuned_studies
from cir.cli import main
from cir.config import from_dict
from cir.data.facts import save_facts
from cir.errors import ConfigError
from cir.pipeline import Inputs
from cir.registry import METHODS
from cir.tune import storage_url, tune

FAST = {
    "bench": {"known_threshold": 0, "val_fraction": 0.34},
    "unlearn": {"max_epochs": 1, "batch_size": 2, "track_kl": False},
    "attack": {"epochs": 1, "batch_size": 2},
}
FAST_ARGS = [
    "bench.known_threshold=0",
    "bench.val_fraction=0.34",
    "unlearn.max_epochs=1",
    "unlearn.batch_size=2",
    "unlearn.track_kl=false",
    "attack.epochs=1",
    "attack.batch_size=2",
]
UNTUNABLE = {"repselect"}  # methods allowed to have no search space (yet)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    model = tiny.model("llama", layers=4)
    model.save_pretrained(root / "model")
    tiny.tokenizer().save_pretrained(root / "model")
    save_facts(tiny.FACTS, root / "facts.jsonl")
    (root / "general.txt").write_text("\n".join(tiny.TEXTS[3:]) + "\n")
    (root / "retain.txt").write_text("\n".join(tiny.TEXTS[2:5]) + "\n")
    return root


def inputs(root):
    return Inputs(
        model=str(root / "model"),
        forget=[root / "facts.jsonl"],
        retain=root / "retain.txt",
        general=root / "general.txt",
        device="cpu",
    )


def input_args(root):
    return [
        *("--model", str(root / "model"), "--facts", str(root / "facts.jsonl")),
        *("--retain", str(root / "retain.txt"), "--general", str(root / "general.txt"), "--device", "cpu"),
    ]


@pytest.fixture(scope="module")
def study(files):
    return tune(
        inputs(files), FAST, "grad_diff", trials=3, storage=files / "a.db", budget=1.0, progress=False
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
        inputs(files), FAST, "grad_diff", trials=1, storage=files / "b.db", budget=1.0, progress=False
    )
    assert again.trials[0].params == study.trials[0].params  # same seed, fresh study: same first proposal
    assert again.trials[0].value == pytest.approx(study.trials[0].value)  # and the same bench run


def test_tune_resumes_the_same_study_from_the_cli(study, files, capsys):
    storage = f"sqlite:///{files / 'a.db'}"
    args = ["tune", "--method", "grad_diff", "--trials", "2", "--storage", storage, "--budget", "1.0"]
    assert main([*args, *input_args(files), *FAST_ARGS]) == 0
    resumed = optuna.load_study(study_name="grad_diff-budget1.0", storage=storage)
    assert len(resumed.trials) == 3 + 2
    assert resumed.trials[3].params != resumed.trials[0].params  # a resumed sampler does not repeat itself
    out = capsys.readouterr().out
    assert f"grad_diff-budget1.0: best answer_prob {resumed.best_value:.4f}" in out
    assert f"(trial {resumed.best_trial.number}, 5 trials)" in out


@pytest.mark.parametrize("name", METHODS.names())
def test_search_space_builds_a_valid_config(name):
    entry = METHODS.get(name)
    if entry.search_space is None:
        assert name in UNTUNABLE
        pytest.skip(f"{name} has no search space")
    sampled = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        trial = sampled.ask()
        overrides = entry.search_space(trial)
        config = from_dict(entry.config_class, overrides, f"{name} search space")
        assert overrides and all(getattr(config, k) == v for k, v in overrides.items())
        assert entry.search_space(optuna.trial.FixedTrial(trial.params)) == overrides  # best_params rebuild


def test_only_known_methods_lack_a_search_space():
    untunable = {n for n in METHODS.names() if METHODS.get(n).search_space is None}
    assert untunable <= UNTUNABLE
    assert {"cir", "mlp_breaking", "grad_diff", "npo", "simnpo", "rmu", "circuit_breakers"} <= (
        set(METHODS.names()) - untunable
    )


def test_mlp_breaking_tunes_cir_space_without_components():
    cir = optuna.trial.FixedTrial(
        {"forget_layers": "2,3", "step_norm": 0.1, "retain_lr": 0.01, "k_act": 4, "k_grad": 8}
    )
    assert METHODS.get("cir").search_space(cir)["k_act"] == 4
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    overrides = METHODS.get("mlp_breaking").search_space(trial)
    assert overrides["k_act"] == overrides["k_grad"] == 0
    assert set(trial.params) == {"forget_layers", "step_norm", "retain_lr"}


def test_bench_uses_each_budgets_study_else_the_nearest():
    bench = BenchConfig(methods=["cir", "grad_diff"], budgets=[0.001, 0.01, 0.1])
    best = {
        b: {"study": f"grad_diff-budget{b}", "overrides": {"step_norm": s}}
        for b, s in ((0.001, 0.3), (0.1, 0.7))
    }
    studies = tuned_studies(bench, {"grad_diff": best, "npo": best})
    assert studies == {"grad_diff": {0.001: best[0.001], 0.01: best[0.001], 0.1: best[0.1]}}
    jobs = bench_jobs(bench, {"grad_diff": {"retain_weight": 2.0}}, studies)
    assert [(name, budgets) for name, budgets, _ in jobs] == [
        ("cir", [0.001, 0.01, 0.1]),
        ("grad_diff", [0.001, 0.01]),
        ("grad_diff", [0.1]),
    ]
    assert [(c.step_norm, c.retain_weight) for _, _, c in jobs[1:]] == [(0.3, 2.0), (0.7, 2.0)]


def test_storage_url(tmp_path):
    assert storage_url(tmp_path / "x.db") == f"sqlite:///{tmp_path / 'x.db'}"
    assert storage_url("postgresql://host/db") == "postgresql://host/db"
    with pytest.raises(ConfigError, match="no such tuning database"):
        storage_url(tmp_path / "missing.db", must_exist=True)


def test_bench_tuned_uses_the_best_params_under_explicit_overrides(files, tmp_path, capsys):
    db = tmp_path / "tuned.db"
    search = optuna.create_study(
        storage=storage_url(db),
        study_name="grad_diff-budget1.0",
        sampler=optuna.samplers.RandomSampler(seed=1),
    )
    space = METHODS.get("grad_diff").search_space
    for value in (0.5, 0.1, 0.3):
        trial = search.ask()
        space(trial)
        search.tell(trial, value)
    best = space(optuna.trial.FixedTrial(search.trials[1].params))
    out = tmp_path / "bench"
    args = ["bench", "--tuned", str(db), "--methods", "grad_diff", "--seeds", "1", "--budget", "1.0"]
    overrides = [*FAST_ARGS, "methods.grad_diff.retain_weight=0.5"]
    assert main([*args, "--out", str(out), *input_args(files), *overrides]) == 0
    results = json.loads((out / "results.json").read_text())
    config = results["config"]["methods"]["grad_diff"]
    assert config["step_norm"] == best["step_norm"] and config["trained_layers"] == best["trained_layers"]
    assert config["retain_weight"] == 0.5  # the explicit override wins
    assert results["config"]["tuned"]["grad_diff"]["1.0"]["trial"] == 1
    assert "tuned params: grad_diff-budget1.0 (trial 1)" in capsys.readouterr().out
