"""wordllama: the model bundled in its wheel, offline, cached, and what it cannot see."""

from __future__ import annotations

import random

import numpy as np
import pytest
from embedder_data import AMHARIC, THAI, fill

from monoculture.embedders import embed_cached, get_embedder
from monoculture.measure import measure
from monoculture.store import Store

pytest.importorskip("wordllama", reason="wordllama is in the dev extra: pip install 'monoculture[wordllama]'")


@pytest.fixture(scope="module")
def wl():
    return get_embedder("wordllama")


def test_loads_and_embeds_with_the_network_blocked(offline):
    emb = get_embedder("wordllama")  # the load itself runs under the guard: no download, no lookup
    X = emb.embed(["The cat sat on the mat.", "Bread is baked in an oven."])
    assert X.shape == (2, 256) and X.dtype == np.float32 and np.all(np.linalg.norm(X, axis=1) > 0)
    assert emb.name == "wordllama" and emb.cache_key.startswith("wordllama@") and len(emb.version) > 12


def test_shuffled_words_give_the_same_vector(wl):
    """What it cannot see, 1: word order. A static embedding averages its tokens."""
    s = "the dog bit the man on his leg before dinner"
    words = s.split()
    shuffled = " ".join(random.Random(1).sample(words, len(words)))
    assert shuffled != s
    a, b, c = wl.embed([s, shuffled, "the man bit the dog on his leg before dinner"])
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a, c, rtol=0, atol=1e-6)  # opposite meanings, one vector


def test_scripts_outside_its_vocabulary_get_zero_vectors(wl):
    """What it cannot see, 2: Amharic comes out as UTF-8 bytes and Thai as lone letters; their
    mean would be a near-constant vector (every such answer alike), so they get zero instead."""
    amharic_2 = "እንኳን ደህና መጣህ ዛሬ ጥሩ ቀን ነው"
    thai_2 = "ฉันชอบกินข้าวผัดกับไก่ทอด"
    texts = [AMHARIC, amharic_2, THAI, thai_2, "Привет, как дела?", "你好世界，今天天气很好", "The moon is bright."]
    X = wl.embed(texts)
    norms = np.linalg.norm(X, axis=1)
    assert norms[:4].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert np.all(norms[4:] > 0)  # Cyrillic and Han have words (or morphemes) in its vocabulary
    assert wl.unseen(texts).tolist() == [True] * 4 + [False] * 3
    # Had the lone letters been averaged, two unrelated Thai sentences would look near-identical.
    rows, ids, kinds = wl.counts([THAI, thai_2])
    raw = np.stack([wl.table[ids[rows == r]].mean(axis=0) for r in (0, 1)])
    cos = raw[0] @ raw[1] / np.linalg.norm(raw, axis=1).prod()
    en = wl.embed(["The sea is calm tonight.", "Chess rewards patience."])
    cos_en = en[0] @ en[1] / np.linalg.norm(en, axis=1).prod()
    assert cos > 0.85 and cos_en < 0.2  # unrelated Thai sentences: 0.90 raw; unrelated English: 0.07


def test_characters_count_once_not_per_byte(wl):
    """An emoji is four byte tokens but one character: "Sure! 🌸" is mostly words it knows (and
    keeps the vector of "Sure!"), a bare emoji is nothing it can see."""
    X = wl.embed(["Sure! 🌸", "Sure!", "🎲"])
    np.testing.assert_allclose(X[0], X[1], atol=1e-6)
    assert not X[2].any() and wl.unseen(["Sure! 🌸", "🎲"]).tolist() == [False, True]


def test_a_mixed_text_keeps_the_words_it_knows(wl):
    """Mostly English with a Thai greeting: the English words make its vector; the Thai letters
    are left out of the mean rather than pulling it towards the all-Thai vector."""
    a, b = wl.embed(
        [
            "The weather is lovely today and we walked along the river.",
            f"The weather is lovely today and we walked along the river. {THAI[:8]}",
        ]
    )
    assert np.linalg.norm(b) > 0 and a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.99


def test_long_texts_are_embedded_whole(wl):
    """No window: the mean over every token, so nothing is cut and the summary counts none."""
    long = " ".join(["bread"] * 5000) + " ocean"
    assert not wl.truncated([long]).any() and "whole text" in wl.long_texts
    x = wl.embed([long, "bread"])
    assert x[0] @ x[1] / np.linalg.norm(x, axis=1).prod() > 0.99


def test_a_second_measure_embeds_nothing_offline(tmp_path, offline):
    with Store(tmp_path / "w.duckdb") as st:
        fill(st, extra={"hello": AMHARIC})
        first = measure(st, embedder="wordllama", n_boot=50, show_progress=False)
        assert first.newly_embedded == 84  # 4 models x (10 topics x 2 + 1 greeting), every text distinct
        assert first.summary["embedder"].startswith("wordllama@")
        assert first.summary["skipped"]["zero_embedding"] == 4  # the Amharic answers, counted and left out
        assert any("4 texts have zero vectors" in n for n in first.summary["notes"])
        assert first.summary["long_texts"] == {
            "handling": "no window: the mean over every token of the whole text",
            "truncated": 0,
        }
        again = measure(st, embedder="wordllama", n_boot=50, show_progress=False)
        assert again.newly_embedded == 0
        assert again.summary["homogeneity"] == first.summary["homogeneity"]
        n = st.con.execute("SELECT count(*) FROM embeddings WHERE embedder = ?", [first.summary["embedder"]]).fetchone()
        assert n == (84,)


def test_throughput_is_thousands_of_texts_a_second(wl):
    """Not a benchmark (benchmarks/validate_real_data.py measures it on AlpacaEval): a guard
    that the sparse pooling stays vectorised. 2,000 answers of ~150 words in well under 5 s."""
    import time

    rng = random.Random(0)
    vocab = "the a of to and in model answer prompt language people city river music bread moon chess".split()
    texts = [" ".join(rng.choice(vocab) for _ in range(150)) for _ in range(2000)]
    t0 = time.perf_counter()
    X, _, new = embed_cached(_MemStore(), wl, texts)
    assert new == len(set(texts)) and X.shape == (2000, 256)
    assert time.perf_counter() - t0 < 5


class _MemStore:
    """An in-memory store for the cache (embed_cached needs only con and transaction)."""

    def __init__(self):
        import contextlib

        import duckdb

        self.con = duckdb.connect()
        self.transaction = contextlib.nullcontext
