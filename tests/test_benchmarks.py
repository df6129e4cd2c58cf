"""The benchmark scripts run on CPU with a tiny shape (their real runs are on a GPU)."""

import importlib.util
import json
from pathlib import Path

import pytest


def load(name):
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_per_fact_runs_tiny_on_cpu(capsys):
    result = load("gpu_per_fact").main(
        ["--shape", "tiny", "--facts", "4", "--epochs", "2", "--device", "cpu"]
    )
    assert result["device"] == "cpu" and result["facts"] == 4
    # what it reports is consistent with itself (timings are for the real runs, not asserted here)
    ratio = result["seconds_per_fact"] / result["seconds_per_fact_uncollapsed"]
    assert result["collapse_overhead_ratio"] == pytest.approx(ratio)
    out = capsys.readouterr().out
    printed = json.loads(out[out.index("{") :])
    assert printed["seconds_per_fact"] == result["seconds_per_fact"]


def test_synthetic_facts_have_paper_like_length():
    module = load("gpu_per_fact")
    batches = module.synthetic_batches(10, 100, 32, "cpu", seed=0)
    lengths = [int(n) for b in batches for n in b.attention_mask.sum(1)]
    assert len(lengths) == 30 and min(lengths) >= 24 and max(lengths) <= 36


def test_known_vs_control_counts_facts_known_only_by_the_model(tmp_path):
    from tiny import write_workspace

    ws = write_workspace(tmp_path)
    args = ["--model", str(ws.model), "--facts", str(ws.facts)]
    same = load("known_vs_control").main([*args, "--control", str(ws.model), "--threshold", "0"])
    assert same["facts"] == 3 and same["model"]["known"] == same["control"]["known"] == 3
    assert same["known_in_model_not_control"] == 0  # the model is its own control
    assert 0 <= same["model"]["acc_t0"] <= 1 and same["model"]["acc_t1"] == same["control"]["acc_t1"]
    none = load("known_vs_control").main([*args, "--control", str(ws.model), "--threshold", "1.01"])
    assert none["model"]["known"] == 0


@pytest.mark.gpu
def test_gpu_per_fact_runs_tiny_on_cuda(capsys):
    result = load("gpu_per_fact").main(
        ["--shape", "tiny", "--facts", "4", "--epochs", "2", "--device", "cuda"]
    )
    assert result["device"] != "cpu" and result["facts"] == 4
    assert result["seconds_per_fact"] > 0 and result["peak_memory_gb"] > 0


def test_attack_on_original_starts_each_seed_from_the_original_model(tmp_path):
    from cir.data.facts import load_facts, split_facts
    from cir.evals.scores import evaluate_facts
    from cir.model_io import load_model
    from tiny import write_workspace

    ws = write_workspace(tmp_path)
    config = tmp_path / "bench.yaml"
    config.write_text(
        "bench: {known_threshold: 0, val_fraction: 0.34, seeds: 2}\n"
        "unlearn: {batch_size: 2}\nattack: {epochs: 2, batch_size: 2, lr: 0.01}\n"
    )
    args = ["--model", str(ws.model), "--facts", str(ws.facts), "--general", str(ws.general)]
    args += ["--retain", str(ws.retain), "--device", "cpu"]
    report = load("attack_on_original").main([*args, "--config", str(config), "--out", str(tmp_path / "out")])
    model, tokenizer = load_model(str(ws.model), "cpu")
    facts = load_facts(ws.facts)
    for row in report["seeds"]:
        _, val = split_facts(facts, 0.34, row["seed"])
        original = evaluate_facts(model, tokenizer, val, "choice", 64).to_json()
        assert row["v_before"] == pytest.approx(original)  # not the previous seed's attacked model
        assert (
            row["v_post_attack"]["answer_prob"] >= row["v_before"]["answer_prob"]
        )  # the best includes before
    rises = [r["v_post_attack"]["acc_t1"] - r["v_before"]["acc_t1"] for r in report["seeds"]]
    assert report["rise"]["acc_t1"]["mean"] == pytest.approx(sum(rises) / 2)
    assert (tmp_path / "out" / "attack_on_original.json").is_file()


