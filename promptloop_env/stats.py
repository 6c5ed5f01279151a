"""Confidence intervals for evaluations and benchmarks, on scipy: the one home of the project's statistics.

Every function returns a plain, JSON-ready dict. Means come as ``{"mean", "ci_low", "ci_high", "std", "n"}``
(``std`` is the sample standard deviation, ``ddof=1``); rates as ``{"rate", "ci_low", "ci_high", "hits", "n"}``.
A sample of one value, or of equal values, has the interval ``[mean, mean]``; an empty one is all NaN.

>>> t_ci([1.0, 2.0, 3.0])["ci_high"] > 2.0
True
>>> paired_difference([3.0, 4.0, 5.0], [1.0, 2.0, 3.0])["mean"]
2.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from scipy import stats as _scipy_stats

Method = Literal["t", "bootstrap"]


def _sample(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"Statistics need finite values; got {array.tolist()}.")
    return array


def _summary(array: np.ndarray, low: float, high: float) -> dict[str, float]:
    mean = float(array.mean()) if len(array) else math.nan
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": mean, "ci_low": float(low), "ci_high": float(high), "std": std, "n": len(array)}


def _degenerate(array: np.ndarray) -> dict[str, float] | None:
    """The summary of a sample that has no spread (empty, one value, all equal), else ``None``."""
    if len(array) == 0:
        return _summary(array, math.nan, math.nan)
    if np.all(array == array[0]):
        value = float(array[0])  # exact, unlike the mean of copies
        return {"mean": value, "ci_low": value, "ci_high": value, "std": 0.0, "n": len(array)}
    return None


def t_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Mean and two-sided Student t confidence interval of the mean.

    Args:
        values: the sample (finite floats).
        confidence: the interval's coverage.

    >>> s = t_ci([1.0, 2.0, 3.0])
    >>> s["mean"], round(s["ci_low"], 3), round(s["ci_high"], 3), s["n"]
    (2.0, -0.484, 4.484, 3)
    """
    array = _sample(values)
    if (flat := _degenerate(array)) is not None:
        return flat
    sem = float(_scipy_stats.sem(array))
    low, high = _scipy_stats.t.interval(confidence, df=len(array) - 1, loc=float(array.mean()), scale=sem)
    return _summary(array, low, high)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    *,
    n_resamples: int = 9999,
    seed: int = 0,
    method: Literal["BCa", "percentile", "basic"] = "BCa",
) -> dict[str, float]:
    """Mean and bootstrap confidence interval of the mean (``scipy.stats.bootstrap``, seeded: reproducible).

    Args:
        values: the sample (finite floats).
        confidence: the interval's coverage.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling generator (no global RNG is touched).
        method: scipy's interval method; BCa corrects the percentile interval for bias and skew.

    >>> s = bootstrap_ci([0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0], seed=0)
    >>> s["ci_low"] < s["mean"] < s["ci_high"], s == bootstrap_ci([0, 1, 1, 0, 1, 1, 1, 0], seed=0)
    (True, True)
    """
    array = _sample(values)
    if (flat := _degenerate(array)) is not None:
        return flat
    result = _scipy_stats.bootstrap(
        (array,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method=method,
        rng=np.random.default_rng(seed),
    )
    return _summary(array, result.confidence_interval.low, result.confidence_interval.high)


def mean_ci(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    *,
    method: Method = "t",
    n_resamples: int = 9999,
    seed: int = 0,
) -> dict[str, float]:
    """Mean and confidence interval of the mean: :func:`t_ci` or (BCa) :func:`bootstrap_ci`.

    Args:
        values: the sample.
        method: ``"t"`` (Student t) or ``"bootstrap"``.
        confidence: the interval's coverage.
        n_resamples, seed: of the bootstrap (unused by ``"t"``).

    >>> mean_ci([2.0, 2.0])
    {'mean': 2.0, 'ci_low': 2.0, 'ci_high': 2.0, 'std': 0.0, 'n': 2}
    """
    if method == "t":
        return t_ci(values, confidence)
    if method == "bootstrap":
        return bootstrap_ci(values, confidence, n_resamples=n_resamples, seed=seed)
    raise ValueError(f"method must be 't' or 'bootstrap'; got {method!r}.")


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    *,
    method: Method = "t",
    n_resamples: int = 9999,
    seed: int = 0,
) -> dict[str, float]:
    """Mean and confidence interval of ``a - b`` over the same items (e.g. two agents on the same episodes).

    Pairing removes the items' shared difficulty from the comparison, so the interval is much narrower than
    that of two independent means.

    Args:
        a, b: scores of the same items, in the same order.
        confidence, method, n_resamples, seed: as in :func:`mean_ci`.

    Raises:
        ValueError: ``a`` and ``b`` have different lengths.

    >>> d = paired_difference([0.9, 0.8, 0.7, 0.6], [0.5, 0.5, 0.4, 0.3])
    >>> round(d["mean"], 3), d["ci_low"] > 0, d["n"]
    (0.325, True, 4)
    """
    first, second = _sample(a), _sample(b)
    if first.shape != second.shape:
        raise ValueError(f"A paired difference needs scores of the same items; got {len(first)} and {len(second)}.")
    return mean_ci(first - second, confidence, method=method, n_resamples=n_resamples, seed=seed)


def difference_ci(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> dict[str, float]:
    """Mean and Welch t interval of ``mean(a) - mean(b)`` for two independent samples (e.g. the training reward
    of the last 10 iterations against the first 10: the interval is taken against iteration-to-iteration noise).

    >>> d = difference_ci([0.5, 0.6, 0.55], [0.3, 0.35, 0.25])
    >>> round(d["mean"], 3), d["ci_low"] > 0
    (0.25, True)
    """
    x, y = _sample(a), _sample(b)
    result = _scipy_stats.ttest_ind(x, y, equal_var=False)
    low, high = result.confidence_interval(confidence)
    diff = float(x.mean() - y.mean())
    std = float(np.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y)))
    return {"mean": diff, "ci_low": float(low), "ci_high": float(high), "std": std, "n": len(x) + len(y)}


def rate_ci(hits: int, n: int, confidence: float = 0.95) -> dict[str, float]:
    """A rate ``hits / n`` with its Wilson score interval (sound at 0 and 1, unlike the normal one).

    >>> r = rate_ci(9, 10)
    >>> r["rate"], round(r["ci_low"], 3), round(r["ci_high"], 3)
    (0.9, 0.596, 0.982)
    >>> rate_ci(0, 0)["rate"]
    nan
    """
    if n == 0:
        return {"rate": math.nan, "ci_low": math.nan, "ci_high": math.nan, "hits": 0, "n": 0}
    if not 0 <= hits <= n:
        raise ValueError(f"hits must be between 0 and n={n}; got {hits}.")
    interval = _scipy_stats.binomtest(int(hits), int(n)).proportion_ci(confidence, method="wilson")
    return {"rate": hits / n, "ci_low": float(interval.low), "ci_high": float(interval.high), "hits": hits, "n": n}


def rounded(summary: Mapping[str, Any], digits: int = 4) -> dict[str, Any]:
    """``summary`` with its floats rounded to ``digits`` (for tables and JSON results); counts unchanged.

    >>> rounded({"mean": 0.123456, "n": 3})
    {'mean': 0.1235, 'n': 3}
    """
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in summary.items()}
