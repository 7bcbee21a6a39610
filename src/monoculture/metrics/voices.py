"""Voices per prompt, each model's own range, and what the field loses without a model or group.

All of these are Vendi scores of per-prompt pools that differ only in which models are in
them. Weights w = 1 / (|M_p| k_{m,p}) depend on the pool only through |M_p|, so removing a set
S of models is the same kernel with S's rows at weight 0, rescaled. Every scenario (the full
pool, each model left out, each group left out, each random group) is therefore one weighting
of one stack of per-prompt Gram matrices, and all are decomposed together by
:func:`~monoculture.metrics.vendi.vendi_pools`. Results stay per prompt so the bootstrap is a
matrix product.

Where a removal is undefined the per-prompt value is NaN and the prompt does not count:
V(p) needs at least 2 models at p; L for a set S at p needs at least one member of S to have
answered p (otherwise the difference is 0 by construction, which would only dilute L) and at
least one model left after the removal.
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations
from math import comb

import numpy as np

from .responses import CellIndex
from .vendi import vendi_from_eigenvalues, vendi_pools

_WEIGHT_BYTES = 32 * 2**20


class _Decomposer:
    """Decomposes kernel stacks in worker threads and writes scores into ``out``.

    LAPACK releases the GIL, so on an idle machine two threads do the eigendecompositions
    1.5-1.7x faster than one. At most ``workers + 1`` stacks are in flight, which bounds memory,
    and only the calling thread writes to ``out``.
    """

    def __init__(self, out: np.ndarray, q: float, workers: int | None = None):
        self.out, self.q = out, q
        self.workers = max(1, min(4, workers or os.cpu_count() or 1))
        self.pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        self.pending: deque = deque()

    def submit(self, K: np.ndarray, rr: np.ndarray, cols: np.ndarray, n: np.ndarray) -> None:
        if self.pool is None:
            self._write(np.linalg.eigvalsh(K), rr, cols, n)
            return
        self.pending.append((self.pool.submit(np.linalg.eigvalsh, K), rr, cols, n))
        while len(self.pending) > self.workers:
            self._finish_one()

    def _finish_one(self) -> None:
        fut, rr, cols, n = self.pending.popleft()
        self._write(fut.result(), rr, cols, n)

    def _write(self, lam, rr, cols, n) -> None:
        self.out[rr[:, None], cols[None, :]] = np.where(n > 0, vendi_from_eigenvalues(lam, self.q), np.nan)

    def close(self) -> None:
        while self.pending:
            self._finish_one()
        if self.pool is not None:
            self.pool.shutdown()


def scenario_vendi(X: np.ndarray, index: CellIndex, include: np.ndarray, q: float = 1.0) -> np.ndarray:
    """(R, P) Vendi score of each prompt's pool restricted to the models in each row of include.

    Each included model weighs 1 / |included models present at p|, split evenly over its k
    responses. NaN where no included model answered the prompt.

    When pools are smaller than the embedding dimension, each prompt's Gram matrix is built
    once and every scenario decomposes only the rows it keeps: a pool that keeps 10 of 28
    models costs a 10 x 10 eigendecomposition, not a zero-padded 28 x 28 one.
    """
    include = np.atleast_2d(np.asarray(include, dtype=bool))
    rows = index.pool_rows()
    pm = index.pool_models()
    valid = rows >= 0
    k = index.counts.astype(np.float64)
    present = index.counts > 0
    P, width = rows.shape
    R = include.shape[0]
    out = np.full((R, P), np.nan)
    if P == 0 or width == 0 or R == 0:
        return out
    pm0 = np.where(valid, pm, 0)
    k_slot = np.where(valid, k[np.arange(P)[:, None], pm0], 1.0)
    n_inc = include.astype(np.int64) @ present.T.astype(np.int64)  # (R, P) models kept and present
    if width > np.asarray(X).shape[1]:
        return _scenario_vendi_padded(X, rows, valid, pm0, k_slot, include, n_inc, q, out)

    Xf = np.asarray(X, dtype=np.float64)
    d = Xf.shape[1]
    kept_rows = include.astype(np.int64) @ index.counts.T  # (R, P)
    width_r = kept_rows.max(axis=1)
    step_p = max(1, int(_WEIGHT_BYTES // max(1, 8 * width * (width + d))))
    dec = _Decomposer(out, q)
    try:
        _scenario_chunks(Xf, rows, valid, pm0, k_slot, include, n_inc, width_r, step_p, dec)
    finally:
        dec.close()
    return out


#: Prompts that share a layout (which model sits in which slot) with at least this many others
#: take the layout's fast path; the rest are gathered one by one.
_SHARED_LAYOUT = 16


def _scenario_chunks(Xf, rows, valid, pm0, k_slot, include, n_inc, width_r, step_p, dec) -> None:
    """Feed every scenario's kernels to ``dec``, grouping prompts by layout.

    Prompts with the same layout keep the same slots in a scenario, so their kernels are one
    strided selection of a Gram stack. In a complete study that is every prompt; a few prompts
    with a missing answer should not send the rest down the slow per-prompt gather.
    """
    layout = np.where(valid, pm0, -1)
    uniq, inverse = np.unique(layout, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    shared = np.bincount(inverse)[inverse] >= _SHARED_LAYOUT
    for u in np.unique(inverse[shared]):
        prompts = np.flatnonzero(inverse == u)
        for lo in range(0, len(prompts), step_p):
            cols = prompts[lo : lo + step_p]
            _uniform_scenarios(_gram_stack(Xf, rows, valid, k_slot, cols), uniq[u], include, n_inc[:, cols], cols, dec)
    rest = np.flatnonzero(~shared)
    for lo in range(0, len(rest), step_p):
        cols = rest[lo : lo + step_p]
        _gathered_scenarios(
            _gram_stack(Xf, rows, valid, k_slot, cols)[None], valid[cols], pm0[cols], include, n_inc, width_r, cols, dec
        )


def _gram_stack(Xf, rows, valid, k_slot, cols) -> np.ndarray:
    """(c, width, width) Gram matrices of the given prompts' pools with 1 / sqrt(k_i k_j) folded
    in: each scenario then only selects its rows and divides by its number of kept models."""
    ok = valid[cols]
    Xg = Xf[np.where(ok, rows[cols], 0)] * ok[..., None]
    G = Xg @ Xg.transpose(0, 2, 1)
    sk = 1.0 / np.sqrt(k_slot[cols])
    return G * sk[:, :, None] * sk[:, None, :]


def _gathered_scenarios(Gk, ok, pm0, include, n_inc, width_r, cols, dec: _Decomposer) -> None:
    """Scenarios over prompts of different layouts: each prompt's kept slots are gathered."""
    c, width = ok.shape
    for wdt in np.unique(width_r[width_r > 0]):
        group = np.flatnonzero(width_r == wdt)
        step_r = max(1, int(_WEIGHT_BYTES // max(1, 8 * 3 * c * int(wdt) * width)))
        for rlo in range(0, len(group), step_r):
            rr = group[rlo : rlo + step_r]
            keep = include[rr][:, pm0] & ok[None]  # (r, c, width)
            pos = np.argsort(~keep, axis=2, kind="stable")[:, :, :wdt]
            K = np.take_along_axis(Gk, pos[..., :, None], axis=2)
            K = np.take_along_axis(K, pos[..., None, :], axis=3)
            n = n_inc[rr][:, cols]
            kept = np.take_along_axis(keep, pos, axis=2)
            if not kept.all():  # prompts that keep fewer rows than the widest one
                K = K * (kept[..., :, None] & kept[..., None, :])
            K /= np.maximum(n, 1)[..., None, None]
            dec.submit(K, rr, cols, n)


def _uniform_scenarios(Gk, layout, include, n_inc, cols, dec: _Decomposer) -> None:
    """Scenarios over prompts that share ``layout`` (model per slot, -1 for an empty slot)."""
    keep = include[:, np.maximum(layout, 0)] & (layout >= 0)[None]  # (R, width): the same for every prompt
    widths = keep.sum(axis=1)
    for wdt in np.unique(widths[widths > 0]):
        group = np.flatnonzero(widths == wdt)
        step_r = max(1, int(_WEIGHT_BYTES // max(1, 8 * 2 * len(cols) * int(wdt) ** 2)))
        for rlo in range(0, len(group), step_r):
            rr = group[rlo : rlo + step_r]
            K = np.empty((len(rr), Gk.shape[0], int(wdt), int(wdt)))
            for i, r in enumerate(rr):
                ix = np.flatnonzero(keep[r])
                np.take(np.take(Gk, ix, axis=1), ix, axis=2, out=K[i])
            n = n_inc[rr]
            K /= np.maximum(n, 1)[..., None, None]
            dec.submit(K, rr, cols, n)


def _scenario_vendi_padded(X, rows, valid, pm0, k_slot, include, n_inc, q, out) -> np.ndarray:
    """Pools larger than d: the d x d form, with removed rows at weight 0."""
    P, width = rows.shape
    R = include.shape[0]
    step = max(1, int(_WEIGHT_BYTES // max(1, 8 * P * width)))
    for lo in range(0, R, step):
        inc = include[lo : lo + step]
        n = n_inc[lo : lo + step]
        slot_in = inc[:, pm0] & valid[None]  # (r, P, width)
        w = np.where(slot_in, 1.0 / (np.maximum(n, 1)[:, :, None] * k_slot[None]), 0.0)
        v = vendi_pools(X, rows, w, q)
        out[lo : lo + step] = np.where(n > 0, v, np.nan)
    return out


def own_range(X: np.ndarray, index: CellIndex, q: float = 1.0) -> np.ndarray:
    """(P, M) V_m(p): the Vendi score of m's own responses to p; NaN where k < 2."""
    out = np.full((index.n_prompts, index.n_models), np.nan)
    many = index.cell_size >= 2
    if many.any():
        rows = index.cell_rows()[many]
        out[index.cell_prompt[many], index.cell_model[many]] = vendi_pools(X, rows, None, q)
    return out


def random_groups(n_models: int, size: int, n_draws: int, seed: int = 0) -> np.ndarray:
    """(n, M) masks of random model groups of one size for the same-size baseline.

    When there are no more distinct groups than draws, all of them are used, which makes the
    baseline exact. The seed is combined with the size so one size's draws do not change when
    groups of other sizes are added to a study.
    """
    if size <= 0 or size > n_models:
        return np.zeros((0, n_models), dtype=bool)
    total = comb(n_models, size)
    if total <= n_draws:
        members = np.array(list(combinations(range(n_models), size)), dtype=np.int64)
    else:
        rng = np.random.default_rng([seed, size])
        members = np.argsort(rng.random((n_draws, n_models)), axis=1)[:, :size]
    masks = np.zeros((len(members), n_models), dtype=bool)
    np.put_along_axis(masks, members, True, axis=1)
    return masks


@dataclass
class VoicesResult:
    """Per-prompt arrays of every voices figure; means and intervals are taken from these."""

    voices: np.ndarray  # (P,) V(p)
    own_range: np.ndarray  # (P, M) V_m(p)
    loo: np.ndarray  # (P, M) V(p) - V_{-m}(p)
    group_loss: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (P,)
    group_baseline: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (P,)
    baseline_draws: dict[int, int] = field(default_factory=dict)  # group size -> draws used


def voices_analysis(
    X: np.ndarray,
    index: CellIndex,
    groups: dict[str, np.ndarray] | None = None,
    q: float = 1.0,
    n_random: int = 20,
    seed: int = 0,
) -> VoicesResult:
    """V(p), V_m(p), L_m per prompt, and L_G per prompt with its random-group baseline.

    ``groups`` maps a name to a (M,) boolean membership mask. All scenarios are deduplicated
    and computed in one batched pass.
    """
    M = index.n_models
    groups = groups or {}
    present = index.counts > 0
    multi = present.sum(axis=1) >= 2

    # Models with one answer per prompt are left out by one eigendecomposition per prompt
    # (vendi_loo); the others, and every group, are decomposed scenario by scenario. numba is
    # imported here, not with the package: vLLM's CPU workers, which import the `monoculture`
    # entry point, crash scanning modules once llvmlite is loaded (tests/test_import_light.py).
    from .vendi_loo import loo_vendi, single_answer_models

    fast = single_answer_models(index)
    slow = np.flatnonzero(~fast)
    head = 0 if fast.any() else 1  # the full pool, when vendi_loo does not give it
    scen = [np.ones((head, M), dtype=bool), ~np.eye(M, dtype=bool)[slow]]
    group_names = list(groups)
    group_masks = np.array([np.asarray(groups[g], dtype=bool) for g in group_names], dtype=bool).reshape(-1, M)
    scen.append(~group_masks)
    sizes = sorted({int(m.sum()) for m in group_masks if 1 < m.sum() < M})
    draws = {s: random_groups(M, s, n_random, seed) for s in sizes}
    for s in sizes:
        scen.append(~draws[s])
    allmasks = np.vstack(scen)
    uniq, inverse = np.unique(allmasks, axis=0, return_inverse=True)
    v_uniq = scenario_vendi(X, index, uniq, q)
    v_all = v_uniq[inverse.ravel()]
    v_loo = np.full((M, index.n_prompts), np.nan)
    v_loo[slow] = v_all[head : head + len(slow)]
    if head:
        v_full = v_all[0]
    else:
        v_full, v_fast = loo_vendi(X, index, fast, q)
        v_loo[fast] = v_fast[fast]

    V = np.where(multi, v_full, np.nan)

    def loss(removed: np.ndarray, v_rest: np.ndarray) -> np.ndarray:
        """V(p) - V_{-S}(p) over (n, M) removed masks and (n, P) rest scores."""
        touched = (removed[:, None, :] & present[None]).any(axis=2)
        left = (~removed[:, None, :] & present[None]).any(axis=2)
        ok = touched & left & multi[None]
        return np.where(ok, V[None] - v_rest, np.nan)

    loo = loss(np.eye(M, dtype=bool), v_loo).T
    pos = head + len(slow)
    g_loss = loss(group_masks, v_all[pos : pos + len(group_names)]) if group_names else np.zeros((0, len(V)))
    pos += len(group_names)
    base_by_size: dict[int, np.ndarray] = {}
    with warnings.catch_warnings():
        # nanmean over a prompt no draw touched is a legitimate NaN, not something to warn about.
        warnings.simplefilter("ignore", RuntimeWarning)
        base_by_size[1] = np.nanmean(loo, axis=1) if M else np.full(len(V), np.nan)
        for s in sizes:
            n = len(draws[s])
            base_by_size[s] = np.nanmean(loss(draws[s], v_all[pos : pos + n]), axis=0)
            pos += n
    result = VoicesResult(
        voices=V,
        own_range=own_range(X, index, q),
        loo=loo,
        baseline_draws={1: M, **{s: len(draws[s]) for s in sizes}},
    )
    for i, name in enumerate(group_names):
        s = int(group_masks[i].sum())
        result.group_loss[name] = g_loss[i]
        result.group_baseline[name] = base_by_size.get(s, np.full(len(V), np.nan))
    return result
