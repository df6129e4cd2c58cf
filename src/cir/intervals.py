"""Bootstrap confidence intervals for the bench's statistics, resampling facts.

The unit of resampling is the **fact**. A bench scores the same facts under several seeds, and a
fact's scores across seeds share the fact (its difficulty, how well the model knew it, how its
tokens interact with the method), so the (seed, fact) pairs are not independent: resampling them
as if they were would count each fact several times over and give intervals that are too narrow.
Callers therefore first collapse each fact's values to one number, its mean over the seeds it was
scored in (`by_unit_means`), pair two such collapsed sets by fact where a statistic compares them
(`aligned`), and resample those per-fact values.

The intervals are `scipy.stats.bootstrap`'s (BCa by default, falling back to the percentile
interval on the same bootstrap distribution when BCa is undefined, e.g. a degenerate jackknife),
seeded so that the same inputs give the same interval. Two cases get no resampling at all:

- fewer than 2 units: the bounds are None (nothing to resample);
- all units identical (zero variance): low = high = estimate, since every resample gives the
  estimate back.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from scipy import stats

from cir.errors import ConfigError

DEFAULT_LEVEL = 0.95
DEFAULT_RESAMPLES = 2000

Key = TypeVar("Key", bound=Hashable)  # a unit: a fact id, or (seed, fact)


@dataclass(frozen=True)
class Interval:
    """A statistic's estimate and its bootstrap confidence interval over `n` resampled units."""

    estimate: float
    low: float | None  # None: no interval (fewer than 2 units, or an undefined statistic)
    high: float | None
    n: int  # the number of units (facts) resampled
    level: float = DEFAULT_LEVEL  # the confidence level, e.g. 0.95

    def to_json(self) -> dict[str, Any]:
        """The JSON form: `{"estimate", "low", "high", "n", "level"}` (low/high null without bounds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Interval:
        """Read `to_json`'s form back.

        Raises:
            ConfigError: if a key is missing.
        """
        missing = [key for key in ("estimate", "low", "high", "n", "level") if key not in data]
        if missing:
            raise ConfigError(f"interval JSON lacks {missing}; it needs estimate, low, high, n and level")
        low, high = data["low"], data["high"]
        return cls(
            float(data["estimate"]),
            None if low is None else float(low),
            None if high is None else float(high),
            int(data["n"]),
            float(data["level"]),
        )

    @property
    def excludes_zero(self) -> bool:
        """True iff both bounds exist and the interval lies strictly on one side of 0."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def format(self, digits: int = 3) -> str:
        """E.g. `"0.257 [0.180, 0.331]"`; just the estimate when there are no bounds."""
        text = f"{self.estimate:.{digits}f}"
        if self.low is None or self.high is None:
            return text
        return f"{text} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def by_unit_means(records: Iterable[tuple[Hashable, float]]) -> dict[Hashable, float]:
    """The mean value of each unit key over its records, e.g. each fact's mean over the seeds.

    `records` are `(key, value)` pairs, a key appearing once per seed it was scored in; the result
    keeps the keys in first-seen order.
    """
    sums: dict[Hashable, float] = {}
    counts: dict[Hashable, int] = {}
    for key, value in records:
        sums[key] = sums.get(key, 0.0) + float(value)
        counts[key] = counts.get(key, 0) + 1
    return {key: sums[key] / counts[key] for key in sums}


def aligned(a: Mapping[Key, float], b: Mapping[Key, float]) -> tuple[list[float], list[float], list[Key]]:
    """The values of the keys both `a` and `b` have, paired, in the order of the keys' `str`.

    Returns `(values of a, values of b, keys)`, the i-th of each belonging to the same unit.
    """
    keys = sorted(set(a) & set(b), key=str)
    return [float(a[key]) for key in keys], [float(b[key]) for key in keys], keys


