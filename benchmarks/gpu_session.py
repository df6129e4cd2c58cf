"""One GPU session for issue 15: seconds per fact, SmolLM2-135M on CUDA vs CPU, and the bench.

Runs these steps in order; each writes `<out>/<step>.json` (wall seconds, device name, torch
version, its result or its error). A step whose file exists without an error is skipped, so a rerun
continues where the last one stopped; a failed step runs again. A failing step does not stop the
others; the exit status is 1 if any failed. Ends with a table and `<out>/summary.json`.

  per_fact_8b, per_fact_smollm2  benchmarks/gpu_per_fact.py at the Llama-3.1-8B shape (12 layers) and
                                 SmolLM2-135M's (10 layers), bf16, 64 facts, with and without collapse
  unlearn_cuda                   cir unlearn on SmolLM2-135M, float32, 3 epochs, budget 0.5
  unlearn_cpu_reference, compare the same on the CPU (--with-cpu-reference: ~10 min on 16 cores) and
                                 the before/after scores of the two side by side (--atol)
  run_cuda                       cir run on SmolLM2-135M with its preset
  bench                          cir bench, SmolLM2 config, all methods x 3 seeds (--bench)

    python benchmarks/gpu_session.py --out $OUT                       # on the GPU machine
    python benchmarks/gpu_session.py --out $OUT --with-cpu-reference --bench
    python benchmarks/gpu_session.py --tiny --model DIR --train T.jsonl --eval V.jsonl \
        --retain R.txt --general G.txt --out /tmp/s --with-cpu-reference   # CPU smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import io
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
CUDA = torch.cuda.is_available()
TINY_OVERRIDES = ["unlearn.max_epochs=1", "unlearn.batch_size=2", "attack.epochs=1", "attack.batch_size=2"]
TINY_OVERRIDES += ["method.forget_layers=[1]", "method.k_act=1", "method.k_grad=1"]
TINY_BENCH = ["--methods", "cir", "--seeds", "1", "--budget", "0.5"]
TINY_BENCH += ["bench.known_threshold=0", "bench.val_fraction=0.34"]


def device_name(device: str) -> str:
    if device.startswith("cuda") and CUDA:
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def per_fact(args: argparse.Namespace, shape: str, layers: int) -> dict:
    """benchmarks/gpu_per_fact.py's main, imported from its path."""
    spec = importlib.util.spec_from_file_location("gpu_per_fact", HERE / "gpu_per_fact.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if args.tiny:
        argv = ["--shape", "tiny", "--device", "cpu", "--dtype", "float32", "--facts", "8", "--epochs", "2"]
    else:
        argv = ["--shape", shape, "--layers", str(layers), "--device", args.device, "--dtype", "bfloat16"]
        argv += ["--facts", "64"]
    return {"argv": argv, **module.main(argv)}


def cir(args: argparse.Namespace, argv: list[str]) -> list[str]:
    """`cir ARGV` (+ the tiny overrides) in this process; raises with its stderr's end if it fails."""
    from cir.cli import main

    class Tee(io.StringIO):
        def write(self, text: str) -> int:
            sys.__stderr__.write(text)
            return super().write(text)

    argv = [*argv, "--force", *(TINY_OVERRIDES if args.tiny else [])]
    with contextlib.redirect_stderr(Tee()) as captured:
        status = main(argv)
    if status != 0:
        raise RuntimeError(f"cir exited {status}: {captured.getvalue()[-2000:].strip()}")
    return argv


def inputs(args: argparse.Namespace, command: str) -> list[str]:
    """--model and the data files (the built-in model brings its own unless given)."""
    argv = ["--model", args.model or "smollm2-135m"]
    if args.cache_dir:
        argv += ["--cache-dir", str(args.cache_dir)]
    if args.train:
        flags = {"unlearn": ["--forget"], "run": ["--train"]}.get(command, ["--facts"])
        argv += [*flags, str(args.train), *(["--eval"] if command == "run" else []), str(args.eval)]
    for flag, path in (("--retain", args.retain), ("--general", args.general)):
        argv += [flag, str(path)] if path else []
    return argv


def unlearn(args: argparse.Namespace, device: str, folder: str) -> dict:
    out = args.out / folder
    argv = ["unlearn", *inputs(args, "unlearn"), "--config", "smollm2_135m", "--device", device]
    argv += ["--dtype", "float32", "--out", str(out), "unlearn.max_epochs=3", "unlearn.budget=0.5"]
    return {"argv": cir(args, argv), "summary": json.loads((out / "summary.json").read_text())}


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def scores(record: dict) -> dict[str, float]:
    """The fact scores and the disruption figures of one epoch record, flat."""
    flat = {f"facts.{k}": v for k, v in record["facts"].items()}
    flat.update({f"disruption.{k}": v for k, v in record["disruption"].items() if v is not None})
    return flat


def compare(args: argparse.Namespace) -> dict:
    """The two unlearn runs' before/after scores side by side; agree: all within --atol."""
    records = {name: load(args.out / f"{name}.json") for name in ("unlearn_cuda", "unlearn_cpu_reference")}
    if any(record is None or record["error"] for record in records.values()):
        raise RuntimeError("compare needs unlearn_cuda and unlearn_cpu_reference to have succeeded")
    cuda, cpu = (record["result"]["summary"] for record in records.values())
    rows = []
    for stage in ("before", "after"):
        a, b = scores(cuda[stage]), scores(cpu[stage])
        rows += [
            {"stage": stage, "metric": k, "cuda": a[k], "cpu": b[k], "abs_diff": abs(a[k] - b[k])}
            for k in a
            if k in b
        ]
    worst = max(row["abs_diff"] for row in rows)
    same_epochs = cuda["epochs"] == cpu["epochs"]
    return {
        "atol": args.atol,
        "max_abs_diff": worst,
        "epochs": {"cuda": cuda["epochs"], "cpu": cpu["epochs"]},
        "stop_reason": {"cuda": cuda["stop_reason"], "cpu": cpu["stop_reason"]},
        "seconds_per_fact": {"cuda": cuda["seconds_per_fact"], "cpu": cpu["seconds_per_fact"]},
        "agree": worst <= args.atol and same_epochs,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,  # off by default; on would loosen it
        "rows": rows,
    }


def run_cuda(args: argparse.Namespace) -> dict:
    out = args.out / "run-cuda"
    argv = ["run", *inputs(args, "run"), "--config", "smollm2_135m", "--device", args.device]
    argv = cir(args, [*argv, "--out", str(out)])
    return {"argv": argv, "report": json.loads((out / "report.json").read_text())}


def bench(args: argparse.Namespace) -> dict:
    out = args.out / "bench"
    config = HERE / "configs" / "smollm2_bench.yaml"
    argv = ["bench", *inputs(args, "bench"), "--config", str(config), "--device", args.device]
    tuned = HERE / "smollm2-tune.db"
    argv += ["--tuned", str(tuned)] if tuned.is_file() else []
    argv = cir(args, [*argv, "--out", str(out), *(TINY_BENCH if args.tiny else [])])
    return {"argv": argv, "tuned": tuned.is_file(), "results_md": (out / "results.md").read_text()}


def run_step(args: argparse.Namespace, name: str, work) -> dict:
    """Run one step unless its file holds a result; write the file; return its summary row."""
    path = args.out / f"{name}.json"
    previous = load(path)
    if previous is not None and not previous.get("error"):
        return {"step": name, "status": "skipped", "wall_seconds": previous["wall_seconds"], "error": None}
    print(f"== {name}", flush=True)
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    start, result, error = time.perf_counter(), None, None
    try:
        result = work()
    except Exception as exc:  # a failing step is recorded; the session goes on
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    record = {
        "step": name,
        "wall_seconds": time.perf_counter() - start,
        "device": device_name(args.device),
        "torch": torch.__version__,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if CUDA else None,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "error": error,
        "result": result,
    }
    path.with_suffix(".tmp").write_text(json.dumps(record, indent=2))
    path.with_suffix(".tmp").replace(path)  # whole or absent: a killed step leaves no file
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()
    status = "failed" if error else "ran"
    return {"step": name, "status": status, "wall_seconds": record["wall_seconds"], "error": error}


def steps(args: argparse.Namespace) -> list[tuple[str, object]]:
    chosen = [
        ("per_fact_8b", lambda: per_fact(args, "8b", 12)),
        ("per_fact_smollm2", lambda: per_fact(args, "smollm2", 10)),
        ("unlearn_cuda", lambda: unlearn(args, args.device, "unlearn-cuda")),
    ]
    if args.with_cpu_reference:
        chosen += [
            ("unlearn_cpu_reference", lambda: unlearn(args, "cpu", "unlearn-cpu")),
            ("compare", lambda: compare(args)),
        ]
    chosen.append(("run_cuda", lambda: run_cuda(args)))
    if args.bench:
        chosen.append(("bench", lambda: bench(args)))
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "runs/gpu-session"))
    parser.add_argument("--device", help="the 'cuda' steps' device (default cuda; cpu with --tiny)")
    parser.add_argument("--with-cpu-reference", action="store_true", help="also unlearn on CPU, compare")
    parser.add_argument("--bench", action="store_true", help="also the SmolLM2 bench (all methods x 3 seeds)")
    parser.add_argument("--atol", type=float, default=1e-3, help="CUDA vs CPU tolerance on the scores")
    parser.add_argument("--cache-dir", type=Path, help="cir's cache (converted SmolLM2, its fact sets)")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes and the given model, on CPU")
    parser.add_argument("--model", help="a model folder instead of smollm2-135m (needed with --tiny)")
    for name in ("--train", "--eval", "--retain", "--general"):
        parser.add_argument(name, type=Path, help="data file (the built-in model has its own)")
    args = parser.parse_args(argv)
    if args.tiny and not (args.model and args.train and args.eval and args.retain and args.general):
        parser.error("--tiny needs --model, --train, --eval, --retain and --general")
    args.device = args.device or ("cpu" if args.tiny else "cuda")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = [run_step(args, name, work) for name, work in steps(args)]
    summary = {
        "device": device_name(args.device),
        "torch": torch.__version__,
        "tiny": args.tiny,
        "this_invocation_seconds": time.perf_counter() - start,
        "total_step_seconds": sum(row["wall_seconds"] for row in rows),
        "steps": rows,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{summary['device']}, torch {summary['torch']}, out {args.out}")
    print(f"{'step':<24}{'status':<9}{'wall s':>9}  error")
    for row in rows:
        print(f"{row['step']:<24}{row['status']:<9}{row['wall_seconds']:>9.1f}  {row['error'] or ''}")
    return 1 if any(row["status"] == "failed" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
