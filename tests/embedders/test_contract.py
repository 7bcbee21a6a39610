"""One contract every embedder keeps (STYLE.md: the scikit-learn check_estimator habit): a
stable key, one float32 row per text in the caller's order, a rerun that embeds nothing, and a
stated treatment of long texts. A plugin author can run it on their own class."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from monoculture.embedders import Embedder, embed_cached, get_embedder

TEXTS = [
    "The sea is calm tonight and the boats are in.",
    "Bread rises when the yeast is warm.",
    "Chess rewards patience more than speed.",
    "Rivers carve valleys over long ages.",
    "The library opens at nine on weekdays.",
    "Winter nights are long in the north.",
]


def _names():
    out = [pytest.param("tfidf", id="tfidf")]
    if importlib.util.find_spec("wordllama"):
        out.append(pytest.param("wordllama", id="wordllama"))
    if importlib.util.find_spec("sentence_transformers"):
        out.append(pytest.param("tiny-st", id="sentence-transformers", marks=pytest.mark.slow))
    return out


@pytest.fixture
def make(request, tmp_path_factory):
    def build(name: str) -> Embedder:
        if name == "tiny-st":
            from tiny_models import cached_tiny_model

            return get_embedder(f"sentence-transformers:{cached_tiny_model('sentence-transformer')}")
        return get_embedder(name)

    return build


@pytest.mark.parametrize("name", _names())
def test_the_embedder_contract(name, make, small_store):
    a, b = make(name), make(name)
    a.fit(TEXTS)
    b.fit(TEXTS)
    assert a.cache_key == b.cache_key and a.cache_key.startswith(a.name)
    assert a.long_texts and isinstance(a.long_texts, str)
    X = a.embed(TEXTS)
    assert X.dtype == np.float32 and X.shape[0] == len(TEXTS) and X.ndim == 2 and np.isfinite(X).all()
    np.testing.assert_allclose(a.embed(TEXTS[::-1]), X[::-1], atol=1e-5)  # order kept, batches independent
    np.testing.assert_allclose(b.embed(TEXTS), X, atol=1e-5)  # the same key, the same vectors
    t = a.truncated(TEXTS)
    assert t.dtype == bool and t.shape == (len(TEXTS),)
    Y, _, new = embed_cached(small_store, make(name), TEXTS + TEXTS[:2])
    assert new == len(TEXTS)
    np.testing.assert_allclose(Y[: len(TEXTS)], X, atol=1e-5)
    Z, _, again = embed_cached(small_store, make(name), TEXTS)
    assert again == 0 and np.array_equal(Z, Y[: len(TEXTS)])
