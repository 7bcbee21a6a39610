"""Embedding on Ray actors (Ray Data ``map_batches``, a local ``ray.init(num_cpus=2)`` cluster)
into the store's vector cache, with the tiny sentence-transformer of tests/tiny_models.py: the
vectors are keyed as a local measure keys them, so that measure embeds nothing afterwards."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from monoculture.embedders import Embedder, embed_cached, get_embedder
from monoculture.errors import UserError
from monoculture.executors.ray_embed import EmbedActor, embed_on_ray
from monoculture.hashing import text_hash
from monoculture.importers import Imported, import_records
from monoculture.measure import measure
from monoculture.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_models import cached_tiny_model  # noqa: E402

TEXTS = [f"Answer {i}: the sea is calm today." for i in range(30)] + [
    "A short one.",
    "A short one.",  # a repeat: embedded once
    "Ünïcödé and emoji 🌊 travel too.",
    "A much longer answer " * 40,
]


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module's Ray tests: starting Ray costs seconds here."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'monoculture[ray]')")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny() -> str:
    return f"sentence-transformers:{cached_tiny_model('sentence-transformer')}"


def cached(path: Path, key: str) -> dict[str, np.ndarray]:
    with Store(path, read_only=True) as st:
        rows = st.con.execute("SELECT text_hash, vector FROM embeddings WHERE embedder = ?", [key]).fetchall()
    return {h: np.asarray(v, dtype=np.float32) for h, v in rows}


@pytest.mark.slow
def test_ray_embedding_fills_the_cache_a_local_measure_reads(tmp_path, tiny, cluster):
    emb = get_embedder(tiny)
    key = emb.cache_key
    assert "@" in key  # versioned: the actors must agree with the driver on it
    with Store(tmp_path / "ray.duckdb") as st:
        # the texts as two models' answers, two samples each, to four-answer prompts
        recs = [
            Imported("ab"[i % 2], f"p{i // 4}", f"Question {i // 4}?", t, sample_index=i % 4 // 2) for i, t in enumerate(TEXTS)
        ]
        import_records(st, recs, "jsonl")
        # 10 texts already cached: only the rest go to Ray
        embed_cached(st, emb, TEXTS[:10])
        sent = embed_on_ray(st, tiny, st.generations()["text"].tolist(), batch_size=16, actors=1, show_progress=False)
        assert sent == len(set(TEXTS)) - 10
        assert embed_on_ray(st, tiny, TEXTS, show_progress=False) == 0  # nothing missing: nothing sent
        # a local measure finds every vector Ray wrote
        assert measure(st, embedder=tiny, n_boot=20, n_perm=9, separability=False, show_progress=False).newly_embedded == 0
        X_after, _, new = embed_cached(st, emb, TEXTS)
        assert new == 0
    with Store(tmp_path / "local.duckdb") as st:
        X_local, _, new = embed_cached(st, get_embedder(tiny), TEXTS)
        assert new == len(set(TEXTS))
    got, want = cached(tmp_path / "ray.duckdb", key), cached(tmp_path / "local.duckdb", key)
    assert sorted(got) == sorted(want) == sorted({text_hash(t) for t in TEXTS})
    for h in want:  # other batch compositions pad differently: equal to float32 rounding
        np.testing.assert_allclose(got[h], want[h], rtol=0, atol=2e-6)
    np.testing.assert_allclose(X_after, X_local, rtol=0, atol=2e-6)


class DriverOnly(Embedder):
    """Built on the driver, but its name loads nothing on a worker (a model the nodes lack)."""

    name = "sentence-transformers:/nonexistent/model-dir"
    version = "v1"

    def embed(self, texts):
        return np.ones((len(texts), 4), dtype=np.float32)


@pytest.mark.slow
def test_a_failing_worker_is_one_clear_error_and_writes_nothing_wrong(tmp_path, cluster):
    with Store(tmp_path / "s.duckdb") as st:
        with pytest.raises(UserError, match=r"embedding on the Ray cluster failed after 0 of 3 texts.*model-dir"):
            embed_on_ray(st, DriverOnly(), ["a", "b", "c"], show_progress=False)
        assert st.con.execute("SELECT count(*) FROM embeddings").fetchone() == (0,)


def test_a_worker_with_another_revision_is_refused(tiny):
    with pytest.raises(RuntimeError, match="same model revision on every node"):
        EmbedActor(tiny, "sentence-transformers:some-model@another-revision")


def test_a_worker_embeds_a_batch_as_the_embedder_does(tiny):
    emb = get_embedder(tiny)
    actor = EmbedActor(tiny, emb.cache_key)
    out = actor({"text_hash": np.array(["h1", "h2"]), "text": np.array(TEXTS[:2])})
    assert out["vector"].dtype == np.float32 and out["vector"].shape[0] == 2
    np.testing.assert_allclose(out["vector"], emb.embed(TEXTS[:2]), rtol=0, atol=1e-6)
    assert list(out["text_hash"]) == ["h1", "h2"] and out["truncated"].dtype == bool


def test_a_corpus_fitted_embedder_is_refused_before_anything_starts(tmp_path):
    with Store(tmp_path / "s.duckdb") as st, pytest.raises(UserError, match="fitted to the whole corpus"):
        embed_on_ray(st, "tfidf", TEXTS)
