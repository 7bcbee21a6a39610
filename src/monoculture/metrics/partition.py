"""Distinct answers: partition each model's responses to a prompt into equivalence classes.

Rule (METRICS.md): in sample order, a response joins the first class whose first member is
equivalent to it, otherwise it opens a new class. Only class leaders are ever compared, so
the result depends on order, which is why ResponseSet.sample fixes it.

With the cosine rule all equivalences of a cell come from one k x k product, and the
sequential rule runs over positions t = 0..k-1 for all cells at once (k is small; the number of
cells is not). A user-supplied classifier is called lazily, leader by leader, because each
call may be expensive (a cross-encoder, an API).

Very short answers (at most 5 word units each) are compared by their normalised words: an
embedding of "Paris" says little, and the words say everything. Word units are those of
:mod:`.segment`, where a character of a script written without spaces is one unit: counting
whitespace-separated words made every 200-character Chinese answer "one word", so Chinese
answers were compared character for character and distinct_k came out close to k.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .responses import CellIndex
from .segment import tokenize

Equivalence = Callable[[str, str], bool]

_CHUNK_BYTES = 64 * 2**20


def normalise_words(text: str) -> tuple[str, ...]:
    """Lowercased word units, with punctuation and whitespace folded away.

    A text with no word unit at all ("🙂", "...") keeps its whitespace-folded text instead,
    so that two different emoji answers are not the same empty answer."""
    return _key(text, tokenize(text))


def _key(text: str, words: list[str]) -> tuple[str, ...]:
    if not words:
        return (" ".join(text.lower().split()),)
    return tuple(w.replace("’", "'") for w in words)  # "Don’t" and "don't" are one answer


def is_short(text: str, max_words: int = 5) -> bool:
    return len(tokenize(text)) <= max_words


def _short_codes(texts: Sequence[str], max_words: int) -> tuple[np.ndarray, np.ndarray]:
    """Per text: whether it is short, and an integer code equal for equal normalised words
    (-1 for a text that is not short). Each text is tokenised once."""
    vocab: dict[tuple[str, ...], int] = {}
    short = np.zeros(len(texts), dtype=bool)
    codes = np.full(len(texts), -1, dtype=np.int64)
    for i, t in enumerate(texts):
        words = tokenize(t)
        if len(words) <= max_words:
            short[i] = True
            codes[i] = vocab.setdefault(_key(t, words), len(vocab))
    return short, codes


@dataclass(frozen=True)
class Partition:
    """Classes of every cell: ``labels`` per row (class number within its cell, -1 if unused),
    ``distinct`` per (prompt, model) cell (NaN where the model did not answer)."""

    labels: np.ndarray
    distinct: np.ndarray


def partition_responses(
    X: np.ndarray,
    index: CellIndex,
    tau: float | None = None,
    texts: Sequence[str] | None = None,
    equivalent: Equivalence | None = None,
    short_words: int = 5,
) -> Partition:
    """Partition every (model, prompt) cell; see the module docstring for the rule.

    Give ``tau`` (cosine threshold on the study's embeddings) or ``equivalent`` (a function of
    two texts). ``texts`` enables the short-answer rule and is required with ``equivalent``.
    """
    if tau is None and equivalent is None:
        raise ValueError("partition needs a cosine threshold tau or an equivalence function")
    if equivalent is not None and texts is None:
        raise ValueError("an equivalence function compares texts, so texts are required")
    n = np.asarray(X).shape[0]
    cells = index.cell_rows()
    if equivalent is not None:
        assert texts is not None  # checked above
        labels_cells = _partition_lazy(np.asarray(X), cells, tau, texts, equivalent, short_words)
    else:
        assert tau is not None  # checked above
        labels_cells = _partition_cosine(np.asarray(X), cells, float(tau), texts, short_words)
    labels = np.full(n, -1, dtype=np.int64)
    ok = cells >= 0
    labels[cells[ok]] = labels_cells[ok]
    distinct = np.full((index.n_prompts, index.n_models), np.nan)
    distinct[index.cell_prompt, index.cell_model] = labels_cells.max(axis=1) + 1 if cells.size else []
    return Partition(labels=labels, distinct=distinct)


def _partition_cosine(X: np.ndarray, cells: np.ndarray, tau: float, texts: Sequence[str] | None, short_words: int) -> np.ndarray:
    n_cells, k = cells.shape
    valid = cells >= 0
    safe = np.where(valid, cells, 0)
    if texts is not None:
        short, codes = _short_codes(texts, short_words)
        short_c = short[safe] & valid
        code_c = codes[safe]
    E = np.zeros((n_cells, k, k), dtype=bool)
    step = max(1, _CHUNK_BYTES // max(1, 8 * k * max(k, X.shape[1])))
    for lo in range(0, n_cells, step):
        sl = slice(lo, lo + step)
        Xg = np.asarray(X[safe[sl]], dtype=np.float64)
        e = (Xg @ Xg.transpose(0, 2, 1)) >= tau
        if texts is not None:
            both = short_c[sl, :, None] & short_c[sl, None, :]
            same = code_c[sl, :, None] == code_c[sl, None, :]
            e = np.where(both, same, e)
        E[sl] = e
    return _sequential_classes(E, valid)


def _sequential_classes(E: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """First-leader assignment for all cells at once; loops over positions only."""
    n_cells, k = valid.shape
    labels = np.full((n_cells, k), -1, dtype=np.int64)
    leader = np.zeros((n_cells, k), dtype=bool)
    n_cls = np.zeros(n_cells, dtype=np.int64)
    rows = np.arange(n_cells)
    for t in range(k):
        cand = leader[:, :t] & E[:, t, :t]
        has = cand.any(axis=1)
        first = cand.argmax(axis=1) if t else np.zeros(n_cells, dtype=np.int64)
        lab = np.where(has, labels[rows, first], n_cls)
        v = valid[:, t]
        labels[:, t] = np.where(v, lab, -1)
        new = v & ~has
        leader[:, t] = new
        n_cls += new
    return labels


def _partition_lazy(
    X: np.ndarray,
    cells: np.ndarray,
    tau: float | None,
    texts: Sequence[str],
    equivalent: Equivalence,
    short_words: int,
) -> np.ndarray:
    short, codes = _short_codes(texts, short_words)
    labels = np.full(cells.shape, -1, dtype=np.int64)
    for c, row in enumerate(cells):
        leaders: list[int] = []
        for t, i in enumerate(row):
            if i < 0:
                break
            for cls, j in enumerate(leaders):
                if short[i] and short[j]:
                    same = codes[i] == codes[j]
                else:
                    same = bool(equivalent(texts[j], texts[i]))
                if same:
                    labels[c, t] = cls
                    break
            else:
                labels[c, t] = len(leaders)
                leaders.append(int(i))
    return labels


def labelled_pairs(X: np.ndarray, index: CellIndex, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine and same-class flag of every pair i < j inside every cell, for calibrating tau.

    ``labels`` is a reference class per row (for instance a benchmark's own partition); pairs
    are formed only within a cell because equivalence is only ever judged there.
    """
    cells = index.cell_rows()
    valid = cells >= 0
    safe = np.where(valid, cells, 0)
    labels = np.asarray(labels)
    sims, same = [], []
    k = cells.shape[1]
    iu, ju = np.triu_indices(k, 1)
    step = max(1, _CHUNK_BYTES // max(1, 8 * k * max(k, np.asarray(X).shape[1])))
    for lo in range(0, len(cells), step):
        sl = slice(lo, lo + step)
        Xg = np.asarray(X[safe[sl]], dtype=np.float64)
        S = (Xg @ Xg.transpose(0, 2, 1))[:, iu, ju]
        L = labels[safe[sl]]
        ok = valid[sl][:, iu] & valid[sl][:, ju]
        sims.append(S[ok])
        same.append((L[:, iu] == L[:, ju])[ok])
    return np.concatenate(sims) if sims else np.zeros(0), np.concatenate(same) if same else np.zeros(0, bool)


@dataclass(frozen=True)
class TauCalibration:
    """The threshold chosen on labelled pairs, with both scores at that threshold."""

    tau: float
    criterion: str
    balanced_accuracy: float
    f1: float
    pairs: int
    same_pairs: int

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def calibrate_tau(sims: np.ndarray, same_labels: np.ndarray, criterion: str = "balanced_accuracy") -> TauCalibration:
    """Choose tau for "cosine >= tau means equivalent" on labelled pairs.

    Every cut between two consecutive distinct similarities is scored at once from cumulative
    counts; tau is the midpoint of the best cut, so it does not sit on a training value.
    Balanced accuracy is the default because same-answer pairs are usually the minority.
    """
    if criterion not in ("balanced_accuracy", "f1"):
        raise ValueError(f"criterion must be 'balanced_accuracy' or 'f1', got {criterion!r}")
    s = np.asarray(sims, dtype=np.float64).ravel()
    y = np.asarray(same_labels, dtype=bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{s.size} similarities but {y.size} labels")
    ok = np.isfinite(s)
    s, y = s[ok], y[ok]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("calibrating tau needs both same-class and different-class pairs")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # Cut after position i (predict "same" for the first i+1): only where the next value differs.
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.append(s[1:] < s[:-1], True)
    tp, fp, cut_s = tp[last], fp[last], s[last]
    next_s = np.append(cut_s[1:], -np.inf)
    # Also allow predicting nothing as "same".
    tp = np.concatenate([[0], tp])
    fp = np.concatenate([[0], fp])
    upper = np.concatenate([[np.inf], cut_s])
    lower = np.concatenate([[cut_s[0]], next_s])
    tpr = tp / n_pos
    tnr = 1.0 - fp / n_neg
    bal = (tpr + tnr) / 2.0
    fn = n_pos - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    score = bal if criterion == "balanced_accuracy" else f1
    best = int(np.argmax(score))
    hi, lo = upper[best], lower[best]
    if not np.isfinite(hi):
        tau = float(lo) + 1e-9
    elif not np.isfinite(lo):
        tau = float(hi) - 1e-9
    else:
        tau = float((hi + lo) / 2.0)
    return TauCalibration(
        tau=tau,
        criterion=criterion,
        balanced_accuracy=float(bal[best]),
        f1=float(f1[best]),
        pairs=int(s.size),
        same_pairs=n_pos,
    )
