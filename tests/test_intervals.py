"""Fact-level bootstrap intervals: coverage, pairing, ratios, determinism and the degenerate cases."""

import json
import math
import time
import warnings

import numpy as np
import pytest
from scipy import stats

from cir.errors import ConfigError
from cir.intervals import (
    Interval,
    aligned,
    by_unit_means,
    mean_interval,
    paired_difference_interval,
    ratio_of_means_interval,
)


def width(interval):
    assert interval.low is not None and interval.high is not None
    return interval.high - interval.low


def contains(interval, value):
    assert interval.low is not None and interval.high is not None
    return interval.low <= value <= interval.high


def test_mean_interval_covers_the_true_mean_about_95_percent_of_the_time_and_fast():
    rng = np.random.default_rng(20240601)
    start = time.perf_counter()
    covered = 0
    for i in range(300):
        sample = rng.normal(1.0, 2.0, size=40)
        interval = mean_interval(sample.tolist(), resamples=999, seed=i)
        assert interval.n == 40 and interval.level == 0.95
        assert interval.estimate == pytest.approx(float(np.mean(sample)))
        covered += contains(interval, 1.0)
    elapsed = time.perf_counter() - start
    assert 0.90 <= covered / 300 <= 0.99, covered
    assert elapsed < 10, f"300 intervals took {elapsed:.1f} s"


def test_level_sets_the_width():
    sample = np.random.default_rng(3).normal(0.0, 1.0, size=50).tolist()
    assert width(mean_interval(sample, level=0.8)) < width(mean_interval(sample, level=0.99))


def test_paired_difference_excludes_zero_and_contains_the_shift():
    rng = np.random.default_rng(7)
    a = rng.normal(2.0, 1.0, size=60)
    b = a - 0.5 + rng.normal(0.0, 0.05, size=60)
    interval = paired_difference_interval(a.tolist(), b.tolist())
    assert interval.estimate == pytest.approx(float(np.mean(a - b)))
    assert interval.excludes_zero
    assert contains(interval, 0.5)


def test_pairing_cancels_the_between_unit_variance():
    rng = np.random.default_rng(11)
    difficulty = rng.normal(0.0, 5.0, size=50)  # what a fact shares across the two methods
    a = difficulty + 0.3 + rng.normal(0.0, 0.2, size=50)
    b = difficulty + rng.normal(0.0, 0.2, size=50)
    paired = paired_difference_interval(a.tolist(), b.tolist())
    unpaired = stats.bootstrap(
        (a, b),
        lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        vectorized=True,
        n_resamples=2000,
        rng=np.random.default_rng(0),
    ).confidence_interval
    assert width(paired) < (unpaired.high - unpaired.low) / 5
    assert width(paired) < width(mean_interval(a.tolist())) / 5
    assert paired.excludes_zero and not (unpaired.low > 0 or unpaired.high < 0)


def test_ratio_of_means_contains_the_factor_and_its_estimate_is_exact():
    rng = np.random.default_rng(5)
    b = rng.uniform(0.5, 1.5, size=40)
    a = 2.0 * b + rng.normal(0.0, 0.1, size=40)
    interval = ratio_of_means_interval(a.tolist(), b.tolist())
    assert interval.estimate == float(np.mean(a)) / float(np.mean(b))
    assert contains(interval, 2.0)
    assert interval.n == 40


@pytest.mark.parametrize("b", [[-0.1, 0.05, -0.2], [0.1, -0.1, 0.0]])
def test_ratio_to_a_non_positive_baseline_has_no_bounds(b):
    a = [0.2, 0.3, 0.1]
    interval = ratio_of_means_interval(a, b)
    assert interval.low is None and interval.high is None and interval.n == 3
    mean_b = float(np.mean(b))
    expected = float(np.mean(a)) / mean_b if mean_b != 0 else math.inf
    assert interval.estimate == pytest.approx(expected)
    assert not interval.excludes_zero


def test_same_seed_same_interval_and_another_seed_another():
    sample = np.random.default_rng(2).normal(0.0, 1.0, size=30).tolist()
    other = sample[::-1]
    assert mean_interval(sample, seed=4) == mean_interval(sample, seed=4)
    assert mean_interval(sample, seed=4) != mean_interval(sample, seed=5)
    positive = [abs(x) + 0.1 for x in other]
    for function, b in ((paired_difference_interval, other), (ratio_of_means_interval, positive)):
        assert function(sample, b, seed=1) == function(sample, b, seed=1)
        assert function(sample, b, seed=1) != function(sample, b, seed=2)


