"""Seeding, device and dtype resolution, wall-clock timing and peak memory; nothing runs at import."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import numpy as np
import torch

from cir.errors import ConfigError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
MAX_SEED = 2**32 - 1  # numpy's legacy seeding accepts 0 .. 2**32 - 1


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy's global generator and torch (every CUDA device too).

    Args:
        seed: A non-negative integer below 2**32.

    Raises:
        ConfigError: if `seed` is not an integer in 0 .. 2**32 - 1.

    """
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds the CPU and every CUDA device
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a device name into a `torch.device`; "auto" picks CUDA when available, else the CPU.

    Args:
        name: "auto", or any torch device string such as "cpu", "cuda" or "cuda:1".

    Returns:
        The device.

    Raises:
        ConfigError: if the name is not a torch device, or names a CUDA device this machine lacks.

    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(
            f"device {name!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from error
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index is not None and device.index >= count):
            raise ConfigError(
                f"device {name!r} requested but this machine has {count} CUDA device(s); use 'auto' or 'cpu'"
            )
    return device


def resolve_dtype(name: str) -> torch.dtype:
    """Turn a dtype name into a `torch.dtype`.

    Args:
        name: One of "float32", "bfloat16", "float16".

    Returns:
        The dtype.

    Raises:
        ConfigError: if the name is not one of the valid names (the message lists them).

    """
    if name not in DTYPES:
        raise ConfigError(f"dtype {name!r} is not supported; use one of {', '.join(DTYPES)}")
    return DTYPES[name]


class Stopwatch:
    """Measure wall-clock seconds of a `with` block (`time.perf_counter`).

    `seconds` is the elapsed time so far while the block runs, and the final duration after it.
    """

    def __init__(self) -> None:
        self._start: float | None = None
        self._stop: float | None = None

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        self._stop = None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Elapsed wall seconds (0.0 before the block starts)."""
        if self._start is None:
            return 0.0
        end = self._stop if self._stop is not None else time.perf_counter()
        return end - self._start


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory in bytes: allocated CUDA memory on a CUDA device, else the process's peak RSS.

    Args:
        device: The device the work ran on. For CUDA, reset the counter with
            `torch.cuda.reset_peak_memory_stats` before the measured work; the CPU figure is the peak
            since the process started and cannot be reset.

    Returns:
        The peak in bytes.

    """
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource  # POSIX only, so imported where it is used

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS reports bytes, Linux KiB


@contextmanager
def interrupt_flag() -> Iterator[threading.Event]:
    """Turn the first Ctrl-C into a flag the loop checks after each step; a second one aborts."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def cache_root(cache_dir: Path | None = None) -> Path:
    """`cache_dir`, else `$XDG_CACHE_HOME/cir`, else `~/.cache/cir`."""
    if cache_dir is not None:
        return Path(cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cir"


DEFAULT_THREADS = 2  # the command line's default: the count the committed CPU results were run at


def set_threads(count: int) -> None:
    """Fix torch's intra-op CPU threads (a float sum's order, so its last bits, depends on them).

    Raises:
        ConfigError: for a count below 1.
    """
    if count < 1:
        raise ConfigError(f"--threads must be at least 1, got {count}")
    torch.set_num_threads(count)
