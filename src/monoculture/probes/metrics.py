"""Distances between option distributions, and the bootstrap used for every interval.

Pure numpy on arrays whose last axis is the options, so that a whole bootstrap is a handful of
array operations instead of a Python loop over draws.
"""

from __future__ import annotations

import warnings

import numpy as np

DEFAULT_B = 1000
DEFAULT_SEED = 0


def normalise(p) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    if np.any(p < 0) or not np.all(np.isfinite(p)):
        raise ValueError("a distribution needs finite, non-negative shares")
    s = p.sum(axis=-1, keepdims=True)
    if np.any(s <= 0):
        raise ValueError("a distribution needs a positive total")
    return p / s


def js_distance(p, q) -> np.ndarray:
    """Jensen-Shannon distance in base 2: 0 for identical distributions, 1 for disjoint ones,
    and (unlike the divergence) a metric, so averages of it behave like distances."""
    p, q = normalise(p), normalise(q)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kp = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=-1)
        kq = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=-1)
    return np.sqrt(np.clip(0.5 * (kp + kq), 0.0, 1.0))


def w1_normalised(p, q) -> np.ndarray:
    """Wasserstein-1 between distributions on an ordered scale with unit steps, divided by its
    maximum (all mass at opposite ends, k - 1), so it lies in [0, 1] for any number of options.
    Unlike JS it knows that "agree" is nearer "strongly agree" than "strongly disagree"."""
    p, q = normalise(p), normalise(q)
    k = p.shape[-1]
    if k < 2:
        return np.zeros(p.shape[:-1])
    return np.abs(np.cumsum(p - q, axis=-1)[..., :-1]).sum(axis=-1) / (k - 1)


def similarity(p, q, metric: str = "js") -> np.ndarray:
    if metric == "js":
        return 1.0 - js_distance(p, q)
    if metric == "w1":
        return 1.0 - w1_normalised(p, q)
    raise ValueError(f"unknown metric {metric!r}")


def bootstrap_indices(n: int, b: int = DEFAULT_B, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(b, n) resampled unit indices. Seeded, so a report rebuilt from the same store shows the
    same intervals."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(b, n))


def nanmean(a: np.ndarray, axis=-1) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def percentile_interval(draws: np.ndarray, level: float = 0.95, axis=-1) -> tuple[np.ndarray, np.ndarray]:
    lo = (1 - level) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(draws, lo, axis=axis), np.nanpercentile(draws, 100 - lo, axis=axis)


def bootstrap_mean(values, b: int = DEFAULT_B, seed: int = DEFAULT_SEED, level: float = 0.95) -> tuple[float, float, float]:
    """Mean over units (questions) with a percentile interval; NaN units are ignored."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    draws = v[bootstrap_indices(v.size, b, seed)].mean(axis=1)
    lo, hi = percentile_interval(draws, level)
    return float(v.mean()), float(lo), float(hi)
