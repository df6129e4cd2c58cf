"""Merge `cir bench` folders that ran the same bench on different methods into one results folder.

A bench of every method can be split by method (`"bench.methods=[cir]"`, ...) over machines or
over sessions, each part saved as soon as it finishes; this puts the parts back together: one
results.json with every run, the table (ratios against the best baseline across all parts),
results.md and the plots, exactly as one `cir bench` of all the methods would write them.

    python benchmarks/merge_bench.py DIR... --out DIR [--force]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cir.bench import write_bench_results
from cir.records import BenchResults
from cir.report import load_bench_results, merge_bench_results


def main(argv: list[str] | None = None) -> BenchResults:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="+", type=Path, help="bench output folders (each with results.json)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    merged = merge_bench_results([(str(p), load_bench_results(p / "results.json")) for p in args.parts])
    write_bench_results(merged, args.out, args.force)
    print((args.out / "results.md").read_text())
    return merged


if __name__ == "__main__":
    main()
