r"""The demo gap (issue 13): which settings of the demo bench make CIR lose to Circuit Breakers?

One seed of the demo bench (benchmarks/configs/demo_bench.yaml, from the tuned settings of
benchmarks/demo-tune.db as that bench uses them), cir against circuit_breakers at the 1% budget, once
per variant. A variant is a few overrides on top of those settings:

  baseline             the tuned settings as they are
  k1, k8, k54_24       cir k_act / k_grad = 1/1, 8/8, 54/24 (54/24 is also the tuned trial's)
  layers_123, layers_3 cir forget layers [1, 2, 3] and [3]
  retain_facts_only    retain texts = 3 sentences per retain fact, without the general-grammar
                       sentences `pipeline.demo_retain` adds (a file written to <out>, passed as --retain)
  cb_paper_retain_lr   circuit_breakers' retain lr 3e-4 (the paper's, method.md §2), not the tuned one
  small_steps          both methods' step norm / 3 and unlearn.max_epochs x 3 (the epoch cap binds less)
  long_attack          attack.epochs x 3
  sgd_attack           attack.optimizer=sgd at lr SGD_LR (see its comment)

Each variant's bench goes to <out>/<variant>/, its row to <out>/<variant>.json; a variant with a row
is skipped, so a rerun continues. Every call ends by writing <out>/demo_gap.json and demo_gap.md from
the rows found: what changed, CIR's and CB's post-attack V drop (the bench's `drop`: V before
unlearning - post-attack, on bench.metric), CIR drop / CB drop and wall seconds.

    python benchmarks/demo_gap.py --out runs/demo-gap
    python benchmarks/demo_gap.py --out runs/demo-gap --variants baseline sgd_attack
    python benchmarks/demo_gap.py --out /tmp/gap --model DIR --facts F.jsonl --retain R.txt \
        --general G.txt --tuned none --set bench.known_threshold=0 unlearn.max_epochs=1   # tiny (the test)

`--set key=value ...` overrides change the base every variant starts from; a variant's own settings win.
"""

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cir.bench import run_bench
from cir.config import load_yaml, merge, parse_overrides, to_dict
from cir.data.facts import fact_sentences, load_facts, load_texts
from cir.demo import DemoPaths
from cir.errors import ConfigError
from cir.experiment import bench_configs
from cir.inputs import Inputs, default_world
from cir.outputs import write_json_atomic
from cir.point import bench_jobs, tuned_studies
from cir.tune import load_tuned

HERE = Path(__file__).resolve().parent
DEMO_BENCH = HERE / "configs" / "demo_bench.yaml"
DEMO_TUNED = HERE / "demo-tune.db"
BUDGET = 0.01
COMPARED = ["cir", "circuit_breakers"]
# The paper's SGD lr (1e-5) is for 100 epochs on Llama-3.1-8B; on the 128-wide demo model it would
# barely move the weights in 8 epochs. Plain SGD's step scales with the gradient, which is small on a
# trained model, whereas AdamW (lr 1e-3) moves every weight by about its lr; so 10x AdamW's lr.
# An untuned guess: if neither method's V comes back under it, this row says little about relearning.
SGD_LR = 1e-2


@dataclass
class Base:
    """What every variant starts from: the merged config and the settings it resolves to."""

    inputs: Inputs
    out: Path
    raw: dict[str, Any]  # demo_bench.yaml, one seed, 1%, cir and circuit_breakers, then --set
    loop: dict[str, Any]  # the unlearn section, resolved (defaults filled in)
    attack: dict[str, Any]
    methods: dict[str, dict[str, Any]]  # each compared method's config: tuned trial, then overrides


@dataclass
class Change:
    """A variant: what it changes, in words, and how."""

    what: str
    overrides: dict[str, Any] = field(default_factory=dict)
    retain: Path | None = None  # replaces Inputs.retain


def components(k_act: int, k_grad: int) -> Callable[[Base], Change]:
    return lambda base: Change(
        f"cir k_act/k_grad = {k_act}/{k_grad}", {"methods": {"cir": {"k_act": k_act, "k_grad": k_grad}}}
    )


def forget_layers(layers: list[int]) -> Callable[[Base], Change]:
    return lambda base: Change(f"cir forget layers {layers}", {"methods": {"cir": {"forget_layers": layers}}})


def retain_facts_only(base: Base) -> Change:
    """Retain texts without general sentences, written to <out>/retain_facts_only.txt.

    The demo's: 3 sentences per retain fact, as `pipeline.demo_retain` takes them. With --retain
    given (a tiny workspace): its lines that are not lines of --general.
    """
    if base.inputs.retain is None:
        world = default_world(base.inputs)
        if not isinstance(world, DemoPaths):
            raise ConfigError("retain_facts_only needs the demo world, or --retain and --general")
        texts = fact_sentences(load_facts(world.retain), 3)
    else:
        general = set(load_texts(base.inputs.general)) if base.inputs.general else set()
        texts = [t for t in load_texts(base.inputs.retain) if t not in general]
    if not texts:
        raise ConfigError("retain_facts_only: no retain text is left without the general sentences")
    path = base.out / "retain_facts_only.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return Change(f"retain texts: {len(texts)} retain-fact sentences, no general sentences", retain=path)


def small_steps(base: Base) -> Change:
    norms = {name: config["step_norm"] for name, config in base.methods.items()}
    epochs = base.loop["max_epochs"]
    what = ", ".join(f"{n} step norm {v:.3g} -> {v / 3:.3g}" for n, v in norms.items())
    methods = {n: {"step_norm": v / 3} for n, v in norms.items()}
    what += f"; max_epochs {epochs} -> {3 * epochs}"
    return Change(what, {"methods": methods, "unlearn": {"max_epochs": 3 * epochs}})


