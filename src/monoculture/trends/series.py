"""The series of "Over time" (METRICS.md): each model against the field before it, and each
window's homogeneity and voices.

Every function takes stacked inputs so that one call gives the point value, all bootstrap
replicates or all permutations:

* per-model series read the (M, M) cross-model similarity C (or a (B, M, M) stack of its
  bootstrap replicates) and an ``earlier`` mask, earlier[m, j] meaning j was released before m
  (a (K, M, M) stack under permuted dates);
* model weights w (B, M) are the multiplicities of a bootstrap draw of models: a model drawn
  twice counts twice in the earlier field and in the window, one not drawn is absent.

Voices are Vendi scores of per-prompt pools restricted to a set of models, computed by the
metrics code (:func:`~monoculture.metrics.voices.scenario_vendi`), never here.
"""

from __future__ import annotations

import numpy as np

from monoculture.metrics.responses import CellIndex
from monoculture.metrics.voices import random_groups, scenario_vendi


def earlier_mask(x: np.ndarray) -> np.ndarray:
    """earlier[..., m, j]: model j was released strictly before m (same-day releases are peers,
    neither earlier than the other). ``x`` is (..., M) release dates as numbers."""
    x = np.asarray(x, dtype=np.float64)
    return x[..., None, :] < x[..., :, None]


def field_similarity(C: np.ndarray, earlier: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """S_m, the mean C of m to the models released before it, and the nearest earlier peer's C.

    NaN where m has no earlier model (the first release, or none drawn in a replicate).
    """
    C = np.asarray(C, dtype=np.float64)
    E = np.asarray(earlier, dtype=bool) & np.isfinite(C)
    Wt = E * (1.0 if w is None else np.asarray(w, dtype=np.float64)[..., None, :])
    C0 = np.where(E, C, 0.0)
    den = Wt.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        S = np.where(den > 0, (Wt * C0).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)
    near = np.where(Wt > 0, C0, -np.inf).max(axis=-1)
    return S, np.where(np.isfinite(near), near, np.nan)


def model_means(X: np.ndarray, index: CellIndex, counts: np.ndarray | None = None, chunk: int = 64) -> np.ndarray:
    """Each model's mean answer embedding: the mean over the prompts it answered of its mean
    unit embedding at the prompt, so every prompt weighs the same. (M, d), or (B, M, d) with
    ``counts`` (B, P) the bootstrap multiplicities of the prompts."""
    sums, _ = index.cell_sums(X)
    U = sums / index.cell_size[:, None]
    M = index.n_models
    if counts is None:
        A = np.ones((1, len(index.cell_prompt)))
    else:
        A = np.asarray(counts, dtype=np.float64)[:, index.cell_prompt]
    out = np.full((A.shape[0], M, U.shape[1]), np.nan)
    for m in range(M):
        cells = np.flatnonzero(index.cell_model == m)
        if cells.size == 0:
            continue
        for lo in range(0, A.shape[0], chunk):
            a = A[lo : lo + chunk, cells]
            den = a.sum(axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[lo : lo + chunk, m] = np.where(den > 0, (a @ U[cells]) / np.where(den > 0, den, 1.0), np.nan)
    return out[0] if counts is None else out


def centre_distance(G: np.ndarray, earlier: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """1 - cos(mean answer embedding of m, centroid of the earlier models' mean embeddings).

    ``G`` is the (..., M, M) Gram matrix of the models' mean answer embeddings, so the centroid
    never has to be formed: its dot product with m and its squared norm are sums of G.
    """
    G = np.asarray(G, dtype=np.float64)
    Wt = np.asarray(earlier, dtype=bool) * (1.0 if w is None else np.asarray(w, dtype=np.float64)[..., None, :])
    Wt = np.broadcast_to(Wt, np.broadcast_shapes(Wt.shape, G.shape))
    G0 = np.where(np.isfinite(G), G, 0.0)
    dot = (Wt * G0).sum(axis=-1)
    quad = ((Wt @ G0) * Wt).sum(axis=-1)  # sum_ij Wt_mi G_ij Wt_mj, through a BLAS product
    own = np.einsum("...mm->...m", G0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / np.sqrt(own * quad)
    ok = (Wt.sum(axis=-1) > 0) & (quad > 0) & (own > 0)
    return np.where(ok, 1.0 - cos, np.nan)


def window_homogeneity(C: np.ndarray, members: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """H among each window's models: the mean C over its pairs of distinct models.

    ``members`` is (..., W, M) boolean; with weights a pair (i, j) counts w_i w_j, and a model
    drawn twice is not paired with its own copy. NaN where a window has fewer than 2 models.
    """
    C = np.asarray(C, dtype=np.float64)
    M = C.shape[-1]
    off = ~np.eye(M, dtype=bool) & np.isfinite(C)
    C0 = np.where(off, C, 0.0)
    D = off.astype(np.float64)
    a = np.asarray(members, dtype=np.float64)
    if w is not None:
        a = a * np.asarray(w, dtype=np.float64)[..., None, :]
    num = np.einsum("...wi,...ij,...wj->...w", a, C0, a)
    den = np.einsum("...wi,...ij,...wj->...w", a, D, a)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def pool_voices(X: np.ndarray, index: CellIndex, include: np.ndarray, q: float = 1.0) -> np.ndarray:
    """(R, P) V(p) of each prompt's pool restricted to each row of ``include`` (R, M); NaN
    where fewer than 2 of the included models answered p, as for the field's V(p).

    Identical rows are computed once: under permuted dates, equal-n subsets repeat often.
    """
    include = np.atleast_2d(np.asarray(include, dtype=bool))
    if include.shape[0] == 0:
        return np.zeros((0, index.n_prompts))
    uniq, inverse = np.unique(include, axis=0, return_inverse=True)
    v = scenario_vendi(X, index, uniq, q)
    present = (index.counts > 0).astype(np.int64)
    n_inc = uniq.astype(np.int64) @ present.T
    v = np.where(n_inc >= 2, v, np.nan)
    return v[inverse.ravel()]


def equal_n_subsets(members: np.ndarray, n_models: int, n: int, draws: int, seed: int) -> np.ndarray:
    """(S, M) masks of seeded random n-model subsets of a window's ``members`` (model codes);
    all of them when there are no more than ``draws`` (then the mean is exact)."""
    members = np.asarray(members, dtype=np.int64)
    local = random_groups(len(members), n, draws, seed)
    out = np.zeros((local.shape[0], n_models), dtype=bool)
    for i, row in enumerate(local):
        out[i, members[row]] = True
    return out


def subset_means(V: np.ndarray, sub_w: np.ndarray | None, counts: np.ndarray | None) -> np.ndarray:
    """Mean over prompts of the mean over subsets of per-prompt voices ``V`` (S, P).

    ``sub_w`` (B, S): multiplicities of a bootstrap draw of the subsets; ``counts`` (B, P): of
    the prompts. Without them, the point value (a (1,) array).
    """
    V = np.asarray(V, dtype=np.float64)
    D = np.isfinite(V)
    V0 = np.where(D, V, 0.0)
    sw = np.ones((1, V.shape[0])) if sub_w is None else np.asarray(sub_w, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        num, den = sw @ V0, sw @ D
        per_prompt = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)  # (B, P)
        c = np.ones((1, V.shape[1])) if counts is None else np.asarray(counts, dtype=np.float64)
        ok = np.isfinite(per_prompt)
        tot = (c * ok).sum(axis=1)
        return np.where(tot > 0, (c * np.where(ok, per_prompt, 0.0)).sum(axis=1) / np.where(tot > 0, tot, 1.0), np.nan)
