"""The benchmark scripts run on CPU with a tiny shape (their real runs are on a GPU)."""

import importlib.util
from pathlib import Path


def load(name):
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_per_fact_runs_tiny_on_cpu(capsys):
    result = load("gpu_per_fact").main(
        ["--shape", "tiny", "--facts", "4", "--epochs", "2", "--device", "cpu"]
    )
    assert result["device"] == "cpu" and result["facts"] == 4
    assert result["seconds_per_fact"] > 0 and result["seconds_per_fact_uncollapsed"] > 0
    assert result["collapse_overhead_ratio"] > 0 and result["tokens_per_second"] > 0
    assert '"seconds_per_fact"' in capsys.readouterr().out


def test_synthetic_facts_have_paper_like_length():
    module = load("gpu_per_fact")
    batches = module.synthetic_batches(10, 100, 32, "cpu", seed=0)
    lengths = [int(n) for b in batches for n in b.attention_mask.sum(1)]
    assert len(lengths) == 30 and min(lengths) >= 24 and max(lengths) <= 36
