"""Effective number of distinct voices: the Vendi score (METRICS.md).

The score only needs the eigenvalues of the weighted kernel diag(sqrt w) X X^T diag(sqrt w),
whose non-zero eigenvalues are those of X^T diag(w) X. Whichever of the two matrices is smaller
is decomposed: d x d for a large pool (10,000 responses in 384 dims costs one 384 x 384
eigendecomposition instead of a 10,000 x 10,000 one), n x n for the many small per-prompt
pools. Eigenvalues are computed in float64 whatever the input dtype, because the entropy of a
spectrum with many tiny eigenvalues is sensitive to rounding.

For the per-prompt pools, leave-one-out and random groups, :func:`vendi_pools` decomposes
stacks of padded kernels in one LAPACK call per bucket of similar sizes. Padding rows carry
weight 0 and so only add exact zero eigenvalues, which the score ignores.
"""

from __future__ import annotations

import numpy as np

#: Working-memory budget for one batch of stacked kernels; bounds peak memory on big studies.
MAX_BATCH_BYTES = 32 * 2**20


def _check_q(q: float) -> float:
    q = float(q)
    if not (q >= 0):
        raise ValueError(f"Vendi order q must be >= 0 (or inf), got {q}")
    return q


def vendi_from_eigenvalues(lam: np.ndarray, q: float = 1.0) -> np.ndarray:
    """Vendi score of order q from kernel eigenvalues along the last axis.

    Eigenvalues below n * eps * max (rounding noise of a PSD matrix, including tiny negatives)
    are treated as exact zeros; without this, orders q < 1 would count noise as voices.
    A stack whose eigenvalues are all zero (an empty pool) scores NaN.
    """
    q = _check_q(q)
    lam = np.asarray(lam, dtype=np.float64)
    top = lam.max(axis=-1, keepdims=True) if lam.shape[-1] else np.zeros(lam.shape[:-1] + (1,))
    tol = max(lam.shape[-1], 1) * np.finfo(np.float64).eps * np.maximum(top, 0.0)
    pos = lam > tol
    lam = np.where(pos, lam, 0.0)
    empty = ~pos.any(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if q == 1.0:
            logs = np.log(np.where(pos, lam, 1.0))
            out = np.exp(-(lam * logs).sum(axis=-1))
        elif np.isinf(q):
            out = 1.0 / lam.max(axis=-1)
        else:
            s = np.where(pos, np.power(np.where(pos, lam, 1.0), q), 0.0).sum(axis=-1)
            out = np.exp(np.log(s) / (1.0 - q))
    return np.where(empty, np.nan, out)


def _weights(n: int, w: np.ndarray | None) -> np.ndarray:
    if w is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(w, dtype=np.float64).ravel()
    if w.shape != (n,):
        raise ValueError(f"weights must have one entry per response ({n}), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return w / w.sum()


def kernel_eigenvalues(X: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Non-zero spectrum of the weighted kernel, from the smaller of the d x d and n x n forms.

    Weights are relative: they are rescaled to sum to 1, as METRICS.md requires.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty (n, d) array, got shape {X.shape}")
    n, d = X.shape
    w = _weights(n, w)
    if d < n:
        return np.linalg.eigvalsh((X * w[:, None]).T @ X)
    Y = X * np.sqrt(w)[:, None]
    return np.linalg.eigvalsh(Y @ Y.T)


def vendi_score(X: np.ndarray, w: np.ndarray | None = None, q: float = 1.0) -> float:
    """Vendi score of order q of unit-norm rows X with weights w (default uniform).

    1 when all rows are identical, n when they are orthogonal. Rows must be L2-normalised:
    with other norms the spectrum no longer sums to 1 and the score has no meaning, so that is
    refused rather than silently reported.
    """
    lam = kernel_eigenvalues(X, w)
    trace = lam.sum()
    if abs(trace - 1.0) > 1e-4:
        raise ValueError(f"rows must be L2-normalised (weighted kernel trace is {trace:.6g}, expected 1)")
    return float(vendi_from_eigenvalues(lam, q))


def _bucket_key(size: np.ndarray) -> np.ndarray:
    """Pools padded to a common size within a bucket waste at most 1/8 of their rows."""
    size = np.asarray(size, dtype=np.int64)
    step = np.maximum(1, 2 ** np.maximum(0, np.floor(np.log2(np.maximum(size, 1))).astype(int) - 3))
    return -(-size // step) * step


def vendi_pools(
    X: np.ndarray,
    rows: np.ndarray,
    weights: np.ndarray | None = None,
    q: float = 1.0,
    max_bytes: int = MAX_BATCH_BYTES,
) -> np.ndarray:
    """Vendi scores of many pools of rows of X at once.

    ``rows`` is (B, width) row numbers with -1 for "no row". ``weights`` is None (uniform within
    each pool), (B, width), or (R, B, width) for R weightings of the same pools: the kernels
    are built once and only rescaled per weighting, which is how leave-one-out and group
    removal are computed (zero weight = removed). Weights are rescaled to sum to 1 per pool;
    a pool with no weight scores NaN. Returns (B,) or (R, B).
    """
    q = _check_q(q)
    X = np.asarray(X, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 2:
        raise ValueError(f"rows must be (pools, width), got shape {rows.shape}")
    B, width = rows.shape
    d = X.shape[1]
    valid = rows >= 0
    squeeze = weights is None or np.ndim(weights) == 2
    if weights is None:
        w = valid.astype(np.float64)[None]
    else:
        w = np.asarray(weights, dtype=np.float64)
        w = w[None] if w.ndim == 2 else w
        if w.shape[1:] != rows.shape:
            raise ValueError(f"weights shape {w.shape} does not match rows {rows.shape}")
        if np.any(~np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite and non-negative")
        w = np.where(valid[None], w, 0.0)
    # Left-align each pool so that a bucket can be cut to its largest size.
    shift = np.argsort(~valid, axis=1, kind="stable")
    rows = np.take_along_axis(rows, shift, axis=1)
    w = np.take_along_axis(w, np.broadcast_to(shift, w.shape), axis=2)
    valid = rows >= 0
    total = w.sum(axis=2, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    R = w.shape[0]
    out = np.full((R, B), np.nan)

    size = valid.sum(axis=1)
    order = np.argsort(size, kind="stable")
    keys = _bucket_key(size[order])
    bounds = np.flatnonzero(np.diff(keys)) + 1
    for run in np.split(order, bounds):
        if run.size == 0:
            continue
        n = int(size[run].max())
        if n == 0:
            continue
        dim = min(n, d)
        per_pool = 8 * (n * d + n * n + R * dim * dim * 3)
        step = max(1, int(max_bytes // per_pool))
        for lo in range(0, run.size, step):
            idx = run[lo : lo + step]
            r = rows[idx, :n]
            ok = r >= 0
            Xg = X[np.where(ok, r, 0)] * ok[..., None]
            wg = w[:, idx, :n]
            if n <= d:
                G = Xg @ Xg.transpose(0, 2, 1)
                s = np.sqrt(wg)
                K = G[None] * s[..., :, None] * s[..., None, :]
            else:
                Xt = Xg.transpose(0, 2, 1)
                K = np.stack([(Xt * wg[k][:, None, :]) @ Xg for k in range(R)])
            lam = np.linalg.eigvalsh(K)
            out[:, idx] = vendi_from_eigenvalues(lam, q)
    out = np.where(total[:, :, 0] > 0, out, np.nan)
    return out[0] if squeeze else out
