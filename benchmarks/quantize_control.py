"""The quantize attack's control: each GGUF round trip of the never-unlearned model, V per format.

`attack_on_original.py` keeps only the attacker's best over the formats; a drop after one format is
measured against the original through that same format, so this prints and writes every one.

    python benchmarks/quantize_control.py --model smollm2-135m --facts FACTS --general GENERAL \
        --config benchmarks/configs/smollm2_bench_quantize.yaml --out DIR [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cir.attacks.quantize import Quantize
from cir.data.facts import split_facts
from cir.experiment import bench_configs, raw_config
from cir.inputs import Inputs
from cir.point import load_bench


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--facts", nargs="+", type=Path, default=[])
    parser.add_argument("--general", type=Path)
    parser.add_argument("--retain", type=Path, help="needed only for a model without a world")
    parser.add_argument("--config", required=True, help="a bench config whose attack is quantize")
    parser.add_argument("--seed", type=int, default=0, help="the bench seed whose V split is scored")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    bench, loop, attack, _ = bench_configs(raw_config(args.config, []))
    inputs = Inputs(model=args.model, forget=list(args.facts), general=args.general, retain=args.retain)
    loaded, facts, _ = load_bench(inputs, bench, loop, progress=False)
    train, val = split_facts(facts, bench.val_fraction, args.seed)
    result = Quantize(attack).run(loaded.model, loaded.tokenizer, train, val, progress=False)
    names = ["none", *attack.formats]
    rows = {name: e.facts.metric(bench.metric) for name, e in zip(names, result.history, strict=True)}
    print(json.dumps(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"per_format_{bench.metric}.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
