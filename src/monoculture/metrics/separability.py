"""How separable models are (METRICS.md, "How separable models are").

A logistic regression predicts which model wrote a response from its embedding. Folds are
grouped by prompt cluster (the prompt, or all translations of it) so that the classifier
cannot win by recognising the topic of a prompt it has seen from the same model. Folds run in parallel threads; BLAS threads are bounded with
threadpoolctl so that workers x BLAS threads never exceed the cores (oversubscription makes
scikit-learn fits several times slower, not faster).

Pairwise separability by default reads the pair (a, b) off the fold's multinomial model: the
log-odds z_a - z_b is exactly the logistic model of "a rather than b", fitted jointly with the
others. Fitting |M|(|M|-1)/2 binary models per fold instead (``pairwise="fit"``) follows the
letter of METRICS.md but costs 378 x 5 fits for 28 models; both give 0.5 for
indistinguishable models. See DEVIATIONS.md.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits

from .stats import Estimate, percentile_ci


@dataclass
class Separability:
    balanced_accuracy: Estimate
    chance: float
    fold_scores: list[float]
    pairwise_auc: np.ndarray  # (M, M), NaN on the diagonal and for pairs never tested
    per_prompt_correct: np.ndarray  # (P, M) correct predictions per prompt and true model
    per_prompt_total: np.ndarray  # (P, M)
    method: str
    n_splits: int


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half; NaN if a side is empty."""
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size)
    sorted_v = allv[order]
    # average ranks over ties
    uniq, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    r_pos = ranks[: pos.size].sum()
    return float((r_pos - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size))


def _logits(clf: LogisticRegression, X: np.ndarray, M: int) -> np.ndarray:
    """(n, M) class logits up to a common shift; NaN for classes absent from training."""
    df = clf.decision_function(X)
    if df.ndim == 1:  # binary: decision = z_1 - z_0
        df = np.c_[np.zeros_like(df), df]
    z = np.full((len(X), M), np.nan)
    z[:, clf.classes_] = df
    return z


def _fit(X: np.ndarray, y: np.ndarray, C: float, max_iter: int) -> LogisticRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=C, max_iter=max_iter).fit(X, y)


def _fold_pairwise_fit(X, y, train, test, M, C, max_iter):
    auc = np.full((M, M), np.nan)
    for a in range(M):
        for b in range(a + 1, M):
            tr = train[np.isin(y[train], (a, b))]
            te = test[np.isin(y[test], (a, b))]
            if len(np.unique(y[tr])) < 2:
                continue
            clf = _fit(X[tr], (y[tr] == a).astype(int), C, max_iter)
            s = clf.decision_function(X[te])
            auc[a, b] = auc[b, a] = _auc(s[y[te] == a], s[y[te] == b])
    return auc


