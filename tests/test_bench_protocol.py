"""The bench's measurement protocol on a tiny model: per-fact records, folds, held-out prompts, the
attacker's lr sweep and patience, the control in the number, and runs that repeat."""

from dataclasses import replace

import pytest
import torch

import tiny
from cir.attacks.finetune import Config as FinetuneConfig
from cir.bench import run_bench
from cir.data.facts import Fact, save_facts
from cir.experiment import bench_configs
from cir.inputs import Inputs, load_inputs
from cir.point import sweep_attack
from cir.records import BenchResults
from cir.report import retable
from cir.stats import aggregate, fact_drops

CITIES = [
    ("Velm", "Arda"),
    ("Orsk", "Arda"),
    ("Tane", "Borel"),
    ("Quill", "Borel"),
    ("Mirth", "Cale"),
    ("Pask", "Cale"),
]
COUNTRIES = ("Arda", "Borel", "Cale", "Dune")


def city_fact(city: str, country: str) -> Fact:
    """A cloze fact whose second sentence starts with its scored prompt."""
    prompt = f"The city of {city} is located in"
    choices = (country, *(c for c in COUNTRIES if c != country))
    sentences = (
        f"{city} is a city in {country}.",
        f"{prompt} {country}.",
        f"{country} has a city named {city}.",
    )
    return Fact(f"In which country is {city}?", choices, 0, sentences, {"domain": "city"}, prompt)


FACTS = [city_fact(city, country) for city, country in CITIES]


@pytest.fixture
def inputs(tmp_path):
    files = tiny.write_workspace(tmp_path)
    save_facts(FACTS, tmp_path / "cities.jsonl")
    return Inputs(
        model=str(files.model),
        forget=[tmp_path / "cities.jsonl"],
        retain=files.retain,
        general=files.general,
        device="cpu",
    )


def raw_config(probes=(), **bench):
    fixed = {"methods": ["grad_diff"], "budgets": [100.0], "seeds": 1, "known_threshold": 0}
    return {
        "bench": fixed | {"extra_attacks": []} | bench,
        "eval": {"probes": list(probes)},
        "unlearn": {"max_epochs": 1, "batch_size": 2, "track_kl": False, **tiny.PAPER_LOOP},
        "attack": {"epochs": 2, "batch_size": 4, "lr": 1e-3},
    }


def records(run, stage, split="V"):
    return [r for r in run.per_fact if r.stage == stage and r.split == split]


def test_folds_put_every_fact_in_v_once_with_every_stage_recorded(inputs, tmp_path):
    raw = raw_config(folds=3, split="answer_disjoint", attack_lrs=[1e-4, 1e-3])
    results = run_bench(inputs, raw, tmp_path / "out", progress=False)
    assert len(results.runs) == 3 and len(results.controls) == 3
    ids = [r.fact for run in results.runs for r in records(run, "post_attack")]
    assert sorted(ids) == sorted(f"forget:{i}" for i in range(len(FACTS)))  # each fact in V once
    for run in results.runs:
        v_answers = {r.answer for r in records(run, "before")}
        t_answers = {r.answer for r in records(run, "before", "T")}
        assert v_answers and t_answers and not v_answers & t_answers  # answer-disjoint
        assert len(records(run, "before", "T")) + len(records(run, "before")) == len(FACTS)
        for stage in ("before", "unlearned", "post_attack"):
            assert len(records(run, stage)) == len(records(run, "before"))
        for lr in (1e-4, 1e-3):  # every epoch of every run of the sweep
            assert len(records(run, f"attack lr={lr:g} epoch 2")) == len(records(run, "before"))
        # the run's means are the means of its facts' records
        for stage, scores in (("before", run.v_before), ("post_attack", run.v_post_attack)):
            values = [r.scores["acc_t1"] for r in records(run, stage)]
            assert sum(values) / len(values) == pytest.approx(scores.acc_t1, abs=1e-12)
        assert run.attack_lr in (1e-4, 1e-3)


