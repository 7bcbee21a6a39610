"""Attractors of a property, exactly as Perez et al. 2024 define them, with intervals.

For one model and task, over all its chains, fit the least-squares line f(x_T) = a + b f(x_0)
(METRICS.md, "Feedback loops"). If -1 < b < 1 the line has a fixed point: **strength** 1 - |b|
and **position** a / (1 - b), clipped to the property's range; otherwise both are 0. The same
at step 10; the p-value of |b| < 1 from two one-sided t tests (the larger of the two one-sided
p's, so a small p says the slope is inside (-1, 1) on both sides).

What the paper lacks, added here: a bootstrap interval (seeds resampled within the model and
task, each seed with all its replicate chains), and a paired test between two models' strengths
on the same task and property. Replicate chains of one seed share everything but the sampling
seed, so they are not independent draws: resampling them one by one made intervals too narrow
(docs/loops.md gives the coverage figures). With one chain per seed the draw is exactly the
bootstrap over chains. Every bootstrap is one matrix product: a replicate is a row of weights
over chains (each chain its seed's multiplicity), and its least-squares slope is a weighted one,
so B slopes come out at once.

For chains x_{t+1} = a + b x_t + noise the line from x_0 to x_T has slope b^T, so the strength
at step T is 1 - |b|^T (a chain forgets its start geometrically) while the position a / (1 - b)
is the same at every step. ``x_from="first"`` regresses on f(x_1) instead of f(x_0): the
variant the paper's published length figures use.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from monoculture.errors import UserError
from monoculture.hashing import digest

X_FROM = ("seed", "first")


def _rng(seed: int, *parts: object) -> np.random.Generator:
    """A generator for one group, independent of the order groups are visited in."""
    return np.random.default_rng([int(seed), int(digest([str(p) for p in parts])[:8], 16)])


def cluster_weights(clusters: np.ndarray, bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """(bootstrap, n) weights of a cluster bootstrap: the clusters (seeds) drawn with
    replacement, each point (chain) weighted by its cluster's multiplicity. Clusters are
    numbered in the order they first appear, so with one point per cluster this is exactly
    ``rng.multinomial(n, 1/n)`` over the points: the chain bootstrap, draw for draw."""
    clusters = np.asarray(clusters).astype(str)
    if clusters.size == 0 or bootstrap <= 0:
        return np.zeros((max(bootstrap, 0), clusters.size))
    _, first, inverse = np.unique(clusters, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=int)
    rank[np.argsort(first)] = np.arange(first.size)
    k = first.size
    counts = rng.multinomial(k, np.full(k, 1.0 / k), size=bootstrap).astype(float)
    return counts[:, rank[inverse.ravel()]]


def weighted_lines(x: np.ndarray, y: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of y on x under each row of weights ``W`` (R, n):
    one row is one bootstrap replicate (multinomial counts) or one subset (0/1). NaN where a
    row's x has no spread."""
    xm, ym = float(x.mean()), float(y.mean())
    xc, yc = x - xm, y - ym  # centred first: lengths in the thousands would cancel badly
    sw = W.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = W @ xc / sw
        my = W @ yc / sw
        sxx = W @ (xc * xc) - sw * mx * mx
        sxy = W @ (xc * yc) - sw * mx * my
        scale = np.maximum(W @ (xc * xc), 1e-300)
        b = np.where(sxx > 1e-12 * scale, sxy / sxx, np.nan)
        a = (my + ym) - b * (mx + xm)
    return b, a


