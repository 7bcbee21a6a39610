"""The numpy implementation of metrics.lexical before its compiled kernels (lexical_fast),
kept verbatim as the reference the tests compare the kernels with, figure for figure and bit
for bit: tokenising through segment.tokenize and pandas, and counting by sorting packed
(n-gram, text) keys.

Lexical diversity of sets of texts (METRICS.md, "Lexical diversity").

Tokens are the word units of :mod:`.segment`: words where a script writes spaces, single
characters where it does not (Chinese, Japanese, Thai...), so n-grams mean the same thing in
every language of the suites.

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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import numpy as np
import pandas as pd

from monoculture.metrics.segment import tokenize

ORDERS = (1, 2, 3, 4)


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
                toks = tokenize(cast(str, texts[i]))  # has[i]: a non-empty string
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
    shared: list[int] = []
    alone: list[int] = []
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


def lexical_table(
    texts: Sequence[str | None], set_ids: Sequence[np.ndarray], n_sets: Sequence[int] | None = None
) -> list[pd.DataFrame]:
    """Lexical figures for several partitions of the same texts into sets.

    ``set_ids`` is a list of (n,) integer arrays (set number per text, -1 to leave a text
    out); one DataFrame, indexed by set number, is returned per array. Tokenisation and the
    sorting of n-grams are shared between nested partitions.
    """
    n = len(texts)
    has = np.fromiter((isinstance(t, str) for t in texts), dtype=bool, count=n)
    sids = [np.asarray(sid, dtype=np.int64) for sid in set_ids]
    sizes = [int(n_sets[L]) if n_sets is not None else (int(sid.max()) + 1 if sid.size else 0) for L, sid in enumerate(sids)]
    uses = [has & (sid >= 0) for sid in sids]
    results: list[dict[str, np.ndarray]] = [{} for _ in sids]
    # Compression needs only the texts, and zlib releases the GIL: it runs while the texts are
    # tokenised here.
    with ThreadPoolExecutor(1, thread_name_prefix="gzip") as ex:
        ratios = ex.submit(lambda: [_compression_ratios(_members(texts, sid, use, S)) for sid, use, S in zip(sids, uses, sizes)])
        tok, lens, V = _tokenize_all(texts, has)
        _count_passes(tok, lens, V, sids, uses, sizes, results)
        for L, ratio in enumerate(ratios.result()):
            results[L]["compression_ratio"] = ratio

    out = []
    for L, sid in enumerate(sids):
        S, use = sizes[L], uses[L]
        table = pd.DataFrame(index=pd.RangeIndex(S, name="set"))
        table["texts"] = np.bincount(sid[use], minlength=S)
        table["tokens"] = np.bincount(sid[use], weights=lens[use], minlength=S).astype(np.int64)
        table["compression_ratio"] = results[L]["compression_ratio"]
        for order in ORDERS:
            table[f"ngram_div_{order}"] = results[L][f"ngram_div_{order}"]
        table["ngram_div_mean"] = table[[f"ngram_div_{o}" for o in ORDERS]].to_numpy().mean(axis=1) if S else []
        table["self_repetition"] = results[L]["self_repetition"]
        out.append(table)
    return out


def _members(texts, sid, use, S) -> list[list[str]]:
    members: list[list[str]] = [[] for _ in range(S)]
    for i in np.flatnonzero(use):
        members[sid[i]].append(texts[i])
    return members


def _count_passes(tok, lens, V, sids, uses, sizes, results) -> None:
    """n-gram figures of every level into ``results``, one pass per compatible text order."""
    offsets = np.cumsum(lens) - lens
    for perm, levels in _passes(sids, uses):
        texts_p = perm[np.any([uses[L][perm] for L in levels], axis=0)]  # texts of this pass, in order
        lens_p = lens[texts_p]
        total_tokens = int(lens_p.sum())
        starts_p = np.cumsum(lens_p) - lens_p
        idx = np.repeat(offsets[texts_p] - starts_p, lens_p) + np.arange(total_tokens)
        tok_p = tok[idx]
        rank = np.repeat(np.arange(len(texts_p)), lens_p)  # text number in pass order
        remaining = np.repeat(lens_p + starts_p, lens_p) - np.arange(total_tokens)  # tokens left in the text
        set_rank = {L: sids[L][texts_p] for L in levels}  # set per text of the pass, -1 if unused
        for L, figures in _count_ngrams(tok_p, rank, remaining, V, set_rank, sizes).items():
            results[L].update(figures)


_INT64_MAX = int(np.iinfo(np.int64).max)


def _count_ngrams(tok, rank, remaining, V, set_rank, sizes) -> dict[int, dict[str, np.ndarray]]:
    """n-gram diversity for n = 1..4 and self-repetition for every level of one pass.

    Each order's (n-gram, text) pairs are sorted once, by n-gram and then text; counting is a
    linear scan of that order. Orders 3 and 4 are keyed by bigram numbers, so only the bigrams
    have to be numbered (one sort, while order 1 is counted in a second thread) and orders 2-3
    and 4 are then counted in the two threads at once (numpy releases the GIL while it sorts).
    """
    T = max(1, len(next(iter(set_rank.values()))))

    def figures(order: int, g: np.ndarray, r: np.ndarray) -> dict[int, dict[str, np.ndarray]]:
        out: dict[int, dict[str, np.ndarray]] = {}
        for L, sr in set_rank.items():
            gl, rl, s = g, r, sr[r]
            if not (sr >= 0).all():
                keep = s >= 0
                gl, rl, s = g[keep], r[keep], s[keep]
            total = np.bincount(s, minlength=sizes[L])
            distinct = np.bincount(s[_first_of_runs(gl, s)], minlength=sizes[L])
            with np.errstate(invalid="ignore", divide="ignore"):
                out[L] = {f"ngram_div_{order}": np.where(total > 0, distinct / np.maximum(total, 1), np.nan)}
            if order == 4:
                out[L]["self_repetition"] = _self_repetition(gl, rl, s, sr, sizes[L])
        return out

    def order_from(key_of: Callable[[np.ndarray], np.ndarray], order: int) -> dict:
        pos = np.flatnonzero(remaining >= order)
        return figures(order, *_sorted_pairs(key_of(pos), rank[pos], T))

    with ThreadPoolExecutor(1) as ex:
        first = ex.submit(order_from, lambda pos: tok[pos], 1)
        bigram, second = _number_bigrams(tok, rank, remaining, V)
        D2 = int(bigram.max()) + 1 if bigram.size else 1
        futures = [first, ex.submit(figures, 2, *second), ex.submit(order_from, lambda pos: bigram[pos] * V + tok[pos + 2], 3)]
        parts = [f.result() for f in futures] + [order_from(lambda pos: bigram[pos] * D2 + bigram[pos + 2], 4)]
    merged: dict[int, dict[str, np.ndarray]] = {L: {} for L in set_rank}
    for part in parts:
        for L, figs in part.items():
            merged[L].update(figs)
    return merged


def _sorted_pairs(key: np.ndarray, minor: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray]:
    """(key, minor) pairs sorted by key, then minor (0 <= minor < base).

    Both are packed into one int64 and the values sorted, which is about twice as fast as a
    stable argsort of the keys. Keys too large to pack are renumbered first.
    """
    if key.size and int(key.max()) > (_INT64_MAX - base) // base:
        key = np.unique(key, return_inverse=True)[1].ravel()
    packed = key * base + minor
    packed.sort()
    return np.divmod(packed, base)


def _number_bigrams(tok, rank, remaining, V) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Bigram numbers by token position (0 where no bigram starts), and the order-2 pairs
    sorted by (bigram, text) as :func:`_sorted_pairs` returns them."""
    pos = np.flatnonzero(remaining >= 2)
    # Positions grow with the text, so sorting by (bigram, position) also sorts by text.
    key, pos = _sorted_pairs(tok[pos] * V + tok[pos + 1], pos, len(tok))
    numbers = np.cumsum(_first_of_runs(key)) - 1
    bigram = np.zeros(len(tok), dtype=np.int64)
    bigram[pos] = numbers
    return bigram, (numbers, rank[pos])


def _compression_ratios(members: list[list[str]]) -> np.ndarray:
    """Compression ratio per set, in threads: zlib releases the GIL while it compresses, which
    is most of the time here (level 9 runs at about 40 MB/s). Sets are dealt out in slices of
    similar size so that one thread does not finish long after the others."""
    size = np.fromiter((sum(map(len, m)) for m in members), dtype=np.int64, count=len(members))
    workers = min(os.cpu_count() or 1, 8)
    if workers == 1 or size.sum() < 2**20:
        return np.fromiter(map(compression_ratio, members), dtype=np.float64, count=len(members))
    edges = np.searchsorted(np.cumsum(size), np.linspace(0, size.sum(), 4 * workers + 1)[1:-1])
    slices = [s for s in np.split(np.arange(len(members)), edges) if s.size]
    out = np.empty(len(members))
    with ThreadPoolExecutor(workers) as ex:
        for sl, ratios in zip(slices, ex.map(lambda sl: [compression_ratio(members[i]) for i in sl], slices)):
            out[sl] = ratios
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
