"""A dated corpus over time: mean pairwise similarity per period, z-normalised.

The method of Goree et al. (CHI 2021, "Investigating the Homogenization of Web Design") for any
dated texts (``monoculture import jsonl`` with ``date`` and ``source`` columns): in each period,
the mean similarity between the texts of every two different sources released in it; the series
is then normalised to zero mean and unit standard deviation across periods, as that work does
to put measures of different scales on one axis, so a slope reads "standard deviations of the
series per year" whatever the embedder.

Texts are compared whatever their prompt (a corpus has none to share): the similarity of two
sources is the mean cosine over all pairs of their texts, which is the dot product of their mean
unit embeddings. A period with fewer than two sources has no pair and is left out.

Uncertainty as in the rest of "Over time": a bootstrap that resamples the sources within each
period (B replicates, seeded), and a permutation test that shuffles the dates among the sources
(K permutations, seeded), recomputing the whole series each time. The normalisation's mean and
SD are those of the observed series, held fixed across replicates, so the interval and the test
are those of the raw series in the z units (the p-value does not depend on them).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np

from monoculture.errors import UserError
from monoculture.metrics.stats import percentile_ci, resample_counts
from monoculture.trends.series import window_homogeneity
from monoculture.trends.slopes import permutation_p, weighted_slope
from monoculture.trends.windows import Window, make_windows


def _members(w: Window, day: np.ndarray) -> np.ndarray:
    """The sources whose dates (ordinals) fall in the window."""
    return np.flatnonzero((day >= w.start.toordinal()) & (day < w.end.toordinal()))


def _pair_means(C: np.ndarray, groups: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    """(B, T): the weighted mean of C over pairs of distinct sources within each group;
    ``w`` (B, S) multiplicities (a source drawn twice pairs with everyone else twice, never with
    itself: that would be a text's similarity to its own source). The cohorts' homogeneity of
    the model-release analysis, with the groups as its windows."""
    members = np.zeros((len(groups), C.shape[0]), dtype=bool)
    for t, idx in enumerate(groups):
        members[t, idx] = True
    return window_homogeneity(C, members, w)


def corpus_similarity(
    X: np.ndarray,
    sources: Sequence[str],
    dates: dict[str, date],
    *,
    period: str = "year",
    n_boot: int = 1000,
    n_perm: int = 999,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """The z-normalised similarity series of a dated corpus and its slope.

    ``X`` (N, d) holds one embedding per text, ``sources[i]`` the source of text i, ``dates`` each
    source's date (sources without one are left out and counted). Returns the ``--json`` shape of
    the trend analysis: ``series`` {"similarity_z": [{date, value, ci, models, raw}]}, ``slopes``
    [{series, group, value, ci, p}], and the ``normalisation`` (mean, sd) of the raw series."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != len(sources):
        raise ValueError("one embedding per text")
    names = sorted({s for s in sources if s in dates})
    undated = sorted({s for s in sources if s not in dates})
    pos = {s: i for i, s in enumerate(names)}
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    U = np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)
    sums = np.zeros((len(names), X.shape[1]))
    counts = np.zeros(len(names))
    for i, s in enumerate(sources):
        if s in pos:
            sums[pos[s]] += U[i]
            counts[pos[s]] += 1
    means = sums / np.maximum(counts, 1)[:, None]
    C = means @ means.T  # the mean cosine over all pairs of the two sources' texts
    day = np.array([dates[s].toordinal() for s in names])
    wins = [w for w in make_windows([dates[s] for s in names], period) if len(w.members) >= 2]
    if len(wins) < 3:
        raise UserError(
            f"a trend needs at least 3 periods ({period}) with two or more dated sources each; this corpus has {len(wins)}"
        )
    x = np.array([w.mid for w in wins])

    def groups_of(d: np.ndarray) -> list[np.ndarray]:
        return [_members(w, d) for w in wins]

    groups = groups_of(day)
    raw = _pair_means(C, groups, np.ones((1, len(names))))[0]
    mu, sd = float(raw.mean()), float(raw.std())
    if not sd > 0:
        raise UserError("the similarity is the same in every period: nothing to normalise")
    rng = np.random.default_rng([seed, 14, 4])
    w = np.zeros((n_boot, len(names)))
    for idx in groups:  # resample the sources within each period (the one seeded stream, in turn)
        w[:, idx] += resample_counts(len(idx), n_boot, rng)  # default_rng passes a Generator through
    boot = _pair_means(C, groups, w)
    perm_slopes = np.empty(n_perm)
    for k in range(n_perm):
        perm_slopes[k] = weighted_slope(x, _pair_means(C, groups_of(rng.permutation(day)), np.ones((1, len(names))))[0])
    lo, hi = percentile_ci(boot, level)
    z = (raw - mu) / sd
    series = [
        {
            "date": w.start.isoformat(),
            "label": w.label,
            "value": float(z[t]),
            "ci": [float((lo[t] - mu) / sd), float((hi[t] - mu) / sd)],
            "models": [names[i] for i in groups[t]],
            "raw": float(raw[t]),
        }
        for t, w in enumerate(wins)
    ]
    observed = float(weighted_slope(x, raw))
    s_lo, s_hi = percentile_ci(weighted_slope(x, boot), level)
    p = permutation_p(observed, perm_slopes)
    return {
        "series": {"similarity_z": series},
        "slopes": [
            {
                "series": "similarity_z",
                "group": None,
                "value": observed / sd,
                "ci": [float(s_lo) / sd, float(s_hi) / sd],
                "p": p,
                "unit": "SD of the series per year",
            }
        ],
        "normalisation": {"mean": mu, "sd": sd},
        "period": period,
        "undated": {"count": len(undated), "models": undated},
        "settings": {"n_boot": n_boot, "n_perm": n_perm, "seed": seed, "level": level},
    }


def corpus_trend(store, *, embedder: str = "tfidf", dates_file: str | None = None, **options) -> dict:
    """:func:`corpus_similarity` of a store's texts: every successful generation is a text of
    its model (the corpus's source), embedded with ``embedder`` (cached in the store like
    ``measure`` does), dated by :func:`~monoculture.trends.dates.release_dates`."""
    from monoculture.embed import embed_cached, get_embedder
    from monoculture.trends.dates import release_dates

    gens = store.generations()  # failed generations are left out there
    if gens.empty:
        raise UserError("the store holds no texts")
    texts = gens["text"].astype(str).tolist()
    sources = gens["model"].astype(str).tolist()
    dates, _ = release_dates(store, sorted(set(sources)), dates_file=dates_file)
    X, _, _ = embed_cached(store, get_embedder(embedder), texts)
    return corpus_similarity(X, sources, dates, **options)