def test_tuning_record_lists_every_trial_with_its_numbers(tmp_path):
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'record.db'}")
    study = optuna.create_study(storage=storage, study_name="cir-budget0.01")
    study.set_user_attr("metric", "acc_t1")
    trial = study.ask({"step_norm": optuna.distributions.FloatDistribution(0.005, 0.5, log=True)})
    trial.set_user_attr("epochs", 3)
    trial.set_user_attr("general_loss_before", 2.0)
    trial.set_user_attr("general_loss_after", 2.01)
    trial.set_user_attr("v_before", {"acc_t1": 0.9})
    trial.set_user_attr("v_unlearned", {"acc_t1": 0.5})
    study.tell(trial, 0.7)
    study.enqueue_trial({"step_norm": 0.1})
    study.enqueue_trial({"step_norm": 0.2})  # withdrawn before it ran: failed, never started
    withdrawn_id = study.get_trials(deepcopy=False)[-1]._trial_id
    storage.set_trial_state_values(withdrawn_id, optuna.trial.TrialState.FAIL)
    found = load("tuning_record").main([str(tmp_path / "record.db")])
    done, queued, withdrawn = found
    assert withdrawn["state"] == "fail" and withdrawn["params"] == "(queued: step_norm=0.2)"
    assert withdrawn["s"] == "" and withdrawn["post-attack acc_t1"] == ""
    assert done["study"] == "cir-budget0.01" and done["state"] == "complete"
    assert done["post-attack acc_t1"] == "0.700" and done["epochs"] == "3" and done["loss Δ%"] == "+0.50"
    assert done["V acc_t1 before -> unlearned"] == "0.900 -> 0.500"
    assert queued["state"] == "waiting" and queued["params"] == "(queued: step_norm=0.1)"


def test_check_cost_runs_the_same_unlearning_with_and_without_in_epoch_checks(tmp_path):
    from tiny import write_workspace

    ws = write_workspace(tmp_path)
    args = ["--model", str(ws.model), "--forget", str(ws.train), "--general", str(ws.general)]
    args += ["--retain", str(ws.retain), "--epochs", "2", "unlearn.batch_size=1", "unlearn.check_every=1"]
    args += ["method.forget_layers=[1]", "method.k_act=1", "method.k_grad=1"]
    results = load("check_cost").main(args)
    base, checked = results.values()
    for row in (base, checked):
        assert row["ratio"] == pytest.approx(row["check_seconds"] / row["seconds"])
    assert set(results) == {"epoch ends only", "check_every=1, check_texts=8"}  # the two schedules named


def test_quantize_control_scores_v_after_each_format(tmp_path):
    from tiny import write_workspace

    ws = write_workspace(tmp_path)
    config = tmp_path / "quantize.yaml"
    config.write_text(
        "bench: {attack: quantize, known_threshold: 0, val_fraction: 0.34, metric: acc_t1}\n"
        "attack: {formats: [Q8_0, Q4_0]}\n"
    )
    args = ["--model", str(ws.model), "--facts", str(ws.facts), "--general", str(ws.general)]
    args += ["--retain", str(ws.retain)]
    rows = load("quantize_control").main([*args, "--config", str(config), "--out", str(tmp_path / "out")])
    assert list(rows) == ["none", "Q8_0", "Q4_0"] and rows["none"] != rows["Q4_0"]
    assert (tmp_path / "out" / "per_format_acc_t1.json").is_file()


