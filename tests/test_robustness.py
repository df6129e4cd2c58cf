"""The robustness report: methods x (attack, probe) from one bench per attack, the worst case, controls."""

import json
from dataclasses import replace

import pytest

from cir.bench import run_bench
from cir.cli import main
from cir.errors import DataError
from cir.report import load_bench_results
from cir.robustness import lead_text, robustness, robustness_markdown, worst_case_lead
from test_bench_protocol import inputs, raw_config  # noqa: F401  (the tiny city workspace fixture)


@pytest.fixture
def two_benches(inputs, tmp_path):  # noqa: F811
    finetune = raw_config(probes=["paraphrase"])
    finetune["bench"]["methods"] = ["grad_diff", "npo"]
    quantize = raw_config(probes=["paraphrase"], attack="quantize")
    quantize["bench"]["methods"] = ["grad_diff", "npo"]
    quantize["attack"] = {"formats": ["Q8_0", "Q4_0"]}
    run_bench(inputs, finetune, tmp_path / "finetune", progress=False)
    run_bench(inputs, quantize, tmp_path / "quantize", progress=False)
    return tmp_path / "finetune", tmp_path / "quantize"


def test_the_matrix_has_every_attack_and_probe_and_the_worst_case_is_the_smallest_cell(two_benches, tmp_path):
    out = tmp_path / "report"
    assert main(["robustness", *map(str, two_benches), "--out", str(out)]) == 0
    data = json.loads((out / "robustness.json").read_text())
    (matrix,) = data["matrices"]
    probes = ["answer_prob", "paraphrase_acc_t1", "paraphrase_max_acc_t1"]
    assert matrix["columns"] == [f"{a}/{p}" for a in ("finetune", "quantize") for p in probes]
    assert matrix["headline"] == "drop_vs_control"
    for method in ("grad_diff", "npo"):
        cells = {c: v["estimate"] for c, v in matrix["cells"][method].items()}
        assert set(cells) == set(matrix["columns"])
        assert matrix["worst"][method] == min(cells, key=cells.get)
    assert set(matrix["controls"]) == set(matrix["columns"])  # what each attack alone does to V
    assert "worst case" in (out / "robustness.md").read_text()
    assert (out / "robustness_budget10000pct.png").exists()


def test_parts_that_do_not_match_or_lack_per_fact_records_are_refused(two_benches):
    finetune, quantize = (load_bench_results(folder / "results.json") for folder in two_benches)
    with pytest.raises(DataError, match="quantize: 7 facts"):
        robustness([("finetune", finetune), ("quantize", replace(quantize, facts=7))])
    bare = replace(finetune, runs=[replace(r, per_fact=[]) for r in finetune.runs])
    with pytest.raises(DataError, match="old: runs without per-fact records"):
        robustness([("old", bare)])


def test_cells_a_part_did_not_measure_stay_empty_and_out_of_the_worst_case(two_benches):
    finetune, quantize = (load_bench_results(folder / "results.json") for folder in two_benches)
    grad_diff_only = replace(
        quantize,
        runs=[r for r in quantize.runs if r.method == "grad_diff"],
        config=quantize.config | {"bench": quantize.config["bench"] | {"methods": ["grad_diff"]}},
    )

    def headline_only(record):
        return replace(record, scores={k: v for k, v in record.scores.items() if "paraphrase" not in k})

    # npo as a part without the extra probe would leave it: only its finetune/answer_prob cell is measured
    npo_bare = replace(
        finetune,
        runs=[
            replace(run, per_fact=[headline_only(r) for r in run.per_fact]) if run.method == "npo" else run
            for run in finetune.runs
        ],
    )
    (matrix,) = robustness([("finetune", npo_bare), ("quantize", grad_diff_only)])
    assert set(matrix.cells["npo"]) == {("finetune", "answer_prob")}
    assert len(matrix.cells["grad_diff"]) == len(matrix.columns) == 6
    assert matrix.worst["npo"] == ("finetune", "answer_prob")
    grad_diff = matrix.cells["grad_diff"]
    assert matrix.worst["grad_diff"] == min(grad_diff, key=lambda c: grad_diff[c].estimate)
    report = robustness_markdown([matrix])
    assert "of the 1 of 6 cells measured" in report and "of 6 cells measured" not in report.replace(
        "1 of 6", ""
    )


def test_the_worst_case_lead_pairs_each_method_at_its_own_worst_cell(two_benches):
    parts = [(folder.name, load_bench_results(folder / "results.json")) for folder in two_benches]
    (matrix,) = robustness(parts)
    for method, row in matrix.cells.items():  # the per-fact drops behind every cell
        for column, interval in row.items():
            values = matrix.per_fact[method][column]
            assert sum(values.values()) / len(values) == pytest.approx(interval.estimate)
    assert matrix.lead is None  # no CIR in these benches: the reference method is named
    lead = worst_case_lead(matrix, reference="grad_diff")
    assert lead.baseline == "npo" and lead.complete
    mine = matrix.cells["grad_diff"][matrix.worst["grad_diff"]].estimate
    theirs = matrix.cells["npo"][matrix.worst["npo"]].estimate
    assert lead.difference.estimate == pytest.approx(mine - theirs)  # the same facts in both cells
    if theirs > 0:
        assert lead.ratio.estimate == pytest.approx(mine / theirs)
    assert lead.called == lead.difference.excludes_zero
    assert ("not called" in lead_text(lead)) != lead.called
    assert worst_case_lead(matrix, reference="cir") is None


def test_parts_whose_unlearning_differs_are_refused(two_benches):
    """Each part re-runs the unlearning: the matrix may only join runs that kept the same model."""
    finetune, quantize = (load_bench_results(folder / "results.json") for folder in two_benches)
    robustness([("finetune", finetune), ("quantize", quantize)])  # one machine: the same runs
    moved = replace(
        quantize, runs=[replace(r, epochs=r.epochs + 1) if r.method == "npo" else r for r in quantize.runs]
    )
    with pytest.raises(DataError, match=r"npo \(seed 0, fold 0\) unlearned differently in finetune"):
        robustness([("finetune", finetune), ("quantize", moved)])
