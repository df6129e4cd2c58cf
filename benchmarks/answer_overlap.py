"""Does the attack relearn V's facts through answers it trains on? V split by answer shared with T.

On the city-country facts many facts share an answer (a country), so the T fine-tune may bring a V
fact back by training its answer on T's sentences rather than by undoing the unlearning. This reads
a bench's per-fact records, re-derives each seed's T/V split from its config (the split is seeded,
so nothing is rerun), and compares the drop of V facts whose answer is also one of the attack's T
answers with that of the others (Mann-Whitney U, `scipy.stats`). Honours `attack.train_facts`.

    python benchmarks/answer_overlap.py RESULTS_DIR --facts FACTS [--method cir] [--metric acc_t1]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from scipy.stats import mannwhitneyu

from cir.data.facts import load_facts
from cir.experiment import bench_configs
from cir.point import point_splits
from cir.report import load_bench_results


def main() -> None:
    """Print, per run, the V facts sharing an answer with T and not, their mean drops and the test."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a bench output folder (its results.json)")
    parser.add_argument("--facts", type=Path, required=True, help="the facts file the bench ran on")
    parser.add_argument("--method", default="cir")
    parser.add_argument("--metric", default="acc_t1")
    args = parser.parse_args()
    results = load_bench_results(args.results / "results.json")
    # the split needs only the bench section; the attack section says how many T facts it trained on
    split_keys = ("split", "folds", "val_fraction")
    bench, _, _, _ = bench_configs({"bench": {k: results.config["bench"][k] for k in split_keys}})
    train_facts = results.config.get("attack", {}).get("train_facts")
    facts = load_facts(args.facts)
    for run in (r for r in results.runs if r.method == args.method):
        train, held = point_splits(facts, bench, run.seed)[run.fold]
        trained_answers = {f.choices[f.answer] for f in train[:train_facts]}
        scores: dict[str, dict[str, float]] = {}
        answers: dict[str, str] = {}
        for record in run.per_fact:
            if record.split == "V":
                scores.setdefault(record.fact, {})[record.stage] = record.scores[args.metric]
                answers[record.fact] = record.answer
        if len(held) != len(scores):
            raise SystemExit(f"{args.facts}: its split gives {len(held)} V facts, the run has {len(scores)}")
        drops = {fact: s["before"] - s["post_attack"] for fact, s in scores.items()}
        shared = [d for fact, d in drops.items() if answers[fact] in trained_answers]
        own = [d for fact, d in drops.items() if answers[fact] not in trained_answers]
        line = f"{args.method} seed {run.seed} fold {run.fold}: V answer in T {len(shared)}"
        line += f" (drop {statistics.mean(shared):.3f})" if shared else ""
        line += f", not in T {len(own)}" + (f" (drop {statistics.mean(own):.3f})" if own else "")
        if shared and own:
            line += f"; Mann-Whitney p = {mannwhitneyu(shared, own).pvalue:.2f}"
        print(line)


if __name__ == "__main__":
    main()
