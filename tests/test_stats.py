"""promptloop_env.stats: the intervals against scipy and by hand, seeding, pairing, degenerate samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from promptloop_env.stats import bootstrap_ci, mean_ci, paired_difference, rate_ci, rounded, t_ci


def test_t_ci_is_the_textbook_one():
    values = np.random.default_rng(0).normal(size=40)
    stats = t_ci(values)
    half = 2.0227 * values.std(ddof=1) / math.sqrt(40)  # t(0.975, 39)
    assert stats["mean"] == pytest.approx(values.mean())
    assert stats["ci_high"] - stats["mean"] == pytest.approx(half, rel=1e-4)
    assert stats["n"] == 40 and stats["std"] == pytest.approx(values.std(ddof=1))


def test_bootstrap_is_seeded_and_close_to_t_on_a_normal_sample():
    values = np.random.default_rng(1).normal(0.5, 0.1, size=200)
    first, again = bootstrap_ci(values, seed=3), bootstrap_ci(values, seed=3)
    assert first == again
    assert bootstrap_ci(values, seed=4) != first
    t = t_ci(values)
    assert first["ci_low"] == pytest.approx(t["ci_low"], abs=0.005)
    assert first["ci_high"] == pytest.approx(t["ci_high"], abs=0.005)
    assert mean_ci(values, method="bootstrap", seed=3) == first


def test_paired_difference_is_narrower_than_the_unpaired_one():
    rng = np.random.default_rng(2)
    difficulty = rng.uniform(0, 1, size=50)
    a, b = difficulty + 0.05 + rng.normal(0, 0.01, 50), difficulty
    paired = paired_difference(a, b)
    assert paired["ci_low"] > 0
    assert paired["mean"] == pytest.approx(np.mean(a - b))
    unpaired = t_ci(a)
    assert paired["ci_high"] - paired["ci_low"] < (unpaired["ci_high"] - unpaired["ci_low"]) / 10
    assert paired_difference(a, b, method="bootstrap", n_resamples=999)["ci_low"] > 0


def test_paired_difference_needs_the_same_items():
    with pytest.raises(ValueError, match="same items"):
        paired_difference([1.0, 2.0], [1.0])


@pytest.mark.parametrize("interval", [t_ci, bootstrap_ci])
def test_degenerate_samples(interval):
    assert interval([0.7, 0.7, 0.7])["ci_low"] == interval([0.7])["ci_high"] == 0.7
    empty = interval([])
    assert empty["n"] == 0 and math.isnan(empty["mean"]) and math.isnan(empty["ci_low"])


def test_non_finite_values_and_unknown_methods_are_errors():
    with pytest.raises(ValueError, match="finite"):
        t_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="'t' or 'bootstrap'"):
        mean_ci([1.0, 2.0], method="normal")


def test_wilson_rate_ci_matches_the_formula():
    hits, n, z = 37, 50, 1.959964
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    rate = rate_ci(hits, n)
    assert rate["ci_low"] == pytest.approx(centre - half, abs=1e-6)
    assert rate["ci_high"] == pytest.approx(centre + half, abs=1e-6)
    assert rate_ci(0, 10)["ci_low"] == 0.0 and rate_ci(10, 10)["ci_high"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="between 0 and n"):
        rate_ci(11, 10)


def test_rounded_keeps_counts():
    assert rounded(t_ci([1.0, 2.0, 4.0]), 2) == {
        "mean": 2.33,
        "ci_low": -1.46,
        "ci_high": 6.13,
        "std": 1.53,
        "n": 3,
    }
