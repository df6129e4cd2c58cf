"""Does the attack relearn V's facts through answers it trains on? V split by answer shared with T.

On the city-country facts many facts share an answer (a country), so the T fine-tune may bring a V
fact back by training its answer on T's sentences rather than by undoing the unlearning. This reads
a bench's per-fact records (T's are written in the attack's order, so `attack.train_facts` takes
the first of them) and compares the drop of V facts whose answer is also one of the attack's T
answers with that of the others (Mann-Whitney U, `scipy.stats`). Nothing is rerun.

    python benchmarks/answer_overlap.py RESULTS_DIR [--method cir] [--metric acc_t1]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from scipy.stats import mannwhitneyu

from cir.report import load_bench_results
from cir.stats import fact_drops


def main() -> None:
    """Print, per run, the V facts sharing an answer with T and not, their mean drops and the test."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a bench output folder (its results.json)")
    parser.add_argument("--method", default="cir")
    parser.add_argument("--metric", default="acc_t1")
    args = parser.parse_args()
    results = load_bench_results(args.results / "results.json")
    train_facts = results.config.get("attack", {}).get("train_facts")
    for run in (r for r in results.runs if r.method == args.method):
        before = [r for r in run.per_fact if r.stage == "before"]
        trained_answers = {r.answer for r in [r for r in before if r.split == "T"][:train_facts]}
        answers = {r.fact: r.answer for r in before if r.split == "V"}
        drops = {fact: d for (_, fact), d in fact_drops([run], args.metric)["drop"].items()}
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
