"""The trend of a series: its least-squares slope against release date, its bootstrap interval
and its permutation p-value (METRICS.md, "Over time").

Every replicate and every permutation is one row of a stacked array, so a slope over 1000
replicates is a handful of array reductions, not a Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monoculture.metrics.stats import percentile_ci

#: METRICS.md: a trend over fewer dated models than this is flagged.
FEW_MODELS = 8


def weighted_slope(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Least-squares slope of y on x along the last axis, with weights w (model multiplicities
    of a bootstrap draw), ignoring entries where x or y is NaN or w is 0.

    NaN where fewer than 2 points with distinct x remain. Shapes broadcast, so x can be (M,)
    while y and w are (B, M).
    """
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    w = np.ones_like(y) if w is None else np.broadcast_to(np.asarray(w, dtype=np.float64), y.shape)
    ok = np.isfinite(x) & np.isfinite(y) & (w > 0)
    w = np.where(ok, w, 0.0)
    x0, y0 = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
    sw = w.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = (w * x0).sum(axis=-1, keepdims=True) / sw
        ym = (w * y0).sum(axis=-1, keepdims=True) / sw
        dx = np.where(ok, x0 - xm, 0.0)
        sxx = (w * dx * dx).sum(axis=-1)
        sxy = (w * dx * (y0 - ym)).sum(axis=-1)
        # relative test: distinct x are at least days apart, rounding is 1e-13 of a year
        flat = sxx <= 1e-18 * np.maximum((w * x0 * x0).sum(axis=-1), 1.0)
        return np.where(flat | (ok.sum(axis=-1) < 2), np.nan, sxy / np.where(flat, 1.0, sxx))


def permutation_p(observed: float, permuted: np.ndarray) -> float:
    """Two-sided permutation p-value (1 + #{|t_k| >= |t|}) / (1 + K) over the defined t_k.

    Two-sided because a trend may go either way: the field may converge or diverge. NaN where
    the observed slope is undefined.
    """
    t = np.asarray(permuted, dtype=np.float64)
    t = t[np.isfinite(t)]
    if not np.isfinite(observed) or t.size == 0:
        return float("nan")
    tol = 1e-12 * max(abs(observed), 1e-300)
    return float((1 + np.count_nonzero(np.abs(t) >= abs(observed) - tol)) / (1 + t.size))


@dataclass(frozen=True)
class Slope:
    """The slope of one series (per year) for the whole field or one group of models."""

    series: str
    group: str | None
    value: float
    lo: float
    hi: float
    p: float
    models: int
    points: int
    permutations: int

    @property
    def few_models(self) -> bool:
        return self.models < FEW_MODELS

    def to_dict(self) -> dict:
        def num(v: float) -> float | None:
            return float(v) if np.isfinite(v) else None

        return {
            "series": self.series,
            "group": self.group,
            "value": num(self.value),
            "ci": [num(self.lo), num(self.hi)],
            "p": num(self.p),
            "models": self.models,
            "points": self.points,
            "permutations": self.permutations,
            "few_models": self.few_models,
        }


def slope_summary(
    series: str,
    group: str | None,
    point: float,
    replicates: np.ndarray,
    permuted: np.ndarray,
    models: int,
    points: int,
    level: float = 0.95,
) -> Slope:
    lo, hi = percentile_ci(np.asarray(replicates, dtype=np.float64)[:, None], level)
    return Slope(
        series,
        group,
        float(point),
        float(lo[0]),
        float(hi[0]),
        permutation_p(point, permuted),
        models,
        points,
        int(np.isfinite(permuted).sum()),
    )