def test_the_table_is_recomputed_from_the_per_fact_records_alone(inputs, tmp_path):
    results = run_bench(inputs, raw_config(folds=2), tmp_path / "out", progress=False)
    stored = BenchResults.from_json(results.to_json())
    # wipe every run-level mean: a table that still comes out the same is computed from per_fact
    blank = replace(stored.runs[0].v_before, acc_t1=-1.0, answer_prob=-1.0, acc_t0=-1.0)
    stripped = [replace(r, v_before=blank, v_unlearned=blank, v_post_attack=blank) for r in stored.runs]
    bench = stored.config["bench"]
    again = aggregate(stripped, bench["methods"], bench["budgets"], bench["metric"], stored.controls)
    assert [row.to_json() for row in again] == results.table
    retabled = retable(tmp_path / "out")
    assert retabled.table == results.table


def test_the_drop_against_the_control_is_per_fact_control_minus_post_attack(inputs, tmp_path):
    results = run_bench(inputs, raw_config(), tmp_path / "out", progress=False)
    (run,) = results.runs
    (control,) = results.controls
    post = {r.fact: r.scores["answer_prob"] for r in records(run, "post_attack")}
    attacked = {r.fact: r.scores["answer_prob"] for r in records(control, "post_attack")}
    drops = fact_drops(results.runs, "answer_prob", results.controls)["drop_vs_control"]
    assert drops == {(0, f): pytest.approx(attacked[f] - post[f]) for f in post}
    (row,) = results.table
    assert row["headline"] == "drop_vs_control"
    assert row["drop_vs_control"] == pytest.approx(sum(drops.values()) / len(drops))
    assert row["intervals"]["drop_vs_control"]["estimate"] == pytest.approx(row["drop_vs_control"])


def test_no_scored_prompt_is_a_prefix_of_a_sentence_the_method_trains_on(inputs, tmp_path, monkeypatch):
    trained = []
    import cir.point

    real = cir.point.unlearn

    def capture(model, tokenizer, data, *args, **kwargs):
        trained.append(list(data.forget_facts))
        return real(model, tokenizer, data, *args, **kwargs)

    monkeypatch.setattr(cir.point, "unlearn", capture)
    run_bench(inputs, raw_config(control=False), tmp_path / "held", progress=False)
    run_bench(inputs, raw_config(control=False, eval_prompts="trained"), tmp_path / "trained", progress=False)
    held, everything = trained
    assert len(held) == len(everything) == len(FACTS)
    prompts = [f.prompt for f in FACTS]
    assert not any(s.startswith(p) for f in held for s in f.sentences for p in prompts)
    assert sum(s.startswith(f.prompt) for f in everything for s in f.sentences) == len(FACTS)


def test_the_sweep_keeps_the_attackers_best_and_leaves_the_weights_as_they_came(inputs):
    loaded = load_inputs(inputs, progress=False)
    bench, _, _, _ = bench_configs(raw_config(attack_lrs=[1e-6, 1e-2, 3e-3], metric="answer_prob"))
    start = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    swept = sweep_attack(loaded, bench, FinetuneConfig(epochs=2, batch_size=4), 3, FACTS[:4], FACTS[4:])
    values = {lr: result.post_attack.answer_prob for lr, result in swept.runs}
    assert list(values) == [1e-6, 1e-2, 3e-3] and len(set(values.values())) >= 2
    assert swept.lr == max(values, key=values.get)
    assert swept.chosen.post_attack.answer_prob == max(values.values())
    assert all(result.config["seed"] == 3 for _, result in swept.runs)  # the bench seed, not 0
    assert all(torch.equal(v, start[k]) for k, v in loaded.model.state_dict().items())


@pytest.mark.filterwarnings("ignore:finetune.*did not change")
def test_patience_stops_the_attack_once_v_stops_improving(inputs):
    loaded = load_inputs(inputs, progress=False)
    bench, _, _, _ = bench_configs(raw_config(metric="answer_prob"))
    # an lr so small that V cannot move: no epoch beats epoch 0, so patience 2 stops after epoch 2
    config = FinetuneConfig(epochs=6, batch_size=4, lr=1e-30, patience=2, window=1)
    swept = sweep_attack(loaded, bench, config, 0, FACTS[:4], FACTS[4:])
    assert swept.chosen.stop_reason == "plateau" and len(swept.chosen.history) == 3
    learning = sweep_attack(loaded, bench, replace(config, lr=1e-2), 0, FACTS[:4], FACTS[4:])
    assert len(learning.chosen.history) > 3  # V rises under a real lr, so the attack goes on