def test_the_committed_smollm2_protocol_bench_recomputes_from_its_per_fact_records():
    from cir.report import load_bench_results
    from cir.stats import aggregate

    folder = Path(__file__).parents[1] / "benchmarks" / "results" / "smollm2" / "protocol" / "bench"
    results = load_bench_results(folder / "results.json")
    bench = results.config["bench"]
    rows = aggregate(results.runs, bench["methods"], bench["budgets"], bench["metric"], results.controls)
    assert [row.to_json() for row in rows] == results.table
    for method in bench["methods"]:
        post = [
            r
            for run in results.runs
            if run.method == method
            for r in run.per_fact
            if r.stage == "post_attack"
        ]
        assert sorted(r.fact for r in post) == sorted({r.fact for r in post}) and len(post) == results.facts
        assert all(r.split == "V" and r.answer for r in post)


def test_quantize_formats_tables_each_format_and_the_attacker_takes_the_best_per_fold():
    """On the committed SmolLM2 quantize bench: each format's V, and post-attack = the best format per fold."""
    from statistics import fmean

    from cir.report import load_bench_results
    from cir.stats import v_values

    folder = Path(__file__).parents[1] / "benchmarks" / "results" / "smollm2" / "protocol" / "quantize"
    rows = load("quantize_formats").format_rows(folder, "acc_t1")
    results = load_bench_results(folder / "results.json")
    formats = results.config["attack"]["formats"]
    assert [row["method"] for row in rows] == ["cir", "rmu", "control (never unlearned)"]
    assert all(name in rows[0] for name in formats) and rows[-1]["like_input"] == "0.927"  # on its grid
    for run in results.runs:
        per_format = [fmean(v_values([run], f"attack epoch {e}", "acc_t1").values()) for e in range(1, 7)]
        assert fmean(v_values([run], "post_attack", "acc_t1").values()) == pytest.approx(max(per_format))


def test_the_committed_smollm2_worst_case_recomputes_from_its_two_parts():
    """7.14: the robustness matrix of the fine-tuning and quantization parts, from their per-fact records."""
    import json

    from cir.report import load_bench_results
    from cir.robustness import robustness

    protocol = Path(__file__).parents[1] / "benchmarks" / "results" / "smollm2" / "protocol"
    parts = [
        (
            str(Path("benchmarks/results/smollm2/protocol") / name),
            load_bench_results(protocol / name / "results.json"),
        )
        for name in ("probes_finetune", "probes_quantize")
    ]
    (matrix,) = robustness(parts)  # also checks both parts kept the same model of every method
    committed = json.loads((protocol / "robustness_probes" / "robustness.json").read_text())
    assert {"matrices": [matrix.to_json()]} == committed  # bootstrap intervals are seeded
    assert matrix.worst["cir"] == ("quantize", "paraphrase_acc_t1")
    assert matrix.worst["rmu"] == ("finetune", "paraphrase_max_acc_t1")
    assert matrix.lead is not None and matrix.lead.baseline == "rmu" and matrix.lead.called


def test_the_committed_smollm2_other_data_table_is_the_merge_of_its_parts():
    """Issue 34's table (quantize per format + other-data fine-tune), run a seed or a method at a time.

    The merged results.json is not committed (7 MB, derivable): its table and matrix must recompute.
    """
    import json

    from cir.report import bench_markdown, load_bench_results, merge_bench_results
    from cir.robustness import robustness

    root = Path("benchmarks/results/smollm2/protocol/other_data")
    folder = Path(__file__).parents[1] / root
    parts = [
        (str(root / "parts" / p.name), load_bench_results(p / "results.json"))
        for p in sorted((folder / "parts").iterdir())
    ]
    merged = merge_bench_results(parts)
    assert bench_markdown(merged) == (folder / "bench" / "results.md").read_text()
    assert {run.seed for run in merged.runs} == {0, 1, 2}
    # the other-data fine-tune is recorded per fact beside the quantize attack, for every run and control
    for run in [*merged.runs, *merged.controls]:
        assert {r.stage for r in run.per_fact} >= {"post_attack", "post_attack:other_data"}
    (matrix,) = robustness([(str(root / "bench"), merged)])
    assert {"matrices": [matrix.to_json()]} == json.loads(
        (folder / "robustness" / "robustness.json").read_text()
    )
