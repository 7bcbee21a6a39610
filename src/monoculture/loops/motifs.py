"""Motifs: where the chains of all models end, and whether different models end in the same places.

The final texts of all chains of all models (one per chain) are clustered together in embedding
space, so a motif means the same thing for every model (METRICS.md, "Feedback loops"):

- **Clustering**: k-means on the unit vectors (Euclidean k-means on the unit sphere ranks points
  as cosine does), seeded, 10 starts; k is given, or chosen by the mean silhouette (cosine) over
  k = 2..8 (at most one fewer than the distinct vectors), the smaller k on a tie. Motifs are
  numbered by size, largest first. Fewer than three distinct final vectors make one motif.
- **Names**: the words most distinctive of a motif (the metrics' word units, English function
  words left out): ranked by the share of the motif's texts that use the word minus the share of
  the other texts that do (a word every text uses scores 0), ties by the same contrast of tf-idf
  weights (each final text a document, sublinear tf, l2 rows); the top 5 with a positive
  contrast, the name the top 3.
- **Representatives**: the motif's distinct texts nearest its centre (the normalised mean of
  its members' vectors), 3 by default.
- **Per motif**: ``size`` (chains), ``seeds`` (distinct seeds among them: a motif reached from
  many seeds is an attractor, one that holds the chains of a single seed is that seed's own
  topic kept), ``labels`` (models ending there), ``cohesion`` (mean cosine of its members to
  its centre).
- **Profiles**: per label, the share of its chains that end in each motif.
- **Overlap** between models: 1 - the mean, over pairs of labels, of the total variation distance
  between their profiles (0.5 sum_m |p_a(m) - q_b(m)|). 1: every label spreads its chains over
  the motifs alike; 0: no two labels share a motif. Its permutation p tests the null that labels
  are exchangeable (the models' chains end in motifs drawn from one distribution): labels are
  shuffled among the chains of each task, the clusters kept, and p = (1 + #{overlap_perm <=
  overlap}) / (1 + K). A small p says the models' motif profiles differ more than chance would
  make them; a large p says the data cannot tell their profiles apart. ``null_mean`` is the mean
  overlap of the shuffles: what exchangeable labels with these chain counts read (below 1, since
  finite samples never match exactly), the yardstick for the observed value. Per pair of labels
  the same with the same shuffles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from monoculture.jsonsafe import jsonable
from monoculture.metrics.segment import tokenize

K_RANGE = (2, 8)
MOTIF_COLUMNS = ["motif", "name", "words", "size", "seeds", "labels", "cohesion"]
SHARE_COLUMNS = ["label", "motif", "share", "chains", "total"]
ASSIGNMENT_COLUMNS = ["chain_id", "label", "task", "motif", "similarity"]
_SILHOUETTE_SAMPLE = 2000


@dataclass
class MotifResult:
    """Motifs of a set of final texts. ``motifs``: one row per motif (``words`` a list, ``size``
    the chains ending there, ``seeds`` and ``labels`` how many distinct ones, ``cohesion``);
    ``shares``: one row per (label, motif), zeros included;
    ``representatives``: motif -> texts nearest its centre; ``overlap``: ``value``, ``p``,
    ``permutations``, ``null_mean``, ``null_ci``, ``labels``, ``pairs`` (per pair of labels);
    ``assignments``: each chain's motif and its cosine to the motif's centre."""

    motifs: pd.DataFrame
    shares: pd.DataFrame
    representatives: dict[int, list[str]]
    overlap: dict
    k: int
    chosen_by: str
    silhouette: dict[int, float] = field(default_factory=dict)
    assignments: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ASSIGNMENT_COLUMNS))

    def shares_by_task(self) -> list[dict]:
        """Per (label, task, motif) with chains there: the share of the label's chains of that
        task ending in the motif (motifs pooled over tasks can be one task's texts; this says)."""
        a = self.assignments
        if a.empty:
            return []
        counts = a.groupby(["label", "task", "motif"]).size().rename("chains").reset_index()
        counts["total"] = counts.groupby(["label", "task"])["chains"].transform("sum")
        return [
            {
                "label": r.label,
                "task": r.task,
                "motif": int(r.motif),
                "share": float(r.chains / r.total),
                "chains": int(r.chains),
                "total": int(r.total),
            }
            for r in counts.itertuples(index=False)
        ]

    def to_dict(self) -> dict:
        """JSON-safe: floats or None, lists, str keys."""
        reps = self.representatives
        return {
            "k": int(self.k),
            "chosen_by": self.chosen_by,
            "silhouette": [{"k": int(k), "score": _num(s)} for k, s in sorted(self.silhouette.items())],
            "motifs": [
                {
                    "motif": int(r.motif),
                    "name": r.name,
                    "words": list(r.words),
                    "size": int(r.size),
                    "seeds": int(r.seeds),
                    "labels": int(r.labels),
                    "cohesion": _num(r.cohesion),
                    "representatives": list(reps.get(int(r.motif), [])),
                }
                for r in self.motifs.itertuples(index=False)
            ],
            "shares": [
                {"label": r.label, "motif": int(r.motif), "share": _num(r.share), "chains": int(r.chains), "total": int(r.total)}
                for r in self.shares.itertuples(index=False)
            ],
            "shares_by_task": self.shares_by_task(),
            "overlap": jsonable(self.overlap),
            "method": METHOD,
        }


METHOD = (
    "Motifs: k-means (10 seeded starts) on the unit embeddings of every chain's final text, all models together; "
    "k chosen by mean cosine silhouette over 2-8 unless given; named by the words whose mean tf-idf in the motif "
    "most exceeds their mean elsewhere. Overlap = 1 - mean total variation distance between the labels' motif "
    "profiles; p from shuffling labels among chains within each task (null: labels exchangeable; small p = "
    "profiles differ more than chance)."
)


def _num(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _prepare(frame: pd.DataFrame, X: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """One usable row per chain (its last step if the frame holds several) and its unit vector."""
    missing = [c for c in ("chain_id", "label", "text") if c not in frame.columns]
    if missing:
        raise ValueError(f"final-text frame lacks columns {missing}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != len(frame):
        raise ValueError(f"X must have one row per frame row ({len(frame)}), got shape {X.shape}")
    norms = np.linalg.norm(X, axis=1) if X.size else np.zeros(len(frame))
    ok = np.isfinite(norms) & (norms > 0) & frame["text"].map(lambda t: isinstance(t, str)).to_numpy(dtype=bool)
    f = frame.reset_index(drop=True).assign(row=np.arange(len(frame)))[ok]
    if "task" not in f.columns:
        f = f.assign(task="")
    if "step" in f.columns:
        f = f.sort_values(["chain_id", "step"], kind="stable")
    f = f.drop_duplicates("chain_id", keep="last").sort_values(["label", "task", "chain_id"], kind="stable")
    f = f.astype({"label": str, "task": str})
    Xn = X[f["row"].to_numpy()] / norms[f["row"].to_numpy(), None]
    return f.reset_index(drop=True), Xn


def _cluster(Xn: np.ndarray, k: int | None, seed: int, k_range: tuple[int, int]) -> tuple[np.ndarray, int, str, dict[int, float]]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(Xn)
    distinct = len(np.unique(np.round(Xn, 6), axis=0)) if n else 0
    if k is not None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        k = min(int(k), max(distinct, 1))
        chosen = "given"
    elif distinct < 3:
        k, chosen = 1, "too few distinct final texts"
    else:
        chosen = "silhouette"
    scores: dict[int, float] = {}
    fits: dict[int, np.ndarray] = {}
    with threadpool_limits(limits=1):
        if chosen == "silhouette":
            for c in range(k_range[0], min(k_range[1], distinct - 1) + 1):
                lab = KMeans(n_clusters=c, n_init=10, random_state=seed).fit_predict(Xn)
                fits[c] = lab
                sample = min(n, _SILHOUETTE_SAMPLE)
                scores[c] = float(silhouette_score(Xn, lab, metric="cosine", sample_size=sample, random_state=seed))
            k = max(scores, key=lambda c: (round(scores[c], 12), -c))
        assert k is not None
        if k == 1:
            labels = np.zeros(n, dtype=np.int64)
        else:
            labels = fits[k] if k in fits else KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(Xn)
    # Number motifs by size, largest first (ties: the one whose first member comes first).
    sizes = np.bincount(labels, minlength=k)
    first = np.array([np.flatnonzero(labels == c)[0] if sizes[c] else n for c in range(k)])
    order = np.lexsort((first, -sizes))
    renumber = np.empty(k, dtype=np.int64)
    renumber[order] = np.arange(k)
    labels = renumber[labels]
    return labels[:n], int((sizes > 0).sum()), chosen, scores


def _name_words(text: str) -> list[str]:
    """The metrics' word units less English function words (names only; clustering reads the
    embeddings): a motif that is "everything else" is otherwise named "for / the / that"."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return [w for w in tokenize(text) if w not in ENGLISH_STOP_WORDS]


def _names(texts: list[str], labels: np.ndarray, k: int, n_words: int) -> list[list[str]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        vec = TfidfVectorizer(tokenizer=_name_words, lowercase=False, token_pattern=None, sublinear_tf=True)
        F = vec.fit_transform(texts)
    except ValueError:  # no word at all in any text
        return [[] for _ in range(k)]
    vocab = vec.get_feature_names_out()
    onehot = np.zeros((k, len(texts)))
    onehot[labels, np.arange(len(texts))] = 1.0
    size = onehot.sum(axis=1)[:, None]
    rest = len(texts) - size

    def contrast(M) -> np.ndarray:  # mean of M's rows in each motif minus their mean elsewhere
        inside = np.asarray((M.T @ onehot.T).T)
        total = inside.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return inside / np.maximum(size, 1) - np.where(rest > 0, (total - inside) / np.maximum(rest, 1), 0.0)

    weight = contrast(F)
    # Share of the motif's texts with the word minus the share of the other texts: a word every
    # text uses scores 0 however often it is written, which tf-idf weights alone do not ensure
    # when one motif holds most of the texts. With one motif, the tf-idf weight alone.
    presence = contrast((F > 0).astype(np.float64)) if k > 1 else weight
    out = []
    for c in range(k):
        top = np.lexsort((vocab, -weight[c], -presence[c]))[:n_words]
        out.append([str(vocab[i]) for i in top if presence[c, i] > 0])
    return out


def _representatives(
    f: pd.DataFrame, Xn: np.ndarray, labels: np.ndarray, k: int, n_rep: int
) -> tuple[dict[int, list[str]], np.ndarray]:
    sims = np.zeros(len(labels))
    reps: dict[int, list[str]] = {}
    texts = f["text"].tolist()
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        centre = Xn[idx].mean(axis=0)
        norm = np.linalg.norm(centre)
        s = Xn[idx] @ (centre / norm) if norm > 0 else np.zeros(len(idx))
        sims[idx] = s
        chosen: list[str] = []
        for i in idx[np.argsort(-s, kind="stable")]:
            if texts[i] not in chosen:
                chosen.append(texts[i])
            if len(chosen) == n_rep:
                break
        reps[c] = chosen
    return reps, sims


def _overlap(
    label_codes: np.ndarray,
    strata: np.ndarray,
    motif: np.ndarray,
    L: int,
    k: int,
    labels: list[str],
    permutations: int,
    seed: int,
) -> dict:
    """1 - mean pairwise total variation distance between label profiles, with its permutation p
    (labels shuffled among chains within each stratum; all shuffles in one array)."""
    if L < 2:
        return {
            "value": None,
            "p": None,
            "permutations": 0,
            "null_mean": None,
            "null_ci": [None, None],
            "labels": labels,
            "pairs": [],
            "note": "one label: no overlap between models",
        }
    n = len(label_codes)
    totals = np.bincount(label_codes, minlength=L).astype(np.float64)
    a, b = np.triu_indices(L, k=1)

    def stats(codes: np.ndarray) -> np.ndarray:  # (R, n) label codes -> (R, pairs) overlap per pair
        R = codes.shape[0]
        flat = (np.arange(R)[:, None] * L + codes) * k + motif[None, :]
        counts = np.bincount(flat.ravel(), minlength=R * L * k).reshape(R, L, k)
        prof = counts / totals[None, :, None]
        return np.clip(1.0 - 0.5 * np.abs(prof[:, a, :] - prof[:, b, :]).sum(axis=2), 0.0, 1.0)

    observed = stats(label_codes[None])[0]
    value = float(observed.mean())
    out: dict[str, Any] = {
        "value": value,
        "p": None,
        "permutations": int(permutations),
        "null_mean": None,
        "null_ci": [None, None],
        "labels": labels,
    }
    pairs = [{"a": labels[i], "b": labels[j], "value": float(v), "p": None} for i, j, v in zip(a, b, observed)]
    if permutations > 0:
        rng = np.random.default_rng(seed)
        perm = np.empty((permutations, n), dtype=np.int64)
        for s in np.unique(strata):
            idx = np.flatnonzero(strata == s)
            perm[:, idx] = rng.permuted(np.broadcast_to(label_codes[idx], (permutations, len(idx))), axis=1)
        null_pairs = np.empty((permutations, len(a)))
        step = max(1, (32 * 2**20) // max(1, 8 * L * k * 3 + 8 * len(a) * k))
        for lo in range(0, permutations, step):
            null_pairs[lo : lo + step] = stats(perm[lo : lo + step])
        null = null_pairs.mean(axis=1)
        out["p"] = float((1 + np.count_nonzero(null <= value + 1e-12)) / (1 + permutations))
        out["null_mean"] = float(null.mean())
        out["null_ci"] = [float(np.quantile(null, 0.025)), float(np.quantile(null, 0.975))]
        pair_p = (1 + (null_pairs <= observed[None, :] + 1e-12).sum(axis=0)) / (1 + permutations)
        for row, pp in zip(pairs, pair_p):
            row["p"] = float(pp)
    out["pairs"] = pairs
    return out


def find_motifs(
    frame_final: pd.DataFrame,
    X_final: np.ndarray,
    *,
    k: int | None = None,
    seed: int = 0,
    permutations: int = 999,
    k_range: tuple[int, int] = K_RANGE,
    words: int = 5,
    representatives: int = 3,
) -> MotifResult:
    """Cluster the final texts (rows of ``frame_final``: ``chain_id``, ``label``, ``text``, and
    ``task``/``step`` where present; a chain with several rows counts by its last step) with
    their unit embeddings ``X_final``; see the module docstring for every choice."""
    f, Xn = _prepare(frame_final, X_final)
    if f.empty:
        empty_overlap = {
            "value": None,
            "p": None,
            "permutations": 0,
            "null_mean": None,
            "null_ci": [None, None],
            "labels": [],
            "pairs": [],
            "note": "no final texts",
        }
        return MotifResult(
            pd.DataFrame(columns=MOTIF_COLUMNS), pd.DataFrame(columns=SHARE_COLUMNS), {}, empty_overlap, 0, "no final texts"
        )
    motif, _, chosen, scores = _cluster(Xn, k, seed, k_range)
    k_used = int(motif.max()) + 1
    texts = f["text"].tolist()
    names = _names(texts, motif, k_used, words)
    reps, sims = _representatives(f, Xn, motif, k_used, representatives)
    sizes = np.bincount(motif, minlength=k_used)
    seed_col = f["seed_id"].astype(str) if "seed_id" in f.columns else pd.Series(np.arange(len(f)).astype(str))
    by_motif = pd.DataFrame({"motif": motif, "seed": seed_col.to_numpy(), "label": f["label"].to_numpy(), "sim": sims})
    grouped = by_motif.groupby("motif")
    motifs = pd.DataFrame(
        {
            "motif": np.arange(k_used),
            "name": [" / ".join(w[:3]) if w else f"motif {c}" for c, w in enumerate(names)],
            "words": names,
            "size": sizes,
            "seeds": grouped["seed"].nunique().reindex(range(k_used), fill_value=0).to_numpy(),
            "labels": grouped["label"].nunique().reindex(range(k_used), fill_value=0).to_numpy(),
            "cohesion": grouped["sim"].mean().reindex(range(k_used)).to_numpy(),
        },
        columns=MOTIF_COLUMNS,
    )
    label_names = sorted(f["label"].unique())
    codes = pd.Categorical(f["label"], categories=label_names).codes.astype(np.int64)
    L = len(label_names)
    counts = np.zeros((L, k_used), dtype=np.int64)
    np.add.at(counts, (codes, motif), 1)
    totals = counts.sum(axis=1)
    shares = pd.DataFrame(
        {
            "label": np.repeat(label_names, k_used),
            "motif": np.tile(np.arange(k_used), L),
            "share": (counts / totals[:, None]).ravel(),
            "chains": counts.ravel(),
            "total": np.repeat(totals, k_used),
        },
        columns=SHARE_COLUMNS,
    )
    strata = pd.factorize(f["task"])[0]
    overlap = _overlap(codes, strata, motif, L, k_used, label_names, permutations, seed)
    assignments = pd.DataFrame(
        {"chain_id": f["chain_id"], "label": f["label"], "task": f["task"], "motif": motif, "similarity": sims},
        columns=ASSIGNMENT_COLUMNS,
    )
    return MotifResult(motifs, shares, reps, overlap, k_used, chosen, scores, assignments)