def strength_position(b: np.ndarray, a: np.ndarray, bounds: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Strength 1 - |b| and position a / (1 - b) clipped to ``bounds`` where -1 < b < 1, else 0
    and 0 (no fixed point); NaN where the slope is NaN."""
    b = np.asarray(b, dtype=float)
    a = np.asarray(a, dtype=float)
    inside = np.abs(b) < 1
    with np.errstate(invalid="ignore", divide="ignore"):
        pos = a / (1 - b)
    if bounds is not None:
        pos = np.clip(pos, bounds[0], bounds[1])
    strength = np.where(inside, 1 - np.abs(b), 0.0)
    position = np.where(inside, pos, 0.0)
    nan = np.isnan(b)
    strength[nan] = np.nan
    position[nan] = np.nan
    return strength, position


def tost_p(x: np.ndarray, y: np.ndarray, b: float, a: float) -> float | None:
    """p-value of |b| < 1: two one-sided t tests of b > -1 and b < 1 (n - 2 degrees of
    freedom), the larger of the two p's. None with fewer than 3 points."""
    n = len(x)
    if n < 3 or not np.isfinite(b):
        return None
    resid = y - (a + b * x)
    sxx = float(((x - x.mean()) ** 2).sum())
    se = float(np.sqrt((resid @ resid) / (n - 2) / sxx))
    df = n - 2
    if se == 0:
        return 0.0 if abs(b) < 1 else 1.0
    p_above_minus_one = float(stats.t.sf((b + 1) / se, df))
    p_below_one = float(stats.t.cdf((b - 1) / se, df))
    return max(p_above_minus_one, p_below_one)


def _interval(v: np.ndarray, level: float = 0.95) -> list[float | None]:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [None, None]
    lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def _f(v) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


@dataclass
class ChainValues:
    """The x and y of one (model, task, property, step) regression, one entry per chain used,
    and what was left out."""

    chain_id: np.ndarray
    seed_id: np.ndarray
    x: np.ndarray
    y: np.ndarray
    step: int
    short: int  # chains that do not reach the step (or step 1 for x_from="first")
    unscored: int  # chains whose x or y the scorer could not score (NaN)


def chain_values(group: pd.DataFrame, prop: str, *, step: int, x_from: str = "seed") -> ChainValues:
    """x = f(x_0) (or f(x_1) for ``x_from="first"``) and y = f(x_step) for each chain of one
    (model, task) in the long frame ``group`` (columns chain_id, seed_id, step and ``prop``)."""
    if x_from not in X_FROM:
        raise UserError(f"x_from must be one of {', '.join(X_FROM)} (got {x_from!r})")
    x_step = 0 if x_from == "seed" else 1
    wide = group.pivot_table(index="chain_id", columns="step", values=prop, aggfunc="first", dropna=False)
    seeds = group.drop_duplicates("chain_id").set_index("chain_id")["seed_id"]
    last = group.groupby("chain_id")["step"].max()
    ids = wide.index.to_numpy()
    reach = (last.reindex(ids).to_numpy() >= max(step, x_step)) if len(ids) else np.zeros(0, dtype=bool)
    x = wide[x_step].to_numpy(dtype=float) if x_step in wide.columns else np.full(len(ids), np.nan)
    y = wide[step].to_numpy(dtype=float) if step in wide.columns else np.full(len(ids), np.nan)
    ok = reach & np.isfinite(x) & np.isfinite(y)
    return ChainValues(
        chain_id=ids[ok],
        seed_id=seeds.reindex(ids[ok]).to_numpy(),
        x=x[ok],
        y=y[ok],
        step=int(step),
        short=int((~reach).sum()),
        unscored=int((reach & ~ok).sum()),
    )


def fit_attractor(
    x: np.ndarray,
    y: np.ndarray,
    bounds: tuple[float, float] | None,
    *,
    bootstrap: int = 1000,
    rng: np.random.Generator | None = None,
    clusters: np.ndarray | None = None,
) -> dict:
    """Strength, position, slope, intercept and p of one regression, with percentile intervals
    from ``bootstrap`` resamples of its points (chains), or of ``clusters`` of them (the seed of
    each chain: a seed is drawn with all its chains; None: every chain its own). The position's interval is taken over
    the replicates whose line has a fixed point (None when fewer than half have one: the
    position is then not a meaningful number). Near strength 1 the strength's interval sits
    below the truth (|slope| folds the noise of a slope near 0 to one side); the slope's
    interval does not, and is given too."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    out: dict[str, Any] = {"strength": None, "position": None, "ci": [None, None], "position_ci": [None, None]}
    out |= {"slope": None, "slope_ci": [None, None], "intercept": None, "p": None, "chains": int(n)}
    if n < 2:
        return out
    b, a = weighted_lines(x, y, np.ones((1, n)))
    s, pos = strength_position(b, a, bounds)
    out |= {"strength": _f(s[0]), "position": _f(pos[0]), "slope": _f(b[0]), "intercept": _f(a[0])}
    out["p"] = tost_p(x, y, float(b[0]), float(a[0]))
    groups = np.arange(n) if clusters is None else np.asarray(clusters)
    if bootstrap > 0 and n >= 3 and np.unique(groups.astype(str)).size >= 3 and np.isfinite(b[0]):
        rng = rng or np.random.default_rng(0)
        W = cluster_weights(groups, bootstrap, rng)
        bb, ab = weighted_lines(x, y, W)
        sb, pb = strength_position(bb, ab, bounds)
        out["ci"] = _interval(sb)
        out["slope_ci"] = _interval(bb)
        fixed = np.abs(bb) < 1
        if fixed.sum() >= 0.5 * np.isfinite(bb).sum():
            out["position_ci"] = _interval(pb[fixed])
    return out


def final_step(group: pd.DataFrame) -> int:
    """The step the "final" attractor is measured at: the last step of the group's longest
    chain (shorter chains are left out and counted)."""
    return int(group["step"].max()) if len(group) else 0


def attractor_table(
    scored: pd.DataFrame,
    properties: dict[str, tuple[float, float] | None],
    *,
    x_from: str = "seed",
    steps: Sequence[int | str] = ("final", 10),
    bootstrap: int = 1000,
    seed: int = 0,
) -> tuple[list[dict], list[str]]:
    """One row per (model, task, property, step) of the scored long frame (a column per
    property; ``label`` is the model), at the final step and at each other step asked for.
    Returns the rows and notes on the chains left out."""
    rows: list[dict] = []
    notes: list[str] = []
    if x_from not in X_FROM:
        raise UserError(f"x_from must be one of {', '.join(X_FROM)} (got {x_from!r})")
    for (label, task), group in scored.groupby(["label", "task"], sort=True):
        T = final_step(group)
        for prop, bounds in properties.items():
            for at in steps:
                step = T if at == "final" else int(at)
                if step <= (1 if x_from == "first" else 0):
                    continue  # no step after x: nothing to regress
                cv = chain_values(group, prop, step=step, x_from=x_from)
                fit = fit_attractor(
                    cv.x, cv.y, bounds, bootstrap=bootstrap, rng=_rng(seed, label, task, prop, step, x_from), clusters=cv.seed_id
                )
                rows.append(
                    {
                        "model": label,
                        "task": task,
                        "property": prop,
                        "step": step,
                        "at": "final" if at == "final" else f"step {step}",
                        **fit,
                        "excluded_short": cv.short,
                        "excluded_unscored": cv.unscored,
                    }
                )
                if cv.short:
                    notes.append(f"{label} / {task} / {prop} at step {step}: {cv.short} chain(s) shorter than that left out")
                if cv.unscored:
                    notes.append(
                        f"{label} / {task} / {prop} at step {step}: {cv.unscored} chain(s) the scorer could not score left out"
                    )
                if 0 < cv.x.size < 3:
                    notes.append(f"{label} / {task} / {prop} at step {step}: only {cv.x.size} chain(s), no interval or p-value")
                elif cv.x.size and np.unique(cv.seed_id.astype(str)).size < 3:
                    notes.append(
                        f"{label} / {task} / {prop} at step {step}: chains of fewer than 3 seeds, no interval "
                        "(seeds are resampled, each with its chains)"
                    )
    return rows, list(dict.fromkeys(notes))


def _strengths(x: np.ndarray, y: np.ndarray, W: np.ndarray) -> np.ndarray:
    b, a = weighted_lines(x, y, W)
    return strength_position(b, a, None)[0]


def paired_difference(
    a: ChainValues, b: ChainValues, *, bootstrap: int = 1000, permutations: int = 999, rng: np.random.Generator | None = None
) -> dict:
    """Strength of model A minus that of model B on the same task and property.

    The interval: when both models ran the same seeds, seeds are resampled and each keeps its
    chains in both models (a paired bootstrap); otherwise each model's seeds (each with its
    chains) are resampled on their own. The p-value: model labels are shuffled among the chains of each seed (a seed's
    chains of both models pooled, each model keeping its count), which leaves the seeds' spread
    of starting values alone; among all chains when the models share no seed. All shuffles'
    strengths come from one weight matrix."""
    rng = rng or np.random.default_rng(0)
    out: dict[str, Any] = {
        "difference": None,
        "ci": [None, None],
        "p": None,
        "paired": False,
        "chains_a": int(a.x.size),
        "chains_b": int(b.x.size),
    }
    if a.x.size < 3 or b.x.size < 3:
        return out
    ones_a, ones_b = np.ones((1, a.x.size)), np.ones((1, b.x.size))
    d = float(_strengths(a.x, a.y, ones_a)[0] - _strengths(b.x, b.y, ones_b)[0])
    if not np.isfinite(d):
        return out
    out["difference"] = d
    seeds_a, seeds_b = set(a.seed_id.tolist()), set(b.seed_id.tolist())
    paired = seeds_a == seeds_b and len(seeds_a) >= 2
    out["paired"] = paired
    if bootstrap > 0:
        if paired:
            seeds = np.array(sorted(seeds_a, key=str), dtype=object)
            counts = rng.multinomial(len(seeds), np.full(len(seeds), 1.0 / len(seeds)), size=bootstrap).astype(float)
            index = {s: i for i, s in enumerate(seeds)}
            Wa = counts[:, [index[s] for s in a.seed_id]]
            Wb = counts[:, [index[s] for s in b.seed_id]]
        else:
            Wa = cluster_weights(a.seed_id, bootstrap, rng)
            Wb = cluster_weights(b.seed_id, bootstrap, rng)
        out["ci"] = _interval(_strengths(a.x, a.y, Wa) - _strengths(b.x, b.y, Wb))
    if permutations > 0:
        x = np.concatenate([a.x, b.x])
        y = np.concatenate([a.y, b.y])
        seed_ids = np.concatenate([a.seed_id, b.seed_id]).astype(str)
        if not seeds_a & seeds_b:
            # No seed in common: shuffling within seed would change nothing (p = 1 always), so
            # labels are shuffled among all chains (exchangeable under the null of one dynamics).
            seed_ids = np.zeros(seed_ids.size, dtype=str)
        out["shuffled"] = "within seed" if seeds_a & seeds_b else "all chains"
        is_a = np.r_[np.ones(a.x.size, bool), np.zeros(b.x.size, bool)]
        _, group = np.unique(seed_ids, return_inverse=True)
        # Slots laid out seed by seed; in each seed the first (its number of A chains) slots are
        # A's. Each shuffle puts that seed's chains in its slots in a random order.
        slot_group = np.sort(group)
        first = np.searchsorted(slot_group, slot_group, side="left")
        n_a = np.bincount(group[is_a], minlength=group.max() + 1)
        slot_is_a = (np.arange(x.size) - first) < n_a[slot_group]
        keys = group[None, :] * 2.0 + rng.random((permutations, x.size))
        placed = np.argsort(keys, axis=1)  # (P, n): the chain put in each slot
        WA = np.zeros((permutations, x.size))
        np.put_along_axis(WA, placed, np.broadcast_to(slot_is_a, placed.shape).astype(float), axis=1)
        dp = _strengths(x, y, WA) - _strengths(x, y, 1.0 - WA)
        dp = dp[np.isfinite(dp)]
        out["p"] = float((1 + np.sum(np.abs(dp) >= abs(d) - 1e-12)) / (1 + dp.size)) if dp.size else None
    return out


def paired_table(
    scored: pd.DataFrame,
    properties: Sequence[str],
    *,
    x_from: str = "seed",
    bootstrap: int = 1000,
    permutations: int = 999,
    seed: int = 0,
) -> list[dict]:
    """The paired test for every two models on the same task and property, at the final step
    (the longer of the two models' final steps; shorter chains left out)."""
    rows: list[dict] = []
    for task, tgroup in scored.groupby("task", sort=True):
        labels = sorted(tgroup["label"].unique())
        for la, lb in itertools.combinations(labels, 2):
            ga, gb = tgroup[tgroup["label"] == la], tgroup[tgroup["label"] == lb]
            step = max(final_step(ga), final_step(gb))
            for prop in properties:
                ca = chain_values(ga, prop, step=step, x_from=x_from)
                cb = chain_values(gb, prop, step=step, x_from=x_from)
                res = paired_difference(
                    ca, cb, bootstrap=bootstrap, permutations=permutations, rng=_rng(seed, "paired", task, la, lb, prop, x_from)
                )
                rows.append({"task": task, "property": prop, "model_a": la, "model_b": lb, "step": step, **res})
    return rows
