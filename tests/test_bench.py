"""`cir bench` on a tiny model: every file written, valid PNGs, Markdown numbers equal the JSON."""

import json
import re

import pytest

import tiny
from cir.cli import main
from cir.report import STAGES, V_METRICS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory):
    files = tiny.write_workspace(tmp_path_factory.mktemp("bench"))
    out = files.root / "out"
    status = main(
        [
            "bench",
            *("--model", str(files.model), "--facts", str(files.train), str(files.eval)),
            *("--retain", str(files.retain), "--general", str(files.general)),
            *("--methods", "cir", "grad_diff", "--seeds", "2", "--budget", "0.001", "0.01"),
            *("--out", str(out), "--device", "cpu"),
            *tiny.FAST_BENCH_ARGS,
            "methods.cir.forget_layers=[1]",
            "methods.cir.k_act=1",
            "methods.cir.k_grad=1",
        ]
    )
    assert status == 0
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