VARIANTS: dict[str, Callable[[Base], Change]] = {
    "baseline": lambda base: Change("the tuned settings as they are"),
    "k1": components(1, 1),
    "k8": components(8, 8),
    "k54_24": components(54, 24),
    "layers_123": forget_layers([1, 2, 3]),
    "layers_3": forget_layers([3]),
    "retain_facts_only": retain_facts_only,
    "cb_paper_retain_lr": lambda base: Change(
        f"circuit_breakers retain lr {base.methods['circuit_breakers']['retain_lr']:.3g} -> 3e-4",
        {"methods": {"circuit_breakers": {"retain_lr": 3e-4}}},  # the paper's, method.md §2
    ),
    "small_steps": small_steps,
    "long_attack": lambda base: Change(
        f"attack epochs {base.attack['epochs']} -> {3 * base.attack['epochs']}",
        {"attack": {"epochs": 3 * base.attack["epochs"]}},
    ),
    "sgd_attack": lambda base: Change(
        f"attack optimizer sgd, lr {SGD_LR:g}", {"attack": {"optimizer": "sgd", "lr": SGD_LR}}
    ),
}


def resolve_base(inputs: Inputs, raw: dict[str, Any], tuned: dict[str, Any], out: Path) -> Base:
    """The settings of the base config (raw config + tuned trials), which some variants scale.

    Raises:
        ConfigError: for a bad key in `raw`.
    """
    bench, loop, attack, overrides = bench_configs(raw)
    jobs = bench_jobs(bench, loop, overrides, tuned_studies(bench, tuned))
    methods = {name: to_dict(config) for name, _, config in jobs}
    return Base(inputs, out, raw, to_dict(loop), to_dict(attack), methods)


def run_variant(name: str, base: Base, tuned: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Bench variant `name` into <out>/<name>/ and write its row to <out>/<name>.json."""
    change = VARIANTS[name](base)
    inputs = replace(base.inputs, retain=change.retain) if change.retain else base.inputs
    start = time.perf_counter()
    raw = merge(base.raw, change.overrides)
    results = run_bench(inputs, raw, base.out / name, force=True, progress=progress, tuned=tuned)
    seconds = time.perf_counter() - start
    drops = {row["method"]: row["drop"] for row in results.table if row["budget"] == BUDGET}
    cir, cb = drops["cir"], drops["circuit_breakers"]
    row = {
        "variant": name,
        "what": change.what,
        "overrides": change.overrides,
        "metric": results.config["bench"]["metric"],
        "cir_drop": cir,
        "cb_drop": cb,
        "ratio": cir / cb if cb else None,
        "wall_seconds": seconds,
    }
    write_json_atomic(base.out / f"{name}.json", row)
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table of demo_gap.md."""
    metric = rows[0]["metric"] if rows else "answer_prob"
    lines = [
        f"# The demo gap: cir vs circuit_breakers, one seed, {100 * BUDGET:g}% budget",
        "",
        f"Drop = V {metric} before unlearning - post-attack (the bench's); ratio = CIR drop / CB drop.",
        "",
        "| variant | what changed | CIR drop | CB drop | ratio | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(
            f"| {r['variant']} | {r['what']} | {r['cir_drop']:.3f} | {r['cb_drop']:.3f} | {ratio} "
            f"| {r['wall_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (a rerun continues it)")
    names = list(VARIANTS)
    parser.add_argument(
        "--variants", nargs="+", choices=names, default=names, metavar="NAME", help="see above"
    )
    parser.add_argument("--tuned", default=str(DEMO_TUNED), help="cir tune storage, or `none`")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--model", help=argparse.SUPPRESS)  # with these, a tiny workspace (the test)
    for flag in ("--retain", "--general"):
        parser.add_argument(flag, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--facts", nargs="+", type=Path, default=[], help=argparse.SUPPRESS)
    parser.add_argument("--device", default="auto", help=argparse.SUPPRESS)
    parser.add_argument(
        "--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="base overrides"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the variants not yet in --out, then write demo_gap.json and demo_gap.md; returns the rows."""
    args = parse_args(argv)
    inputs = Inputs(args.model, args.facts, retain=args.retain, general=args.general, device=args.device)
    raw = merge(load_yaml(DEMO_BENCH), {"bench": {"methods": COMPARED, "budgets": [BUDGET], "seeds": 1}})
    raw = merge(raw, parse_overrides(args.set))
    tuned = {} if args.tuned == "none" else load_tuned(args.tuned)
    args.out.mkdir(parents=True, exist_ok=True)
    base = resolve_base(inputs, raw, tuned, args.out)
    for name in args.variants:
        if (args.out / f"{name}.json").is_file():
            print(f"{name}: done already, skipped")
            continue
        row = run_variant(name, base, tuned, not args.quiet)
        print(f"{name}: CIR drop {row['cir_drop']:.3f}, CB drop {row['cb_drop']:.3f}")
    rows = [
        json.loads((args.out / f"{name}.json").read_text(encoding="utf-8"))
        for name in VARIANTS
        if (args.out / f"{name}.json").is_file()
    ]
    write_json_atomic(args.out / "demo_gap.json", {"budget": BUDGET, "methods": COMPARED, "rows": rows})
    (args.out / "demo_gap.md").write_text(markdown(rows), encoding="utf-8")
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