def mean_interval(
    values: Sequence[float],
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The mean of per-unit `values` and its bootstrap interval (units resampled with replacement).

    Raises:
        ConfigError: if `values` is empty or not finite, `level` is not in (0, 1) or `resamples` < 1.
    """
    x = _sample(values, "values")
    return _interval((x,), _mean, float(np.mean(x)), level, resamples, seed)


def paired_difference_interval(
    a: Sequence[float],
    b: Sequence[float],
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The mean of `a - b` over units and its bootstrap interval, `a[i]` and `b[i]` being unit i's.

    Resampling the per-unit differences keeps each unit's pair together, so what the units share
    (e.g. a fact's difficulty under both methods) cancels and the interval is the paired one.

    Raises:
        ConfigError: if `a` and `b` differ in length (align them with `aligned` first), are empty or
            not finite, `level` is not in (0, 1) or `resamples` < 1.
    """
    x, y = _pair(a, b)
    return mean_interval(list(x - y), level, resamples, seed)


def ratio_of_means_interval(
    a: Sequence[float],
    b: Sequence[float],
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """`mean(a) / mean(b)` and its bootstrap interval, units resampled as `(a[i], b[i])` pairs.

    `b` is the baseline (e.g. the best baseline method's per-fact drop). A ratio to a baseline whose
    mean is not positive has no meaning (it would flip or blow up the comparison), so then no
    interval is computed: the bounds are None and the estimate is `mean(a) / mean(b)`, or `inf` when
    `mean(b)` is 0. With a positive but small baseline mean, resamples whose baseline mean is not
    positive make the bootstrap distribution heavy-tailed; a bound that comes out non-finite is None.

    Raises:
        ConfigError: if `a` and `b` differ in length (align them with `aligned` first), are empty or
            not finite, `level` is not in (0, 1) or `resamples` < 1.
    """
    x, y = _pair(a, b)
    mean_a, mean_b = float(np.mean(x)), float(np.mean(y))
    if mean_b <= 0:
        estimate = mean_a / mean_b if mean_b != 0 else math.inf
        _check_settings(level, resamples)
        return Interval(estimate, None, None, len(x), level)
    return _interval((x, y), _ratio_of_means, mean_a / mean_b, level, resamples, seed)


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def _ratio_of_means(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):  # a resample's baseline mean may be 0
        return np.mean(x, axis=axis) / np.mean(y, axis=axis)


def _sample(values: Sequence[float], name: str) -> np.ndarray:
    """`values` as a 1-D float array.

    Raises:
        ConfigError: if it is empty, not 1-D or has a non-finite value.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ConfigError(f"{name} must be a non-empty sequence of numbers (got shape {x.shape})")
    if not np.all(np.isfinite(x)):
        bad = np.flatnonzero(~np.isfinite(x)).tolist()
        raise ConfigError(f"{name} has non-finite values (nan or inf) at indices {bad}")
    return x


def _pair(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """`a` and `b` as float arrays of one length, unit i's values at index i.

    Raises:
        ConfigError: if their lengths differ, or either is empty or not finite.
    """
    x, y = _sample(a, "a"), _sample(b, "b")
    if len(x) != len(y):
        raise ConfigError(
            f"a has {len(x)} values but b has {len(y)}: paired values must be aligned per unit "
            "(use cir.intervals.aligned to keep the units both have)"
        )
    return x, y


def _check_settings(level: float, resamples: int) -> None:
    """Check the interval settings.

    Raises:
        ConfigError: if `level` is not in (0, 1) or `resamples` < 1.
    """
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), e.g. 0.95 (got {level})")
    if resamples < 1:
        raise ConfigError(f"resamples must be at least 1 (got {resamples})")


def _interval(
    data: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray],
    estimate: float,
    level: float,
    resamples: int,
    seed: int,
) -> Interval:
    """The bootstrap interval of `statistic` over the units of `data` (paired across its samples).

    Raises:
        ConfigError: if `level` is not in (0, 1) or `resamples` < 1.
    """
    _check_settings(level, resamples)
    n = len(data[0])
    if n < 2:
        return Interval(estimate, None, None, n, level)
    if all(np.ptp(sample) == 0 for sample in data):  # every resample gives the estimate back
        return Interval(estimate, estimate, estimate, n, level)
    options: dict[str, Any] = {
        "n_resamples": resamples,
        "vectorized": True,
        "paired": len(data) > 1,
        "axis": -1,
        "confidence_level": level,
        "rng": np.random.default_rng(seed),  # scipy >= 1.15
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # BCa undefined: handled below
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's nan arithmetic in that undefined BCa
        result = stats.bootstrap(data, statistic, method="BCa", **options)
        low, high = result.confidence_interval
        if not (np.isfinite(low) and np.isfinite(high)):  # same bootstrap distribution, percentile
            options.update(n_resamples=0, bootstrap_result=result)
            low, high = stats.bootstrap(data, statistic, method="percentile", **options).confidence_interval
    return Interval(estimate, _bound(low), _bound(high), n, level)


def _bound(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
