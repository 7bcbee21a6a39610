"""Lexical diversity of sets of texts (METRICS.md, "Lexical diversity").

Tokens are the word units of :mod:`.segment`: words where a script writes spaces, single
characters where it does not (Chinese, Japanese, Thai...), so n-grams mean the same thing in
every language of the suites.

Texts are tokenised once into token numbers, and every set's n-grams of each order are
counted in a hash table of its own, by the compiled kernels of :mod:`.lexical_fast`: ASCII
texts are cut there from their bytes (the same tokens as :func:`.segment.tokenize`, which cuts
the others), and thousands of sets (one per model and prompt, one per model) cost one pass per
order over the tokens instead of a Python set per set and n, or the sorts of 5 million
n-gram keys per order and level that the numpy version made (tests/metrics/lexical_reference.py
keeps it, and the tests hold the two to the same figures, bit for bit).

A figure that has no defined value is NaN, never 0 or 1: n-gram diversity of a set with no
n-gram, self-repetition of a set with fewer than two texts (there is no "other text") or
without any 4-gram, compression ratio of an empty set. The mean over n = 1..4 is NaN when any of the four is,
because a mean over fewer orders would be a different quantity.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import numpy as np
import pandas as pd

from .segment import tokenize

ORDERS = (1, 2, 3, 4)


def compression_ratio(texts: Sequence[str]) -> float:
    """Bytes of the newline-joined texts over their gzip (level 9) size; higher = more repetitive."""
    raw = "\n".join(texts).encode("utf-8")
    if not raw:
        return float("nan")
    return len(raw) / len(gzip.compress(raw, compresslevel=9, mtime=0))


# Initial sizes of the compiled hash tables (tests shrink them to exercise their growth), and
# the masks on their hashes (tests set 0 to make every key collide; see lexical_fast).
_VOCAB_SLOTS = 1 << 16
_FIRST_GRAMS = 4096
_WORD_HASH_KEEP = np.uint64(2**64 - 1)
_SLOT_KEEP = -1


def _token_buffer(texts: Sequence[str | None], has: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bytes :func:`.lexical_fast.scan_tokens` reads: every text one after the other, with
    its bounds and mode.

    An ASCII text goes as it is (mode 0: lowercased and cut by the scanner); any other text is
    cut by :func:`.segment.tokenize` and goes as its tokens' UTF-8 joined by NUL bytes (mode 1),
    so both feed one vocabulary and no Python string per token is made for an ASCII text.
    """
    n = len(texts)
    modes = np.zeros(n, dtype=np.uint8)
    parts: list[bytes] = []
    for i, t in enumerate(texts):
        if not has[i]:
            parts.append(b"")
        elif cast(str, t).isascii():  # has[i]: a string
            parts.append(cast(str, t).encode("ascii"))
        else:
            modes[i] = 1
            parts.append("\0".join(tokenize(cast(str, t))).encode("utf-8"))
    bounds = np.zeros(n + 1, dtype=np.int64)
    bounds[1:] = np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=n))
    buf = np.frombuffer(bytearray().join(parts), dtype=np.uint8)  # writable: the scanner lowercases in place
    return buf, bounds, modes


def _tokenize_all(texts: Sequence[str | None], has: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Token numbers of all texts, concatenated (numbered in order of first occurrence), tokens
    per text, and the vocabulary size (at least 1)."""
    from .lexical_fast import MAX_ID, scan_tokens  # numba only when counting (metrics/voices.py says why)

    buf, bounds, modes = _token_buffer(texts, has)
    tok, lens, V, _, _ = scan_tokens(buf, bounds, modes, _VOCAB_SLOTS, _WORD_HASH_KEEP)
    if V > MAX_ID:
        raise ValueError(f"{V} distinct tokens: more than the {MAX_ID} that n-gram keys can pack")
    return tok, lens, max(int(V), 1)


def _passes(set_ids: list[np.ndarray], use: list[np.ndarray]) -> list[tuple[np.ndarray, list[int]]]:
    """Text orders under which each level's sets are contiguous runs of texts.

    The counting kernel takes a set's texts as one run. Nested levels (model > model and
    prompt) share one order; a level that does not fit gets its own. The order also fixes the
    order in which self-repetition sums its texts' terms, the same as the numpy version's, so
    that no figure moves by a rounding.
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


