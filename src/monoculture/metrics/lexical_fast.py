"""Compiled kernels of :mod:`.lexical`: token numbering and n-gram counting without a Python
object per token or a sort per n-gram order.

Why compiled: the numpy version spent its time in a Python list of every token string (regex
findall, then pandas' factorize per chunk) and in stable sorts of about 5 million packed
n-gram keys per order and level. Here one pass over the bytes numbers the tokens, and one
pass per order and set counts them in a small hash table that stays in cache.

Tokens, exactly those of :func:`.segment.tokenize`:

- An ASCII text is scanned as bytes: lowercased, and a token is ``\\w+(?:'\\w+)*`` where
  ``\\w`` is ``[A-Za-z0-9_]``. That is what the tokeniser's plain pattern does with an ASCII
  text (Python's Unicode ``\\w`` has no other ASCII members, ASCII ``str.lower`` maps A-Z
  only, and ``’`` is not ASCII), so the scan is a state machine of a few lines.
- Any other text goes through :func:`.segment.tokenize` as before, and its tokens arrive here
  as UTF-8 joined by NUL bytes (no token contains NUL: it is neither ``\\w`` nor a mark).

Both kinds feed one vocabulary. Token numbers are exact: the vocabulary is an open-addressing
hash table keyed by the token's bytes, and a hash match is accepted only after the bytes are
compared (as a dict does), so two different words never share a number whatever the hashes
do. UTF-8 is injective, so equal bytes mean equal strings.

n-grams of token numbers (< 2**31) are packed exactly into two int64 (``a << 31 | b`` and
``c << 31 | d``), so the per-set tables compare whole n-grams, not hashes, either.

Each function is compiled once per machine (``cache=True``: later processes load the cached
machine code) and releases the GIL (``nogil=True``), so the levels of a pass can be counted in
threads. No numba thread pool is used. The hot loops never reallocate: with the growth of
its tables inside it, the word loop measured four times slower (numba then keeps reference
counts on the reassigned arrays), so a hot loop returns when its table is half full and its
caller grows the table and resumes (words) or redoes the set's n-grams of that order.

Memory grows with the largest set, not the study: its 4-gram table has 32 bytes a slot and
fewer than four slots per 4-gram position (a power of two, at most half full), so under 128
bytes a token. One set of 10 M tokens (33,334 texts of 300 words) peaked at 1.45 GB above its
texts, with Zipf-distributed words and with all words distinct alike (of it 1 GiB the 2**25
slots of that table); the numpy version peaked at 1.66 GB on the all-distinct set.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# ASCII bytes that Python's \w matches, and ASCII lowercasing (what str.lower does to ASCII).
WORD_BYTE = np.zeros(256, dtype=np.bool_)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    WORD_BYTE[_c] = True
LOWER_BYTE = np.arange(256, dtype=np.uint8)
LOWER_BYTE[65:91] += 32
del _c

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX1 = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xC2B2AE3D27D4EB4F)
_APOSTROPHE = 39
MAX_ID = 2**31  # token numbers must fit in 31 bits to pack two per int64


@njit(cache=True, nogil=True)
def _slot(h: np.uint64, mask: int) -> int:
    """Table slot of a 64-bit hash (the high bits folded in: FNV's low bits alone are weak)."""
    h = h ^ (h >> np.uint64(29))
    h = h * _MIX2
    h = h ^ (h >> np.uint64(32))
    return np.int64(h & np.uint64(mask))


@njit(cache=True, nogil=True)
def _scan(buf, bounds, modes, i, p, slots, e_start, e_len, e_hash, V, tok, ntok, lens, keep):
    """Scan from text ``i``, byte ``p`` until every text is done, the vocabulary table is half
    full or ``tok`` is full; return where it stopped and the new ``V`` and ``ntok``."""
    n = modes.size
    mask = slots.size - 1
    limit = slots.size // 2
    while i < n:
        end = bounds[i + 1]
        raw = modes[i] == 0
        while p < end:
            if V >= limit or ntok >= tok.size:
                return i, p, V, ntok
            h = _FNV_OFFSET
            if raw:
                if not WORD_BYTE[buf[p]]:
                    p += 1
                    continue
                start = p
                while True:
                    while p < end and WORD_BYTE[buf[p]]:
                        c = LOWER_BYTE[buf[p]]
                        buf[p] = c
                        h = (h ^ np.uint64(c)) * _FNV_PRIME
                        p += 1
                    if p + 1 < end and buf[p] == _APOSTROPHE and WORD_BYTE[buf[p + 1]]:
                        h = (h ^ np.uint64(_APOSTROPHE)) * _FNV_PRIME
                        p += 1
                    else:
                        break
                stop = p
            else:
                start = p
                while p < end and buf[p] != 0:
                    h = (h ^ np.uint64(buf[p])) * _FNV_PRIME
                    p += 1
                stop = p
                p += 1  # the NUL after the token
            size = stop - start
            h = h & keep
            k = _slot(h, mask)
            while True:
                e = slots[k]
                if e < 0:  # a new word
                    e = V
                    slots[k] = e
                    e_start[e] = start
                    e_len[e] = size
                    e_hash[e] = h
                    V += 1
                    break
                if e_hash[e] == h and e_len[e] == size:  # the same word only if the bytes are
                    a = e_start[e]
                    same = True
                    for j in range(size):
                        if buf[a + j] != buf[start + j]:
                            same = False
                            break
                    if same:
                        break
                k = (k + 1) & mask
            tok[ntok] = e
            ntok += 1
            lens[i] += 1
        i += 1
        if i < n:
            p = bounds[i]
    return i, p, V, ntok


@njit(cache=True, nogil=True)
def scan_tokens(buf, bounds, modes, cap0, keep):
    """Token numbers of every text, concatenated; tokens per text; vocabulary size; and where
    each word's bytes are in ``buf`` (start and length, for tests and debugging).

    ``buf`` holds the texts' bytes one after the other (text ``i`` is
    ``buf[bounds[i]:bounds[i + 1]]``); ``modes[i]`` is 0 for a raw ASCII text, scanned and
    lowercased in place here, and 1 for the UTF-8 of a text's tokens joined by NUL bytes.
    Numbers are given in order of first occurrence. ``cap0`` is the vocabulary table's initial
    size (a power of two); it doubles whenever it is half full. ``keep`` masks the words'
    hashes: all ones in use; tests pass 0, so that every word collides with every other and
    the byte comparisons alone must tell them apart.
    """
    n = modes.size
    lens = np.zeros(n, dtype=np.int64)
    tok = np.empty(max(16, buf.size // 5), dtype=np.int64)
    slots = np.full(cap0, -1, dtype=np.int64)
    e_start = np.empty(cap0 // 2, dtype=np.int64)
    e_len = np.empty(cap0 // 2, dtype=np.int64)
    e_hash = np.empty(cap0 // 2, dtype=np.uint64)
    i, p, V, ntok = 0, bounds[0] if n else 0, 0, 0
    while True:
        i, p, V, ntok = _scan(buf, bounds, modes, i, p, slots, e_start, e_len, e_hash, V, tok, ntok, lens, keep)
        if i >= n:
            break
        if ntok >= tok.size:
            grown = np.empty(2 * tok.size, dtype=np.int64)
            grown[:ntok] = tok[:ntok]
            tok = grown
        if V >= slots.size // 2:  # half full: double the table and reinsert the words
            cap = 2 * slots.size
            mask = cap - 1
            slots = np.full(cap, -1, dtype=np.int64)
            for f in range(V):
                k = _slot(e_hash[f], mask)
                while slots[k] >= 0:
                    k = (k + 1) & mask
                slots[k] = f
            e_start = np.concatenate((e_start[:V], np.empty(cap // 2 - V, dtype=np.int64)))
            e_len = np.concatenate((e_len[:V], np.empty(cap // 2 - V, dtype=np.int64)))
            e_hash = np.concatenate((e_hash[:V], np.empty(cap // 2 - V, dtype=np.uint64)))
    return tok[:ntok].copy(), lens, V, e_start[:V].copy(), e_len[:V].copy()


@njit(cache=True, nogil=True)
def _key(tok, p, order):
    """The n-gram of ``order`` tokens at position ``p``, packed exactly into two int64."""
    k1 = tok[p]
    k2 = np.int64(0)
    if order >= 2:
        k1 = (k1 << 31) | tok[p + 1]
    if order == 3:
        k2 = tok[p + 2]
    elif order == 4:
        k2 = (tok[p + 2] << 31) | tok[p + 3]
    return k1, k2


@njit(cache=True, nogil=True)
def _hash2(k1, k2, mask):
    return _slot(np.uint64(k1) * _MIX1 ^ (np.uint64(k2) + _MIX2) * _FNV_PRIME, mask)


@njit(cache=True, nogil=True)
def _fill(tok, off, lens, texts, sets, s, r, q, order, size, tab, slot_of, keep):
    """Distinct n-grams of ``order`` in set ``s`` (entries ``r:q``), in a table of ``size``
    slots; if they do not fit at most half full, minus the number of positions read before
    the table filled (the caller retries with a larger one).

    A slot is the key and nothing else for unigrams and bigrams (one int64), for trigrams the
    two words of the key, and for 4-grams four int64 in a row, 32 bytes in one cache line: the
    key, the number of texts holding the 4-gram and the last entry that counted it. -1 in the
    first word marks an empty slot (keys are >= 0). For 4-grams every position also records
    its slot, or -1 where its text had the 4-gram already (``slot_of``).
    """
    stride = 1 if order <= 2 else (2 if order == 3 else 4)
    mask = size - 1
    tab[: stride * size : stride] = -1
    limit = size // 2
    D = 0
    w = 0
    for t in range(r, q):
        if sets[t] != s:
            continue
        i = texts[t]
        base = off[i]
        for p in range(base, base + lens[i] - order + 1):
            k1, k2 = _key(tok, p, order)
            k = _hash2(k1, k2, mask) & keep
            while True:
                x = stride * k
                if tab[x] < 0:
                    if D >= limit:
                        return -max(w, 1)
                    tab[x] = k1
                    if stride >= 2:
                        tab[x + 1] = k2
                    if stride == 4:
                        tab[x + 2] = 0
                        tab[x + 3] = -1
                    D += 1
                    break
                if tab[x] == k1 and (stride == 1 or tab[x + 1] == k2):
                    break
                k = (k + 1) & mask
            if order == 4:
                if tab[x + 3] != t:
                    tab[x + 3] = t
                    tab[x + 2] += 1
                    slot_of[w] = x
                else:
                    slot_of[w] = -1
            w += 1
    return D


@njit(cache=True, nogil=True)
def _shared(lens, texts, sets, s, r, q, tab, slot_of, shared):
    """Per text of set ``s``: its distinct 4-grams that at least two texts of the set hold."""
    w = 0
    for t in range(r, q):
        if sets[t] != s:
            continue
        c = 0
        for _ in range(max(lens[texts[t]] - 3, 0)):
            x = slot_of[w]
            if x >= 0 and tab[x + 2] >= 2:
                c += 1
            w += 1
        shared[t] = c


@njit(cache=True, nogil=True)
def count_level(tok, off, lens, texts, sets, S, first, keep):
    """n-gram totals and distinct counts (n = 1..4) per set, and per text the number of its
    distinct 4-grams found in another text of its set, for one partition of the texts.

    ``texts`` lists text numbers (``tok[off[i]:off[i] + lens[i]]`` are text ``i``'s tokens)
    and ``sets`` the set of each entry, -1 for a text this partition leaves out; the entries
    of a set must be contiguous once the -1 are skipped (``lexical._passes`` orders them so),
    and every set number below ``S`` (both are checked: a ValueError, not a write out of
    bounds). Returns ``total`` and ``distinct`` of shape (4, S) and ``shared`` per entry. ``keep``
    masks the slot numbers: -1 in use; tests pass 0, which sends every n-gram to slot 0 first,
    so that the key comparisons alone must tell them apart.

    Each set's n-grams of one order go into an open-addressing table of exact keys (see
    :func:`_key`) sized for the set: for ``min(n-grams, first)`` entries for unigrams, for
    eight times the distinct (n-1)-grams above, and, when the n-grams do not fit at most half
    full, for as many as the part that filled it extrapolates to. A table for an answer of 300 tokens is a few
    kilobytes, not one for the whole study, and stays in cache. For 4-grams the table also
    counts the texts holding each, and a second pass over the positions (which remember their
    entry) counts each text's distinct 4-grams held by at least two texts.
    """
    R = texts.size
    total = np.zeros((4, S), dtype=np.int64)
    distinct = np.zeros((4, S), dtype=np.int64)
    shared = np.zeros(R, dtype=np.int64)
    done = np.zeros(S, dtype=np.bool_)
    tab = np.empty(4 * 16, dtype=np.int64)
    slot_of = np.empty(16, dtype=np.int64)
    r = 0
    while r < R:
        s = sets[r]
        if s < 0:
            r += 1
            continue
        if s >= S:  # numba does not check bounds: this would write past total and distinct
            raise ValueError("a set number is not below the number of sets")
        if done[s]:
            raise ValueError("the texts of a set are not contiguous in this order")
        done[s] = True
        q = r + 1
        while q < R and (sets[q] == s or sets[q] < 0):
            q += 1
        guess = first
        for order in range(1, 5):
            npos = 0
            for t in range(r, q):
                if sets[t] == s and lens[texts[t]] >= order:
                    npos += lens[texts[t]] - order + 1
            total[order - 1, s] = npos
            if npos == 0:
                break  # no n-gram of this order, nor of any higher one
            if order == 4 and slot_of.size < npos:
                slot_of = np.empty(npos, dtype=np.int64)
            size = 16
            while size < 2 * min(npos, guess):
                size *= 2
            while True:
                if 4 * size > tab.size:  # the scratch table grows to the largest size yet needed
                    tab = np.empty(4 * size, dtype=np.int64)
                D = _fill(tok, off, lens, texts, sets, s, r, q, order, size, tab, slot_of, keep)
                if D >= 0:
                    break
                # size // 2 distinct in the first -D positions: as many again per as many
                # positions (an overestimate: n-grams repeat more as a set goes on), capped by
                # the positions, which always fit.
                need = min(npos, (size // 2) * (npos // -D + 1))
                while size < 2 * need:
                    size *= 2
            distinct[order - 1, s] = D
            guess = 8 * D
            if order == 4:
                _shared(lens, texts, sets, s, r, q, tab, slot_of, shared)
        r = q
    return total, distinct, shared
