import random
import time

import numpy as np
import pytest
import torch

from cir.errors import ConfigError
from cir.runtime import Stopwatch, peak_memory_bytes, resolve_device, resolve_dtype, seed_everything


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


def test_stopwatch_measures_wall_time():
    watch = Stopwatch()
    assert watch.seconds == 0.0
    with watch:
        time.sleep(0.02)
        assert watch.seconds > 0.0
    final = watch.seconds
    assert 0.015 < final < 2.0
    time.sleep(0.01)
    assert watch.seconds == final  # frozen after the block


def test_peak_memory_on_cpu_is_a_plausible_byte_count():
    peak = peak_memory_bytes(torch.device("cpu"))
    assert 10 * 2**20 < peak < 2**40  # a python process with torch loaded holds well over 10 MiB