def test_one_unit_has_no_bounds_and_identical_units_a_point_interval():
    for interval in (
        mean_interval([0.4]),
        paired_difference_interval([0.4], [0.1]),
        ratio_of_means_interval([0.4], [0.2]),
    ):
        assert interval.low is None and interval.high is None and interval.n == 1
    assert mean_interval([0.4]).estimate == 0.4
    assert mean_interval([0.25] * 5) == Interval(0.25, 0.25, 0.25, 5, 0.95)
    assert paired_difference_interval([1.0, 2.0], [0.5, 1.5]) == Interval(0.5, 0.5, 0.5, 2, 0.95)
    assert ratio_of_means_interval([2.0] * 3, [1.0] * 3) == Interval(2.0, 2.0, 2.0, 3, 0.95)


def test_undefined_bca_falls_back_to_the_percentile_interval_quietly():
    sample = [0.0, 1.0, 2.0]  # one resample: BCa's bias correction is infinite, its bounds nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bca = stats.bootstrap((sample,), np.mean, n_resamples=1, rng=np.random.default_rng(0))
    assert np.isnan(bca.confidence_interval.low)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        interval = mean_interval(sample, resamples=1, seed=0)
    assert interval.low is not None and interval.high is not None
    assert interval.low == interval.high == bca.bootstrap_distribution[0]


def test_mismatched_or_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match="a has 3 values but b has 2"):
        paired_difference_interval([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ConfigError, match="aligned"):
        ratio_of_means_interval([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="non-empty"):
        mean_interval([])
    with pytest.raises(ConfigError, match="non-finite"):
        mean_interval([1.0, float("nan")])
    with pytest.raises(ConfigError, match="level"):
        mean_interval([1.0, 2.0], level=95)
    with pytest.raises(ConfigError, match="resamples"):
        mean_interval([1.0, 2.0], resamples=0)


def test_by_unit_means_averages_each_units_values():
    records = [("f2", 1.0), ("f1", 0.5), ("f2", 3.0), ("f1", 0.0), ("f3", 4.0)]
    means = by_unit_means(records)
    assert means == {"f2": 2.0, "f1": 0.25, "f3": 4.0}
    assert list(means) == ["f2", "f1", "f3"]
    assert by_unit_means([]) == {}


def test_aligned_keeps_the_shared_keys_in_str_order():
    a = {"f10": 1.0, "f2": 2.0, "f1": 3.0, "only_a": 9.0}
    b = {"f1": 0.3, "f10": 0.1, "f2": 0.2, "only_b": 8.0}
    values_a, values_b, keys = aligned(a, b)
    assert keys == ["f1", "f10", "f2"]
    assert values_a == [3.0, 1.0, 2.0]
    assert values_b == [0.3, 0.1, 0.2]
    assert aligned({1: 1.0, 2: 2.0}, {"1": 5.0}) == ([], [], [])


def test_interval_round_trips_through_json():
    for interval in (Interval(0.257, 0.18, 0.331, 40, 0.95), Interval(0.1, None, None, 1, 0.9)):
        data = json.loads(json.dumps(interval.to_json()))
        assert set(data) == {"estimate", "low", "high", "n", "level"}
        assert Interval.from_json(data) == interval
    with pytest.raises(ConfigError, match="level"):
        Interval.from_json({"estimate": 0.1, "low": None, "high": None, "n": 1})


def test_excludes_zero_and_format():
    assert Interval(0.2, 0.1, 0.3, 10, 0.95).excludes_zero
    assert Interval(-0.2, -0.3, -0.1, 10, 0.95).excludes_zero
    assert not Interval(0.2, -0.1, 0.3, 10, 0.95).excludes_zero
    assert not Interval(0.2, 0.0, 0.3, 10, 0.95).excludes_zero
    assert not Interval(0.2, None, None, 1, 0.95).excludes_zero
    assert Interval(0.2571, 0.18, 0.3312, 40, 0.95).format() == "0.257 [0.180, 0.331]"
    assert Interval(0.2571, 0.18, 0.3312, 40, 0.95).format(digits=1) == "0.3 [0.2, 0.3]"
    assert Interval(0.2571, None, None, 1, 0.95).format() == "0.257"
