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


def null_drift(observed: np.ndarray | float, permuted: np.ndarray) -> np.ndarray:
    """The slope a series has with no trend: the mean slope over the observed and the permuted
    release dates (last axis of ``permuted``), NaN ones ignored.

    The observed slope is one of the K + 1 date assignments averaged, so the drift is a
    symmetric function of them and a test centred on it stays exact (:func:`permutation_p`).
    """
    t = np.concatenate([np.asarray(observed, dtype=np.float64)[..., None], np.asarray(permuted, dtype=np.float64)], axis=-1)
    ok = np.isfinite(t)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok.any(axis=-1), np.where(ok, t, 0.0).sum(axis=-1) / np.maximum(ok.sum(axis=-1), 1), np.nan)


def permutation_p(observed: float, permuted: np.ndarray, centre: float = 0.0) -> float:
    """Two-sided permutation p-value (1 + #{|t_k - c| >= |t - c|}) / (1 + K) over the defined t_k.

    Two-sided because a trend may go either way: the field may converge or diverge. ``centre``
    c is the null drift of a series that slopes by construction (:func:`null_drift`), so the
    test asks whether the observed slope is farther from it than shuffled dates' slopes are;
    0 for a series whose slope under shuffled dates is 0 on average. NaN where the observed
    slope is undefined.
    """
    t = np.asarray(permuted, dtype=np.float64)
    t = t[np.isfinite(t)]
    if not np.isfinite(observed) or t.size == 0 or not np.isfinite(centre):
        return float("nan")
    dev = abs(observed - centre)
    tol = 1e-12 * max(dev, abs(observed), 1e-300)
    return float((1 + np.count_nonzero(np.abs(t - centre) >= dev - tol)) / (1 + t.size))


def permutation_halfwidth(deviations: np.ndarray, level: float = 0.95) -> float:
    """Half-width h of the interval that inverts :func:`permutation_p`: with m = floor((1 - level)
    (K + 1)), the m-th largest |t_k - c|, so that |t - c| <= h exactly when p > 1 - level.
    Infinite when K is too small for any p to reach 1 - level (m = 0); NaN without permutations.
    """
    a = np.sort(np.abs(np.asarray(deviations, dtype=np.float64)[np.isfinite(deviations)]))[::-1]
    if a.size == 0:
        return float("nan")
    m = int(np.floor((1.0 - level) * (a.size + 1) + 1e-9))
    return float(a[m - 1]) if m >= 1 else float("inf")


@dataclass(frozen=True)
class Slope:
    """The slope of one series (per year) for the whole field or one group of models.

    ``value`` and its interval are what is tested: for a per-model series the excess slope
    (``raw`` minus ``drift``, the mean slope under shuffled release dates), for a window series
    the slope itself (``drift`` 0: shuffled members leave every window the same expectation).
    """

    series: str
    group: str | None
    value: float
    lo: float
    hi: float
    p: float
    models: int
    points: int
    permutations: int
    raw: float = float("nan")
    drift: float = 0.0
    excess: bool = False

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
            "raw": num(self.raw),
            "drift": num(self.drift),
            "tested": "excess over the shuffled-date drift" if self.excess else "slope",
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
    replicate_drift: np.ndarray | None = None,
    interval: str = "bootstrap",
) -> Slope:
    """The slope of a series with its interval and p-value.

    Without ``replicate_drift`` the slope is tested as it is. With it (B,), one null drift per
    bootstrap replicate, the series slopes by construction: the value is the excess
    ``point - null_drift(point, permuted)``, its interval the percentiles of
    ``replicates - replicate_drift`` (so it is an interval of the excess, not of the raw
    slope), and the test is centred on the drift.

    ``interval="permutation"``: the interval inverts the test instead of bootstrapping
    (:func:`permutation_halfwidth`: the spread a slope has when models move between windows at
    random, read as a shift of the series); it contains 0 exactly when p > 1 - level.
    """
    rep = np.asarray(replicates, dtype=np.float64)
    excess = replicate_drift is not None
    drift = float(null_drift(point, permuted)) if excess else 0.0
    if excess:
        rep = rep - np.asarray(replicate_drift, dtype=np.float64)
    if interval == "permutation":
        t = np.asarray(permuted, dtype=np.float64)
        t = t[np.isfinite(t)]
        half = permutation_halfwidth(t - drift, level) if np.isfinite(point) else float("nan")
        lo, hi = np.array([point - drift - half]), np.array([point - drift + half])
    else:
        lo, hi = percentile_ci(rep[:, None], level)
    return Slope(
        series,
        group,
        float(point) - drift,
        float(lo[0]),
        float(hi[0]),
        permutation_p(point, permuted, drift),
        models,
        points,
        int(np.isfinite(permuted).sum()),
        raw=float(point),
        drift=drift,
        excess=excess,
    )
