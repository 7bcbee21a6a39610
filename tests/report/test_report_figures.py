"""Figures built directly from tables: what each panel plots."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monoculture.report import figures as F


def _tables():
    models = ["terse", "verbose"]
    per_model = pd.DataFrame({"W": [0.5, 0.5], "W_lo": [0.4, 0.4], "W_hi": [0.6, 0.6], "W_prompts": [10, 10]}, index=models)
    # Whole-model figures say "verbose" is far more repetitive; per prompt the two are alike.
    lexical = pd.DataFrame(
        {
            "texts": [20, 20],
            "tokens": [400, 8000],
            "ngram_div_mean": [0.9, 0.3],
            "compression_ratio": [1.5, 4.0],
            "per_prompt_ngram_div_mean": [0.81, 0.79],
            "per_prompt_compression_ratio": [1.61, 1.66],
        },
        index=models,
    )
    return models, per_model, lexical


def _lexical_traces(fig: F.Figure) -> dict[str, list]:
    d = fig.to_dict()
    titles = [a["text"] for a in d["layout"]["annotations"]]
    return {t: tr["x"] for t, tr in zip(titles, d["data"])}


def test_lexical_panels_plot_per_prompt_means():
    models, per_model, lexical = _tables()
    fig = F.diversity(per_model, lexical, models)
    traces = _lexical_traces(fig)
    div = next(v for t, v in traces.items() if t.startswith("Lexical diversity"))
    comp = next(v for t, v in traces.items() if t.startswith("Compression ratio"))
    assert np.allclose(div, [0.81, 0.79]) and np.allclose(comp, [1.61, 1.66])
    assert "per-prompt means" in fig.caption and "longer" in fig.caption
    assert all("per prompt" in t for t in traces if t.startswith(("Lexical", "Compression")))
    hover = fig.to_dict()["data"][-1]["hovertext"]
    assert hover[0].endswith("<br>20 tokens per answer") and hover[1].endswith("<br>400 tokens per answer")  # tokens / texts


def test_lexical_panels_say_when_only_whole_model_figures_exist():
    models, per_model, lexical = _tables()
    old = lexical.drop(columns=["per_prompt_ngram_div_mean", "per_prompt_compression_ratio"])
    fig = F.diversity(per_model, old, models)
    div = next(v for t, v in _lexical_traces(fig).items() if t.startswith("Lexical diversity"))
    assert np.allclose(div, [0.9, 0.3])
    assert "whole-model figures" in fig.caption and "Lexical panels are per-prompt means" not in fig.caption


def test_report_uses_the_stored_per_prompt_means(measured_store, tmp_path):
    """End to end: the stored measurement carries the per-prompt means and the page plots them."""
    import json
    import re

    from monoculture.measure import load_results
    from monoculture.report import build_report
    from monoculture.store import Store

    with Store(measured_store, read_only=True) as st:
        lex = load_results(st, None).tables["lexical"]
    assert "per_prompt_ngram_div_mean" in lex.columns
    html = build_report(measured_store, tmp_path / "r.html").path.read_text(encoding="utf-8")
    spec = json.loads(re.search(r'<script type="application/json" id="data-diversity">(.*?)</script>', html, re.S).group(1))
    traces = dict(zip([a["text"] for a in spec["layout"]["annotations"]], spec["data"]))
    div = next(v for t, v in traces.items() if t.startswith("Lexical diversity"))
    got = dict(zip(div["y"], div["x"]))
    for m, v in lex["per_prompt_ngram_div_mean"].items():
        assert abs(got[F.label(m)] - float(v)) < 1e-9, m
