"""Seconds per fact of CIR with the paper's settings on a Llama-shaped model with random weights.

Builds a `LlamaForCausalLM` from a config with Llama-3.1-8B's (or Llama-3.2-1B's) shapes, nothing
downloaded, makes N synthetic facts of paper-like length (3 sentences x ~30 tokens), and runs CIR
(forget layers 6-11, forward trimmed after layer 11, 24/36 components, batch 32) for a fixed number
of epochs. Prints seconds per fact, tokens per second and peak memory, then the same for the
uncollapsed update (k = 0) run in the same process, and the collapse overhead as a ratio.

    python benchmarks/gpu_per_fact.py --shape 8b --layers 12 --device cuda --dtype bfloat16
    python benchmarks/gpu_per_fact.py --shape demo --facts 200   # the demo model's shape, on CPU
    python benchmarks/gpu_per_fact.py --shape smollm2 --layers 10 --facts 64  # SmolLM2-135M, its preset
    python benchmarks/gpu_per_fact.py --shape tiny        # CPU smoke run (used by the tests)
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from cir.data.batches import Batch
from cir.methods.cir import CIR, Config
from cir.runtime import peak_memory_bytes, resolve_device, resolve_dtype, seed_everything

SHAPES = {
    "8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
    ),
    "1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
    ),
    "smollm2": dict(  # SmolLM2-135M
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
    ),
    "demo": dict(
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=2400,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
    ),
}
PAPER = dict(forget_layers=[6, 7, 8, 9, 10, 11], k_act=24, k_grad=36, step_norm=0.2, retain_lr=3e-4)
TINY = dict(forget_layers=[1, 2], k_act=8, k_grad=8, step_norm=0.2, retain_lr=3e-4)
DEMO = dict(forget_layers=[0, 1, 2], k_act=54, k_grad=24, step_norm=0.1, retain_lr=0.2)  # demo-tuned
SMOLLM2 = dict(forget_layers=[4, 5, 6, 7, 8, 9], k_act=24, k_grad=36, step_norm=0.3, retain_lr=3e-4)  # preset


def synthetic_batches(
    facts: int, vocab: int, batch_size: int, device: torch.device, seed: int
) -> list[Batch]:
    """3 sentences of 24-36 random tokens per fact (a BOS first), right-padded into batches."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(24, 37, (facts * 3,), generator=generator)
    batches = []
    for start in range(0, len(lengths), batch_size):
        chunk = lengths[start : start + batch_size]
        ids = torch.randint(3, vocab, (len(chunk), int(chunk.max())), generator=generator)
        ids[:, 0] = 1
        mask = (torch.arange(ids.shape[1])[None] < chunk[:, None]).long()
        batches.append(Batch(ids * mask, mask).to(device))
    return batches


def measure(model: LlamaForCausalLM, batches: list[Batch], settings: dict, epochs: int) -> dict[str, float]:
    """Setup + `epochs` epochs of CIR steps (epoch 0 gathers statistics only); wall time and peak memory."""
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    method = CIR(Config(**settings))
    method.setup(model, batches, batches)
    for epoch in range(epochs):
        for index in range(len(batches)):
            method.step(index, index, epoch)
        method.end_epoch(epoch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = sum(b.num_tokens for b in batches) * epochs
    return {
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "peak_memory_gb": peak_memory_bytes(device) / 2**30,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print and return the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=SHAPES, default="tiny")
    parser.add_argument(
        "--layers", type=int, help="keep only the first N layers (>= 12 for the paper's layers)"
    )
    parser.add_argument("--facts", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run, the first gathers statistics")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)
    seed_everything(0)
    device, dtype = resolve_device(args.device), resolve_dtype(args.dtype)
    shape = dict(SHAPES[args.shape])
    if args.layers:
        shape["num_hidden_layers"] = args.layers
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**shape, max_position_embeddings=256)).to(dtype).eval()
    batches = synthetic_batches(args.facts, shape["vocab_size"], args.batch_size, device, seed=0)
    settings = {"tiny": TINY, "demo": DEMO, "smollm2": SMOLLM2}.get(args.shape, PAPER)
    measure(model, batches[:1], settings, 2)  # warm-up: kernels, allocator, lazy initialisation
    collapsed = measure(model, batches, settings, args.epochs)
    plain = measure(model, batches, {**settings, "k_act": 0, "k_grad": 0}, args.epochs)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "shape": args.shape,
        "layers": shape["num_hidden_layers"],
        "dtype": args.dtype,
        "facts": args.facts,
        "epochs": args.epochs,
        "seconds_per_fact": collapsed["seconds"] / args.facts,
        "seconds_per_fact_uncollapsed": plain["seconds"] / args.facts,
        "collapse_overhead_ratio": collapsed["seconds"] / plain["seconds"],
        "tokens_per_second": collapsed["tokens_per_second"],
        "peak_memory_gb": collapsed["peak_memory_gb"],
        "peak_memory_gb_uncollapsed": plain["peak_memory_gb"],
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
