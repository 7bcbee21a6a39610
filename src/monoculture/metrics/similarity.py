"""Within-model and cross-model similarity, homogeneity, and the off-prompt floor (METRICS.md).

The mean cosine over all pairs (i, j) of m's and m''s responses to p equals
s_{m,p} . s_{m',p} / (k_{m,p} k_{m',p}), with s the sum of a cell's unit embeddings, and the
mean over pairs i < j within a cell is (|s|^2 - sum |e_i|^2) / (k (k - 1)). So one (M x M)
product of cell sums per prompt gives every per-prompt similarity at once, in O(P M^2 d)
instead of O(P M^2 k^2 d) pairwise dot products, and it is exact.

Per-prompt values are kept as a (P, M, M) array: averages over prompts, bootstrap replicates
and the lineage tests all start from it.
"""

from __future__ import annotations

import numpy as np

from .responses import CellIndex
from .stats import (
    Estimate,
    Ratio,
    estimate_from,
    guarded_ratio,
    percentile_ci,
    replicate_means,
    replicate_sums,
)

_CHUNK_BYTES = 32 * 2**20


def pair_similarity(X: np.ndarray, index: CellIndex) -> np.ndarray:
    """(P, M, M) per-prompt similarities: off-diagonal cross-model, diagonal within-model.

    NaN where undefined: a model absent from the prompt, or (diagonal) fewer than 2 responses.
    """
    P, M = index.n_prompts, index.n_models
    sums, sq = index.cell_sums(X)
    d = sums.shape[1]
    k = index.counts.astype(np.float64)
    out = np.empty((P, M, M))
    sq_cell = np.zeros((P, M))
    sq_cell[index.cell_prompt, index.cell_model] = sq
    # Cells are sorted by prompt, so a block of prompts is a contiguous block of cells.
    cells_before = np.concatenate([[0], np.cumsum((index.counts > 0).sum(axis=1))])
    step = max(1, _CHUNK_BYTES // max(1, 8 * M * d))
    for lo in range(0, P, step):
        hi = min(P, lo + step)
        S = np.zeros((hi - lo, M, d))
        c0, c1 = cells_before[lo], cells_before[hi]
        S[index.cell_prompt[c0:c1] - lo, index.cell_model[c0:c1]] = sums[c0:c1]
        out[lo:hi] = S @ S.transpose(0, 2, 1)
    kk = k[:, :, None] * k[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        cross = np.where(kk > 0, out / np.where(kk > 0, kk, 1.0), np.nan)
        diag = np.einsum("pmm->pm", out)
        within = np.where(k >= 2, (diag - sq_cell) / np.where(k >= 2, k * (k - 1), 1.0), np.nan)
    m = np.arange(M)
    cross[:, m, m] = within
    return cross


def prompt_means(pair: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over prompts of each entry of (P, M, M) values, and how many prompts each rests on."""
    defined = np.isfinite(pair)
    n = defined.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(defined, pair, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
    return mean, n


def _upper_pairs(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    members = np.asarray(members, dtype=np.int64)
    i, j = np.triu_indices(len(members), k=1)
    return members[i], members[j]


def homogeneity(C: np.ndarray, members: np.ndarray | None = None) -> float:
    """H: mean of C_{m,m'} over m != m' (among ``members``), ignoring undefined pairs."""
    members = np.arange(C.shape[0]) if members is None else np.asarray(members)
    a, b = _upper_pairs(members)
    v = C[a, b]
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def mean_of_pair_means(values: np.ndarray, counts: np.ndarray) -> tuple[float, np.ndarray]:
    """Point value and bootstrap replicates of the mean over columns of per-column means.

    ``values`` is (P, K): per-prompt values of K pairs, NaN where a pair is undefined. When
    every pair is defined on the same prompts (the usual, complete study) the per-pair means
    share one denominator, so the figure is the mean over prompts of the row means and needs
    one (B x P) product instead of a (B x P x K) one.
    """
    v = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(v)
    if v.shape[1] == 0 or not defined.any():
        return float("nan"), np.full(counts.shape[0], np.nan)
    col_n = defined.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        col_mean = np.where(col_n > 0, np.where(defined, v, 0).sum(axis=0) / np.maximum(col_n, 1), np.nan)
    point = float(np.nanmean(col_mean))
    if (defined == defined[:, :1]).all():
        row = np.where(defined[:, 0], np.where(defined, v, 0.0).mean(axis=1), np.nan)
        num, den = replicate_sums(row, counts)
    else:
        num, den = replicate_sums(v, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    if reps.ndim == 2:
        with np.errstate(invalid="ignore"):
            ok = np.asarray(np.isfinite(reps).any(axis=1))  # asarray: numpy types any(axis=) as bool | array
            reps = np.where(ok, np.nanmean(np.where(ok[:, None], reps, 0.0), axis=1), np.nan)
    return point, reps


def homogeneity_estimate(
    pair: np.ndarray, counts: np.ndarray, members: np.ndarray | None = None, level: float = 0.95
) -> Estimate:
    """H among ``members`` with its bootstrap interval over prompts."""
    M = pair.shape[1]
    members = np.arange(M) if members is None else np.asarray(members)
    a, b = _upper_pairs(members)
    vals = pair[:, a, b]
    point, reps = mean_of_pair_means(vals, counts)
    lo, hi = percentile_ci(reps, level)
    rests_on = int(np.isfinite(vals).any(axis=1).sum()) if vals.shape[1] else 0
    return Estimate(point, float(lo), float(hi), rests_on)


def per_prompt_homogeneity(pair: np.ndarray, members: np.ndarray | None = None) -> np.ndarray:
    """H(p): mean cross-model similarity at each prompt; NaN where fewer than 2 models answered."""
    M = pair.shape[1]
    members = np.arange(M) if members is None else np.asarray(members)
    a, b = _upper_pairs(members)
    vals = pair[:, a, b]
    defined = np.isfinite(vals)
    n = defined.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(defined, vals, 0).sum(axis=1) / np.maximum(n, 1), np.nan)


def _reference_values(pair: np.ndarray, models: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _upper_pairs(np.asarray(models))
    reference = np.asarray(reference)
    if len(reference) == 1:
        den = pair[:, reference[0], reference[0]][:, None]
    else:
        ra, rb = _upper_pairs(reference)
        den = pair[:, ra, rb]
    return pair[:, a, b], den


def reference_comparison(
    pair: np.ndarray,
    counts: np.ndarray,
    models: np.ndarray,
    reference: np.ndarray,
    floor: np.ndarray | None = None,
    level: float = 0.95,
) -> dict:
    """H among ``models`` against H among the reference's members, above the off-prompt floor.

    A reference of one source (human answers, each from a different person) has its members'
    H in its own within-source similarity W; a reference of several sources uses the mean C
    among them. On calibrated embeddings 0 is wherever the study's mean puts it, so H / H_ref
    has no fixed meaning and explodes when H_ref is near 0; both are measured above the floor
    F, which is what two answers to different prompts share: ratio (H - F) / (H_ref - F),
    withheld when its denominator's interval reaches 0, and the difference H - H_ref.
    ``floor``: per-prompt floor F(p) (:func:`per_prompt_floor`); None takes F = 0. Every
    term is resampled with the same prompts, so the ratio and the difference are paired.
    Returns Estimates "models", "reference", "floor", "difference" and the Ratio "ratio".
    """
    num_vals, den_vals = _reference_values(pair, models, reference)
    p_h, r_h = mean_of_pair_means(num_vals, counts)
    p_r, r_r = mean_of_pair_means(den_vals, counts)
    both = int((np.isfinite(num_vals).any(axis=1) & np.isfinite(den_vals).any(axis=1)).sum())
    if floor is None:
        p_f, r_f, f_prompts = 0.0, np.zeros(counts.shape[0]), 0
    else:
        f = np.asarray(floor, dtype=np.float64)
        p_f = float(np.nanmean(f)) if np.isfinite(f).any() else float("nan")
        r_f = replicate_means(f, counts)
        f_prompts = int(np.isfinite(f).sum())
    h = estimate_from(p_h, r_h, int(np.isfinite(num_vals).any(axis=1).sum()), level)
    h_ref = estimate_from(p_r, r_r, int(np.isfinite(den_vals).any(axis=1).sum()), level)
    return {
        "models": h,
        "reference": h_ref,
        "floor": estimate_from(p_f, r_f, f_prompts, level),
        "difference": estimate_from(p_h - p_r, r_h - r_r, both, level),
        "ratio": guarded_ratio(p_h - p_f, r_h - r_f, p_r - p_f, r_r - r_f, both, level),
    }


def reference_ratio(
    pair: np.ndarray,
    counts: np.ndarray,
    models: np.ndarray,
    reference: np.ndarray,
    level: float = 0.95,
    floor: np.ndarray | None = None,
) -> Ratio:
    """(H - F) / (H_ref - F) of :func:`reference_comparison` (H / H_ref without ``floor``)."""
    return reference_comparison(pair, counts, models, reference, floor, level)["ratio"]


def per_prompt_floor(X: np.ndarray, index: CellIndex) -> np.ndarray:
    """F(p): mean similarity of a response to p with a response to another prompt.

    Each prompt's responses weigh equally within it and every other prompt weighs the same,
    as in :func:`off_prompt_floor`, whose sampled pairs estimate the mean of F(p); here it is
    exact, s_p . (sum_q s_q - s_p) / (P - 1) with s_p the mean of p's unit embeddings, and
    per prompt, so it can be resampled with the prompts beside H. NaN where p has no response.
    """
    sums, _ = index.cell_sums(X)
    P = index.n_prompts
    S = np.zeros((P, sums.shape[1]))
    np.add.at(S, index.cell_prompt, sums)
    size = index.prompt_size.astype(np.float64)
    present = size > 0
    s = S / np.maximum(size, 1.0)[:, None]
    n = int(present.sum())
    if n < 2:
        return np.full(P, np.nan)
    total = s[present].sum(axis=0)
    return np.where(present, (s @ total - np.einsum("ij,ij->i", s, s)) / (n - 1), np.nan)


def off_prompt_floor(X: np.ndarray, index: CellIndex, n_pairs: int = 10_000, seed: int = 0) -> dict:
    """F: mean similarity of responses to different prompts, from a seeded random sample.

    A pair is drawn as two distinct prompts uniformly, then one response of each uniformly, so
    every prompt weighs the same however many responses it has, as for the other figures.
    """
    X = np.asarray(X)
    P = index.n_prompts
    present = np.flatnonzero(index.prompt_size > 0)
    if present.size < 2 or n_pairs <= 0:
        return {"value": float("nan"), "sd": float("nan"), "se": float("nan"), "pairs": 0}
    rng = np.random.default_rng(seed)
    i = rng.integers(0, present.size, n_pairs)
    j = rng.integers(0, present.size - 1, n_pairs)
    j = j + (j >= i)
    pa, pb = present[i], present[j]
    ra = index.order[index.prompt_start[pa] + (rng.random(n_pairs) * index.prompt_size[pa]).astype(np.int64)]
    rb = index.order[index.prompt_start[pb] + (rng.random(n_pairs) * index.prompt_size[pb]).astype(np.int64)]
    sims = np.einsum("ij,ij->i", np.asarray(X[ra], dtype=np.float64), np.asarray(X[rb], dtype=np.float64))
    sd = float(sims.std(ddof=1)) if n_pairs > 1 else float("nan")
    return {"value": float(sims.mean()), "sd": sd, "se": sd / np.sqrt(n_pairs), "pairs": int(n_pairs), "prompts": int(P)}