def style_separability(
    X: np.ndarray,
    labels: np.ndarray,
    prompts: np.ndarray,
    n_models: int | None = None,
    n_prompts: int | None = None,
    n_splits: int = 5,
    C: float = 1.0,
    max_iter: int = 200,
    pairwise: str | None = "multinomial",
    counts: np.ndarray | None = None,
    level: float = 0.95,
    seed: int = 0,
    n_jobs: int | None = None,
    folds_by: np.ndarray | None = None,
) -> Separability:
    """Balanced accuracy of a prompt-grouped cross-validated logistic regression, chance
    1/|M|, a bootstrap interval over prompts, and the pairwise AUC matrix.

    ``pairwise`` is "multinomial" (pairs read off the fold's multinomial model), "fit" (one
    binary model per pair and fold) or None. ``counts`` is the study's bootstrap count matrix.
    ``folds_by`` (one code per row, default the prompt) is what a fold keeps together: the
    prompt's cluster, so that a topic seen in training in one language is never tested in
    another, where a topic-specific voice would let the classifier win by topic.
    """
    # float32 halves the fit time (the fit is two matrix products per iteration) and is the
    # precision embeddings come in; on test data the predictions match float64 fits.
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    g = np.asarray(prompts, dtype=np.int64)
    fold_g = g if folds_by is None else np.asarray(folds_by, dtype=np.int64)
    if fold_g.shape != g.shape:
        raise ValueError(f"folds_by must have one code per row ({g.shape}), got {fold_g.shape}")
    M = int(n_models if n_models is not None else y.max() + 1)
    P = int(n_prompts if n_prompts is not None else g.max() + 1)
    if pairwise not in ("multinomial", "fit", None):
        raise ValueError(f"pairwise must be 'multinomial', 'fit' or None, got {pairwise!r}")
    n_groups = len(np.unique(fold_g))
    if len(np.unique(y)) < 2:
        raise ValueError("separability needs responses from at least 2 models")
    if n_groups < 2:
        raise ValueError("separability needs at least 2 prompts (or clusters) to hold one out")
    k = min(n_splits, n_groups)
    try:
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    except TypeError:  # scikit-learn < 1.6 has no shuffling GroupKFold
        splitter = GroupKFold(n_splits=k)
    folds = list(splitter.split(X, y, fold_g))
    cores = os.cpu_count() or 1
    # One thread per fold even beyond the core count: the fits spend their time in BLAS, which
    # releases the GIL, so the last round does not leave cores idle (about 15% faster for 5
    # folds on 2 cores). BLAS gets the cores left per worker, at least 1.
    workers = max(1, min(len(folds), n_jobs or len(folds)))
    blas = max(1, cores // min(workers, cores))

    def run(fold):
        train, test = fold
        if len(np.unique(y[train])) < 2:
            return None
        clf = _fit(X[train], y[train], C, max_iter)
        z = _logits(clf, X[test], M)
        pred = clf.classes_[np.argmax(z[:, clf.classes_], axis=1)]
        auc = None
        if pairwise == "multinomial":
            auc = np.full((M, M), np.nan)
            yt = y[test]
            trained = np.zeros(M, dtype=bool)
            trained[clf.classes_] = True
            for a in range(M):
                for b in range(a + 1, M):
                    sa, sb = yt == a, yt == b
                    if trained[a] and trained[b] and sa.any() and sb.any():
                        diff = z[:, a] - z[:, b]
                        auc[a, b] = auc[b, a] = _auc(diff[sa], diff[sb])
        elif pairwise == "fit":
            auc = _fold_pairwise_fit(X, y, train, test, M, C, max_iter)
        return test, pred, auc

    with threadpool_limits(limits=blas):
        if workers > 1:
            with ThreadPoolExecutor(workers) as ex:
                results = list(ex.map(run, folds))
        else:
            results = [run(f) for f in folds]

    pred_all = np.full(len(y), -1, dtype=np.int64)
    fold_scores, aucs = [], []
    for res in results:
        if res is None:
            continue
        test, pred, auc = res
        pred_all[test] = pred
        fold_scores.append(_balanced_accuracy(y[test], pred))
        if auc is not None:
            aucs.append(auc)
    scored = pred_all >= 0
    correct = np.zeros((P, M))
    total = np.zeros((P, M))
    np.add.at(total, (g[scored], y[scored]), 1.0)
    np.add.at(correct, (g[scored], y[scored]), (pred_all[scored] == y[scored]).astype(float))

    point = _balanced_from_counts(correct.sum(axis=0)[None], total.sum(axis=0)[None])[0]
    lo: np.ndarray | float
    hi: np.ndarray | float
    if counts is not None and counts.shape[1] == P:
        reps = _balanced_from_counts(counts @ correct, counts @ total)
        lo, hi = percentile_ci(reps, level)
    else:
        lo = hi = np.nan
    rests_on = int((total.sum(axis=1) > 0).sum())
    if aucs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pair = np.nanmean(np.stack(aucs), axis=0)
    else:
        pair = np.full((M, M), np.nan)
    return Separability(
        balanced_accuracy=Estimate(float(point), float(lo), float(hi), rests_on),
        chance=1.0 / len(np.unique(y)),
        fold_scores=fold_scores,
        pairwise_auc=pair,
        per_prompt_correct=correct,
        per_prompt_total=total,
        method=pairwise or "none",
        n_splits=len(folds),
    )


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    classes = np.unique(y)
    return float(np.mean([(pred[y == c] == c).mean() for c in classes]))


def _balanced_from_counts(correct: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Balanced accuracy per row from per-class counts, over the classes present in that row."""
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(total > 0, correct / np.where(total > 0, total, 1.0), np.nan)
        n = np.isfinite(recall).sum(axis=1)
        return np.where(n > 0, np.nansum(recall, axis=1) / np.maximum(n, 1), np.nan)


def nearest_peers(C: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each model: the other model with the highest C, that similarity, and whether it
    reaches the model's own W (then, on these prompts, the two cannot be told apart)."""
    Cm = np.array(C, dtype=np.float64)
    np.fill_diagonal(Cm, np.nan)
    has = np.isfinite(Cm).any(axis=1)
    peer = np.where(has, np.argmax(np.where(np.isfinite(Cm), Cm, -np.inf), axis=1), -1)
    sim = np.where(has, Cm[np.arange(len(Cm)), np.maximum(peer, 0)], np.nan)
    with np.errstate(invalid="ignore"):
        indist = np.where(np.isfinite(sim) & np.isfinite(W), sim >= W, False)
    return peer, sim, indist
