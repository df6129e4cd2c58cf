"""The `cir` command: parse arguments, build a config, call one library function, print the result."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from transformers.utils import logging as transformers_logging

import cir.attacks
import cir.methods  # noqa: F401  (registers the methods)
from cir.bench import run_bench
from cir.config import merge, split_overrides
from cir.data.facts import load_facts, load_texts
from cir.demo import DemoConfig, build_demo, load_demo
from cir.errors import CirError
from cir.evals.scores import MCQ_FORMATS, McqFormat, score_files
from cir.experiment import raw_config
from cir.export import WRITABLE, export_gguf, template_path
from cir.fact_sets import FactSetConfig, build_fact_sets
from cir.inputs import Inputs
from cir.model_io import load_model
from cir.outputs import check_output_dir
from cir.pipeline import run, run_attack, run_unlearn
from cir.real_demo import fact_sets_markdown, run_real_demo
from cir.registry import ATTACKS, METHODS, PROBES
from cir.report import (
    attack_text,
    bench_markdown,
    demo_build_text,
    eval_table,
    load_bench_results,
    registry_table,
    run_markdown,
    tuned_note,
    unlearn_text,
)
from cir.robustness import robustness_markdown, write_robustness
from cir.runtime import DEFAULT_THREADS, set_threads
from cir.tune import best_text, load_tuned, tune, tune_all


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad input, 130 for Ctrl-C)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Loading a small model is instant; transformers' per-tensor bars would only clutter our own.
    transformers_logging.disable_progress_bar()
    try:
        if getattr(args, "threads", None) is not None:
            set_threads(args.threads)  # before any work: the count changes CPU results in the last bits
        args.handler(args)
    except CirError as error:
        print(f"cir: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cir: interrupted", file=sys.stderr)
        return 130
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse a command line whose `section.key=value` overrides may stand anywhere on it.

    The overrides are taken out first (`split_overrides`), so an option taking a list (`--budget
    0.01`) cannot swallow them; they go to `args.overrides`, ahead of any other positional ones.
    """
    parser = build_parser()
    rest, overrides = split_overrides(argv)
    args = parser.parse_args(rest)
    if not hasattr(args, "overrides"):
        if overrides:
            parser.error(f"`cir {args.command}` takes no key=value overrides, got {overrides[0]!r}")
        return args
    args.overrides = [*overrides, *args.overrides]
    return args


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their arguments."""
    parser = argparse.ArgumentParser(prog="cir", description="Robust, non-disruptive unlearning (CIR).")
    commands = parser.add_subparsers(dest="command", required=True)
    adders = (_add_world, _add_facts, _add_eval, _add_unlearn, _add_attack, _add_run, _add_bench, _add_tune)
    for add in (*adders, _add_export, _add_demo):
        add(commands)
    commands.add_parser("methods", help="list the unlearning methods").set_defaults(handler=cmd_methods)
    commands.add_parser("attacks", help="list the attacks").set_defaults(handler=cmd_attacks)
    commands.add_parser("probes", help="list the probes (ways of scoring V)").set_defaults(handler=cmd_probes)
    robust = commands.add_parser(
        "robustness",
        help="methods x (attack, probe) from several benches (one per attack), with the worst case",
    )
    robust.add_argument("results", nargs="+", type=Path, help="bench output folders (their results.json)")
    robust.add_argument("--out", type=Path, required=True, help="output folder")
    robust.add_argument("--force", action="store_true", help="replace an existing --out")
    robust.set_defaults(handler=cmd_robustness)
    return parser


def _add_world(commands: argparse._SubParsersAction) -> None:
    world = commands.add_parser("world", help="the embedded demo world and model")
    build = world.add_subparsers(dest="action", required=True).add_parser(
        "build", help="generate the world and train the demo model (cached)"
    )
    build.add_argument(
        "--extra-facts", nargs="+", type=Path, default=[], help="fact files to add to pretraining"
    )
    build.add_argument(
        "--control", action="store_true", help="control: extra questions and choices, no facts"
    )
    _cache_arg(build)
    build.set_defaults(handler=cmd_world_build)


def _add_facts(commands: argparse._SubParsersAction) -> None:
    facts = commands.add_parser("facts", help="real-knowledge fact sets a pretrained model knows")
    build = facts.add_subparsers(dest="action", required=True).add_parser(
        "build", help="generate the domains, keep the facts the model knows, write one folder"
    )
    build.add_argument("--model", default="smollm2-135m", help="model folder, .gguf or built-in name")
    build.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    build.add_argument("--force", action="store_true", help="replace an existing output folder")
    build.add_argument("--threshold", type=float, default=0.5, help="known: per-fact acc_t1 >= this")
    build.add_argument("--seed", type=int, default=0, help="distractor draws and the T/V split")
    _model_args(build)
    _cache_arg(build)
    build.set_defaults(handler=cmd_facts_build)


def _add_eval(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="accuracy and answer probability of a model on fact files")
    evaluate.add_argument("--model", help="model folder or hub id (default: the demo model)")
    evaluate.add_argument("--facts", nargs="+", type=Path, help="fact files (default: the demo's)")
    evaluate.add_argument("--general", type=Path, help="text file for the general-text loss")
    evaluate.add_argument("--format", choices=["choice", "letter", "both"], default="choice")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _model_args(evaluate)
    _cache_arg(evaluate)
    evaluate.set_defaults(handler=cmd_eval)


def _add_export(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="write an unlearned model as a GGUF file (llama.cpp, ollama)")
    export.add_argument("--model", required=True, help="the unlearned model folder")
    export.add_argument("--gguf", action="store_true", required=True, help="the format (the only one)")
    export.add_argument(
        "--template", required=True, help="the GGUF file (or built-in name) the model was converted from"
    )
    export.add_argument(
        "--type", default="like_input", choices=WRITABLE, help="each tensor's type (default: the template's)"
    )
    export.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    export.add_argument("--force", action="store_true", help="replace an existing output folder")
    _model_args(export)
    _cache_arg(export)
    export.set_defaults(handler=cmd_export)


def _add_unlearn(commands: argparse._SubParsersAction) -> None:
    unlearn = commands.add_parser("unlearn", help="unlearn facts under a disruption budget")
    _job_args(unlearn)
    unlearn.set_defaults(handler=cmd_unlearn)


def _add_attack(commands: argparse._SubParsersAction) -> None:
    attack = commands.add_parser("attack", help="relearning attack: train on T, score V every epoch")
    attack.add_argument("--model", required=True, help="the (unlearned) model folder or hub id")
    attack.add_argument("--train", type=Path, required=True, help="T facts (.jsonl) the attack trains on")
    attack.add_argument("--eval", type=Path, required=True, help="V facts (.jsonl) it is scored on")
    attack.add_argument("--attack", default="finetune", help="finetune, lora, few_shot (see `cir attacks`)")
    _output_args(attack, "YAML config file with an `attack:` section", "e.g. attack.epochs=50")
    _model_args(attack)
    _cache_arg(attack)
    attack.set_defaults(handler=cmd_attack)


def _add_run(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="unlearn T + V, attack with T, report V: one folder")
    _job_args(run)
    run.add_argument("--train", type=Path, help="T facts (.jsonl); default: the demo's T split")
    run.add_argument("--eval", type=Path, help="V facts (.jsonl); default: the demo's V split")
    run.add_argument("--attack", default="finetune", help="finetune, lora, few_shot (see `cir attacks`)")
    run.set_defaults(handler=cmd_run)


def _add_bench(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="every method at the same budgets, attack and seeds")
    _bench_input_args(bench)
    bench.add_argument("--methods", nargs="+", help="methods to compare (default: see bench.methods)")
    bench.add_argument("--budget", nargs="+", type=float, help="budgets, e.g. 0.001 0.01")
    bench.add_argument("--seeds", type=int, help="number of seeds")
    bench.add_argument(
        "--tuned", help="`cir tune` storage (URL or SQLite path): use each study's best params"
    )
    _output_args(bench, "YAML with sections bench, unlearn, attack, methods", "e.g. attack.epochs=5")
    bench.set_defaults(handler=cmd_bench)


def _add_tune(commands: argparse._SubParsersAction) -> None:
    tune_cmd = commands.add_parser("tune", help="Optuna study per method at one budget (resumable)")
    tune_cmd.add_argument("--method", required=True, help="a method, or `all` for every bench.methods")
    tune_cmd.add_argument("--trials", type=int, help="trials to add to each study (sets tune.trials)")
    tune_cmd.add_argument("--storage", help="Optuna storage URL or SQLite path (sets tune.storage)")
    tune_cmd.add_argument("--study", help="study name, one method only (sets tune.study)")
    tune_cmd.add_argument("--budget", type=float, help="disruption budget of every trial (sets tune.budget)")
    tune_cmd.add_argument("--seed", type=int, help="T/V split and data order, sampler seed (sets tune.seed)")
    tune_cmd.add_argument("--worker", type=int, help="machine number in a shared study (sets tune.worker)")
    _bench_input_args(tune_cmd)
    tune_cmd.add_argument("--config", help="YAML with sections tune, bench, unlearn, attack, methods")
    tune_cmd.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. tune.trials=8")
    tune_cmd.set_defaults(handler=cmd_tune)


def _add_demo(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo", help="build the demo model, unlearn its forget domain with CIR, attack"
    )
    demo.add_argument(
        "--model", help="a built-in pretrained model (smollm2-135m) instead of the embedded demo model"
    )
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    _threads_arg(demo)
    demo.add_argument("--out", type=Path, help="output folder (default: runs/demo-<time>)")
    demo.add_argument("--force", action="store_true", help="replace an existing output folder")
    demo.add_argument("overrides", nargs="*", metavar="key=value")
    _cache_arg(demo)
    demo.set_defaults(handler=cmd_demo)


def _output_args(parser: argparse.ArgumentParser, config_help: str, override_help: str) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    parser.add_argument("--config", help=config_help)
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=override_help)


def _bench_input_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model folder or hub id (default: the demo model)")
    parser.add_argument(
        "--facts", nargs="+", type=Path, help="fact files, pooled then split per seed (default: demo)"
    )
    parser.add_argument("--retain", type=Path, help="texts to keep (.jsonl facts or .txt lines)")
    parser.add_argument("--general", type=Path, help="held-out general text (.txt) for the budget")
    parser.add_argument(
        "--heldout", type=Path, help="facts of other domains, for selectivity (default: a built-in model's)"
    )
    _model_args(parser)
    _cache_arg(parser)


def _cache_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, help="demo model cache (default: $XDG_CACHE_HOME/cir)")


def _threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"torch's CPU threads (default {DEFAULT_THREADS}): CPU results repeat bit for bit only at the "
        "same count, which every summary records",
    )


def _model_args(parser: argparse.ArgumentParser) -> None:
    _threads_arg(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--device-map", help="accelerate device map (e.g. auto) for a model larger than one GPU"
    )
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="allow a checkpoint's own code to run"
    )


def _job_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model folder or hub id (default: the demo model)")
    parser.add_argument("--forget", nargs="+", type=Path, default=[], help="fact files to forget")
    parser.add_argument("--retain", type=Path, help="texts to keep (.jsonl facts or .txt lines)")
    parser.add_argument("--general", type=Path, help="held-out general text (.txt) for the budget")
    _output_args(parser, "YAML config file or preset name (e.g. paper_llama8b)", "e.g. unlearn.budget=0.01")
    _model_args(parser)
    _cache_arg(parser)


def _inputs(args: argparse.Namespace, forget: list[Path] | None = None) -> Inputs:
    return Inputs(
        model=args.model,
        forget=list(args.forget if forget is None else forget),
        retain=getattr(args, "retain", None),  # `cir attack` has neither
        general=getattr(args, "general", None),
        heldout=getattr(args, "heldout", None),  # bench and tune only
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        device_map=args.device_map,
        cache_dir=args.cache_dir,
    )


def cmd_world_build(args: argparse.Namespace) -> None:
    """`cir world build`."""
    config = DemoConfig(extra_facts=args.extra_facts, extra_sentences=not args.control)
    paths = build_demo(config, cache_dir=args.cache_dir)
    report = json.loads(paths.report.read_text())
    print(f"demo model: {paths.model}  (built in {report['build_seconds']:.0f} s)")
    print(demo_build_text(report))


def cmd_eval(args: argparse.Namespace) -> None:
    """`cir eval`: every fact file is read before the model loads (or the demo model is built)."""
    given = {str(path): load_facts(path) for path in args.facts or []}
    given_general = {str(args.general): load_texts(args.general)} if args.general is not None else {}
    if args.model is None:
        paths = build_demo(cache_dir=args.cache_dir)
        facts_files = args.facts or [paths.forget_train, paths.forget_val, paths.retain]
        general = args.general or paths.general_eval
    else:
        facts_files, general = args.facts or [], args.general
    facts = given or {str(path): load_facts(path) for path in facts_files}
    general_texts = given_general or ({str(general): load_texts(general)} if general is not None else {})
    if args.model is None:
        model, tokenizer = load_demo(paths, args.device)
    else:
        model, tokenizer = load_model(
            args.model, args.device, args.dtype, args.trust_remote_code, args.device_map, args.cache_dir
        )
    formats: tuple[McqFormat, ...] = MCQ_FORMATS if args.format == "both" else (args.format,)
    results = score_files(model, tokenizer, facts, formats, general_texts)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(eval_table(results))


def cmd_export(args: argparse.Namespace) -> None:
    """`cir export --gguf`: checks the template and the output folder before the model loads."""
    template_path(args.template)
    check_output_dir(args.out, args.force, protected=[Path(args.model)])
    model, _ = load_model(args.model, "cpu", "float32", args.trust_remote_code, None, args.cache_dir)
    summary = export_gguf(model, args.template, args.out, args.type, args.force, args.cache_dir)
    print(
        f"wrote {summary.gguf}: {len(summary.changed)} tensors from the model, {len(summary.copied)} copied "
        f"from {summary.template}, {len(summary.requantized)} re-quantized"
    )


def cmd_unlearn(args: argparse.Namespace) -> None:
    """`cir unlearn`."""
    result = run_unlearn(_inputs(args), raw_config(args.config, args.overrides), args.out, args.force)
    print(unlearn_text(result, args.out))


def cmd_attack(args: argparse.Namespace) -> None:
    """`cir attack`."""
    inputs = replace(_inputs(args, forget=[]), train=args.train, eval=args.eval)
    result = run_attack(inputs, args.attack, raw_config(args.config, args.overrides), args.out, args.force)
    print(attack_text(result, args.out))


def cmd_run(args: argparse.Namespace) -> None:
    """`cir run`."""
    inputs = replace(_inputs(args), train=args.train, eval=args.eval)
    report = run(inputs, raw_config(args.config, args.overrides), args.attack, args.out, args.force)
    print(run_markdown(report))
    print(f"output: {args.out}")


def cmd_bench(args: argparse.Namespace) -> None:
    """`cir bench`: flags are shorthands for bench.* overrides."""
    shorthands = {"methods": args.methods, "budgets": args.budget, "seeds": args.seeds}
    flags = {"bench": {k: v for k, v in shorthands.items() if v is not None}}
    raw = merge(raw_config(args.config, args.overrides), flags)
    tuned = load_tuned(args.tuned) if args.tuned else None
    results = run_bench(_inputs(args, list(args.facts or [])), raw, args.out, args.force, tuned=tuned)
    print(bench_markdown(results))
    if tuned is not None:
        print(tuned_note(results))
    print(f"output: {args.out}")


def cmd_tune(args: argparse.Namespace) -> None:
    """`cir tune`: flags are shorthands for tune.* overrides; prints each study's best value and params."""
    flags = tune_flags(args)
    raw = merge(raw_config(args.config, args.overrides), {"tune": flags} if flags else {})
    inputs = _inputs(args, list(args.facts or []))
    studies = tune_all(inputs, raw) if args.method == "all" else [tune(inputs, raw, args.method)]
    for study in studies:
        print(best_text(study))


