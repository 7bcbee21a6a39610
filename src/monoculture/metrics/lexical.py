"""Lexical diversity of sets of texts (METRICS.md, "Lexical diversity").

Texts are tokenised once; every n-gram becomes an integer, and distinct counts per set are
counts of distinct (set, n-gram) integer pairs, so thousands of sets (one per model and
prompt, one per model) cost a few sorts instead of a Python set per set and n.

A figure that has no defined value is NaN, never 0 or 1: n-gram diversity of a set with no
n-gram, self-repetition of a set with fewer than two texts (there is no "other text"),
compression ratio of an empty set. The mean over n = 1..4 is NaN when any of the four is,
because a mean over fewer orders would be a different quantity.
"""

from __future__ import annotations

import gzip
import re
from typing import Sequence

import numpy as np
import pandas as pd

ORDERS = (1, 2, 3, 4)
_TOKEN = re.compile(r"\w+(?:['’]\w+)*")
_INT_LIMIT = np.iinfo(np.int64).max


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens (letters, digits, inner apostrophes)."""
    return _TOKEN.findall(text.lower())


def compression_ratio(texts: Sequence[str]) -> float:
    """Bytes of the newline-joined texts over their gzip (level 9) size; higher = more repetitive."""
    raw = "\n".join(texts).encode("utf-8")
    if not raw:
        return float("nan")
    return len(raw) / len(gzip.compress(raw, compresslevel=9, mtime=0))


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values. np.unique is avoided: in numpy 2.x its hash path takes ~20 s on
    5 million wide-range int64 keys, where a sort takes well under one."""
    s = np.sort(keys)
    if s.size == 0:
        return s
    return s[np.concatenate([[True], s[1:] != s[:-1]])]


def _group_ids(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Each key's rank among the distinct keys (0..n-1), from one argsort.

    (searchsorted of 5 million unsorted keys into the distinct ones is ~10x slower: every
    lookup misses the cache.)"""
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    order = np.argsort(keys)
    s = keys[order]
    rank = np.cumsum(np.concatenate([[0], s[1:] != s[:-1]]))
    out = np.empty(keys.size, dtype=np.int64)
    out[order] = rank
    return out, int(rank[-1]) + 1


def _count_distinct_per_set(set_of: np.ndarray, gram: np.ndarray, n_grams: int, n_sets: int) -> np.ndarray:
    pairs = _sorted_unique(set_of * n_grams + gram)
    return np.bincount(pairs // n_grams, minlength=n_sets)


def lexical_table(texts: Sequence[str | None], set_ids: Sequence[np.ndarray], n_sets: Sequence[int] | None = None) -> list[pd.DataFrame]:
    """Lexical figures for several partitions of the same texts into sets.

    ``set_ids`` is a list of (n,) integer arrays (set number per text, -1 to leave a text
    out); one DataFrame, indexed by set number, is returned per array. Tokenisation and n-gram
    numbering are shared between them.
    """
    n = len(texts)
    has = np.fromiter((isinstance(t, str) for t in texts), dtype=bool, count=n)
    lens = np.zeros(n, dtype=np.int64)
    flat: list[str] = []
    for i, t in enumerate(texts):
        if has[i]:
            toks = tokenize(t)
            lens[i] = len(toks)
            flat.extend(toks)
    codes, vocab = pd.factorize(pd.Series(flat, dtype=object)) if flat else (np.zeros(0, np.int64), [])
    tok = np.asarray(codes, dtype=np.int64)
    V = max(len(vocab), 1)
    text_of = np.repeat(np.arange(n), lens)
    pos = np.arange(tok.size) - np.repeat(np.cumsum(lens) - lens, lens)
    remaining = np.repeat(lens, lens) - pos  # tokens from here to the end of the text

    grams: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
    key = tok.copy()
    n_keys = V
    for order in ORDERS:
        if order > 1:
            if n_keys > _INT_LIMIT // V:
                key, n_keys = _group_ids(key)
            nxt = np.zeros_like(tok)
            nxt[: max(0, tok.size - order + 1)] = tok[order - 1:]
            key = key * V + nxt
            n_keys = n_keys * V
        start = remaining >= order
        gid, n_g = _group_ids(key[start])
        grams[order] = (text_of[start], gid, max(n_g, 1))

    out = []
    for level, sid in enumerate(set_ids):
        sid = np.asarray(sid, dtype=np.int64)
        S = int(n_sets[level]) if n_sets is not None else int(sid.max()) + 1 if sid.size else 0
        use = has & (sid >= 0)
        table = pd.DataFrame(index=pd.RangeIndex(S, name="set"))
        table["texts"] = np.bincount(sid[use], minlength=S)
        table["tokens"] = np.bincount(sid[use], weights=lens[use], minlength=S).astype(np.int64)
        members: list[list[str]] = [[] for _ in range(S)]
        for i in np.flatnonzero(use):
            members[sid[i]].append(texts[i])
        table["compression_ratio"] = np.fromiter(map(compression_ratio, members), dtype=np.float64, count=S)
        divs = []
        for order in ORDERS:
            t_of, gid, n_g = grams[order]
            keep = use[t_of]
            set_of = sid[t_of[keep]]
            total = np.bincount(set_of, minlength=S)
            distinct = _count_distinct_per_set(set_of, gid[keep], n_g, S)
            with np.errstate(invalid="ignore", divide="ignore"):
                div = np.where(total > 0, distinct / np.maximum(total, 1), np.nan)
            table[f"ngram_div_{order}"] = div
            divs.append(div)
        table["ngram_div_mean"] = np.mean(divs, axis=0) if S else []
        table["self_repetition"] = _self_repetition(grams[4], sid, use, S)
        out.append(table)
    return out


def _self_repetition(gram4: tuple[np.ndarray, np.ndarray, int], sid: np.ndarray, use: np.ndarray, S: int) -> np.ndarray:
    """Mean over a set's texts of log(1 + number of the text's distinct 4-grams found in
    another text of the set); NaN for sets of fewer than two texts."""
    t_of, gid, n_g = gram4
    keep = use[t_of]
    t_of, gid = t_of[keep], gid[keep]
    n_texts = np.bincount(sid[use], minlength=S)
    per_text = np.zeros(len(sid))
    if t_of.size:
        tg = _sorted_unique(t_of * n_g + gid)  # each text's distinct 4-grams
        text = tg // n_g
        set_gram = sid[text] * n_g + tg % n_g
        where, n_u = _group_ids(set_gram)
        shared = np.bincount(where, minlength=n_u)[where] >= 2  # also in another text of the set
        per_text = np.bincount(text, weights=shared, minlength=len(sid))
    score = np.log1p(per_text)
    sums = np.bincount(sid[use], weights=score[use], minlength=S)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_texts >= 2, sums / np.maximum(n_texts, 1), np.nan)


def lexical_summary(texts: Sequence[str]) -> dict[str, float]:
    """All lexical figures of one set of texts."""
    table = lexical_table(list(texts), [np.zeros(len(texts), dtype=np.int64)], [1])[0]
    return {k: (float(v) if k not in ("texts", "tokens") else int(v)) for k, v in table.iloc[0].items()}


def ngram_diversity(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over total n-grams in the set (n in 1..4); NaN if there are none."""
    if n not in ORDERS:
        raise ValueError(f"n-gram order must be one of {ORDERS}, got {n}")
    return lexical_summary(texts)[f"ngram_div_{n}"]


def self_repetition(texts: Sequence[str]) -> float:
    return lexical_summary(texts)["self_repetition"]
