"""Leave-one-out Vendi scores from one eigendecomposition per prompt.

Removing one response from a pool deletes one row and column of the weighted kernel K (the
other weights are rescaled by a common factor, which scales the spectrum). The eigenvalues of
a principal submatrix need no second decomposition: with K = U diag(lam) U^T,

    (K - mu I)^{-1}_{jj} = sum_k U_jk^2 / (lam_k - mu) = det(K_{-j} - mu I) / det(K - mu I),

so the n - 1 eigenvalues of K without row j are the roots of the secular function
h(mu) = sum_k u_k / (lam_k - mu), u_k = U_jk^2, one in each gap between consecutive
eigenvalues of K (Cauchy interlacing). Each root costs a few O(n) evaluations of h, so a
prompt's leave-one-out for all of its n models costs one n x n eigendecomposition plus O(n^3)
cheap arithmetic, instead of n eigendecompositions: O(n^3) instead of O(n^4) per prompt.

The roots are found as LAPACK's dlaed4 finds those of a rank-one update. The origin is moved
to the nearer pole, so that the small distances are exact. Each step models h near the iterate
by c + s1 / (lam_a - mu) + s2 / (lam_{a+1} - mu) and takes the model's root: Gragg's model,
matching h, h' and h'' (cubic convergence), or where its weights come out negative, dlaed4's
"middle way", matching the terms left and right of the root separately in value and slope
(quadratic). Every step stays inside a bisection bracket, so no iterate leaves its gap. An
iteration stops when its step is below 1e-5 (cubic) or 1e-7 (quadratic) of the distance to the
origin pole: the roots are then as close to 35-digit eigenvalues of the leave-one-out kernels as
iterating to the end gets them (12 eps * lambda_max at most on well-spread random spectra; eigvalsh
5; a threshold of 1e-4 left up to 100 and saved 8% of the evaluations). Against decomposing every
leave-one-out kernel in float64, Vendi differs by 4e-13 at most over 111,000 random, duplicated,
nearly duplicated and low-rank pools (the tests check it, to 1e-9, on fewer). From the middle of
each gap, about 2.5 evaluations per root follow on AlpacaEval. The middle values
themselves are a table per pool (the poles are the same for every row), so they cost
multiply-adds, not divisions.

Deflation handles what the secular function cannot: an eigenvector with no weight on row j
(u_k at rounding level) keeps its eigenvalue, and eigenvalues closer than rounding (duplicate
answers, the zero eigenvalues of a pool larger than the embedding dimension) are merged into
one pole, each merged copy being a root.

Only single-row removals take this path (a model with one answer at the prompt); removing a
model with several answers there is a rank-k deletion, decomposed as before by
:mod:`.voices`. The kernels are compiled with numba (no Python per root).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from .responses import CellIndex
from .vendi import _check_q, vendi_from_eigenvalues

_EPS = float(np.finfo(np.float64).eps)
#: Working-memory budget of one stack of kernels and eigenvectors.
_STACK_BYTES = 32 * 2**20
_MAX_ITER = 80
#: Relative step after which an iterate is final, by order of convergence of the step.
_CONVERGED = (0.0, 0.0, 1e-7, 1e-5)
#: A pole weight at or below this is rounding: its eigenvector has no weight on the row.
_TOL_U = _EPS * _EPS


@njit(cache=True, nogil=True)
def _h_parts(lam, u, m, left, origin, tau):  # pragma: no cover - compiled
    """psi, psi', phi, phi' and h''/2 at origin + tau: psi sums the terms of poles 0..left,
    phi those of left+1..m-1. Distances to the poles are taken from the origin (a pole next to
    the root), which keeps the small ones exact. One division per pole is the cost."""
    psi = 0.0
    dpsi = 0.0
    curv = 0.0
    for i in range(left + 1):
        t = 1.0 / ((lam[i] - origin) - tau)
        ut = u[i] * t
        psi += ut
        dpsi += ut * t
        curv += ut * t * t
    phi = 0.0
    dphi = 0.0
    for i in range(left + 1, m):
        t = 1.0 / ((lam[i] - origin) - tau)
        ut = u[i] * t
        phi += ut
        dphi += ut * t
        curv += ut * t * t
    return psi, dpsi, phi, dphi, curv


@njit(cache=True, nogil=True)
def _two_pole_root(c, s1, s2, dA, dB):  # pragma: no cover - compiled
    """Root in (dA, dB) of c + s1 / (dA - t) + s2 / (dB - t) (s1, s2 > 0: one root there), or
    NaN. As c t^2 - b t + e = 0, solved without cancellation."""
    b = c * (dA + dB) + s1 + s2
    e = c * dA * dB + s1 * dB + s2 * dA
    if c == 0.0:
        return e / b if b != 0.0 else np.nan
    disc = b * b - 4.0 * c * e
    if disc < 0.0:
        return np.nan
    r = np.sqrt(disc)
    q = 0.5 * (b + r) if b >= 0.0 else 0.5 * (b - r)
    r1 = q / c
    if dA < r1 < dB:
        return r1
    return e / q if q != 0.0 else np.nan


@njit(cache=True, nogil=True)
def _model_step(psi, dpsi, phi, dphi, curv, dA, dB, tau):  # pragma: no cover - compiled
    """Next iterate from a model c + s1 / (dA - t) + s2 / (dB - t) of h around tau, and the
    order of convergence it gives.

    First choice (Gragg's): the model that matches h, h' and h'' at tau, which converges
    cubically. Its pole weights can come out negative far from the root; then the model that
    matches psi and phi separately in value and slope (dlaed4's "middle way", quadratic).
    """
    A = dA - tau
    B = dB - tau
    h1 = dpsi + dphi
    inv = 1.0 / (A - B)
    g1 = (h1 - curv * B) * inv  # s1 = A^3 g1, s1 / A = A^2 g1
    g2 = (curv * A - h1) * inv
    if g1 < 0.0 and g2 > 0.0:  # s1 > 0 and s2 > 0 (A < 0 < B)
        new = _two_pole_root(psi + phi - A * A * g1 - B * B * g2, A * A * A * g1, B * B * B * g2, dA, dB)
        if new == new:
            return new, 3
    s1 = dpsi * A * A
    s2 = dphi * B * B
    return _two_pole_root((psi - s1 / A) + (phi - s2 / B), s1, s2, dA, dB), 2


@njit(cache=True, nogil=True)
def _advance(lam, m, a, psi, dpsi, phi, dphi, curv, st, active):  # pragma: no cover - compiled
    """One safeguarded model step of root a from h's parts at its iterate (st as _gap_roots)."""
    origin, lo, hi, tau = st[0], st[1], st[2], st[3]
    o, t = origin[a], tau[a]
    h = psi + phi
    if h == 0.0 or abs(h) <= 8.0 * m * _EPS * (phi - psi):
        active[a] = False
        return
    if h < 0.0:
        lo[a] = t
    else:
        hi[a] = t
    new, order = _model_step(psi, dpsi, phi, dphi, curv, lam[a] - o, lam[a + 1] - o, t)
    if lo[a] < new < hi[a]:
        tau[a] = new
        # Convergence is cubic (or quadratic) in the distance to the origin pole: after a
        # step of 1e-5 (1e-7) of it the error left is at the rounding of h itself (module
        # docstring: as close to the exact roots as iterating to the end).
        if abs(new - t) <= _CONVERGED[order] * abs(new):
            active[a] = False
    else:
        tau[a] = 0.5 * (lo[a] + hi[a])
        if hi[a] - lo[a] <= 2.0 * _EPS * max(abs(lo[a]), abs(hi[a])):
            active[a] = False


@njit(cache=True, nogil=True)
def _gap_roots(lam, u, m, out, st, active, mids, have_mids, count):  # pragma: no cover - compiled
    """The m - 1 roots of sum_i u_i / (lam_i - mu), one between each two poles, into out.

    The roots are iterated side by side, one step of each per round: the steps of one root
    depend on each other, those of different roots do not, so the processor overlaps them
    (iterating each root to the end in turn left it waiting on division latency: 15% slower
    here). ``st`` (4, m) holds each root's origin, bracket and iterate; ``active`` (m,).
    With ``have_mids``, ``mids[:, a]`` are _h_parts at the middle of gap a (from
    :func:`_mid_parts`). ``count`` (2,) adds the roots found and the evaluations of h made,
    one division per pole each (the benchmark's floor and the tests' check on convergence read
    them); a middle value from ``mids`` is not counted, as it takes no division."""
    origin, lo, hi, tau = st[0], st[1], st[2], st[3]
    count[0] += m - 1
    if not have_mids:
        count[1] += m - 1
    for a in range(m - 1):
        # At the middle of the gap, with distances from the left pole: which half holds the
        # root decides the origin (distances to the nearer pole are then exact), and the
        # model there gives the first iterate.
        left_pole = lam[a]
        gap = lam[a + 1] - left_pole
        mid = 0.5 * gap
        if have_mids:
            psi, dpsi, phi, dphi, curv = mids[0, a], mids[1, a], mids[2, a], mids[3, a], mids[4, a]
        else:
            psi, dpsi, phi, dphi, curv = _h_parts(lam, u, m, a, left_pole, mid)
        h = psi + phi
        active[a] = h != 0.0
        if h == 0.0:
            origin[a], tau[a] = left_pole, mid
            continue
        first, _ = _model_step(psi, dpsi, phi, dphi, curv, 0.0, gap, mid)
        if h > 0.0:  # h increases through the gap: the root is in the left half
            origin[a], lo[a], hi[a] = left_pole, 0.0, mid
        else:
            origin[a], lo[a], hi[a] = lam[a + 1], -mid, 0.0
            first -= gap
        tau[a] = first if lo[a] < first < hi[a] else 0.5 * (lo[a] + hi[a])
    for _ in range(_MAX_ITER):
        busy = False
        for a in range(m - 1):
            if active[a]:
                busy = True
                count[1] += 1
                psi, dpsi, phi, dphi, curv = _h_parts(lam, u, m, a, origin[a], tau[a])
                _advance(lam, m, a, psi, dpsi, phi, dphi, curv, st, active)
        if not busy:
            break
    for a in range(m - 1):
        out[a] = origin[a] + tau[a]


@njit(cache=True, nogil=True)
def _merge_tol(lam):  # pragma: no cover - compiled
    """Eigenvalues closer than this are one pole: rounding of a backward-stable eigensolver."""
    top = 0.0
    for i in range(lam.shape[0]):
        top = max(top, abs(lam[i]))
    return 8.0 * lam.shape[0] * _EPS * top


@njit(cache=True, nogil=True)
def principal_roots(lam, u, out, lam_a, u_a, st, active, count):  # pragma: no cover - compiled
    """Eigenvalues of K without one row and column, from K's ascending eigenvalues ``lam`` and
    the squared entries ``u`` of that row in K's eigenvectors (summing to 1). Writes the
    n - 1 values into ``out`` (unordered); lam_a, u_a (n,), st (4, n) and active (n,) are
    scratch; ``count`` as :func:`_gap_roots`."""
    n = lam.shape[0]
    tol_lam = _merge_tol(lam)
    m = 0
    k = 0
    for i in range(n):
        if u[i] <= _TOL_U:
            out[k] = lam[i]  # an eigenvector without weight on the row: unchanged
            k += 1
        elif m > 0 and lam[i] - lam_a[m - 1] <= tol_lam:
            u_a[m - 1] += u[i]  # a repeated eigenvalue: one copy stays, one pole is left
            out[k] = lam[i]
            k += 1
        else:
            lam_a[m] = lam[i]
            u_a[m] = u[i]
            m += 1
    if m > 1:
        _gap_roots(lam_a, u_a, m, out[k:], st, active, st, False, count)
    return k + max(m - 1, 0)  # n - 1 unless u had no weight at all


@njit(cache=True, nogil=True)
def _vendi_of(mu, n, scale, q):  # pragma: no cover - compiled
    """vendi_from_eigenvalues(scale * mu[:n], q), with its rounding threshold."""
    top = 0.0
    for i in range(n):
        top = max(top, scale * mu[i])
    tol = n * _EPS * max(top, 0.0)
    acc = 0.0
    big = 0.0
    found = False
    for i in range(n):
        x = scale * mu[i]
        if x > tol:
            found = True
            if q == 1.0:
                acc -= x * np.log(x)
            elif np.isinf(q):
                big = max(big, x)
            else:
                acc += x**q
    if not found:
        return np.nan
    if q == 1.0:
        return np.exp(acc)
    if np.isinf(q):
        return 1.0 / big
    return np.exp(np.log(acc) / (1.0 - q))


@njit(cache=True, nogil=True)
def _merge_poles(lam, merged, group):  # pragma: no cover - compiled
    """Eigenvalues closer than rounding merged (as principal_roots merges them); returns their
    number, with group[i] the merged pole of lam[i]."""
    tol = _merge_tol(lam)
    m = 0
    for i in range(lam.shape[0]):
        if m > 0 and lam[i] - merged[m - 1] <= tol:
            group[i] = m - 1
        else:
            merged[m] = lam[i]
            group[i] = m
            m += 1
    return m


@njit(cache=True, nogil=True)
def _mid_table(lam, m, T):  # pragma: no cover - compiled
    """T[i, a] = 1 / (lam_i - middle of gap a), with distances from gap a's left pole."""
    for a in range(m - 1):
        mid = 0.5 * (lam[a + 1] - lam[a])
        for i in range(m):
            T[i, a] = 1.0 / ((lam[i] - lam[a]) - mid)


@njit(cache=True, nogil=True)
def _mid_parts(T, u, m, P):  # pragma: no cover - compiled
    """P[:, a] = _h_parts at the middle of every gap a at once, from the table T: the same
    sums in the same order, as multiply-adds across gaps instead of a division per term."""
    for r in range(5):
        for a in range(m - 1):
            P[r, a] = 0.0
    for i in range(m):
        w = u[i]
        for a in range(i, m - 1):  # pole i is left of gap a's middle: psi
            t = T[i, a]
            ut = w * t
            P[0, a] += ut
            P[1, a] += ut * t
            P[4, a] += ut * t * t
        for a in range(min(i, m - 1)):  # right of it: phi
            t = T[i, a]
            ut = w * t
            P[2, a] += ut
            P[3, a] += ut * t
            P[4, a] += ut * t * t


@njit(cache=True, nogil=True)
def _loo_stack(lam, U, slot, scale, q, out, count):  # pragma: no cover - compiled
    """out[b, s] = Vendi of pool b without its row slot[b, s] (-1: left as is), its other
    weights rescaled by scale[b]; ``count`` as :func:`_gap_roots`.

    The poles (K's eigenvalues) are the same for every row of a pool, only their weights
    change: the values at the gaps' middles, where each root's iteration starts, are one
    table per pool and multiply-adds per row. A row with a pole of no weight (deflation
    depends on the row) takes the general path of principal_roots."""
    B, n = lam.shape
    S = slot.shape[1]
    u = np.empty(n)
    mu = np.empty(n)
    lam_a = np.empty(n)
    u_a = np.empty(n)
    st = np.empty((4, n))
    active = np.empty(n, dtype=np.bool_)
    merged = np.empty(n)
    group = np.empty(n, dtype=np.int64)
    T = np.empty((n, n))
    mids = np.empty((5, n))
    for b in range(B):
        m = _merge_poles(lam[b], merged, group)
        _mid_table(merged, m, T)
        for s in range(S):
            j = slot[b, s]
            if j < 0:
                continue
            total = 0.0
            for i in range(n):
                u[i] = U[b, j, i] * U[b, j, i]
                total += u[i]
            for i in range(m):
                u_a[i] = 0.0
            for i in range(n):
                u[i] /= total  # 1 up to rounding; exact so that the poles' weights sum to 1
                u_a[group[i]] += u[i]
            weighted = True
            for i in range(m):
                weighted &= u_a[i] > _TOL_U
            if not weighted:
                k = principal_roots(lam[b], u, mu, lam_a, u_a, st, active, count)
            else:
                k = 0
                for i in range(1, n):
                    if group[i] == group[i - 1]:
                        mu[k] = lam[b, i]  # a repeated eigenvalue: one copy stays
                        k += 1
                if m > 1:
                    _mid_parts(T, u_a, m, mids)
                    _gap_roots(merged, u_a, m, mu[k:], st, active, mids, True, count)
                    k += m - 1
            out[b, s] = _vendi_of(mu, k, scale[b], q)


def loo_vendi_pools(
    K: np.ndarray,
    slot: np.ndarray,
    scale: np.ndarray,
    q: float = 1.0,
    workers: int = 1,
    count: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Vendi of each pool and of each pool without one row.

    ``K`` is (B, n, n) weighted kernels (trace 1), ``slot`` (B, S) the row to remove for each of
    S removals per pool (-1: none), ``scale`` (B,) the factor the remaining weights are
    multiplied by. Returns ((B,) full-pool scores, (B, S) leave-one-out scores, NaN where
    slot is -1). ``workers`` threads share the pools (the compiled loops release the GIL).
    ``count``, an int64 (2,) array, receives the roots found and the evaluations they took.
    """
    q = _check_q(q)
    K = np.asarray(K, dtype=np.float64)
    slot = np.ascontiguousarray(slot, dtype=np.int64)
    scale = np.ascontiguousarray(scale, dtype=np.float64)
    B = len(K)
    full = np.full(B, np.nan)
    out = np.full(slot.shape, np.nan)

    counts = np.zeros((max(1, workers), 2), dtype=np.int64)

    def run(part: int, lo: int, hi: int) -> None:
        lam, U = np.linalg.eigh(K[lo:hi])  # LAPACK releases the GIL, as the compiled loops do
        full[lo:hi] = vendi_from_eigenvalues(lam, q)
        _loo_stack(lam, U, slot[lo:hi], scale[lo:hi], q, out[lo:hi], counts[part])

    if workers <= 1 or B < 2 * workers:
        run(0, 0, B)
    else:
        cuts = np.linspace(0, B, workers + 1).astype(int)
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(run, range(workers), cuts[:-1], cuts[1:]))
    if count is not None:
        count += counts.sum(axis=0)
    return full, out


def single_answer_models(index: CellIndex) -> np.ndarray:
    """(M,) models whose every answered prompt holds exactly one of their answers: their
    leave-one-out rows take the one-decomposition path."""
    k = index.counts
    return ((k == 0) | (k == 1)).all(axis=0)


def loo_vendi(
    X: np.ndarray, index: CellIndex, models: np.ndarray, q: float = 1.0, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(P,) V(p) and (M, P) Vendi of each prompt's pool without model m, for the models in the
    ``models`` mask (each with at most one answer per prompt; other rows are NaN).

    Weights are those of :func:`.voices.scenario_vendi`: 1 / (|M_p| k_{m,p}), so removing one
    model rescales the rest by |M_p| / (|M_p| - 1). Where m did not answer p the pool is
    unchanged (its V(p)); where m is the only model, nothing is left (NaN). A model with
    several answers at a prompt is refused: removing it is not a one-row deletion.
    """
    q = _check_q(q)
    X = np.asarray(X)  # rows are gathered, then made float64: no float64 copy of all of X
    M, P = index.n_models, index.n_prompts
    models = np.asarray(models, dtype=bool)
    if models.shape != (M,):
        raise ValueError(f"models must be a ({M},) mask, got shape {models.shape}")
    if (models & ~single_answer_models(index)).any():
        raise ValueError("loo_vendi removes one row per prompt: models with several answers at a prompt cannot be in models")
    rows, pm = index.pool_rows(), index.pool_models()
    V = np.full(P, np.nan)
    out = np.full((M, P), np.nan)
    if P == 0 or rows.shape[1] == 0:
        return V, out
    workers = max(1, min(4, workers or os.cpu_count() or 1))
    width = (rows >= 0).sum(axis=1)
    n_models = index.models_per_prompt
    k = index.counts.astype(np.float64)
    for n in np.unique(width[width > 0]):
        prompts = np.flatnonzero(width == n)
        step = max(1, int(_STACK_BYTES // (8 * (3 * n * n + n * X.shape[1]))))
        for lo in range(0, len(prompts), step):
            ps = prompts[lo : lo + step]
            r, mm = rows[ps, :n], pm[ps, :n]
            Xg = np.asarray(X[r], dtype=np.float64)
            sk = 1.0 / np.sqrt(k[ps[:, None], mm] * n_models[ps, None])
            K = Xg @ Xg.transpose(0, 2, 1)
            K *= sk[:, :, None] * sk[:, None, :]  # weights on the n x n kernel, not the n x d rows
            slot = np.where(models[mm], np.arange(n)[None, :], -1)
            nm = n_models[ps].astype(np.float64)
            scale = nm / np.maximum(nm - 1.0, 1.0)
            full, loo = loo_vendi_pools(K, slot, scale, q, workers)
            V[ps] = full
            loo = np.where(nm[:, None] > 1, loo, np.nan)
            # slot s of prompt ps[i] holds model mm[i, s]
            sel = slot >= 0
            out[mm[sel], np.broadcast_to(ps[:, None], mm.shape)[sel]] = loo[sel]
    absent = models[:, None] & (index.counts.T == 0)
    out = np.where(absent, V[None, :], out)
    return V, out
