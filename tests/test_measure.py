"""The measure phase through the store and the CLI: caching, labels, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from monoculture.embed import Embedder
from monoculture.errors import UserError
from monoculture.importers import Imported, import_records
from monoculture.measure import load_results, measure
from monoculture.store import Store

TOPICS = ["the sea", "a mountain", "bread", "winter", "a library", "trains", "music", "gardens", "the moon", "rivers", "cities", "chess"]


def answers(model: str, style: str, k: int = 2) -> list[Imported]:
    out = []
    for p, topic in enumerate(TOPICS):
        for i in range(k):
            if style == "poem":
                text = f"O {topic}, you shine and sing; verse {i} of my little song about {topic}."
            elif style == "list":
                text = f"1. {topic} facts\n2. more about {topic}\n3. item {i}"
            else:
                text = f"In my view, {topic} matters because people need it (take {i})."
            out.append(Imported(model, f"p{p}", f"Tell me about {topic}.", text, sample_index=i))
    return out


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "m.duckdb") as st:
        recs = answers("poet-a", "poem") + answers("poet-b", "poem") + answers("lister", "list") + answers("pundit", "opinion")
        import_records(st, recs, "jsonl")
        st.upsert_models(
            [
                {"name": n, "backend": "import", "model_id": n, "source": "jsonl", "attributes": {"family": f}}
                for n, f in [("poet-a", "poets"), ("poet-b", "poets"), ("lister", "listers"), ("pundit", "pundits")]
            ]
        )
        yield st


def test_rerun_embeds_nothing_and_labels_by_embedder(store, tmp_path):
    first = measure(store, embedder="tfidf", n_boot=100, show_progress=False)
    assert first.newly_embedded == 3 * len(TOPICS) * 2  # the two poets say the same: embedded once
    again = measure(store, embedder="tfidf", n_boot=100, show_progress=False)
    assert again.newly_embedded == 0
    assert again.summary["voices"]["value"] == pytest.approx(first.summary["voices"]["value"])

    from tiny_models import build_tiny_sentence_transformer

    st_path = build_tiny_sentence_transformer(tmp_path / "st")
    other = measure(store, embedder=f"sentence-transformers:{st_path}", n_boot=100, show_progress=False)
    assert other.label != first.label and other.summary["embedder"].startswith("sentence-transformers:")
    labels = {r[0] for r in store.con.execute("SELECT label FROM measure_runs").fetchall()}
    assert labels == {first.label, other.label}
    assert load_results(store, first.label).summary["embedder"] == first.summary["embedder"]
    assert load_results(store).label == other.label  # the latest by default


def test_summary_has_the_documented_keys(store):
    s = measure(store, embedder="tfidf", n_boot=100, show_progress=False).summary
    for key in ("models", "similarity_matrix", "within_model_similarity", "off_prompt_floor", "voices", "leave_one_out", "groups", "embedder"):
        assert key in s, key
    assert s["models"] == ["lister", "poet-a", "poet-b", "pundit"]
    C = np.array(s["similarity_matrix"], dtype=float)
    assert C.shape == (4, 4) and np.allclose(C, C.T, equal_nan=True)
    assert set(s["voices"]) >= {"value", "ci", "prompts"} and s["voices"]["prompts"] == len(TOPICS)
    # the two poets are near-copies: losing one costs less than losing the lister
    loo = s["leave_one_out"]
    assert loo["poet-a"]["value"] < loo["lister"]["value"]
    assert "poets" in s["groups"] and "baseline" in s["groups"]["poets"]


class BrokenEmbedder(Embedder):
    """Returns NaN for one text and zeros for another: what a misbehaving model might do."""

    name = "broken-test-embedder"

    def embed(self, texts):
        rng = np.random.default_rng(len(texts))
        X = rng.normal(size=(len(texts), 16)).astype(np.float32)
        for i, t in enumerate(texts):
            if "moon" in t:
                X[i] = np.nan
            if "chess" in t:
                X[i] = 0.0
        return X


def test_bad_vectors_and_empty_texts_are_skipped_and_counted(store):
    import_records(store, [Imported("pundit", "p0", "Tell me about the sea.", "   ", sample_index=5)], "jsonl")
    res = measure(store, embedder=BrokenEmbedder(), n_boot=50, show_progress=False)
    skipped = res.summary["skipped"]
    assert skipped["empty texts"] == 1
    assert skipped["NaN or zero vectors from the embedder"] == 4 * 2 * 2  # moon + chess answers, 4 models, k=2
    assert res.summary["voices"]["prompts"] == len(TOPICS) - 2  # the moon and chess prompts lost every answer


def test_prompts_answered_by_one_model_are_skipped(store):
    import_records(store, [Imported("lister", "solo", "Only one model saw this.", "indeed", sample_index=0)], "jsonl")
    res = measure(store, embedder="tfidf", n_boot=50, show_progress=False)
    assert res.summary["voices"]["prompts"] == len(TOPICS)
    assert res.summary["skipped"].get("prompts_single_model") == 1


def test_one_model_store_is_a_clear_error(tmp_path):
    with Store(tmp_path / "one.duckdb") as st:
        import_records(st, answers("solo", "poem"), "jsonl")
        with pytest.raises(UserError, match="only one model"):
            measure(st, embedder="tfidf", show_progress=False)


def test_cli_json_and_errors(store, tmp_path):
    path = str(store.path)
    store.close()
    env = {**os.environ, "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "monoculture.cli", "measure", path, "--embedder", "tfidf", "-B", "50", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["models"] == ["lister", "poet-a", "poet-b", "pundit"] and d["calibrated"] is True
    r = subprocess.run([sys.executable, "-m", "monoculture.cli", "measure", path, "--embedder", "nosuch"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "unknown embedder 'nosuch'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "monoculture.cli", "measure", path, "--embedder", "tfidf", "--groups", "nosuchattr"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "nosuchattr" in r.stderr
    r = subprocess.run([sys.executable, "-m", "monoculture.cli", "measure", path, "--embedder", "tfidf", "-B", "50"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "voices per prompt" in r.stdout and "leave-one-out" in r.stdout
