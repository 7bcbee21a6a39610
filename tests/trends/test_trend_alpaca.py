"""Must show 3 of issue 14 on the real AlpacaEval outputs (skipped without ../shared/data):
import, attributes, measure with tfidf, the shipped dates, and the trend of every series."""

from __future__ import annotations

import numpy as np
import pytest

from monoculture.importers import alpaca_eval, import_records
from monoculture.measure import measure
from monoculture.store import Store
from monoculture.trends.analysis import trend_analysis


@pytest.mark.slow
def test_trend_on_alpaca_eval(shared_data, store_path):
    from pathlib import Path

    from monoculture.attributes import apply_attributes

    results = shared_data / "alpaca_eval" / "results"
    attrs = Path(__file__).resolve().parents[2] / "examples" / "alpaca_eval_attributes.yaml"
    with Store(store_path) as st:
        import_records(st, alpaca_eval.read(results), "alpaca_eval")
        apply_attributes(st, file=attrs)
        measure(st, embedder="tfidf", n_boot=20, show_progress=False)
        r = trend_analysis(st, period="quarter", n_boot=200, n_perm=199, seed=0)
    d = r.to_json_dict()
    # airoboros-33b has no honest date in the shipped table: left out and counted
    assert d["dated"] == 27 and d["undated"] == {"count": 1, "models": ["airoboros-33b"]}
    assert d["settings"]["embedder"].startswith("tfidf:") and d["settings"]["prompts"] == 805
    assert [p["models"][0] for p in d["series"]["similarity_to_earlier"]][0] == "alpaca-7b"  # text_davinci_003 is first
    assert len(d["series"]["voices_equal_n"]) >= 3
    field = {s["series"]: s for s in d["slopes"] if s["group"] is None}
    assert set(field) == {"similarity_to_earlier", "nearest_earlier", "distance_to_centre", "homogeneity", "voices_equal_n"}
    for s in field.values():
        assert np.isfinite(s["value"]) and s["ci"][0] <= s["ci"][1] and 0 < s["p"] <= 1, s
    assert any(s["group"] == "open_weights=true" for s in d["slopes"])
