"""Uncertainty over prompts (METRICS.md, "Uncertainty").

Every headline figure is a mean of per-prompt values, or a function of a few such means. A
bootstrap replicate of a mean is therefore a weighted mean with the multiplicities of the
resampled prompts as weights, so all replicates of all figures come from one (B x P) count
matrix times the (P x K) per-prompt values: one matrix product instead of B Python loops.
Using the same count matrix for every figure also makes differences between figures paired.

Prompts where a figure is undefined carry NaN; a replicate averages over the resampled prompts
where the figure is defined, exactly as the point estimate does over all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

FEW_PROMPTS = 10


@dataclass(frozen=True)
class Estimate:
    """A figure with its percentile interval and the number of prompts it rests on."""

    value: float
    lo: float
    hi: float
    prompts: int

    @property
    def few_prompts(self) -> bool:
        return self.prompts < FEW_PROMPTS

    def to_dict(self) -> dict:
        return {
            "value": _num(self.value),
            "ci": [_num(self.lo), _num(self.hi)],
            "prompts": int(self.prompts),
            "few_prompts": self.few_prompts,
        }


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def resample_counts(n_prompts: int, n_boot: int = 1000, seed: int | Sequence[int] | np.random.Generator = 0) -> np.ndarray:
    """(n_boot, n_prompts) multiplicities of each prompt in each resample, seeded (anything
    ``np.random.default_rng`` takes: an int, a seed sequence, or a generator to draw from)."""
    if n_prompts <= 0 or n_boot <= 0:
        return np.zeros((max(n_boot, 0), max(n_prompts, 0)))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_prompts, size=(n_boot, n_prompts))
    flat = draws + n_prompts * np.arange(n_boot)[:, None]
    counts = np.bincount(flat.ravel(), minlength=n_boot * n_prompts)
    return counts.reshape(n_boot, n_prompts).astype(np.float64)


def replicate_sums(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate, the sum of defined values and the number of defined prompts drawn.

    ``values`` is (P,) or (P, K); the result has shape (B,) or (B, K). Use these to build
    ratios of means (C from per-prompt pair means, accent retention) without bias from NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    flat = v.reshape(v.shape[0], -1)
    defined = np.isfinite(flat)
    num = counts @ np.where(defined, flat, 0.0)
    den = counts @ defined.astype(np.float64)
    shape = (counts.shape[0],) + v.shape[1:]
    return num.reshape(shape), den.reshape(shape)


def replicate_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of the nan-mean over prompts; NaN where a replicate drew none."""
    num, den = replicate_sums(values, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def percentile_ci(replicates: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0, ignoring NaN replicates."""
    r = np.asarray(replicates, dtype=np.float64)
    shape = r.shape[1:]
    r2 = r.reshape(r.shape[0], -1)
    alpha = (1.0 - level) / 2.0
    lo = np.full(r2.shape[1], np.nan)
    hi = np.full(r2.shape[1], np.nan)
    ok = np.isfinite(r2).any(axis=0)
    if ok.any():
        q = np.nanpercentile(r2[:, ok], [100 * alpha, 100 * (1 - alpha)], axis=0)
        lo[ok], hi[ok] = q[0], q[1]
    return lo.reshape(shape), hi.reshape(shape)


def nanmean0(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 ignoring NaN, and the count of defined entries (NaN where none)."""
    v = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(v)
    n = defined.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(defined, v, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
    return mean, n


def bootstrap_means(values: np.ndarray, counts: np.ndarray, level: float = 0.95) -> list[Estimate]:
    """One Estimate per column of (P, K) per-prompt values, all from one count matrix."""
    v = np.asarray(values, dtype=np.float64)
    v2 = v.reshape(v.shape[0], -1)
    mean, n = nanmean0(v2)
    lo, hi = percentile_ci(replicate_means(v2, counts), level)
    return [Estimate(float(mean[j]), float(lo[j]), float(hi[j]), int(n[j])) for j in range(v2.shape[1])]


def bootstrap_mean(
    values: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    counts: np.ndarray | None = None,
) -> Estimate:
    """Mean of per-prompt values with a seeded percentile interval over prompts."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if counts is None:
        counts = resample_counts(len(v), n_boot, seed)
    return bootstrap_means(v[:, None], counts, level)[0]


def bootstrap_function(
    values: np.ndarray,
    fn: Callable[[np.ndarray], np.ndarray],
    counts: np.ndarray,
    level: float = 0.95,
) -> Estimate:
    """A figure that is a function of column means (a ratio, a mean of pair means).

    ``fn`` maps a (..., K) array of column means to (...,) figures; it is applied to the point
    means and, vectorised, to all (B, K) replicate means at once.
    """
    v = np.asarray(values, dtype=np.float64)
    v2 = v.reshape(v.shape[0], -1)
    mean, n = nanmean0(v2)
    point = float(fn(mean[None, :])[0])
    reps = fn(replicate_means(v2, counts))
    lo, hi = percentile_ci(reps, level)
    rests_on = int(np.isfinite(v2).all(axis=1).sum()) if v2.shape[1] else 0
    return Estimate(point, float(lo), float(hi), rests_on)


def estimate_from(point: float, replicates: np.ndarray, prompts: int, level: float = 0.95) -> Estimate:
    """An Estimate from a point value and its bootstrap replicates (NaN replicates ignored)."""
    lo, hi = percentile_ci(np.asarray(replicates, dtype=np.float64), level)
    return Estimate(float(point), float(lo), float(hi), int(prompts))


@dataclass(frozen=True)
class Ratio:
    """A ratio of two bootstrap figures, withheld when its denominator's interval reaches 0.

    Near a zero denominator the replicates of a ratio run off to both infinities and the point
    value is whatever the sample's small denominator makes it, so the figure is reported as
    missing with ``unstable`` and the reason, and its numerator and denominator are kept.
    """

    estimate: Estimate
    numerator: Estimate
    denominator: Estimate
    unstable: bool
    reason: str | None

    @property
    def value(self) -> float:
        return self.estimate.value

    @property
    def lo(self) -> float:
        return self.estimate.lo

    @property
    def hi(self) -> float:
        return self.estimate.hi

    @property
    def prompts(self) -> int:
        return self.estimate.prompts

    def to_dict(self) -> dict:
        return {
            **self.estimate.to_dict(),
            "unstable": self.unstable,
            "reason": self.reason,
            "numerator": self.numerator.to_dict(),
            "denominator": self.denominator.to_dict(),
        }


def guarded_ratio(
    num_point: float, num_reps: np.ndarray, den_point: float, den_reps: np.ndarray, prompts: int, level: float = 0.95
) -> Ratio:
    """num / den with a percentile interval from paired replicates, unless the denominator's
    interval reaches 0 (or its point is not positive): then value and interval are NaN."""
    num = estimate_from(num_point, num_reps, prompts, level)
    den = estimate_from(den_point, den_reps, prompts, level)
    nan = float("nan")
    if not (np.isfinite(den.value) and np.isfinite(den.lo)):
        return Ratio(Estimate(nan, nan, nan, prompts), num, den, True, "the denominator is undefined")
    if den.value <= 0 or den.lo <= 0:
        reason = (
            f"the denominator's {level:.0%} interval [{den.lo:.3g}, {den.hi:.3g}] reaches 0, so the ratio has no stable value"
        )
        return Ratio(Estimate(nan, nan, nan, prompts), num, den, True, reason)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = np.asarray(num_reps, dtype=np.float64) / np.asarray(den_reps, dtype=np.float64)
    lo, hi = percentile_ci(reps, level)
    return Ratio(Estimate(float(num_point / den_point), float(lo), float(hi), prompts), num, den, False, None)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of a - b over prompts where both are defined, with interval and two-sided p."""

    estimate: Estimate
    p_value: float

    def to_dict(self) -> dict:
        return {**self.estimate.to_dict(), "p_value": _num(self.p_value)}


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    counts: np.ndarray | None = None,
) -> PairedDifference:
    """Paired bootstrap over prompts of the difference of two per-prompt figures.

    Pairing by prompt removes the prompt-to-prompt variation both figures share, which is
    usually most of it. The p-value is the two-sided bootstrap tail at zero.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need one entry per prompt each, got {a.shape} and {b.shape}")
    d = np.where(np.isfinite(a) & np.isfinite(b), a - b, np.nan)
    if counts is None:
        counts = resample_counts(len(d), n_boot, seed)
    reps = replicate_means(d[:, None], counts)[:, 0]
    mean, n = nanmean0(d[:, None])
    lo, hi = percentile_ci(reps, level)
    ok = reps[np.isfinite(reps)]
    if ok.size:
        p = min(1.0, 2.0 * min((ok <= 0).mean(), (ok >= 0).mean()))
    else:
        p = float("nan")
    return PairedDifference(Estimate(float(mean[0]), float(lo), float(hi), int(n[0])), float(p))
