"""Does a budget text of another kind bind earlier? Each method's general-loss rise on two texts.

Issue 28: the built-in budget text (pydoc paragraphs) comes from the same source as the retain text,
and a method whose retain step fits pydoc can lower the budget text's loss while it disrupts other
English. This runs each method once at its tuned best, with the budget out of reach (1e9) so every
epoch runs, and after every epoch measures the loss on both texts: the budget text the method was
tuned with (`--general`) and another (`--other`, e.g. the fact-set folder's
general_eval_fortunes.txt). Each budget's kept epoch is then read off both curves with the loop's
own first-breach rule (`last_epoch_within`). Same process, same weights, same steps: only the text
the budget reads differs.

    python benchmarks/budget_text.py --model smollm2-135m --forget FACTS --general GENERAL \
        --other FOLDER/general_eval_fortunes.txt --tuned benchmarks/smollm2-tune.db \
        --methods cir rmu circuit_breakers repselect --epochs 8 --out runs/budget-text.json [key=value ...]

Writes one JSON (per method: each epoch's loss on both texts and the kept epoch at each budget) and
prints a table.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from cir.budget import DisruptionBudget
from cir.config import parse_overrides, split_sections
from cir.data.batches import make_batches
from cir.data.facts import load_texts
from cir.evals.metrics import general_loss
from cir.experiment import per_method_configs, unlearn_configs
from cir.inputs import Inputs, load_inputs
from cir.outputs import write_json_atomic
from cir.runtime import set_threads
from cir.tune import load_tuned
from cir.unlearn import unlearn

BUDGETS = (0.001, 0.01)
LOOP = {"step_per": "batch", "check_every": 0, "max_backoffs": 0, "track_kl": False}  # the tuned loop


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or built-in name (default: the demo model)")
    parser.add_argument("--forget", nargs="+", type=Path, default=[], help="fact files to forget")
    parser.add_argument("--general", type=Path, help="the budget text the methods were tuned with")
    parser.add_argument("--other", type=Path, required=True, help="a budget text of another kind")
    parser.add_argument("--tuned", required=True, help="a cir tune storage: each method's best trial at 1%%")
    parser.add_argument("--methods", nargs="+", default=["cir", "rmu", "circuit_breakers", "repselect"])
    parser.add_argument("--other-paragraphs", type=int, default=32, help="first N lines of --other")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("overrides", nargs="*", help="unlearn.* key=value settings")
    args = parser.parse_args(argv)
    set_threads(args.threads)

    loaded = load_inputs(Inputs(model=args.model, forget=args.forget, general=args.general))
    model, tokenizer = loaded.model, loaded.tokenizer
    other = make_batches(tokenizer, load_texts(args.other)[: args.other_paragraphs], 64, 128)
    original = copy.deepcopy(model.state_dict())
    tuned = load_tuned(args.tuned)
    results: dict[str, dict] = {"threads": args.threads, "facts": len(loaded.data.forget_facts)}
    for method in args.methods:
        raw = parse_overrides([f"unlearn.method={method}", *args.overrides])
        raw["unlearn"] = {**LOOP, **raw["unlearn"], "budget": 1e9, "max_epochs": args.epochs}
        loop, _ = unlearn_configs(split_sections(raw, ["unlearn", "method"], "overrides"))
        config = per_method_configs([method], {}, {method: tuned[method][0.01]["overrides"]})[method]
        model.load_state_dict(original)
        other_losses = [other_loss(model, other)]
        start = time.perf_counter()
        result = unlearn(
            model,
            tokenizer,
            loaded.data,
            loop,
            config,
            on_epoch=lambda _, into=other_losses: into.append(other_loss(model, other)),
            label=method,
        )
        losses = {"general": [r.disruption.general_loss for r in result.history], "other": other_losses}
        kept = {text: {str(b): kept_epoch(values, b) for b in BUDGETS} for text, values in losses.items()}
        results[method] = {"losses": losses, "kept": kept, "seconds": time.perf_counter() - start}
        print_method(method, losses, kept)
    write_json_atomic(args.out, results)
    return results


@torch.no_grad()
def other_loss(model: torch.nn.Module, batches: list) -> float:
    return general_loss(model, batches)  # type: ignore[arg-type]


def kept_epoch(losses: list[float], budget: float) -> int:
    """The epoch the loop would keep if its budget read these losses: the last before the first breach."""
    bound = DisruptionBudget("general_loss", budget, losses[0])
    kept = 0
    for epoch, loss in enumerate(losses[1:], start=1):
        if not bound.allows(loss):
            break
        kept = epoch
    return kept


def print_method(method: str, losses: dict[str, list[float]], kept: dict[str, dict[str, int]]) -> None:
    rises = {text: [100 * (v / values[0] - 1) for v in values] for text, values in losses.items()}
    print(f"\n{method}: loss rise per epoch, % (general = the tuned budget text, other = --other)")
    for text, values in rises.items():
        print(f"  {text:8s} " + " ".join(f"{v:+6.2f}" for v in values[1:]) + f"   kept: {kept[text]}")


if __name__ == "__main__":
    main()