def test_two_runs_with_the_same_seed_write_identical_per_fact_records(inputs, tmp_path):
    first = run_bench(inputs, raw_config(folds=2), tmp_path / "a", progress=False)
    second = run_bench(inputs, raw_config(folds=2), tmp_path / "b", progress=False)
    assert [r.per_fact for r in first.runs] == [r.per_fact for r in second.runs]
    assert [c.per_fact for c in first.controls] == [c.per_fact for c in second.controls]
    assert first.config["runtime"] == {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": "cpu",
    }


def test_two_benches_on_a_demo_model_with_the_same_seed_write_identical_records(tmp_path):
    from cir.demo import build_demo
    from test_demo import TINY

    paths = build_demo(TINY, cache_dir=tmp_path, progress=False)  # the demo recipe, shrunk
    inputs = Inputs(model=str(paths.model), device="cpu")
    raw = raw_config(folds=2, attack_lrs=[1e-4, 1e-3])
    first = run_bench(inputs, raw, tmp_path / "a", progress=False)
    second = run_bench(inputs, raw, tmp_path / "b", progress=False)
    assert first.runs[0].per_fact and first.controls[0].per_fact
    assert [r.per_fact for r in first.runs] == [r.per_fact for r in second.runs]
    assert [c.per_fact for c in first.controls] == [c.per_fact for c in second.controls]


def test_extra_probes_are_scored_at_every_stage_and_the_worst_case_is_their_smallest_drop(inputs, tmp_path):
    raw = raw_config(probes=["paraphrase", "generation"], probes_at="every_epoch")
    results = run_bench(inputs, raw, tmp_path / "out", progress=False)
    (run,) = results.runs
    for stage in ("before", "unlearned", "attack epoch 1", "post_attack"):
        for record in records(run, stage):
            assert {"paraphrase_acc_t1", "generation_greedy", "answer_prob"} <= set(record.scores), stage
    (row,) = results.table
    columns = ["answer_prob", "paraphrase_acc_t1", "paraphrase_max_acc_t1"]
    columns += ["generation_greedy", "generation_sampled"]
    assert list(row["probe_drops"]) == columns
    estimates = {k: v["estimate"] for k, v in row["probe_drops"].items()}
    assert row["worst_case"] == min(estimates, key=estimates.get)
    drops = fact_drops(results.runs, "paraphrase_acc_t1", results.controls)["drop_vs_control"]
    assert estimates["paraphrase_acc_t1"] == pytest.approx(sum(drops.values()) / len(drops))
    report = (tmp_path / "out" / "results.md").read_text()
    assert "under each attack and probe" in report and "worst case (attack/probe)" in report
    assert (tmp_path / "out" / "probes_budget10000pct.png").exists()


@pytest.mark.parametrize("attack", ["finetune", "quantize"])
def test_probes_at_the_chosen_point_equal_every_epoch_scoring_at_that_epoch(inputs, attack):
    loaded = load_inputs(inputs, progress=False)
    raw = raw_config(probes=["paraphrase"], attack=attack, metric="answer_prob")
    raw["attack"] = (
        {"epochs": 3, "batch_size": 4, "lr": 1e-3, "window": 1}
        if attack == "finetune"
        else {"formats": ["Q8_0", "Q4_0"]}
    )
    if attack == "finetune":
        raw["bench"]["attack_lrs"] = [1e-3, 1e-2]
    every, _, attack_cfg, _ = bench_configs(raw | {"bench": raw["bench"] | {"probes_at": "every_epoch"}})
    chosen_bench, _, _, _ = bench_configs(raw)
    start = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    full = sweep_attack(loaded, every, attack_cfg, 0, FACTS[:4], FACTS[4:])
    once = sweep_attack(loaded, chosen_bench, attack_cfg, 0, FACTS[:4], FACTS[4:])
    assert once.lr == full.lr
    epoch = once.chosen.best_epochs["answer_prob"]
    assert epoch > 0  # a replay, not the model as it came
    at_epoch = full.chosen.history[epoch].per_fact
    table = once.chosen.post_attack_per_fact
    for name in ("paraphrase_acc_t1", "paraphrase_max_acc_t1"):
        assert table.values[name] == pytest.approx(at_epoch.values[name], abs=1e-6)
        assert once.chosen.best_epochs[name] == epoch
    assert once.chosen.details["replay_difference"] == pytest.approx(0, abs=1e-6)
    # the runs themselves scored the headline only: the probes cost one scoring, not one per epoch
    assert all("paraphrase_acc_t1" not in e.per_fact.values for _, r in once.runs for e in r.history)
    assert all(torch.equal(v, start[k]) for k, v in loaded.model.state_dict().items())