def lexical_table(
    texts: Sequence[str | None], set_ids: Sequence[np.ndarray], n_sets: Sequence[int] | None = None
) -> list[pd.DataFrame]:
    """Lexical figures for several partitions of the same texts into sets.

    ``set_ids`` is a list of (n,) integer arrays (set number per text, -1 to leave a text
    out); one DataFrame, indexed by set number, is returned per array; with ``n_sets``, every
    set number must be below it (ValueError otherwise). The texts are tokenised once for all
    partitions, and nested partitions share one text order (one pass of the counting kernel
    per partition, no sort of n-grams).
    """
    n = len(texts)
    has = np.fromiter((isinstance(t, str) for t in texts), dtype=bool, count=n)
    sids = [np.asarray(sid, dtype=np.int64) for sid in set_ids]
    sizes = [int(n_sets[L]) if n_sets is not None else (int(sid.max()) + 1 if sid.size else 0) for L, sid in enumerate(sids)]
    for L, (sid, S) in enumerate(zip(sids, sizes)):
        if sid.shape != (n,) or (sid.size and int(sid.max()) >= S):
            raise ValueError(f"set_ids[{L}] must hold one set number below {S} per text (shape {sid.shape}, {n} texts)")
    uses = [has & (sid >= 0) for sid in sids]
    results: list[dict[str, np.ndarray]] = [{} for _ in sids]
    # Compression needs only the texts, and zlib releases the GIL: it runs while the texts are
    # tokenised here.
    with ThreadPoolExecutor(1, thread_name_prefix="gzip") as ex:
        ratios = ex.submit(lambda: [_compression_ratios(_members(texts, sid, use, S)) for sid, use, S in zip(sids, uses, sizes)])
        tok, lens, V = _tokenize_all(texts, has)
        _count_passes(tok, lens, sids, uses, sizes, results)
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


def _count_passes(tok, lens, sids, uses, sizes, results) -> None:
    """n-gram figures of every level into ``results``, one pass per compatible text order.

    The levels of a pass are counted by :func:`.lexical_fast.count_level`, in two threads at
    most (the kernel releases the GIL; each call has tables of its own).
    """
    from .lexical_fast import count_level

    offsets = np.cumsum(lens) - lens
    jobs = []
    for perm, levels in _passes(sids, uses):
        texts_p = perm[np.any([uses[L][perm] for L in levels], axis=0)]  # texts of this pass, in order
        for L in levels:
            sr = np.where(uses[L][texts_p], sids[L][texts_p], -1)  # set per text of the pass, -1 if unused
            jobs.append((L, texts_p, sr))

    def run(job):
        L, texts_p, sr = job
        return L, sr, lens[texts_p] >= 4, count_level(tok, offsets, lens, texts_p, sr, sizes[L], _FIRST_GRAMS, _SLOT_KEEP)

    with ThreadPoolExecutor(max(1, min(2, len(jobs))), thread_name_prefix="ngrams") as ex:
        for L, sr, has_gram, (total, distinct, shared) in ex.map(run, jobs):
            for order in ORDERS:
                t, d = total[order - 1], distinct[order - 1]
                with np.errstate(invalid="ignore", divide="ignore"):
                    results[L][f"ngram_div_{order}"] = np.where(t > 0, d / np.maximum(t, 1), np.nan)
            results[L]["self_repetition"] = _self_repetition(shared, has_gram, sr, sizes[L])


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


def _self_repetition(shared: np.ndarray, has_gram: np.ndarray, set_of_text: np.ndarray, S: int) -> np.ndarray:
    """Mean over a set's texts of log(1 + number of the text's distinct 4-grams found in
    another text of the set), from those numbers (``shared``) per text of a pass.

    Only texts with at least one 4-gram count: a shorter text cannot repeat a 4-gram, and
    counting it as 0 would report "no repetition" for ten identical one-word answers. The
    figure is missing for a set of fewer than two texts or with no 4-gram at all. The sums run
    in the pass's text order, as they always have, so the figures stay the same to the bit.
    """
    used = set_of_text >= 0
    n_texts = np.bincount(set_of_text[used], minlength=S)
    scored = used & has_gram
    n_scored = np.bincount(set_of_text[scored], minlength=S)
    sums = np.bincount(set_of_text[scored], weights=np.log1p(shared.astype(np.float64))[scored], minlength=S)
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
