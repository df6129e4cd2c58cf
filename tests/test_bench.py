"""`cir bench` on a tiny model: every file written, valid PNGs, Markdown numbers equal the JSON."""

import importlib.util
import json
import math
import re
from dataclasses import replace
from pathlib import Path
from unittest.mock import patch

import pytest
import torch
from safetensors.torch import load_file

import tiny
from cir.bench import run_bench
from cir.cli import main
from cir.data.facts import save_facts, split_facts
from cir.errors import DataError, OutputExistsError
from cir.evals.scores import evaluate_facts
from cir.experiment import bench_configs, per_method_configs
from cir.model_io import load_model
from cir.plots import bench_plots
from cir.point import bench_point, budget_model, evenly_spaced, load_bench, unlearn_once
from cir.registry import ATTACKS, METHODS
from cir.report import bench_markdown, load_bench_results, merge_bench_results, retable
from cir.stats import STAGES, V_METRICS, Stat, per_seed_ratios

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_bench_argv(root, out, seeds=2, *extra):
    """`cir bench` of cir and grad_diff on the tiny workspace written in `root`."""
    return [
        "bench",
        *("--model", str(root / "model"), "--facts", str(root / "T.jsonl"), str(root / "V.jsonl")),
        *("--retain", str(root / "retain.txt"), "--general", str(root / "general.txt")),
        # the forget facts stand in for another domain's: unlearning must show in their change
        *("--heldout", str(root / "facts.jsonl")),
        *("--methods", "cir", "grad_diff", "--seeds", str(seeds), "--budget", "0.001", "0.01"),
        *("--out", str(out), "--device", "cpu"),
        *tiny.FAST_BENCH_ARGS,
        "methods.cir.forget_layers=[1]",
        "methods.cir.k_act=1",
        "methods.cir.k_grad=1",
        *extra,
    ]


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory):
    files = tiny.write_workspace(tmp_path_factory.mktemp("bench"))
    out = files.root / "out"
    assert main(tiny_bench_argv(files.root, out)) == 0
    return out


def test_bench_writes_results_and_valid_pngs(bench_out):
    results = json.loads((bench_out / "results.json").read_text())
    assert len(results["runs"]) == 2 * 2 * 2  # methods x seeds x budgets
    assert {r["method"] for r in results["table"]} == {"cir", "grad_diff"}
    assert "post_attack" in results["definition"] and "ratio" in results["definition"]
    pngs = sorted(bench_out.glob("*.png"))
    assert len(pngs) == 4  # (answer_prob, acc_t1) x two budgets
    assert all(p.read_bytes().startswith(PNG_MAGIC) and p.stat().st_size > 5000 for p in pngs)


