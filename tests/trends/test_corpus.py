"""Must show 4: a dated corpus through `monoculture import jsonl` with a date column, analysed
with its sources in place of models (mean pairwise similarity per period, z-normalised)."""

from __future__ import annotations

import json
import random
from datetime import date

import numpy as np
import pytest

from clihelp import mc
from monoculture.errors import UserError
from monoculture.store import Store
from monoculture.trends.corpus import corpus_similarity, corpus_trend

TEMPLATE = "welcome home about us contact products services news careers login search privacy terms".split()


def _page(rng: random.Random, shared: float) -> str:
    """A page: a share ``shared`` of its words from one common template, the rest its own."""
    words = []
    for _ in range(60):
        if rng.random() < shared:
            words.append(rng.choice(TEMPLATE))
        else:
            words.append("".join(rng.choice("bcdfghjklmnpqrstvwxz") + rng.choice("aeiou") for _ in range(3)))
    return " ".join(words)


def _corpus(tmp_path, shared_by_year: dict[int, float], seed: int = 0):
    rng = random.Random(seed)
    rows = [
        {"site": f"site{s:02d}.example", "year": year, "prompt": "home page", "page": _page(rng, shared)}
        for year, shared in shared_by_year.items()
        for s in range(8)
        for _ in range(2)  # two pages per site and year
    ]
    f = tmp_path / "web.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    store = tmp_path / "web.duckdb"
    code, out = mc("import", "jsonl", f, "--store", store, "--map", "source=site", "--map", "date=year", "--map", "text=page")
    assert code == 0, out
    return store


def test_planted_homogenisation_through_import(tmp_path):
    store = _corpus(tmp_path, {2004 + i: 0.1 + 0.15 * i for i in range(6)})
    with Store(store) as st:
        res = corpus_trend(st, embedder="tfidf", n_boot=300, n_perm=299)
    series = res["series"]["similarity_z"]
    assert [p["date"] for p in series] == [f"{y}-01-01" for y in range(2004, 2010)]
    assert all(len(p["models"]) == 8 and p["models"][0].endswith(p["date"][:4]) for p in series)  # site@year
    z = np.array([p["value"] for p in series])
    assert abs(z.mean()) < 1e-9 and abs(z.std() - 1) < 1e-9  # z-normalised
    assert all(lo <= v <= hi for v, (lo, hi) in ((p["value"], p["ci"]) for p in series))
    (slope,) = res["slopes"]
    assert slope["value"] > 0 and slope["ci"][0] > 0 and slope["p"] < 0.01


def test_no_trend_through_import(tmp_path):
    store = _corpus(tmp_path, {2004 + i: 0.4 for i in range(6)}, seed=1)
    with Store(store) as st:
        res = corpus_trend(st, embedder="tfidf", n_boot=300, n_perm=299)
    (slope,) = res["slopes"]
    assert slope["ci"][0] < 0 < slope["ci"][1] and slope["p"] > 0.05


def test_pairs_within_a_period_only_and_undated_counted():
    # two periods of identical pairs and one of orthogonal ones: the raw means are exact
    X = np.array([[1, 0], [1, 0], [1, 0], [1, 0], [1, 0], [0, 1], [1, 0]], dtype=float)
    src = ["a", "b", "c", "d", "e", "f", "undated"]
    d = {"a": date(2020, 3, 1), "b": date(2020, 9, 1), "c": date(2021, 1, 1), "d": date(2021, 5, 1)}
    d |= {"e": date(2022, 1, 1), "f": date(2022, 2, 1)}
    res = corpus_similarity(X, src, d, n_boot=50, n_perm=49)
    assert [p["raw"] for p in res["series"]["similarity_z"]] == [1.0, 1.0, 0.0]
    assert res["undated"] == {"count": 1, "models": ["undated"]}
    with pytest.raises(UserError, match="at least 3 periods"):
        corpus_similarity(X, src, d, period="quarter", n_boot=10, n_perm=9)


def test_the_trend_analysis_reads_sources_as_models(tmp_path):
    """The model-release analysis runs unchanged on the imported corpus: each SOURCE@DATE is a
    dated "model", and the cohorts' homogeneity rises with the planted trend."""
    from monoculture.trends.analysis import trend_analysis

    store = _corpus(tmp_path, {2004 + i: 0.1 + 0.15 * i for i in range(6)})
    code, out = mc("measure", store, "--embedder", "tfidf")
    assert code == 0, out
    with Store(store, read_only=True) as st:
        res = trend_analysis(st, n_boot=200, n_perm=199).to_json_dict()
    assert res["dated"] == 48 and res["undated"]["count"] == 0
    assert {m["source"] for m in res["models"]} == {"attribute date (imported)"}
    (h,) = [s for s in res["slopes"] if s["series"] == "homogeneity" and s["group"] is None]
    assert h["value"] > 0 and h["p"] < 0.05
