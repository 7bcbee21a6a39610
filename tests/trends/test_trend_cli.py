"""``monoculture trend`` end to end: import, measure, dates, the --json shape and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from clihelp import mc, snapshot

WORDS = "sea stone bread winter library train music garden moon river city chess cloud forest".split()


def _store(tmp_path: Path, dates=("2023-01-10", "2023-04", "2023-08-01", "2024-02")) -> Path:
    rows = []
    for m in range(5):
        for p, t in enumerate(WORDS):
            rows.append(
                {
                    "model": f"model-{m}",
                    "prompt_id": f"p{p}",
                    "prompt": f"Tell me about the {t}.",
                    "text": f"{'Indeed ' * m}the {t} is {WORDS[(p + m) % len(WORDS)]}-like, model {m} says about {t} and {WORDS[(p * m) % len(WORDS)]}.",
                }
            )
    tmp_path.mkdir(exist_ok=True)
    f = tmp_path / "out.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    store = tmp_path / "s.duckdb"
    assert mc("import", "jsonl", f, "--store", store)[0] == 0
    assert mc("measure", store, "--embedder", "tfidf", "-B", "20", "--quiet")[0] == 0
    sets = [a for m, d in enumerate(dates) for a in ("--set", f"model-{m}:released={d}")]
    code, out = mc("attributes", store, *sets)
    assert code == 0, out
    return store


def test_trend_json_shape_and_undated_count(tmp_path):
    store = _store(tmp_path)
    before = snapshot(store)
    code, out = mc("trend", store, "--json", "-B", "50", "--permutations", "49", "--period", "half")
    assert code == 0, out
    d = json.loads(out)
    assert {"similarity_to_earlier", "homogeneity", "voices_equal_n"} <= set(d["series"])
    pt = d["series"]["similarity_to_earlier"][0]
    assert set(pt) >= {"date", "value", "ci", "models"} and pt["models"] == ["model-1"]
    assert {s["series"] for s in d["slopes"]} >= {"similarity_to_earlier", "homogeneity", "voices_equal_n"}
    assert all(set(s) >= {"series", "group", "value", "ci", "p"} for s in d["slopes"])
    assert d["undated"] == {"count": 1, "models": ["model-4"]} and d["dated"] == 4
    assert d["settings"]["embedder"].startswith("tfidf:") and d["settings"]["calibrated"] is True
    assert snapshot(store) == before  # computed on demand: nothing written
    code, text = mc("trend", store, "-B", "20", "--permutations", "19")
    assert code == 0 and "similarity_to_earlier" in text and "without a date" in text


def test_trend_bad_input_exit_2(tmp_path):
    store = _store(tmp_path)
    before = snapshot(store)
    code, out = mc("trend", store, "--period", "month")
    assert code == 2 and "--period 'month'" in out
    code, out = mc("trend", store, "--n", "1")
    assert code == 2 and "--n 1" in out
    code, out = mc("trend", tmp_path / "nope.duckdb")
    assert code == 2 and "no store" in out
    code, out = mc("trend", _store(tmp_path / "few", ("2023-01", "2023-06")))
    assert code == 2 and "at least 3 models with a release date, got 2" in out
    assert snapshot(store)["generations"] == before["generations"]
