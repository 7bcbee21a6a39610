"""Lineage and groups: do related models sound alike? (METRICS.md, "Lineage and groups").

With a few dozen models there are only a few hundred model pairs and they are not
independent (every pair shares its models with others), so significance comes from
permuting model labels, never from a t-test on pairs. All permutations are drawn at once as
an (n_perm, M) array, seeded, and evaluated with array operations.

With a binary same-group matrix, the Mantel correlation is an affine function of the mean C
within groups for any relabelling that keeps group sizes, so both tests give the same
p-value under the same permutations; both are reported because METRICS.md asks for both and
the Mantel test also takes non-binary matrices (distances in a family tree, say).
"""

from __future__ import annotations

import warnings

import numpy as np

from .stats import Estimate, Ratio, guarded_ratio, nanmean0, replicate_means


def _permutations(m: int, n_perm: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((n_perm, m)), axis=1)


#: Entries of a (permutations x pairs) block evaluated at once. The whole (999, M(M-1)/2) array
#: at 280 models is 39 million entries per temporary: the test grew as M^3 in wall time there
#: (benchmarks/bench_scale.py), memory traffic rather than arithmetic; blocks of this size stay
#: in cache and keep it at the M^2 of its pairs.
_BLOCK = 2**18


def _blocks(n_perm: int, n_pairs: int):
    step = max(1, _BLOCK // max(1, n_pairs))
    return (slice(lo, min(n_perm, lo + step)) for lo in range(0, n_perm, step))


def group_contrast(C: np.ndarray, labels: np.ndarray, n_perm: int = 999, seed: int = 0) -> dict:
    """Mean C within groups against between groups, with a one-sided permutation p-value.

    ``labels`` is a group code per model, -1 for models without a value (left out). The
    statistic is within - between; p = (1 + #{permuted >= observed}) / (1 + n_perm).
    """
    labels = np.asarray(labels)
    keep = np.flatnonzero(labels >= 0)
    Ck = np.asarray(C, dtype=np.float64)[np.ix_(keep, keep)]
    lab = labels[keep]
    i, j = np.triu_indices(len(keep), 1)
    c = Ck[i, j]
    ok = np.isfinite(c)
    i, j, c = i[ok], j[ok], c[ok]
    nan = float("nan")
    same = lab[i] == lab[j]
    result = {
        "within": float(c[same].mean()) if same.any() else nan,
        "between": float(c[~same].mean()) if (~same).any() else nan,
        "within_pairs": int(same.sum()),
        "between_pairs": int((~same).sum()),
        "models": int(len(keep)),
        "permutations": int(n_perm),
    }
    result["difference"] = result["within"] - result["between"]
    if not (same.any() and (~same).any()) or n_perm <= 0:
        result["p_value"] = nan
        return result
    perm = _permutations(len(keep), n_perm, seed)
    diff = np.empty(n_perm)
    for block in _blocks(n_perm, len(c)):
        L = lab[perm[block]]
        S = L[:, i] == L[:, j]
        n_in = S.sum(axis=1)
        n_out = S.shape[1] - n_in
        with np.errstate(invalid="ignore", divide="ignore"):
            d = (S @ c) / n_in - ((~S) @ c) / n_out
        diff[block] = np.where((n_in > 0) & (n_out > 0), d, -np.inf)
    result["p_value"] = float((1 + (diff >= result["difference"] - 1e-12).sum()) / (1 + n_perm))
    return result


def mantel_test(A: np.ndarray, B: np.ndarray, n_perm: int = 999, seed: int = 0) -> dict:
    """Pearson correlation of the upper triangles of A and B, with a one-sided permutation
    p-value for a positive association (rows and columns of B permuted together)."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    m = A.shape[0]
    i, j = np.triu_indices(m, 1)
    a = A[i, j]
    ok = np.isfinite(a) & np.isfinite(B[i, j])
    i, j, a = i[ok], j[ok], a[ok]
    b = B[i, j]
    out = {"r": float("nan"), "p_value": float("nan"), "pairs": int(a.size), "permutations": int(n_perm)}
    if a.size < 3 or a.std() == 0 or b.std() == 0:
        return out
    az = (a - a.mean()) / a.std()
    r = float(np.mean(az * (b - b.mean()) / b.std()))
    out["r"] = r
    if n_perm <= 0:
        return out
    perm = _permutations(m, n_perm, seed)
    fill = np.nanmean(b)
    rp = np.empty(n_perm)
    for block in _blocks(n_perm, a.size):
        Bp = B[perm[block][:, i], perm[block][:, j]]
        Bp = np.where(np.isfinite(Bp), Bp, fill)
        sd = Bp.std(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            r_b = ((Bp - Bp.mean(axis=1, keepdims=True)) @ az) / (a.size * sd)
        rp[block] = np.where(sd > 0, r_b, -np.inf)
    out["p_value"] = float((1 + (rp >= r - 1e-12).sum()) / (1 + n_perm))
    return out


def accent_retention(
    pair: np.ndarray,
    derivative: int,
    base: int,
    others: np.ndarray,
    counts: np.ndarray,
    level: float = 0.95,
) -> Ratio:
    """R = (C_db - mean_o C_do) / (W_b - mean_o C_bo), with a bootstrap interval over prompts.

    ``pair`` is the (P, M, M) per-prompt similarity array (diagonal = W); ``others`` the model
    codes outside the derivative's family. Each C is re-averaged over the resampled prompts
    before the ratio is formed, so the interval is that of R, not of a per-prompt ratio.
    Both terms are differences of similarities, so the off-prompt floor cancels from them; the
    denominator (how far the base's own voice stands out) can still be near 0, and then R is
    withheld (:class:`Ratio`), its numerator and denominator kept.
    """
    others = np.asarray(others, dtype=np.int64)
    others = others[(others != derivative) & (others != base)]
    n_o = len(others)
    if n_o == 0:
        nan = float("nan")
        e = Estimate(nan, nan, nan, 0)
        return Ratio(e, e, e, True, "no model outside the derivative's family to compare with")
    cols = np.column_stack([pair[:, derivative, base], pair[:, base, base], pair[:, derivative, others], pair[:, base, others]])

    def parts(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            num = means[..., 0] - np.nanmean(means[..., 2 : 2 + n_o], axis=-1)
            den = means[..., 1] - np.nanmean(means[..., 2 + n_o :], axis=-1)
        return num, den

    point, _ = nanmean0(cols)
    p_num, p_den = parts(point[None, :])
    r_num, r_den = parts(replicate_means(cols, counts))
    rests_on = int(np.isfinite(cols).all(axis=1).sum())
    return guarded_ratio(float(p_num[0]), r_num, float(p_den[0]), r_den, rests_on, level)
