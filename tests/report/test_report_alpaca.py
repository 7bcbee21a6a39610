"""The report of a real study: AlpacaEval, 28 models x 805 prompts (../shared/data).

It must stay under 20 MB and draw every figure in headless Chromium. Its load time is printed,
not asserted: speed goals live in benchmarks/bench_report.py, not in unit tests that a loaded
machine would fail. Only the embedder is swapped for a hashing one so that the test runs in
seconds: the report's size and load time depend on the number of models, prompts and answers,
not on which embedder measured them.
Everything else (import, attributes, measure with its bootstrap, the report) is the real path.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from browser import open_page, require_browser
from monoculture.embed import Embedder

MAX_BYTES = 20_000_000


class HashingEmbedder(Embedder):
    """Word 1-2-gram hashing plus a fixed random projection: no fitting, a few seconds for 22k answers."""

    name = "test-hashing:words12:128"
    batch_size = 1 << 30

    def embed(self, texts):
        from sklearn.feature_extraction.text import HashingVectorizer
        from sklearn.random_projection import SparseRandomProjection

        H = HashingVectorizer(analyzer="word", ngram_range=(1, 2), n_features=2**18, alternate_sign=False, norm="l2").transform(
            list(texts)
        )
        proj = SparseRandomProjection(n_components=128, random_state=0).fit(H[:1])
        Y = proj.transform(H)
        return np.asarray(Y.toarray() if hasattr(Y, "toarray") else Y, dtype=np.float32)


@pytest.fixture
def alpaca_store(shared_data, tmp_path) -> Path:
    data = shared_data
    if not (data / "alpaca_eval" / "results").is_dir():
        pytest.skip(f"AlpacaEval data not found in {data / 'alpaca_eval' / 'results'}")
    import monoculture.measure as M
    from monoculture.importers import import_records, reader
    from monoculture.store import Store

    path = tmp_path / "alpaca.duckdb"
    with Store(path) as st:
        import_records(st, reader("alpaca-eval")(data / "alpaca_eval" / "results"), "alpaca-eval")
        attrs_file = Path(__file__).resolve().parents[2] / "examples" / "alpaca_eval_attributes.yaml"
        if attrs_file.exists():
            from monoculture.attributes import apply_attributes

            apply_attributes(st, file=attrs_file)
        M.measure(st, embedder=HashingEmbedder(), n_boot=100, show_progress=False)
    return path


def test_alpaca_report_size_and_rendering(alpaca_store, tmp_path):
    require_browser()
    from monoculture.report import build_report

    t0 = time.perf_counter()
    info = build_report(alpaca_store, tmp_path / "alpaca.html")
    build_s = time.perf_counter() - t0
    assert info.total_prompts == 805
    assert info.bytes < MAX_BYTES, f"{info.bytes / 1e6:.1f} MB"
    assert info.explorer_prompts == 100
    html = info.path.read_text(encoding="utf-8")
    assert "100 of 805 prompts" in html

    with open_page(info.path, viewport=(1400, 1000), settle_ms=0, timeout_ms=60_000) as page:
        page.page.wait_for_function("document.documentElement.getAttribute('data-rendered') === 'true'", timeout=30_000)
        timing = page.evaluate("""() => {
            const nav = performance.getEntriesByType('navigation')[0];
            return {load: nav.loadEventEnd, rendered: window.monocultureRenderedAt};
        }""")
        assert page.console_errors == []
        assert page.external_requests() == []
        n = page.evaluate("document.querySelectorAll('[data-figure][data-rendered=\"true\"]').length")
        assert n == len(info.figures)
        models = page.evaluate("document.querySelectorAll('#ex-detail .answer').length")
        assert models == 28
        page.screenshot(tmp_path / "alpaca.png", full_page=False)
    load_ms = max(timing["load"], timing["rendered"])
    print(
        f"\nAlpacaEval report: {info.bytes / 1e6:.1f} MB, built in {build_s:.1f} s, "
        f"loaded and drawn in {load_ms / 1000:.2f} s ({len(info.figures)} figures)"
    )
