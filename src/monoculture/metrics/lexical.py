"""Lexical diversity of sets of texts (METRICS.md, "Lexical diversity").

Texts are tokenised once; every n-gram becomes an integer, and distinct counts per set are
counts of distinct (set, n-gram) integer pairs, so thousands of sets (one per model and
prompt, one per model) cost a few sorts instead of a Python set per set and n.

A figure that has no defined value is NaN, never 0 or 1: n-gram diversity of a set with no
n-gram, self-repetition of a set with fewer than two texts (there is no "other text") or
without any 4-gram, compression ratio of an empty set. The mean over n = 1..4 is NaN when any of the four is,
because a mean over fewer orders would be a different quantity.
"""

from __future__ import annotations

import gzip
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import pandas as pd

ORDERS = (1, 2, 3, 4)
_TOKEN = re.compile(r"\w+(?:['’]\w+)*")


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens (letters, digits, inner apostrophes)."""
    return _TOKEN.findall(text.lower())


def compression_ratio(texts: Sequence[str]) -> float:
    """Bytes of the newline-joined texts over their gzip (level 9) size; higher = more repetitive."""
    raw = "\n".join(texts).encode("utf-8")
    if not raw:
        return float("nan")
    return len(raw) / len(gzip.compress(raw, compresslevel=9, mtime=0))


def _tokenize_all(texts: Sequence[str | None], has: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, int]:
    """Token ids of all texts, concatenated, and tokens per text.

    Strings are numbered chunk by chunk (pandas' hash table, then one dict lookup per distinct
    word of the chunk) so that a list of every token string of the study never exists at once.
    """
    n = len(texts)
    lens = np.zeros(n, dtype=np.int64)
    vocab: dict[str, int] = {}
    parts = []
    for lo in range(0, n, chunk):
        flat: list[str] = []
        for i in range(lo, min(n, lo + chunk)):
            if has[i]:
                toks = tokenize(texts[i])
                lens[i] = len(toks)
                flat.extend(toks)
        if flat:
            codes, uniq = pd.factorize(np.asarray(flat, dtype=object))
            remap = np.fromiter((vocab.setdefault(u, len(vocab)) for u in uniq), dtype=np.int64, count=len(uniq))
            parts.append(remap[codes])
    tok = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return tok, lens, max(len(vocab), 1)


def _passes(set_ids: list[np.ndarray], use: list[np.ndarray]) -> list[tuple[np.ndarray, list[int]]]:
    """Text orders under which each level's sets are contiguous runs of texts.

    Sorting the n-grams of one order once, stably, puts them in (n-gram, text) order; for a
    level whose sets are contiguous in text order, equal (n-gram, set) entries are then
    adjacent too, and every count becomes a linear scan. Nested levels (model > model and
    prompt) share one order; a level that does not fit gets its own.
    """
    perm0 = np.lexsort(tuple(reversed(set_ids))) if set_ids else np.zeros(0, dtype=np.int64)
    shared, alone = [], []
    for L, sid in enumerate(set_ids):
        s = sid[perm0][use[L][perm0]]
        runs = 1 + int(np.count_nonzero(s[1:] != s[:-1])) if s.size else 0
        (shared if runs == len(np.unique(s)) else alone).append(L)
    out = [(perm0, shared)] if shared else []
    out += [(np.argsort(set_ids[L], kind="stable"), [L]) for L in alone]
    return out


def _first_of_runs(*keys: np.ndarray) -> np.ndarray:
    """True where any of the (sorted-order) keys differs from the entry before."""
    n = keys[0].size
    out = np.zeros(n, dtype=bool)
    if n:
        out[0] = True
        for k in keys:
            out[1:] |= k[1:] != k[:-1]
    return out


def lexical_table(texts: Sequence[str | None], set_ids: Sequence[np.ndarray], n_sets: Sequence[int] | None = None) -> list[pd.DataFrame]:
    """Lexical figures for several partitions of the same texts into sets.

    ``set_ids`` is a list of (n,) integer arrays (set number per text, -1 to leave a text
    out); one DataFrame, indexed by set number, is returned per array. Tokenisation and the
    sorting of n-grams are shared between nested partitions.
    """
    n = len(texts)
    has = np.fromiter((isinstance(t, str) for t in texts), dtype=bool, count=n)
    tok, lens, V = _tokenize_all(texts, has)
    offsets = np.cumsum(lens) - lens
    sids = [np.asarray(sid, dtype=np.int64) for sid in set_ids]
    sizes = [int(n_sets[L]) if n_sets is not None else (int(sid.max()) + 1 if sid.size else 0) for L, sid in enumerate(sids)]
    uses = [has & (sid >= 0) for sid in sids]
    results: list[dict[str, np.ndarray]] = [dict() for _ in sids]

    for perm, levels in _passes(sids, uses):
        texts_p = perm[np.any([uses[L][perm] for L in levels], axis=0)]  # texts of this pass, in order
        lens_p = lens[texts_p]
        total_tokens = int(lens_p.sum())
        idx = np.repeat(offsets[texts_p] - (np.cumsum(lens_p) - lens_p), lens_p) + np.arange(total_tokens)
        tok_p = tok[idx]
        rank = np.repeat(np.arange(len(texts_p)), lens_p)  # text number in pass order
        remaining = np.repeat(lens_p, lens_p) - (np.arange(total_tokens) - np.repeat(np.cumsum(lens_p) - lens_p, lens_p))
        set_rank = {L: sids[L][texts_p] for L in levels}  # set per text of the pass, -1 if unused
        used_all = {L: bool((set_rank[L] >= 0).all()) for L in levels}
        key = tok_p
        for order in ORDERS:
            if order > 1:
                nxt = np.zeros_like(tok_p)
                nxt[: max(0, total_tokens - order + 1)] = tok_p[order - 1:]
                key = dense * V + nxt  # dense < tokens, so this cannot overflow
            valid = np.flatnonzero(remaining >= order)
            vo = valid[np.argsort(key[valid], kind="stable")]  # positions in (n-gram, text) order
            r = rank[vo]
            d_sorted = np.cumsum(_first_of_runs(key[vo])) - 1  # n-grams renumbered 0, 1, ...
            dense = np.zeros(total_tokens, dtype=np.int64)
            dense[vo] = d_sorted
            for L in levels:
                s = set_rank[L][r]
                d, rr = d_sorted, r
                if not used_all[L]:
                    keep = s >= 0
                    s, d, rr = s[keep], d[keep], r[keep]
                total = np.bincount(s, minlength=sizes[L])
                distinct = np.bincount(s[_first_of_runs(d, s)], minlength=sizes[L])
                with np.errstate(invalid="ignore", divide="ignore"):
                    results[L][f"ngram_div_{order}"] = np.where(total > 0, distinct / np.maximum(total, 1), np.nan)
                if order == 4:
                    results[L]["self_repetition"] = _self_repetition(d, rr, s, set_rank[L], sizes[L])

    out = []
    for L, sid in enumerate(sids):
        S, use = sizes[L], uses[L]
        table = pd.DataFrame(index=pd.RangeIndex(S, name="set"))
        table["texts"] = np.bincount(sid[use], minlength=S)
        table["tokens"] = np.bincount(sid[use], weights=lens[use], minlength=S).astype(np.int64)
        members: list[list[str]] = [[] for _ in range(S)]
        for i in np.flatnonzero(use):
            members[sid[i]].append(texts[i])
        table["compression_ratio"] = _compression_ratios(members)
        for order in ORDERS:
            table[f"ngram_div_{order}"] = results[L][f"ngram_div_{order}"]
        table["ngram_div_mean"] = table[[f"ngram_div_{o}" for o in ORDERS]].to_numpy().mean(axis=1) if S else []
        table["self_repetition"] = results[L]["self_repetition"]
        out.append(table)
    return out


def _compression_ratios(members: list[list[str]]) -> np.ndarray:
    """Compression ratio per set. zlib releases the GIL on large buffers, so big sets (a whole
    model's answers) are compressed in threads; small ones are not worth a thread each."""
    big = [i for i, m in enumerate(members) if sum(map(len, m)) > 2**18]
    is_big = set(big)
    out = np.fromiter((np.nan if i in is_big else compression_ratio(m) for i, m in enumerate(members)),
                      dtype=np.float64, count=len(members))
    if big:
        with ThreadPoolExecutor(max(1, min(len(big), os.cpu_count() or 1))) as ex:
            out[big] = list(ex.map(compression_ratio, (members[i] for i in big)))
    return out


def _self_repetition(gram: np.ndarray, text: np.ndarray, set_of: np.ndarray, set_of_text: np.ndarray, S: int) -> np.ndarray:
    """Mean over a set's texts of log(1 + number of the text's distinct 4-grams found in
    another text of the set).

    Only texts with at least one 4-gram count: a shorter text cannot repeat a 4-gram, and
    counting it as 0 would report "no repetition" for ten identical one-word answers. The
    figure is missing for a set of fewer than two texts or with no 4-gram at all.
    Inputs are the 4-grams in (gram, text) order with their text and set; each set's texts are
    contiguous, so equal (gram, set) entries are adjacent.
    """
    first = _first_of_runs(gram, text)  # each text's distinct 4-grams once
    g, t, s = gram[first], text[first], set_of[first]
    group = np.cumsum(_first_of_runs(g, s)) - 1
    shared = np.bincount(group)[group] >= 2 if group.size else np.zeros(0, dtype=bool)
    n_text = len(set_of_text)
    per_text = np.bincount(t, weights=shared, minlength=n_text)
    has_gram = np.bincount(t, minlength=n_text) > 0
    used = set_of_text >= 0
    n_texts = np.bincount(set_of_text[used], minlength=S)
    scored = used & has_gram
    n_scored = np.bincount(set_of_text[scored], minlength=S)
    sums = np.bincount(set_of_text[scored], weights=np.log1p(per_text)[scored], minlength=S)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_texts >= 2) & (n_scored > 0), sums / np.maximum(n_scored, 1), np.nan)


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
