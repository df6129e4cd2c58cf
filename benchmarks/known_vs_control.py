"""How many extra facts a model knows beyond what its control guesses from the choices alone.

A model trained from scratch on fact sentences can prefer the right choice merely for having seen
its string. `cir world build --extra-facts F... --control` builds the same model from text that
lists every question with all four choices but never states a fact; this script scores both
models on the same facts (choice-likelihood format) and prints, per model, acc_t0, acc_t1 and how
many facts pass the bench's known threshold, then how many pass in the model but not in the
control.

    python benchmarks/known_vs_control.py --model DIR --control DIR --facts F... [--threshold 0.25]
"""

from __future__ import annotations

import argparse
import json

from cir.data.facts import load_facts
from cir.evals.mcq import choice_likelihood_mcq
from cir.model_io import load_model


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the model trained on the facts")
    parser.add_argument("--control", required=True, help="the control: choices, never the facts")
    parser.add_argument("--facts", nargs="+", required=True)
    parser.add_argument("--threshold", type=float, default=0.25, help="known: per-fact acc_t1 >= this")
    args = parser.parse_args(argv)

    facts = [fact for path in args.facts for fact in load_facts(path)]
    known = {}
    rows = {}
    for name, folder in (("model", args.model), ("control", args.control)):
        model, tokenizer = load_model(folder, device="cpu")
        scores = choice_likelihood_mcq(model, tokenizer, facts)
        known[name] = {i for i, p in enumerate(scores.per_fact_t1) if p >= args.threshold}
        rows[name] = {"acc_t0": scores.acc_t0, "acc_t1": scores.acc_t1, "known": len(known[name])}
    rows["known_in_model_not_control"] = len(known["model"] - known["control"])
    rows["facts"] = len(facts)
    rows["threshold"] = args.threshold
    print(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
