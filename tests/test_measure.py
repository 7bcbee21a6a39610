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

TOPICS = [
    "the sea",
    "a mountain",
    "bread",
    "winter",
    "a library",
    "trains",
    "music",
    "gardens",
    "the moon",
    "rivers",
    "cities",
    "chess",
]


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
    for key in (
        "models",
        "similarity_matrix",
        "within_model_similarity",
        "off_prompt_floor",
        "voices",
        "leave_one_out",
        "groups",
        "embedder",
    ):
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
    # One set of reasons, counted where the metrics clean their input, whichever path came in.
    assert skipped["empty_text"] == 1
    assert skipped["nonfinite_embedding"] == 4 * 2  # the moon answers, 4 models, k=2
    assert skipped["zero_embedding"] == 4 * 2  # the chess answers: dropped before they pull the mean
    assert skipped["equal_to_calibration_mean"] == 0
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
    r = subprocess.run(
        [sys.executable, "-m", "monoculture.cli", "measure", path, "--embedder", "tfidf", "-B", "50", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["models"] == ["lister", "poet-a", "poet-b", "pundit"] and d["calibrated"] is True
    r = subprocess.run(
        [sys.executable, "-m", "monoculture.cli", "measure", path, "--embedder", "nosuch"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 2 and "unknown embedder 'nosuch'" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "monoculture.cli", "measure", path, "--embedder", "tfidf", "--groups", "nosuchattr"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 2 and "nosuchattr" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "monoculture.cli", "measure", path, "--embedder", "tfidf", "-B", "50"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0 and "voices per prompt" in r.stdout and "leave-one-out" in r.stdout


def test_cli_json_carries_mu_and_the_floor_check(store):
    """The CLI path calibrates where the library does: mu is in the JSON (in full, with its
    norm and a digest of the float32 vector that is stored) beside the off-prompt-floor check."""
    path = str(store.path)
    store.close()
    r = subprocess.run(
        [sys.executable, "-m", "monoculture.cli", "measure", path, "--embedder", "tfidf", "-B", "50", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["calibrated"] is True and d["mu"] is not None
    cal = d["calibration"]
    mu = np.asarray(d["mu"], dtype="<f4")
    assert cal["centred"] and cal["mu_dims"] == len(mu) and cal["mu_from"] == "this study"
    assert cal["mu_norm"] == pytest.approx(float(np.linalg.norm(mu)), rel=1e-5)
    import hashlib

    with Store(path, read_only=True) as st:
        (stored,) = st.con.execute("SELECT mu FROM measure_runs").fetchone()
    assert hashlib.sha256(np.asarray(stored, dtype="<f4").tobytes()).hexdigest()[:16] == cal["mu_sha256"]
    check = cal["floor_check"]
    assert check["floor"] == pytest.approx(d["off_prompt_floor"]["value"]) and check["limit"] == 0.2
    assert check["ok"] is (abs(check["floor"]) <= 0.2)


def _snapshot(path) -> tuple:
    with Store(path, read_only=True) as st:
        emb = st.con.execute("SELECT embedder, count(*) FROM embeddings GROUP BY ALL ORDER BY 1").fetchall()
        runs = st.con.execute("SELECT label, created_at FROM measure_runs ORDER BY 1").fetchall()
    return emb, runs


def test_center_from_matches_the_embedder_and_refuses_tfidf(store, tmp_path):
    from tiny_models import build_tiny_sentence_transformer

    st_a = f"sentence-transformers:{build_tiny_sentence_transformer(tmp_path / 'st-a')}"
    st_b = f"sentence-transformers:{build_tiny_sentence_transformer(tmp_path / 'st-b')}"
    first = measure(store, embedder=st_a, n_boot=50, show_progress=False)
    # The same store's mean, picked by embedder name: the same vector, so the same digest.
    again = measure(store, embedder=st_a, center_from=str(store.path), n_boot=50, show_progress=False)
    assert again.summary["calibration"]["mu_sha256"] == first.summary["calibration"]["mu_sha256"]
    assert again.summary["calibration"]["mu_from"] == str(store.path)
    with pytest.raises(UserError, match="no calibrated measurement labelled 'nosuch'"):
        measure(store, embedder=st_a, center_from=str(store.path), center_label="nosuch", show_progress=False)
    path = str(store.path)
    store.close()
    before = _snapshot(path)
    env = {**os.environ, "COLUMNS": "300"}
    base = [sys.executable, "-m", "monoculture.cli", "measure", path, "-B", "20", "--center-from", path]
    r = subprocess.run(base + ["--embedder", st_b], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and f"no calibrated measurement with embedder {st_b!r}" in r.stderr, r.stderr
    r = subprocess.run(base + ["--embedder", "tfidf"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "tfidf embedder is fitted to each corpus" in r.stderr, r.stderr
    r = subprocess.run(
        base + ["--embedder", st_b, "--center-label", first.label], capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 2 and "a mean is only valid for its own embedder" in r.stderr, r.stderr
    assert _snapshot(path) == before  # nothing embedded, nothing measured


def test_prompts_sharing_an_id_are_two_prompts(store):
    """Prompt identity is prompt_key; prompt_id is a label, and two prompts may share one."""
    store.con.execute("UPDATE prompts SET prompt_id = 'p0' WHERE prompt_id = 'p1'")
    res = measure(store, embedder="tfidf", n_boot=50, show_progress=False)
    pp = res.tables["per_prompt"]
    assert len(pp) == len(TOPICS) and pp.index.is_unique
    assert sum(str(p).startswith("p0 [") for p in pp.index) == 2


def test_prompt_groups_are_the_resampling_unit(store):
    """Prompts sharing a suite's group are one cluster: resampled and folded together."""
    store.con.execute("UPDATE prompts SET group_id = 'g' || (CAST(substr(prompt_id, 2) AS INTEGER) // 3)")
    s = measure(store, embedder="tfidf", n_boot=50, show_progress=False).summary
    assert s["settings"]["resampling_unit"] == "cluster (prompt group)" and s["settings"]["clusters"] == len(TOPICS) // 3
    store.con.execute("UPDATE prompts SET group_id = NULL")
    s = measure(store, embedder="tfidf", n_boot=50, show_progress=False).summary
    assert s["settings"]["resampling_unit"] == "prompt" and s["settings"]["clusters"] == len(TOPICS)


def test_reference_is_reported_above_the_floor_with_the_difference(store, tmp_path):
    from monoculture.report import build_report

    s = measure(store, embedder="tfidf", reference="pundit", n_boot=100, show_progress=False).summary
    ref = s["reference"]
    assert ref["ratio_definition"] == "(H - F) / (H_ref - F)" and "difference" in ref and "floor" in ref
    assert s["homogeneity"] == ref["homogeneity_models"]  # the headline H leaves the reference out
    ratio = ref["ratio"]
    assert (ratio["value"] is None) is ratio["unstable"]
    path = store.path
    store.close()
    html = build_report(path, tmp_path / "r.html").path.read_text(encoding="utf-8")
    line = html[html.index("Against the reference") :]
    line = line[: line.index("</p>")]
    assert "pundit" in line and "difference" in line
    assert ("ratio withheld" in line) if ratio["unstable"] else ("above the off-prompt floor" in line)
