"""What the budget controller's checks cost: seconds of budget checks per unlearning second.

Runs the same unlearning twice in one process, on the same model, facts and settings: first with
the budget checked only at epoch ends (`unlearn.check_every=0`, the loop before issue 26), then with
the configured in-epoch schedule (default: a subset check every quarter epoch). The budget is set
out of reach (1e9) so that both runs take the same steps and only the checks differ. Prints each
run's check seconds, unlearning seconds and their ratio, and the second's cost relative to the first.

    python benchmarks/check_cost.py --model smollm2-135m --forget FACTS --general GENERAL \
        --tuned benchmarks/smollm2-tune.db --method cir [--epochs 2] [key=value ...]

Writes nothing; the numbers go into benchmarks/README.md by hand.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import replace
from pathlib import Path

from cir.config import parse_overrides, split_sections
from cir.experiment import per_method_configs, unlearn_configs
from cir.inputs import Inputs, load_inputs
from cir.tune import load_tuned
from cir.unlearn import unlearn


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or built-in name (default: the demo model)")
    parser.add_argument("--forget", nargs="+", type=Path, default=[], help="fact files to forget")
    parser.add_argument("--general", type=Path, help="the budget text")
    parser.add_argument("--retain", type=Path, help="retain texts (default: a built-in model's)")
    parser.add_argument("--tuned", help="a cir tune storage: the method's best trial at 1%%")
    parser.add_argument("--method", default="cir")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="unlearn.* and method.* key=value settings")
    args = parser.parse_args(argv)

    raw = parse_overrides(args.overrides)
    raw.setdefault("unlearn", {}).update(method=args.method, budget=1e9, max_epochs=args.epochs)
    loop, method = unlearn_configs(split_sections(raw, ["unlearn", "method"], "overrides"))
    if args.tuned:
        name = args.method
        best = load_tuned(args.tuned)[name][0.01]["overrides"]
        method = per_method_configs([name], {name: raw.get("method", {})}, {name: best})[name]
    loaded = load_inputs(
        Inputs(model=args.model, forget=args.forget, general=args.general, retain=args.retain)
    )
    original = copy.deepcopy(loaded.model.state_dict())
    runs = {
        "epoch ends only": replace(loop, check_every=0),
        f"check_every={loop.check_every:g}, check_texts={loop.check_texts}": loop,
    }
    results = {}
    for name, config in runs.items():
        loaded.model.load_state_dict(original)
        result = unlearn(loaded.model, loaded.tokenizer, loaded.data, config, method, progress=True)
        results[name] = {
            "check_seconds": result.check_seconds,
            "seconds": result.seconds,
            "ratio": result.check_seconds / result.seconds,
        }
    base, new = results.values()
    print(f"{len(loaded.data.forget_facts)} facts, {args.epochs} epochs, {args.method}")
    for name, row in results.items():
        print(
            f"{name:40s} checks {row['check_seconds']:7.1f} s of {row['seconds']:7.1f} s: {row['ratio']:.3f}"
        )
    print(f"check seconds, in-epoch / epoch-ends-only: {new['check_seconds'] / base['check_seconds']:.2f}x")
    return results


if __name__ == "__main__":
    main()