def test_markdown_numbers_equal_json(bench_out):
    results = json.loads((bench_out / "results.json").read_text())
    markdown = (bench_out / "results.md").read_text()
    for row in results["table"]:
        section = markdown.split(f"## Budget {100 * row['budget']:g}%")[1].split("##")[0]
        line = next(text for text in section.splitlines() if text.startswith(f"| {row['method']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        for column, key in ((1, "before"), (2, "unlearned"), (3, "post_attack"), (4, "drop")):
            mean, std = (float(x) for x in re.findall(r"-?\d+\.\d+", cells[column]))
            assert mean == pytest.approx(row[key], abs=5e-4)
            assert std == pytest.approx(row[f"{key}_std"], abs=5e-4)


def test_selectivity_scores_the_heldout_facts_before_and_at_the_kept_epoch(bench_out):
    files = tiny.write_workspace(bench_out.parent / "again")
    model, tokenizer = load_model(str(files.model), "cpu")
    original = evaluate_facts(model, tokenizer, tiny.FACTS, "choice", 64).to_json()
    results = load_bench_results(bench_out / "results.json")
    markdown = (bench_out / "results.md").read_text()
    for run in results.runs:
        assert run.heldout_before is not None and run.heldout_unlearned is not None
        assert run.heldout_before.to_json() == pytest.approx(original)
        if run.epochs == 0:  # nothing kept: the model is the original
            assert run.heldout_unlearned.to_json() == pytest.approx(original)
    changed = [r for r in results.runs if r.epochs > 0]
    assert changed and any(r.heldout_unlearned.acc_t1 != r.heldout_before.acc_t1 for r in changed)
    for row in results.table:
        mine = [r for r in results.runs if r.method == row["method"] and r.budget == row["budget"]]
        changes = [r.heldout_unlearned.answer_prob - r.heldout_before.answer_prob for r in mine]
        assert row["heldout_change"] == pytest.approx(sum(changes) / len(changes))
        section = markdown.split(f"## Budget {100 * row['budget']:g}%")[1].split("##")[0]
        line = next(text for text in section.splitlines() if text.startswith(f"| {row['method']} |"))
        assert f"{row['heldout_change']:.3f} ± {row['heldout_change_std']:.3f}" in line


def test_evenly_spaced_keeps_every_part_of_a_list():
    assert evenly_spaced(list(range(10)), 20) == list(range(10))
    assert evenly_spaced(list(range(10)), 5) == [0, 2, 4, 6, 8]
    assert evenly_spaced(list(range(10)), 0) == []


def test_post_attack_is_best_smoothed_value_of_the_attack(bench_out):
    results = json.loads((bench_out / "results.json").read_text())
    for run in results["runs"]:
        values = [point["v"]["answer_prob"] for point in run["attack_trajectory"]]
        smoothed = [
            sum(values[max(0, i - 2) : i + 1]) / len(values[max(0, i - 2) : i + 1])
            for i in range(len(values))
        ]
        assert run["v_post_attack"]["answer_prob"] == pytest.approx(max(smoothed))


def test_every_v_metric_table_equals_json(bench_out):
    results = json.loads((bench_out / "results.json").read_text())
    markdown = (bench_out / "results.md").read_text()
    for row in results["table"]:
        section = markdown.split(f"## Budget {100 * row['budget']:g}%")[1].split("##")[0]
        second_table = section.split("Every V metric")[1]
        line = next(text for text in second_table.splitlines() if text.startswith(f"| {row['method']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        for name, cell in zip(V_METRICS, cells, strict=True):
            values = [float(x) for x in cell.split(" / ")]
            assert values == pytest.approx([row[f"{name}_{s}"] for s in STAGES], abs=5e-4)
        # the headline metric's columns are the same numbers as the first table's
        metric = results["config"]["bench"]["metric"]
        assert row[f"{metric}_post_attack"] == pytest.approx(row["post_attack"])


def test_bench_model_at_a_budget_equals_cir_unlearn_stopped_there(tmp_path):
    # One bench run goes to the largest budget; the model it attacks at a smaller budget b must be,
    # bit for bit, the model `cir unlearn` returns when stopped by b (same data, order and seed).
    files = tiny.write_workspace(tmp_path)
    inputs = tiny.workspace_inputs(files)
    method = {"forget_layers": [1], "k_act": 1, "k_grad": 1, "step_norm": 2.0, "retain_lr": 0.0}
    raw = {
        "bench": {"methods": ["cir"], "budgets": [1e9], "known_threshold": 0, "val_fraction": 0.34},
        "eval": {"probes": []},
        "unlearn": {"max_epochs": 5, "batch_size": 2, "track_kl": False, **tiny.PAPER_LOOP},
        "attack": {"epochs": 1, "batch_size": 2},
        "methods": {"cir": method},
    }
    bench, loop, attack, overrides = bench_configs(raw)
    loaded, facts, original = load_bench(inputs, bench, loop, progress=False)
    config = per_method_configs(["cir"], overrides)["cir"]
    train, val = split_facts(facts, bench.val_fraction, seed=0)
    free = unlearn_once(loaded, train, val, replace(loop, method="cir", seed=0, budget=1e9), config)
    losses = [r.disruption.general_loss for r in free.history]
    assert free.stop_reason == "max_epochs"
    # a budget between the highest loss so far and the first epoch that tops it: a run stops there
    # (from epoch 3 on: CIR's first epoch only gathers statistics, so epoch 2 is the first change)
    over = next(e for e in range(3, len(losses)) if losses[e] > max(losses[:e]))
    budget = (max(losses[:over]) + losses[over]) / 2 / losses[0] - 1
    kept = budget_model(free, budget, original)
    assert kept == over - 1 >= 2
    benched = {k: v.clone() for k, v in loaded.model.state_dict().items()}

    save_facts(train, tmp_path / "split_T.jsonl")
    save_facts(val, tmp_path / "split_V.jsonl")
    out = tmp_path / "unlearned"
    args = [
        *("unlearn", "--model", str(files.model), "--out", str(out), "--device", "cpu"),
        *("--forget", str(tmp_path / "split_T.jsonl"), str(tmp_path / "split_V.jsonl")),
        *("--retain", str(files.retain), "--general", str(files.general)),
        *(f"unlearn.{k}={json.dumps(v)}" for k, v in raw["unlearn"].items()),
        *(f"method.{k}={json.dumps(v)}" for k, v in method.items()),
        f"unlearn.budget={budget!r}",
        "unlearn.seed=0",
    ]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "budget" and summary["epochs"] == kept
    stopped = load_file(out / "model.safetensors")
    assert stopped.keys() <= benched.keys()
    assert all(torch.equal(stopped[k], benched[k]) for k in stopped)
    assert any(not torch.equal(stopped[k], original[k]) for k in stopped)

    # and bench_point, which attacks each budget's model, reports that same epoch and V
    runs = bench_point(loaded, facts, bench, loop, "cir", config, attack, 0, original, [budget, 1e9])
    assert [r.epochs for r in runs] == [kept, len(losses) - 1]
    # each budget's run says why it stopped there, as `cir unlearn` at that budget does
    assert [r.stop_reasons["unlearn"] for r in runs] == ["budget", "max_epochs"]
    assert runs[0].v_unlearned == free.history[kept].facts


def test_retable_rebuilds_the_same_table_and_markdown(bench_out, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("results.json", "results.md"):
        (copy / name).write_bytes((bench_out / name).read_bytes())
    retable(copy)
    assert (copy / "results.md").read_text() == (bench_out / "results.md").read_text()
    assert json.loads((copy / "results.json").read_text()) == json.loads(
        (bench_out / "results.json").read_text()
    )


@pytest.mark.parametrize("attack", ATTACKS.names())
def test_every_method_through_the_bench_with_each_attack(tmp_path, attack):
    files = tiny.write_workspace(tmp_path)
    out = files.root / "out"
    trains = attack not in ("few_shot", "quantize")  # the others have no epochs to shorten
    pool = files.root / "pool.txt"  # related text for benign_relearn: each answer, no fact stated
    pool.write_text("".join(f"Here is {fact.answer_text} again.\n" for fact in tiny.FACTS))
    fast = [a for a in tiny.FAST_BENCH_ARGS if trains or not a.startswith("attack.")]
    setting = {
        "few_shot": "attack.shots=1",
        "quantize": "attack.formats=[Q8_0]",
        "other_data": f"attack.texts={files.general}",
        "benign_relearn": f"attack.texts={pool}",
    }.get(attack, "attack.window=1")
    status = main(
        [
            "bench",
            *("--model", str(files.model), "--facts", str(files.train), str(files.eval)),
            *("--retain", str(files.retain), "--general", str(files.general)),
            *("--methods", *METHODS.names(), "--seeds", "1", "--budget", "0.001", "0.01"),
            *("--out", str(out), "--device", "cpu"),
            *fast,
            f"bench.attack={attack}",
            setting,
        ]
    )
    assert status == 0
    results = load_bench_results(out / "results.json")
    assert len(results.runs) == len(METHODS.names()) * 2  # x budgets
    for run in results.runs:
        numbers = [*run.v_before.to_json().values(), *run.v_post_attack.to_json().values()]
        assert all(math.isfinite(x) for x in numbers), run.method
        assert run.epochs in (0, 1) and run.stop_reasons["attack"] in ("epochs", "done")
        assert len(run.attack_trajectory) == 2  # before the attack, and its one epoch (or k-shot)
    assert {row["method"] for row in results.table} == set(METHODS.names())
    assert all(row["heldout_change"] is None for row in results.table)  # no held-out facts given
    assert "| n/a |" in (out / "results.md").read_text()


def run_tiny_bench(tmp_path, capsys, progress):
    """grad_diff, 2 seeds x 2 budgets, 2 epochs (a budget no epoch exceeds) and a 1-epoch attack."""
    files = tiny.write_workspace(tmp_path, layers=2)
    capsys.readouterr()  # drop what saving the workspace printed
    inputs = tiny.workspace_inputs(files)
    raw = {
        "bench": {"methods": ["grad_diff"], "budgets": [50.0, 100.0], "seeds": 2},
        "unlearn": {"max_epochs": 2, "batch_size": 2, "track_kl": False, **tiny.PAPER_LOOP},
        "attack": {"epochs": 1, "batch_size": 2},
    }
    raw["bench"] |= {"known_threshold": 0, "val_fraction": 0.34}
    raw["eval"] = {"probes": []}
    return run_bench(inputs, raw, tmp_path / "out", progress=progress)


def test_bench_progress_names_method_seed_epoch_and_attack_under_the_outer_bar(tmp_path, capsys):
    results = run_tiny_bench(tmp_path, capsys, progress=True)
    err = capsys.readouterr().err
    assert {run.epochs for run in results.runs} == {2}  # both epochs ran, so both had a bar
    for seed in (0, 1):
        for epoch in (0, 1):
            assert f"grad_diff seed {seed} epoch {epoch}:" in err
        # both budgets keep epoch 2, so they share one attack, run (and named) at the first
        assert f"grad_diff seed {seed} budget 50 finetune:" in err
        assert f"grad_diff seed {seed} budget 100 finetune:" not in err
        assert f"control seed {seed} finetune:" in err  # the attack on the never-unlearned model
    # tqdm draws a bar at position 1 as "\n\r<bar>\x1b[A" (a line down, then back up) and clears it
    # on close ("\r<spaces>\x1b[A"); a bar left behind would end in a plain newline instead
    draws = err.split("\r")
    inner = [d for d in draws if d.startswith("grad_diff seed")]
    assert inner and all(d.rstrip("\n").endswith("\x1b[A") for d in inner)
    # seeds x (epochs + attack + the control's attack)
    assert sum(d.strip(" \n") == "\x1b[A" for d in draws) == 2 * (2 + 1 + 1)
    assert draws[-1].startswith("bench: 100%") and "| 4/4 [" in draws[-1]  # the outer count stays


def test_budgets_keeping_the_same_epoch_share_one_attack(tmp_path, capsys, monkeypatch):
    calls = []
    build = ATTACKS.build

    def counting_build(name, config):
        attack = build(name, config)
        run = attack.run
        attack.run = lambda *args, **kwargs: calls.append(1) or run(*args, **kwargs)
        return attack

    monkeypatch.setattr("cir.point.ATTACKS.build", counting_build)
    results = run_tiny_bench(tmp_path, capsys, progress=False)
    # one per seed, not per (seed, budget), and each seed's control; each twice: finetune, then the
    # default extra attack (quantize) on the same model
    assert len(calls) == 2 * (2 + 2)
    for seed in (0, 1):
        small, large = sorted((r for r in results.runs if r.seed == seed), key=lambda r: r.budget)
        assert small.epochs == large.epochs == 2
        assert (
            small.v_post_attack == large.v_post_attack and small.attack_trajectory == large.attack_trajectory
        )


def test_bench_without_progress_writes_nothing_to_stderr(tmp_path, capsys):
    run_tiny_bench(tmp_path, capsys, progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def split_by_method(results):
    """One BenchResults per method, as `cir bench "bench.methods=[m]"` would have written it."""
    parts = []
    for method in results.config["bench"]["methods"]:
        config = json.loads(json.dumps(results.config))
        config["bench"]["methods"] = [method]
        config["methods"] = {k: v for k, v in config["methods"].items() if k == method}
        runs = [r for r in results.runs if r.method == method]
        parts.append((method, replace(results, config=config, runs=runs, table=[])))
    return parts


def test_merged_parts_give_the_table_and_markdown_of_one_bench(bench_out, tmp_path):
    whole = load_bench_results(bench_out / "results.json")
    merged = merge_bench_results(split_by_method(whole))
    assert merged.table == whole.table  # the ratio finds grad_diff as the best baseline across parts
    assert bench_markdown(merged) == (bench_out / "results.md").read_text()
    assert merged.config["methods"] == whole.config["methods"]
    script = importlib.util.spec_from_file_location("merge_bench", BENCHMARKS / "merge_bench.py")
    module = importlib.util.module_from_spec(script)
    script.loader.exec_module(module)
    folders = []
    for name, part in split_by_method(whole):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps(part.to_json()))
        folders.append(str(folder))
    module.main([*folders, "--out", str(tmp_path / "merged")])
    assert (tmp_path / "merged" / "results.md").read_text() == (bench_out / "results.md").read_text()
    assert len(list((tmp_path / "merged").glob("*.png"))) == 4
    with pytest.raises(OutputExistsError):
        module.main([*folders, "--out", str(tmp_path / "merged")])


def test_merge_takes_parts_with_fewer_seeds_and_shows_each_rows_count(bench_out):
    (cir, cir_part), (gd, gd_part) = split_by_method(load_bench_results(bench_out / "results.json"))
    one_seed = json.loads(json.dumps(gd_part.config))
    one_seed["bench"]["seeds"] = 1
    gd_seed0 = replace(gd_part, config=one_seed, runs=[r for r in gd_part.runs if r.seed == 0])
    merged = merge_bench_results([(cir, cir_part), (gd, gd_seed0)])
    assert merged.config["bench"]["seeds"] == 2
    rows = {(r["budget"], r["method"]): r for r in merged.table}
    assert {(m, rows[(0.01, m)]["seeds"]) for m in ("cir", "grad_diff")} == {("cir", 2), ("grad_diff", 1)}
    gd_row = rows[(0.01, "grad_diff")]
    (run,) = [r for r in gd_seed0.runs if r.budget == 0.01]
    metric = merged.config["bench"]["metric"]
    assert gd_row["drop"] == pytest.approx(run.v_before.metric(metric) - run.v_post_attack.metric(metric))
    assert gd_row["drop_std"] is None and rows[(0.01, "cir")]["drop_std"] is not None
    markdown = bench_markdown(merged)
    assert "| method | seeds |" in markdown
    assert f"| grad_diff | 1 | {gd_row['before']:.3f} | " in markdown  # one seed: a value, no "± 0.000"


def test_markdown_and_plots_name_a_kl_budget_and_the_attack(bench_out, tmp_path):
    results = load_bench_results(bench_out / "results.json")
    assert "## Budget 1% general-loss rise" in bench_markdown(results)
    results.config["unlearn"]["budget_metric"] = "kl"
    markdown = bench_markdown(results)
    assert "## Budget KL 0.01 nats/token" in markdown and "general-loss rise" not in markdown
    titles, x_labels = [], []
    with (
        patch("matplotlib.axes.Axes.set_title", lambda axis, text, *a, **k: titles.append(text)),
        patch("matplotlib.axes.Axes.set_xlabel", lambda axis, text, *a, **k: x_labels.append(text)),
    ):
        bench_plots(results, tmp_path)
        results.config["bench"]["attack"] = "lora"
        bench_plots(results, tmp_path)
    assert "attack on the model kept at KL 0.01 nats/token\n(mean over seeds)" in titles
    assert not any("general-loss" in t for t in titles)
    assert "attack epoch (fine-tuning on T)" in x_labels  # the right panel names the bench's attack
    assert "attack epoch (a LoRA adapter trained on T)" in x_labels


def test_merge_takes_parts_that_asked_v_with_different_extra_probes(bench_out):
    whole = load_bench_results(bench_out / "results.json")
    (cir, cir_part), (gd, gd_part) = split_by_method(whole)
    other = json.loads(json.dumps(gd_part.config))
    other["bench"]["probes"] = ["paraphrase"]  # the headline metric is scored the same way either way
    del other["bench"]["probes_at"]  # a part written before the key
    merged = merge_bench_results([(cir, cir_part), (gd, replace(gd_part, config=other))])
    assert merged.table == whole.table
    assert merged.config["bench"]["probes"] == ["paraphrase"]
    assert merged.config["bench"]["probes_at"] == {cir: "chosen", gd: None}


def test_merge_refuses_parts_of_different_benches(bench_out):
    (cir, cir_part), (gd, gd_part) = split_by_method(load_bench_results(bench_out / "results.json"))
    other = json.loads(json.dumps(gd_part.config))
    other["bench"]["budgets"] = [0.01]
    with pytest.raises(DataError, match="grad_diff: its bench settings differ from cir's"):
        merge_bench_results([(cir, cir_part), (gd, replace(gd_part, config=other))])
    with pytest.raises(DataError, match=r"again: cir seed 0, cir seed 1 already in an earlier part"):
        merge_bench_results([(cir, cir_part), ("again", cir_part)])


def test_a_bench_run_a_seed_at_a_time_merges_into_the_bench_of_both_seeds(bench_out, tmp_path):
    whole = load_bench_results(bench_out / "results.json")
    # seed 1 alone, as a later session would run it (`bench.first_seed=1`), on the same workspace
    argv = tiny_bench_argv(bench_out.parent, tmp_path / "seed1", 1, "bench.first_seed=1")
    assert main(argv) == 0
    seed1 = load_bench_results(tmp_path / "seed1" / "results.json")
    assert {r.seed for r in seed1.runs} == {c.seed for c in seed1.controls} == {1}
    timed = [r for r in whole.runs if r.seed == 1]  # wall time is the one thing that does not repeat
    assert len(timed) == len(seed1.runs)
    seed1_runs = [
        replace(r, seconds_per_fact=t.seconds_per_fact) for r, t in zip(seed1.runs, timed, strict=True)
    ]
    seed1 = replace(seed1, runs=seed1_runs)
    config = json.loads(json.dumps(whole.config))
    config["bench"]["seeds"] = 1
    seed0 = replace(
        whole,
        config=config,
        runs=[r for r in whole.runs if r.seed == 0],
        controls=[c for c in whole.controls if c.seed == 0],
    )
    merged = merge_bench_results([("seed0", seed0), ("seed1", seed1)])
    assert merged.runs == whole.runs  # seed 1 run alone repeats seed 1 of the 2-seed bench exactly
    assert merged.table == whole.table
    assert (merged.config["bench"]["seeds"], merged.config["bench"]["first_seed"]) == (2, 0)
    assert bench_markdown(merged) == (bench_out / "results.md").read_text()


def test_a_ratio_over_fewer_seeds_than_its_row_says_how_many():
    """A seed whose best baseline kept no drop has no ratio; the report says the mean is over the rest."""
    ratios = per_seed_ratios({0: 0.4, 1: 0.4, 2: 0.2}, {0: 0.02, 1: -0.03, 2: 0.0})
    assert ratios == [pytest.approx(20.0)] and Stat.of(ratios) == Stat(pytest.approx(20.0), None)
    assert per_seed_ratios({0: 0.4}, {0: -0.01}) == [] and Stat.of([]) == Stat(None, None)


def test_markdown_shows_the_seeds_a_ratio_counts(bench_out):
    results = load_bench_results(bench_out / "results.json")
    (row,) = [r for r in results.table if r["method"] == "cir" and r["budget"] == 0.01]
    assert row["ratio_seeds"] <= row["seeds"]
    row.update(ratio=20.0, ratio_std=None, ratio_seeds=1, seeds=3)
    del row["intervals"]  # a table written before intervals shows its per-seed ratio instead
    assert "| 20.00 (1 of 3 seeds) |" in bench_markdown(results)
    row.update(ratio_seeds=3)
    assert "| 20.00 |" in bench_markdown(results)


def test_a_fact_without_the_prior_field_is_an_error_not_dropped():
    from cir.experiment import BenchConfig
    from cir.point import known_facts

    with_prior = [replace(f, extra={"prior": 0.9}) for f in tiny.FACTS[:2]]
    config = BenchConfig(prior_field="prior", known_threshold=0.5)
    assert known_facts(None, with_prior, config, "choice") == with_prior
    with pytest.raises(DataError, match="no numeric field 'prior'"):
        known_facts(None, [*with_prior, tiny.FACTS[2]], config, "choice")


@pytest.mark.parametrize("key", ["budget", "method", "seed"])
def test_a_loop_key_the_bench_sets_itself_is_refused_not_ignored(key):
    from cir.errors import ConfigError
    from cir.experiment import bench_configs

    value = {"budget": 0.5, "method": "rmu", "seed": 9}[key]
    with pytest.raises(
        ConfigError, match=rf"unlearn\.{key} is not read by cir tune, which sets it from bench\."
    ):
        bench_configs({"unlearn": {key: value}}, command="cir tune")
    with pytest.warns(UserWarning, match="cir bench does not read the method: section"):
        bench_configs({"method": {"k_act": 4}})
