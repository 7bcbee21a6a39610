"""Loop dynamics in embedding space: drift, convergence, loop diversity loss, lexical diversity per step.

Every function reads the long frame of :func:`monoculture.loops.tables.read_steps` (a row per chain
and step, step 0 the seed) with ``X``, the unit embeddings of ``frame.text`` row by row, and returns
one row per (label, task[, step]) (METRICS.md, "Feedback loops"):

- **drift**: d_t = mean over chains of cos(x_t, x_0), each chain against its own seed; the interval
  resamples seeds as clusters (a seed with all its replicate chains), like the others.
- **convergence**: at step t, the mean cosine between x_t of two chains whose seeds differ (pairs of
  chains of the same seed, replicates of one another, are left out), beside ``seeds_value``, the
  same mean over the same pairs of chains for their seeds. Above ``seeds_value``: chains that started
  apart end closer together. The interval resamples seeds as clusters (all chains of a seed
  together), because chains of one seed are not independent draws.
- **diversity_loss**: Vendi (q = 1) of the final texts, one per chain, against the Vendi of the
  seeds, one per chain too (a seed run by five replicate chains enters five times, so both sets
  have the same members; with the same number of chains per seed this equals the Vendi of the
  distinct seeds). ``ratio`` = final / seeds: below 1 the loop destroyed diversity. The interval
  resamples seeds as clusters, the same draw for numerator and denominator.
- **lexical_by_step**: the lexical figures of :mod:`monoculture.metrics.lexical` for the set of
  texts at each step (one per chain).

Sums of unit vectors make the pair means exact without a pairwise loop: the mean cosine over
pairs of chains in different seed clusters is (|sum_s S_s|^2 - sum_s |S_s|^2) / (K^2 - sum_s k_s^2)
with S_s the sum of seed s's vectors, and a bootstrap replicate only reweights the clusters, so all
replicates of all steps come from one Gram matrix of cluster sums per step.

A chain used by two studies appears twice in a frame read without a study; each (chain, step)
counts once here. Rows whose text is missing or whose vector is zero or not finite are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from monoculture.jsonsafe import jsonable
from monoculture.metrics.lexical import ORDERS, lexical_table
from monoculture.metrics.stats import percentile_ci, resample_counts
from monoculture.metrics.vendi import vendi_pools

KEYS = ["label", "task"]
DRIFT_COLUMNS = ["label", "task", "step", "value", "ci_low", "ci_high", "chains"]
CONVERGENCE_COLUMNS = [
    "label",
    "task",
    "step",
    "value",
    "seeds_value",
    "ci_low",
    "ci_high",
    "difference",
    "difference_ci_low",
    "difference_ci_high",
    "chains",
    "seeds",
]
DIVERSITY_COLUMNS = [
    "label",
    "task",
    "vendi_seeds",
    "vendi_final",
    "ratio",
    "ci_low",
    "ci_high",
    "chains",
    "seeds",
    "layers",
    "final_step_min",
    "final_step_max",
]
LEXICAL_METRICS = ["compression_ratio", *[f"ngram_div_{o}" for o in ORDERS], "ngram_div_mean", "self_repetition"]
LEXICAL_COLUMNS = ["label", "task", "step", "texts", "tokens", *LEXICAL_METRICS]

_NEEDED = ["chain_id", "label", "task", "seed_id", "step", "text"]
_BUDGET_BYTES = 32 * 2**20


def prepare(frame: pd.DataFrame, X: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The frame's usable rows, each (chain, step) once, with ``row`` (its row of the returned
    float64 unit vectors). Raises ValueError when X does not match the frame."""
    missing = [c for c in _NEEDED if c not in frame.columns]
    if missing:
        raise ValueError(f"loop frame lacks columns {missing}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != len(frame):
        raise ValueError(f"X must have one row per frame row ({len(frame)}), got shape {X.shape}")
    norms = np.linalg.norm(X, axis=1) if X.size else np.zeros(len(frame))
    ok = np.isfinite(norms) & (norms > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        Xn = np.where(ok[:, None], X / np.where(ok, norms, 1.0)[:, None], 0.0)
    f = frame.reset_index(drop=True).assign(row=np.arange(len(frame)))
    f = f[ok & f["text"].map(lambda t: isinstance(t, str)).to_numpy(dtype=bool)]
    f = f.assign(step=f["step"].astype(np.int64)).drop_duplicates(["chain_id", "step"], keep="first")
    return f.sort_values([*KEYS, "chain_id", "step"], kind="stable"), Xn


def final_rows(frame: pd.DataFrame, step: int | None = None) -> pd.DataFrame:
    """Each chain's final row: its last step (or step ``step``), chains with no step after the
    seed left out (an unstarted chain's "final text" would be its seed)."""
    f = frame[frame["step"] > 0] if step is None else frame[frame["step"] == step]
    if f.empty:
        return f
    return f.sort_values(["chain_id", "step"], kind="stable").drop_duplicates("chain_id", keep="last")


def finals(frame: pd.DataFrame, X: np.ndarray, step: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The final rows (:func:`final_rows`) of a long frame and their rows of X, re-indexed from
    0: what :func:`monoculture.loops.motifs.find_motifs` reads."""
    X = np.asarray(X)
    if X.shape[0] != len(frame):
        raise ValueError(f"X must have one row per frame row ({len(frame)}), got shape {X.shape}")
    f = frame.reset_index(drop=True)
    fin = final_rows(f, step)
    return fin.reset_index(drop=True), X[fin.index.to_numpy()]


def _groups(f: pd.DataFrame) -> Iterable[tuple[tuple[str, str], pd.DataFrame]]:
    for key, g in f.groupby(KEYS, sort=True, dropna=False):
        yield (str(key[0]), str(key[1])), g


def _interval(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0; NaN when there are no replicates (``bootstrap=0``)."""
    if replicates.shape[0] == 0:
        nan = np.full(replicates.shape[1:], np.nan)
        return nan, nan.copy()
    return percentile_ci(replicates, level)


def _num(x) -> float:
    return float(x) if x is not None and np.isfinite(x) else math.nan


def drift(frame: pd.DataFrame, X: np.ndarray, *, bootstrap: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per (label, task, step): mean over chains of cos(x_t, x_0), with a percentile interval
    over resampled seeds, each drawn with all its chains (one weight matrix per group, all steps
    at once). Resampling chains one by one ignores that replicate chains of a seed move
    together: on 200 synthetic studies of 20 seeds x 3 replicates its 95% interval held the
    mean drift in 81%, the seed clusters' in 95% or so. Step 0 is 1 by construction; a chain
    without its seed row is left out."""
    f, Xn = prepare(frame, X)
    out: list[dict] = []
    for (label, task), g in _groups(f):
        origin = g[g["step"] == 0].set_index("chain_id")["row"]
        g = g[g["chain_id"].isin(origin.index)]
        if g.empty:
            continue
        seeds, sc = np.unique(g["seed_id"].astype(str).to_numpy(), return_inverse=True)
        steps, si = np.unique(g["step"].to_numpy(), return_inverse=True)
        sims = np.einsum("nd,nd->n", Xn[g["row"].to_numpy()], Xn[origin.loc[g["chain_id"]].to_numpy()]).clip(-1.0, 1.0)
        sums = np.zeros((len(seeds), len(steps)))
        n_seed = np.zeros((len(seeds), len(steps)))
        np.add.at(sums, (sc, si), sims)
        np.add.at(n_seed, (sc, si), 1.0)
        n = n_seed.sum(axis=0)
        mean = sums.sum(axis=0) / n
        W = resample_counts(len(seeds), bootstrap, seed)
        with np.errstate(invalid="ignore", divide="ignore"):
            den = W @ n_seed
            reps = np.where(den > 0, (W @ sums) / np.where(den > 0, den, 1.0), np.nan)
        lo, hi = _interval(reps, level)
        for j, t in enumerate(steps):
            out.append(
                {
                    "label": label,
                    "task": task,
                    "step": int(t),
                    "value": _num(mean[j]),
                    "ci_low": _num(lo[j]),
                    "ci_high": _num(hi[j]),
                    "chains": int(n[j]),
                }
            )
    return pd.DataFrame(out, columns=DRIFT_COLUMNS)


def _cross_cluster_means(
    S: np.ndarray, k: np.ndarray, W: np.ndarray, seeds_sums: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean cosine over pairs of members of different clusters, per step, for the clusters as
    they are (weights 1) and for each row of cluster weights ``W`` (B, C).

    ``S`` (T, C, d) sums of members' vectors per step and cluster, ``k`` (T, C) member counts,
    ``seeds_sums`` the same as ``S`` for the members' seeds. Returns point (T,) and replicates
    (B, T) for the texts, then for the seeds. A cluster drawn twice is one cluster: the pairs
    between its copies are left out, like the pairs within it.
    """
    T, C, _ = S.shape
    B = W.shape[0]
    W2 = W**2
    den_pt = k.sum(axis=1) ** 2 - (k**2).sum(axis=1)
    den_b = (W @ k.T) ** 2 - W2 @ (k**2).T  # (B, T)
    res = []
    for sums in (S, seeds_sums):
        G = sums @ sums.transpose(0, 2, 1)  # (T, C, C)
        diag = np.einsum("tcc->tc", G)
        num_pt = G.sum(axis=(1, 2)) - diag.sum(axis=1)
        num_b = np.empty((B, T))
        step = max(1, _BUDGET_BYTES // max(1, 8 * B * C))
        for lo in range(0, T, step):
            hi = min(T, lo + step)
            WG = W[None] @ G[lo:hi]  # (t, B, C)
            num_b[:, lo:hi] = (WG * W[None]).sum(axis=2).T - W2 @ diag[lo:hi].T
        with np.errstate(invalid="ignore", divide="ignore"):
            res.append(np.where(den_pt > 0, num_pt / np.where(den_pt > 0, den_pt, 1.0), np.nan))
            res.append(np.where(den_b > 0, num_b / np.where(den_b > 0, den_b, 1.0), np.nan))
    return res[0], res[1], res[2], res[3]


def convergence(frame: pd.DataFrame, X: np.ndarray, *, bootstrap: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per (label, task, step): mean cosine between x_t of chains whose seeds differ, beside the
    same for the seeds of those chains (``seeds_value``, over the chains present at step t, so a
    chain that stopped early leaves both sides), and ``difference`` = value - seeds_value. The
    intervals resample seeds (clusters of chains); NaN where fewer than two seeds are present."""
    f, Xn = prepare(frame, X)
    out: list[dict] = []
    for (label, task), g in _groups(f):
        origin = g[g["step"] == 0].set_index("chain_id")["row"]
        g = g[g["chain_id"].isin(origin.index)]
        if g.empty:
            continue
        seeds, sc = np.unique(g["seed_id"].astype(str).to_numpy(), return_inverse=True)
        steps, si = np.unique(g["step"].to_numpy(), return_inverse=True)
        T, C, d = len(steps), len(seeds), Xn.shape[1]
        S = np.zeros((T, C, d))
        S0 = np.zeros((T, C, d))
        k = np.zeros((T, C))
        np.add.at(S, (si, sc), Xn[g["row"].to_numpy()])
        np.add.at(S0, (si, sc), Xn[origin.loc[g["chain_id"]].to_numpy()])
        np.add.at(k, (si, sc), 1.0)
        W = resample_counts(C, bootstrap, seed)
        value, reps, seeds_value, seed_reps = _cross_cluster_means(S, k, W, S0)
        lo, hi = _interval(reps, level)
        dlo, dhi = _interval(reps - seed_reps, level)
        for j, t in enumerate(steps):
            out.append(
                {
                    "label": label,
                    "task": task,
                    "step": int(t),
                    "value": _num(value[j]),
                    "seeds_value": _num(seeds_value[j]),
                    "ci_low": _num(lo[j]),
                    "ci_high": _num(hi[j]),
                    "difference": _num(value[j] - seeds_value[j]),
                    "difference_ci_low": _num(dlo[j]),
                    "difference_ci_high": _num(dhi[j]),
                    "chains": int(k[j].sum()),
                    "seeds": int((k[j] > 0).sum()),
                }
            )
    return pd.DataFrame(out, columns=CONVERGENCE_COLUMNS)


def _vendi_weighted(Xn: np.ndarray, rows: np.ndarray, weights: np.ndarray, q: float) -> np.ndarray:
    """Vendi of one pool under each row of ``weights`` (R, n), in slices that keep the stacked
    kernels within the working-memory budget."""
    n = len(rows)
    dim = min(n, Xn.shape[1])
    step = max(1, _BUDGET_BYTES // max(1, 8 * 3 * dim * dim))
    out = np.empty(weights.shape[0])
    for lo in range(0, weights.shape[0], step):
        w = weights[lo : lo + step]
        out[lo : lo + len(w)] = vendi_pools(Xn, rows[None], w[:, None, :], q=q)[:, 0]
    return out


def _layers(fin: pd.DataFrame) -> np.ndarray:
    """Each final row's rank among its seed's chains (by replicate, then chain id): layer j
    holds the j-th chain of every seed that has one."""
    order = fin.sort_values(["seed_id", "replicate", "chain_id"] if "replicate" in fin.columns else ["seed_id", "chain_id"])
    rank = order.groupby("seed_id", sort=False).cumcount()
    return rank.reindex(fin.index).to_numpy()


def diversity_loss(
    frame: pd.DataFrame,
    X: np.ndarray,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    q: float = 1.0,
    step: int | None = None,
    interval: str = "jackknife",
) -> pd.DataFrame:
    """Per (label, task): Vendi of the final texts (each chain's last step, or ``step``) against
    the Vendi of their seeds, and the ratio final / seeds with an interval over seeds.

    The interval is by default the leave-one-seed-out jackknife (ratio +- t quantile x its
    standard error; needs 3 seeds). ``interval="bootstrap"`` gives the percentile interval of
    ``bootstrap`` seed resamples instead, but a seed drawn twice is one voice, not two, so every
    resample loses seeds' diversity faster than converged finals' and the interval sits above
    the ratio (on the planted test of tests/loops it excluded its own point). ``bootstrap=0``
    gives no interval.

    Both sets hold one text per seed: with r replicate chains per seed, layer j is the j-th
    chain of every seed, each figure is the mean over layers of that layer's Vendi, and the
    seeds' figure is the mean Vendi of the same layers' seeds (the distinct seeds' Vendi when
    every seed has the same number of chains). Pooling all chains would compare r near-copies
    of each seed with r divergent finals, so replicates alone would read as diversity gained.
    """
    f, Xn = prepare(frame, X)
    out: list[dict] = []
    for (label, task), g in _groups(f):
        origin = g[g["step"] == 0].set_index("chain_id")["row"]
        fin = final_rows(g[g["chain_id"].isin(origin.index)], step)
        if fin.empty:
            continue
        seeds, sc = np.unique(fin["seed_id"].astype(str).to_numpy(), return_inverse=True)
        layer = _layers(fin)
        rows_final = fin["row"].to_numpy()
        rows_seed = origin.loc[fin["chain_id"]].to_numpy()
        S = len(seeds)
        if interval == "bootstrap":
            W = resample_counts(S, bootstrap if S > 1 else 0, seed)
        else:  # leave one seed out: row i gives seed i's chains weight 0
            W = (1.0 - np.eye(S)) if (S > 2 and bootstrap > 0) else np.zeros((0, S))
        # Sums over layers, per weighting (row 0: as they are); a layer whose seeds a weighting
        # leaves out (a third replicate only one seed has) is skipped in that weighting's mean.
        sums = np.zeros((2, 1 + W.shape[0]))
        used = np.zeros(1 + W.shape[0])
        for j in np.unique(layer):
            m = layer == j
            w = np.vstack([np.ones((1, int(m.sum()))), W[:, sc[m]]])
            vf, vs = _vendi_weighted(Xn, rows_final[m], w, q), _vendi_weighted(Xn, rows_seed[m], w, q)
            ok = np.isfinite(vf) & np.isfinite(vs)
            sums[0] += np.where(ok, vf, 0.0)
            sums[1] += np.where(ok, vs, 0.0)
            used += ok
        n_layers = len(np.unique(layer))
        v_final, v_seed = sums[0, 0] / n_layers, sums[1, 0] / n_layers
        ratio = v_final / v_seed if v_seed > 0 else math.nan
        lo = hi = math.nan
        if W.shape[0]:
            with np.errstate(invalid="ignore", divide="ignore"):
                reps = np.where(used[1:] > 0, sums[0, 1:] / sums[1, 1:], np.nan)
            if interval == "bootstrap":
                lo, hi = (float(v) for v in percentile_ci(reps, level))
            elif np.isfinite(reps).all():
                se = math.sqrt((S - 1) / S * float(((reps - reps.mean()) ** 2).sum()))
                half = float(student_t.ppf(0.5 + level / 2, S - 1)) * se
                lo, hi = ratio - half, ratio + half
        out.append(
            {
                "label": label,
                "task": task,
                "vendi_seeds": _num(v_seed),
                "vendi_final": _num(v_final),
                "ratio": _num(ratio),
                "ci_low": _num(lo),
                "ci_high": _num(hi),
                "chains": len(fin),
                "seeds": len(seeds),
                "layers": n_layers,
                "final_step_min": int(fin["step"].min()),
                "final_step_max": int(fin["step"].max()),
            }
        )
    return pd.DataFrame(out, columns=DIVERSITY_COLUMNS)


def lexical_by_step(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (label, task, step): the lexical figures of the set of texts at that step, one text
    per chain (n-gram diversity n = 1..4 and their mean, compression ratio, self-repetition; NaN
    where a figure has no value, see :mod:`monoculture.metrics.lexical`). ``texts`` says how many
    chains the set holds: the figures depend on it, so compare steps with equal counts."""
    missing = [c for c in _NEEDED if c not in frame.columns]
    if missing:
        raise ValueError(f"loop frame lacks columns {missing}")
    f = frame[frame["text"].map(lambda t: isinstance(t, str)).to_numpy(dtype=bool)]
    f = f.assign(step=f["step"].astype(np.int64)).drop_duplicates(["chain_id", "step"], keep="first")
    if f.empty:
        return pd.DataFrame(columns=LEXICAL_COLUMNS)
    keys = f[[*KEYS, "step"]].astype({"label": str, "task": str})
    sets = keys.drop_duplicates().sort_values([*KEYS, "step"], kind="stable").reset_index(drop=True)
    sid = keys.merge(sets.reset_index(names="set"), on=[*KEYS, "step"], how="left")["set"].to_numpy()
    table = lexical_table(f["text"].tolist(), [sid], [len(sets)])[0]
    out = pd.concat([sets, table.reset_index(drop=True)], axis=1)
    return out[LEXICAL_COLUMNS]


def frame_records(df: pd.DataFrame) -> list[dict]:
    """JSON-safe row dicts of one of these frames: NaN becomes None, and each ``<x>ci_low`` /
    ``<x>ci_high`` pair becomes one ``<x>ci`` list [lo, hi] (``ci``, ``difference_ci``)."""
    pairs = [c[: -len("ci_low")] for c in df.columns if c.endswith("ci_low") and c[: -len("low")] + "high" in df.columns]
    out = []
    for rec in df.to_dict("records"):
        row: dict = {}
        for key, v in rec.items():
            if any(key in (p + "ci_low", p + "ci_high") for p in pairs):
                continue
            row[key] = jsonable(v)
        for p in pairs:
            row[p + "ci"] = [jsonable(rec[p + "ci_low"]), jsonable(rec[p + "ci_high"])]
        out.append(row)
    return out