def tune_flags(args: argparse.Namespace) -> dict[str, object]:
    """The `tune:` keys set by `cir tune`'s flags; a flag not given leaves the config's value."""
    given = {key: getattr(args, key) for key in ("trials", "budget", "seed", "worker", "storage", "study")}
    return {key: value for key, value in given.items() if value is not None}


def cmd_demo(args: argparse.Namespace) -> None:
    """`cir demo`: build (cached) -> eval -> CIR unlearn (budget-stopped) -> attack -> report."""
    out = args.out or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    if args.model is not None:
        _real_demo(args, out)
        return
    paths = build_demo(cache_dir=args.cache_dir)
    build_report = json.loads(paths.report.read_text())
    print(f"demo model: {paths.model}")
    print(demo_build_text(build_report))
    report = run(
        Inputs(cache_dir=args.cache_dir), raw_config(None, args.overrides), "finetune", out, args.force
    )
    print(run_markdown(report))
    print(f"output: {out}")
    print("The same on a real pretrained model (SmolLM2-135M): cir demo --model smollm2-135m")


def _real_demo(args: argparse.Namespace, out: Path) -> None:
    overrides = raw_config(None, args.overrides)
    demo = run_real_demo(args.model, overrides, out, args.force, args.cache_dir, args.device)
    print(demo.markdown())
    print(f"output: {out}")


def cmd_facts_build(args: argparse.Namespace) -> None:
    """`cir facts build`."""
    model, tokenizer = load_model(
        args.model, args.device, args.dtype, args.trust_remote_code, args.device_map, args.cache_dir
    )
    config = FactSetConfig(known_threshold=args.threshold, seed=args.seed)
    print(fact_sets_markdown(build_fact_sets(model, tokenizer, args.out, config, args.force)))
    print(f"output: {args.out}")


def cmd_methods(args: argparse.Namespace) -> None:
    """`cir methods`."""
    print(registry_table(METHODS, "method"))


def cmd_attacks(args: argparse.Namespace) -> None:
    """`cir attacks`."""
    print(registry_table(ATTACKS, "attack"))


def cmd_robustness(args: argparse.Namespace) -> None:
    """`cir robustness`: read every bench first, then write the matrix."""
    parts = [(str(folder), load_bench_results(folder / "results.json")) for folder in args.results]
    check_output_dir(args.out, args.force)
    print(robustness_markdown(write_robustness(parts, args.out, args.force)))
    print(f"output: {args.out}")


def cmd_probes(args: argparse.Namespace) -> None:
    """`cir probes`."""
    print(registry_table(PROBES, "probe"))
