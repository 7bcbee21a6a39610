"""The cache key names the model's version: an updated model under the same name never mixes
its vectors with the old ones, and rows cached before versions existed are handled openly."""

from __future__ import annotations

import numpy as np
import pytest

from monoculture.embedders import Embedder, embed_cached, legacy_rows
from monoculture.embedders.cache import _save
from monoculture.hashing import text_hash
from monoculture.measure import measure


class Counting(Embedder):
    """Length-and-vowel vectors; counts what it embeds; its version is settable."""

    name = "counting"

    def __init__(self, version: str = "v1", scale: float = 1.0):
        self.version, self.scale, self.calls = version, scale, 0

    def embed(self, texts):
        self.calls += len(texts)
        return np.array([[len(t), sum(c in "aeiou" for c in t), t.count(" ") + 1.0] for t in texts], np.float32) * self.scale


def test_a_new_version_is_embedded_anew_and_the_old_rows_stay(small_store):
    texts = ["one text", "another text", "a third"]
    v1 = Counting("v1")
    X1, _, new1 = embed_cached(small_store, v1, texts)
    assert new1 == 3 and v1.cache_key == "counting@v1"
    v2 = Counting("v2", scale=2.0)  # the same name, retrained: other vectors
    X2, _, new2 = embed_cached(small_store, v2, texts)
    assert new2 == 3 and np.allclose(X2, 2 * X1)
    again = Counting("v1")
    X1b, _, new = embed_cached(small_store, again, texts)
    assert new == 0 and again.calls == 0 and np.array_equal(X1b, X1)
    keys = small_store.con.execute("SELECT embedder, count(*) FROM embeddings GROUP BY 1 ORDER BY 1").fetchall()
    assert keys == [("counting@v1", 3), ("counting@v2", 3)]


def test_rows_from_before_versions_are_kept_not_reused_and_noted(small_store):
    """A store written by an earlier release keyed vectors by the bare name; which revision made
    them is unknown, so they are not mixed with the versioned ones: embedded again, said so."""
    df = small_store.generations()
    texts = df["text"].tolist()
    old = Counting("v1", scale=-1.0)  # "an unknown revision": vectors the current model would not give
    small_store.con.execute(
        "CREATE TABLE IF NOT EXISTS embeddings (embedder TEXT, text_hash TEXT, vector FLOAT[], truncated BOOLEAN, PRIMARY KEY (embedder, text_hash))"
    )
    uniq = list(dict.fromkeys(texts))
    _save(small_store, "counting", [text_hash(t) for t in uniq], old.embed(uniq), np.zeros(len(uniq), bool))
    emb = Counting("v1")
    assert legacy_rows(small_store, emb) == len(uniq)
    res = measure(small_store, embedder=emb, n_boot=20, separability=False, show_progress=False)
    assert res.newly_embedded == len(uniq) and res.summary["embedder"] == "counting@v1"
    assert any(f"{len(uniq)} vectors cached before embedders were versioned" in n for n in res.summary["notes"])
    n_old = small_store.con.execute("SELECT count(*) FROM embeddings WHERE embedder = 'counting'").fetchone()
    assert n_old == (len(uniq),)  # nothing deleted


def test_tfidf_rows_from_before_versions_are_still_its_own(small_store):
    """tfidf's name fixes its vectors (settings and corpus fingerprint): no version, so rows an
    earlier release cached are its rows and a rerun embeds nothing."""
    first = measure(small_store, embedder="tfidf", n_boot=20, separability=False, show_progress=False)
    assert "@" not in first.summary["embedder"] and first.newly_embedded > 0
    again = measure(small_store, embedder="tfidf", n_boot=20, separability=False, show_progress=False)
    assert again.newly_embedded == 0 and not any("versioned" in n for n in again.summary["notes"])


@pytest.mark.slow
def test_a_retrained_model_in_the_same_folder_gets_another_key(tmp_path):
    pytest.importorskip("sentence_transformers")
    import shutil

    from monoculture.embedders import get_embedder
    from tiny_models import build_tiny_sentence_transformer

    folder = tmp_path / "model"
    build_tiny_sentence_transformer(folder, seed=0)
    a = get_embedder(f"sentence-transformers:{folder}")
    shutil.rmtree(folder)
    build_tiny_sentence_transformer(folder, seed=1)
    b = get_embedder(f"sentence-transformers:{folder}")
    assert a.name == b.name and a.version != b.version and a.version.startswith("files-")
    assert a.cache_key != b.cache_key
    c = get_embedder(f"sentence-transformers:{folder}?batch_size=8")  # batching changes no vector: same key
    assert c.cache_key == b.cache_key
