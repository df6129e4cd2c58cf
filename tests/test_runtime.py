import random
import time

import numpy as np
import pytest
import torch

from cir.errors import ConfigError
from cir.runtime import Stopwatch, resolve_device, resolve_dtype, seed_everything


def draw():
    return random.random(), float(np.random.rand()), torch.randn(5)


def test_seed_everything_repeats_every_generator():
    seed_everything(123)
    first = draw()
    seed_everything(123)
    second = draw()
    assert first[:2] == second[:2]
    assert torch.equal(first[2], second[2])
    seed_everything(124)
    assert not torch.equal(draw()[2], first[2])


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True])
def test_seed_everything_rejects_bad_seeds(seed):
    with pytest.raises(ConfigError, match="seed must be an integer"):
        seed_everything(seed)


def test_resolve_dtype():
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype("float16") is torch.float16
    with pytest.raises(ConfigError, match="'fp16' is not supported; use one of float32, bfloat16, float16"):
        resolve_dtype("fp16")


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="'gpu' is not a torch device"):
        resolve_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_resolve_device_refuses_missing_cuda():
    with pytest.raises(ConfigError, match="'cuda:0' requested but this machine has 0 CUDA device"):
        resolve_device("cuda:0")


def test_stopwatch_measures_the_block_and_freezes_after_it(monkeypatch):
    clock = iter([10.0, 10.25, 11.5, 99.0])  # enter, a reading inside, exit, a reading after
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    watch = Stopwatch()
    assert watch.seconds == 0.0  # before the block: no clock read
    with watch:
        assert watch.seconds == 0.25
    assert watch.seconds == 1.5  # enter to exit; the clock's later 99.0 is never read
    assert watch.seconds == 1.5


def test_peak_memory_on_cpu_rises_by_what_a_process_allocates():
    import subprocess
    import sys

    script = (
        "import torch\n"
        "from cir.runtime import peak_memory_bytes\n"
        "cpu = torch.device('cpu')\n"
        "before = peak_memory_bytes(cpu)\n"
        "block = torch.ones(256 * 2**20)  # 1 GiB, every page written\n"
        "print(before, peak_memory_bytes(cpu))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    before, after = map(int, out.split())
    # the peak before may hold a transient of torch's import above the resident size: a margin for it
    assert 700 * 2**20 <= after - before <= 1100 * 2**20
