"""Every shipped YAML config loads into its dataclasses (torchtune's config test covered 3 of 197)."""

from pathlib import Path

import pytest

from cir.config import load_yaml, split_sections
from cir.experiment import (
    BENCH_SECTIONS,
    PRESETS,
    RUN_SECTIONS,
    attack_config,
    bench_configs,
    unlearn_configs,
)
from cir.modules import ModelShape
from cir.tune import check_start_points, tune_config

ROOT = Path(__file__).parents[1]
SHIPPED = sorted([*PRESETS.glob("*.yaml"), *(ROOT / "benchmarks" / "configs").glob("*.yaml")])


def test_the_expected_files_are_found():
    assert sorted(p.name for p in SHIPPED) == [
        "demo_bench.yaml",
        "demo_bench_all.yaml",
        "demo_tune.yaml",
        "paper_llama8b.yaml",
        "smollm2_135m.yaml",
        "smollm2_bench.yaml",
        "smollm2_bench_all_facts.yaml",
        "smollm2_bench_few_shot.yaml",
        "smollm2_bench_lora.yaml",
        "smollm2_bench_protocol.yaml",
        "smollm2_bench_protocol_other_data.yaml",
        "smollm2_bench_protocol_probes.yaml",
        "smollm2_bench_protocol_probes_quantize.yaml",
        "smollm2_bench_protocol_quantize.yaml",
        "smollm2_bench_quantize.yaml",
        "smollm2_bench_repselect_kl.yaml",
        "smollm2_bench_rest.yaml",
        "smollm2_first.yaml",
        "smollm2_tune.yaml",
        "smollm2_tune_cap32.yaml",
        "wmdp_bench.yaml",
    ]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_builds(path):
    raw = load_yaml(path)
    if "bench" in raw:
        bench, loop, attack, overrides = bench_configs(raw)
        assert set(overrides) <= set(bench.methods) and bench.seeds >= 1 and loop.max_epochs >= 1
        sized = {"few_shot": lambda a: a.shots >= 1, "quantize": lambda a: bool(a.formats)}
        assert sized.get(bench.attack, lambda a: a.epochs >= 1)(attack)
        if path.stem in (
            "smollm2_bench_protocol",
            "smollm2_bench_protocol_probes",
        ):  # the attacker's best: a sweep around that lr, to a plateau
            assert 3e-5 in bench.attack_lrs and max(bench.attack_lrs) >= 10 * min(bench.attack_lrs)
            assert attack.patience >= 1 and bench.folds >= 2 and bench.control
        elif path.stem.startswith("smollm2") and bench.attack == "finetune":
            # the attack of method.md section 9, sized for a pretrained model
            assert (attack.optimizer, attack.lr, attack.epochs, attack.trained) == ("adamw", 3e-5, 6, "mlp")
    else:
        sections = split_sections(raw, RUN_SECTIONS, str(path))
        loop, method = unlearn_configs(sections, str(path))
        attack = attack_config("finetune", sections, str(path))
        paper = path.stem == "paper_llama8b"
        assert loop.method == "cir" and method.forget_layers == (
            [6, 7, 8, 9, 10, 11] if paper else [4, 5, 6, 7, 8, 9]
        )
        if paper:  # the paper's attack (method.md section 7), not the demo-sized defaults
            assert (attack.optimizer, attack.lr, attack.epochs, attack.batch_size) == ("sgd", 1e-5, 100, 32)
            assert (attack.sentences_per_fact, attack.trained) == (3, "mlp")
            assert attack.sentences_per_fact == loop.sentences_per_fact  # T's unlearned sentences
    assert set(raw) <= {*BENCH_SECTIONS, *RUN_SECTIONS, "tune"}


def test_smollm2_configs_tune_the_headline_methods_and_bench_every_one():
    configs = ROOT / "benchmarks" / "configs"
    tune_bench, _, _, _ = bench_configs(load_yaml(configs / "smollm2_tune.yaml"))
    bench, loop, _, _ = bench_configs(load_yaml(configs / "smollm2_bench.yaml"))
    headline = ["cir", "mlp_breaking", "circuit_breakers", "rmu"]
    # sized for 2 CPU cores: `cir tune --method all` tunes the headline four, each in a study of its
    # own (mlp_breaking too), and the bench runs the same four, each from its study
    assert sorted(tune_bench.methods) == sorted(bench.methods) == sorted(headline)
    assert (bench.budgets, bench.seeds, loop.max_epochs) == ([0.001, 0.01], 3, 8)
    tune = tune_config(load_yaml(configs / "smollm2_tune.yaml"))
    assert tune.seed not in range(bench.seeds) and tune.budget == 0.01
    # every benched method starts at points of its own: the headline four, then the other four
    rest, _, _, _ = bench_configs(load_yaml(configs / "smollm2_bench_rest.yaml"))
    assert sorted(tune.start_points) == sorted(headline + rest.methods)
    for method, points in tune.start_points.items():
        check_start_points(tune, [method], ModelShape(30, 576))  # every point inside its space
        assert len(points) >= 3
        assert len({tuple(sorted(p.items())) for p in points}) == len(points)  # no point listed twice


