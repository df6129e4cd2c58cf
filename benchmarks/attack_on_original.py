"""The attack on a model that was never unlearned: what it teaches V from T alone, per bench seed.

The bench's drop (V before unlearning minus V post-attack) credits a method with whatever the attack
cannot bring back. If fine-tuning on T raised V above its prior on the *original* model, the attack
would be teaching V, and the drops would be measured against a moving mark. This script runs the
bench's attack (same config sections, same per-seed T/V splits) on the original model for each
seed and reports V before and post-attack, so the rise can be set beside the seed spread.

    python benchmarks/attack_on_original.py --model smollm2-135m --facts FACTS \
        --config benchmarks/configs/smollm2_bench.yaml --out DIR [--seeds 3]

Writes DIR/attack_on_original.json (per seed, and mean ± std of each V metric's rise) and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from cir.data.facts import split_facts
from cir.experiment import bench_configs, raw_config
from cir.inputs import Inputs
from cir.outputs import write_json_atomic
from cir.point import load_bench
from cir.registry import ATTACKS
from cir.report import table
from cir.stats import V_METRICS


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder, hub id or built-in name")
    parser.add_argument(
        "--facts", nargs="+", type=Path, help="fact files (default: the model's built-in set)"
    )
    parser.add_argument("--config", help="the bench's YAML: its bench, unlearn and attack sections are used")
    parser.add_argument(
        "--general", type=Path, help="held-out text (needed only for a model without a world)"
    )
    parser.add_argument("--retain", type=Path, help="retain text (needed only for a model without a world)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (default: bench.seeds)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    bench, loop, attack_cfg, _ = bench_configs(raw_config(args.config, []))
    seeds = args.seeds if args.seeds is not None else bench.seeds
    inputs = Inputs(
        args.model, args.facts or [], retain=args.retain, general=args.general, device=args.device
    )
    loaded, facts, original = load_bench(inputs, bench, loop)
    rows, per_seed, befores = [], [], []
    start = time.perf_counter()
    for seed in range(seeds):
        train, val = split_facts(facts, bench.val_fraction, seed)
        loaded.model.load_state_dict(original)
        attack = ATTACKS.build(bench.attack, attack_cfg)
        result = attack.run(loaded.model, loaded.tokenizer, train, val, label=f"original seed {seed}")
        before, after = result.before, result.post_attack
        befores.append(before)
        per_seed.append({"seed": seed, "v_before": before.to_json(), "v_post_attack": after.to_json()})
        rows.append({"seed": seed} | {f"{m} rise": after.metric(m) - before.metric(m) for m in V_METRICS})
    summary = {m: mean_std([r[f"{m} rise"] for r in rows]) for m in V_METRICS}
    before_spread = {m: mean_std([b.metric(m) for b in befores])["std"] for m in V_METRICS}
    report = {
        "definition": "V post-attack (the attacker's best) minus V before, on the never-unlearned model",
        "facts": len(facts),
        "attack": bench.attack,
        "attack_config": result.config,
        "seeds": per_seed,
        "rise": summary,
        "v_before_std_over_seeds": before_spread,
        "seconds": time.perf_counter() - start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "attack_on_original.json", report)
    print(table(rows, list(rows[0]), markdown=True))
    print(
        "mean ± std of the rise: "
        + ", ".join(f"{m} {s['mean']:+.3f} ± {s['std']:.3f}" for m, s in summary.items())
    )
    print(f"{report['seconds']:.0f} s")
    return report


def mean_std(values: list[float]) -> dict[str, float]:
    """{"mean", "std"} of `values` (std 0 for a single value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


if __name__ == "__main__":
    main()
