"""`cir bench`: every method at the same budgets, the same attack and the same seeds, side by side.

The recipe: check the configs and the output folder, load the model and the known facts, then run
one bench point (`cir.point.bench_point`) per seed and method, and write the table, the JSON and the
plots. For each seed the known forget facts are split into T and V; each method unlearns T + V and
each budget's model is attacked with T and scored on V.

With tuned studies (`cir tune`, then `cir bench --tuned`), each budget uses its own study's best
params where one exists, else the nearest tuned budget's; budgets sharing a config share one run
where one trajectory serves them all (`cir.point.single_trajectory`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from cir.config import to_dict
from cir.evals.metrics import model_device
from cir.experiment import Experiment
from cir.inputs import Inputs
from cir.methods.base import MethodConfig
from cir.modules import model_shape
from cir.outputs import atomic_output_dir, check_output_dir, write_json_atomic
from cir.plots import bench_plots
from cir.point import (
    Selectivity,
    Tuned,
    bench_jobs,
    bench_point,
    check_splits,
    check_tuned_shape,
    control_point,
    fact_ids,
    load_bench,
    tuned_studies,
)
from cir.records import BenchResults, BenchRun, ControlRun
from cir.registry import ATTACKS
from cir.report import bench_markdown, definitions
from cir.stats import aggregate


def run_bench(
    inputs: Inputs,
    raw: dict[str, Any],
    out: Path,
    force: bool = False,
    progress: bool = True,
    tuned: Tuned | None = None,
) -> BenchResults:
    """Run the comparison and write results.json, results.md and the plots into `out`.

    Args:
        inputs: the model and data.
        raw: the config, sections bench, unlearn, attack and methods.
        out: the output folder.
        force: replace an existing `out`.
        progress: show progress bars: the bench's count of (seed, method) runs, and under it each
            run's epochs, f"{method} seed {seed} epoch {n}", and attack, f"... budget {b} {attack}".
        tuned: best trials of `cir tune` studies; a method's `methods.<name>` overrides win over them.

    Raises:
        OutputExistsError, ConfigError, DataError, ModelError: for bad input (checked before the work).
    """
    experiment = Experiment.for_bench(raw)
    bench, loop, attack, overrides = experiment.bench_parts()
    studies = tuned_studies(bench, tuned or {})
    jobs = bench_jobs(bench, loop, overrides, studies)
    check_output_dir(out, force)
    loaded, facts, original = load_bench(inputs, bench, loop, progress)
    check_tuned_shape(studies, model_shape(loaded.model))
    check_splits(facts, bench, ATTACKS.build(bench.attack, attack))
    for name, config in bench.extra_configs.items():
        check_splits(facts, bench, ATTACKS.build(name, config))
    heldout = Selectivity.of(loaded, bench, loop)
    ids = fact_ids(loaded)
    runs: list[BenchRun] = []
    controls: list[ControlRun] = []
    seeded: list[tuple[int, str, list[float], MethodConfig | None]]
    seeded = [(seed, *job) for seed in bench.seed_range for job in jobs]
    if bench.control:  # the control of each seed, listed as a job "control" with no budgets
        seeded = [(seed, "control", [], None) for seed in bench.seed_range] + seeded
    for seed, name, budgets, config in tqdm(seeded, desc="bench", disable=not progress):
        if config is None:
            controls += control_point(loaded, facts, bench, loop, attack, seed, original, progress, ids)
            continue
        point = (loaded, facts, bench, loop, name, config, attack, seed, original)
        runs += bench_point(*point, budgets, progress, heldout, ids)
    largest = max(bench.budgets)
    config = {
        "bench": to_dict(bench),
        "unlearn": to_dict(loop),
        "attack": to_dict(attack),
        "methods": {n: to_dict(c) for n, budgets, c in jobs if largest in budgets},  # at the largest
        "tuned": {n: {str(b): dict(t) for b, t in chosen.items()} for n, chosen in studies.items()},
        "runtime": {  # what CPU runs repeat at
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": str(model_device(loaded.model)),
        },
    }
    rows = aggregate(runs, bench.methods, bench.budgets, bench.metric, controls)
    table = [row.to_json() for row in rows]
    results = BenchResults(config, len(facts), definitions(runs), runs, table, controls)
    write_bench_results(results, out, force)
    return results


def write_bench_results(results: BenchResults, out: Path, force: bool = False) -> None:
    """Write results.json, results.md and the plots into `out`, atomically.

    Raises:
        OutputExistsError: if `out` exists and not `force`.
    """
    with atomic_output_dir(out, force) as staging:
        write_json_atomic(staging / "results.json", results.to_json())
        (staging / "results.md").write_text(bench_markdown(results), encoding="utf-8")
        bench_plots(results, staging)