def test_smollm2_rest_bench_merges_with_the_headline_bench():
    """The other four methods x 1 seed, at their tuned points: all else as smollm2_bench.yaml's."""
    configs = ROOT / "benchmarks" / "configs"
    bench, loop, attack, _ = bench_configs(load_yaml(configs / "smollm2_bench.yaml"))
    rest, rest_loop, rest_attack, overrides = bench_configs(load_yaml(configs / "smollm2_bench_rest.yaml"))
    assert sorted(rest.methods) == ["grad_diff", "npo", "repselect", "simnpo"] and rest.seeds == 1
    # no hand-set `methods:` section: a hand-set step would win over the study's best (`--tuned`)
    assert set(rest.methods).isdisjoint(bench.methods) and not overrides
    assert (rest_loop, rest_attack) == (loop, attack)
    assert {**vars(rest), "methods": None, "seeds": None} == {**vars(bench), "methods": None, "seeds": None}
    kl_raw = load_yaml(configs / "smollm2_bench_repselect_kl.yaml")
    kl, kl_loop, kl_attack, kl_overrides = bench_configs(kl_raw)
    assert kl.methods == ["repselect"] and kl_loop.budget_metric == "kl" and kl_attack == attack
    assert not kl_overrides  # the same tuned point as the rest bench's


def test_smollm2_lora_and_few_shot_benches_unlearn_as_the_headline_bench():
    """Only the attack differs: the same methods (tuned), loop and split as smollm2_bench.yaml's seed 0."""
    configs = ROOT / "benchmarks" / "configs"
    bench, loop, _, _ = bench_configs(load_yaml(configs / "smollm2_bench.yaml"))
    for attack in ("lora", "few_shot"):
        other, other_loop, _, overrides = bench_configs(load_yaml(configs / f"smollm2_bench_{attack}.yaml"))
        assert (other.attack, other.budgets, other.seeds, other_loop) == (attack, [0.01], 1, loop)
        assert sorted(other.methods) == sorted(bench.methods) and overrides == {}


def test_each_command_builds_its_typed_experiment_once_from_one_file():
    from cir.attacks.finetune import Config as FinetuneConfig
    from cir.experiment import Experiment
    from cir.methods.rmu import Config as RMUConfig

    raw = {
        "unlearn": {"method": "rmu", "max_epochs": 3},
        "method": {"step_norm": 0.5},
        "attack": {"epochs": 2},
        "bench": {"methods": ["cir"], "budgets": [0.01]},
        "methods": {"cir": {"k_act": 4}},
    }
    run = Experiment.for_run(raw, "finetune")
    assert isinstance(run.method, RMUConfig) and run.method.step_norm == 0.5 and run.unlearn.max_epochs == 3
    assert isinstance(run.attack, FinetuneConfig) and run.attack.epochs == 2 and run.bench is None
    assert Experiment.for_unlearn(raw).attack is None
    assert Experiment.for_attack(raw, "finetune").method is None
    bench_raw = {k: v for k, v in raw.items() if k != "method"}
    bench_raw["unlearn"] = {"max_epochs": 3}  # the bench sets the method itself
    bench, loop, attack, methods = Experiment.for_bench(bench_raw).bench_parts()
    assert (
        bench.methods == ["cir"]
        and loop.max_epochs == 3
        and attack.epochs == 2
        and methods == {"cir": {"k_act": 4}}
    )
    with pytest.raises(AssertionError, match="not built by for_bench"):
        run.bench_parts()


def test_an_extra_attacks_settings_must_name_an_extra_attack_and_the_bench_attack_is_not_repeated():
    from cir.errors import ConfigError

    with pytest.raises(ConfigError, match=r"attacks\.lora is set but 'lora' is not in bench\.extra_attacks"):
        bench_configs({"attacks": {"lora": {"rank": 4}}})
    with pytest.raises(ConfigError, match=r"attacks\.quantize"):
        bench_configs({"attacks": {"quantize": {"formats": ["Q3_K"]}}})
    bench, _, _, _ = bench_configs({"bench": {"attack": "quantize"}})
    assert bench.extra_attacks == [] and bench.extra_configs == {}  # quantize runs once, as the attack
    bench, _, _, _ = bench_configs({"attacks": {"quantize": {"formats": ["Q8_0"]}}})
    assert bench.extra_attacks == ["quantize"] and bench.extra_configs["quantize"].formats == ["Q8_0"]


def test_the_cap32_tuning_holds_every_method_to_one_cap_from_valid_start_points():
    """Issue 28's re-tune: one epoch cap for all, every method started, on SmolLM2's shape."""
    raw = load_yaml(ROOT / "benchmarks" / "configs" / "smollm2_tune_cap32.yaml")
    bench, loop, _, _ = bench_configs(raw)
    tune = tune_config(raw)
    assert loop.max_epochs == 32 and loop.step_per == "epoch" and loop.max_backoffs >= 1  # the shipped loop
    assert set(tune.start_points) == set(bench.methods) and "sam_npo" in bench.methods
    assert tune.seed not in range(3) and tune.trials >= 8  # the tuning split: no bench seed
    check_start_points(tune, bench.methods, ModelShape(30, 576))  # SmolLM2-135M: 30 layers, 576 wide