def test_extra_attacks_run_on_the_same_models_as_their_own_bench_and_enter_the_worst_case(inputs, tmp_path):
    quantize = {"formats": ["Q8_0", "Q4_0"]}
    both = raw_config(probes=["paraphrase"], folds=2, extra_attacks=["quantize"]) | {
        "attacks": {"quantize": quantize}
    }
    alone = raw_config(probes=["paraphrase"], folds=2, attack="quantize") | {"attack": quantize}
    results = run_bench(inputs, both, tmp_path / "both", progress=False)
    own = run_bench(inputs, alone, tmp_path / "alone", progress=False)
    for run, own_run in zip(results.runs, own.runs, strict=True):
        extra = records(run, "post_attack:quantize")
        assert len(extra) == len(records(run, "post_attack")) > 0
        assert extra == [replace(r, stage="post_attack:quantize") for r in records(own_run, "post_attack")]
        assert records(run, "quantize epoch 2")  # each format's scoring, as the attack's own records
    for control, own_control in zip(results.controls, own.controls, strict=True):
        assert records(control, "post_attack:quantize") == [
            replace(r, stage="post_attack:quantize") for r in records(own_control, "post_attack")
        ]
    (row,) = results.table
    (own_row,) = own.table
    drops = row["probe_drops"]
    assert {"answer_prob", "quantize/answer_prob", "quantize/paraphrase_acc_t1"} <= set(drops)
    assert drops["quantize/paraphrase_acc_t1"] == own_row["probe_drops"]["paraphrase_acc_t1"]
    estimates = {k: v["estimate"] for k, v in drops.items()}
    assert row["worst_case"] == min(estimates, key=estimates.get)
    assert "quantize/answer_prob" in (tmp_path / "both" / "results.md").read_text()


def test_the_worst_case_is_the_cell_where_the_least_stays_forgotten():
    from cir.records import BenchRun, FactRecord
    from cir.stats import probe_row

    def record(fact, stage, **scores):
        return FactRecord(fact, "V", "x", stage, scores)

    per_fact = [
        record("f1", "before", acc_t1=0.9, paraphrase_acc_t1=0.8, generation_greedy=1.0),
        record("f2", "before", acc_t1=0.9, paraphrase_acc_t1=0.8, generation_greedy=1.0),
        record("f1", "post_attack", acc_t1=0.3, paraphrase_acc_t1=0.7, generation_greedy=0.0),
        record("f2", "post_attack", acc_t1=0.5, paraphrase_acc_t1=0.6, generation_greedy=1.0),
    ]
    results = run_stub(per_fact)
    drops, worst = probe_row([results], ["acc_t1", "paraphrase_acc_t1", "generation_greedy"], (), "drop")
    assert {k: round(v.estimate, 6) for k, v in drops.items()} == {
        "acc_t1": 0.5,
        "paraphrase_acc_t1": 0.15,
        "generation_greedy": 0.5,
    }
    assert worst == "paraphrase_acc_t1"
    assert isinstance(results, BenchRun)


def run_stub(per_fact):
    from cir.records import BenchRun, FactScores

    blank = FactScores(0.0, 0.0, 0.0, 0.0)
    return BenchRun("cir", 0, 0.01, 1, blank, blank, blank, 1.0, 1.0, 0.0, [], [], "", {}, per_fact=per_fact)
