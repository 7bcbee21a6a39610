"""The store's vector cache: one table keyed by (embedder, text hash).

The key is the embedder's ``cache_key`` (its name, and its version when it has one), so
identical texts are embedded once, a rerun of ``measure`` embeds nothing, and a model updated
under the same name starts a new set of rows instead of mixing with the old. Vectors are stored
raw; calibration (centring, see METRICS.md) happens at measure time because its mean depends on
the study.

Rows written before versions existed are keyed by the bare name. For an embedder whose name
fixes its vectors (tfidf) that is still its key, so they are reused. For a versioned one the
bare-name rows were made by an unknown revision: they are kept in the store (nothing is
deleted) but not reused, and :func:`legacy_rows` counts them for the note measure prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from monoculture.embedders.base import Embedder
from monoculture.hashing import text_hash

EMBED_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    embedder TEXT,
    text_hash TEXT,
    vector FLOAT[],
    truncated BOOLEAN,
    PRIMARY KEY (embedder, text_hash)
);
"""


def embed_cached(
    store, embedder: Embedder, texts: Sequence[str], progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Raw vectors for ``texts`` (one row per text, in order), embedding only texts the store
    lacks for this embedder; each distinct text is embedded once. Returns (vectors, truncated
    mask, number newly embedded)."""
    store.con.execute(EMBED_SCHEMA)
    hashes = [text_hash(t) for t in texts]
    uniq: dict[str, str] = {}
    for h, t in zip(hashes, texts):
        uniq.setdefault(h, t)
    embedder.fit(list(uniq.values()))
    key = embedder.cache_key  # after fit: a corpus-fitted embedder's name includes its corpus
    have = _load(store, key, list(uniq))
    todo = [h for h in uniq if h not in have]
    step = max(embedder.batch_size * 4, 256)
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        chunk_texts = [uniq[h] for h in chunk]
        vecs = embedder.embed(chunk_texts)
        if vecs.shape[0] != len(chunk):
            raise RuntimeError(f"embedder {embedder.name} returned {vecs.shape[0]} vectors for {len(chunk)} texts")
        trunc = embedder.truncated(chunk_texts)
        _save(store, key, chunk, vecs, trunc)
        for h, v, tr in zip(chunk, vecs, trunc):
            have[h] = (v, bool(tr))
        if progress:
            progress(len(chunk))
    dim = next(iter(have.values()))[0].shape[0] if have else 0
    X = np.empty((len(texts), dim), dtype=np.float32)
    T = np.empty(len(texts), dtype=bool)
    for i, h in enumerate(hashes):
        X[i], T[i] = have[h]
    return X, T, len(todo)


def legacy_rows(store, embedder: Embedder) -> int:
    """How many vectors the store holds under this embedder's bare name while its key is
    versioned: rows from before versions existed, which are not reused (see the module doc)."""
    if embedder.cache_key == embedder.name:
        return 0
    store.con.execute(EMBED_SCHEMA)
    row = store.con.execute("SELECT count(*) FROM embeddings WHERE embedder = ?", [embedder.name]).fetchone()
    return int(row[0]) if row else 0


def _load(store, embedder: str, hashes: list[str]) -> dict[str, tuple[np.ndarray, bool]]:
    if not hashes:
        return {}
    want = pa.table({"text_hash": hashes})  # noqa: F841 - referenced by the SQL below
    tbl = store.con.sql(
        "SELECT e.text_hash, e.vector, e.truncated FROM embeddings e JOIN want USING (text_hash) WHERE e.embedder = $embedder",
        params={"embedder": embedder},
    ).to_arrow_table()
    if tbl.num_rows == 0:
        return {}
    vec_col = tbl.column("vector").combine_chunks()
    flat = vec_col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    mat = flat.reshape(tbl.num_rows, -1)
    return {
        h: (mat[i], bool(t))
        for i, (h, t) in enumerate(zip(tbl.column("text_hash").to_pylist(), tbl.column("truncated").to_pylist()))
    }


def _save(store, embedder: str, hashes: list[str], vecs: np.ndarray, trunc: np.ndarray) -> None:
    d = vecs.shape[1]
    values = pa.array(np.ascontiguousarray(vecs, dtype=np.float32).ravel())
    offsets = pa.array(np.arange(0, (len(hashes) + 1) * d, d, dtype=np.int32))
    batch = pa.table(  # noqa: F841 - referenced by the SQL below
        {
            "embedder": pa.array([embedder] * len(hashes)),
            "text_hash": pa.array(hashes),
            "vector": pa.ListArray.from_arrays(offsets, values),
            "truncated": pa.array(np.asarray(trunc, dtype=bool)),
        }
    )
    with store.transaction():
        store.con.execute("INSERT OR REPLACE INTO embeddings SELECT * FROM batch")
