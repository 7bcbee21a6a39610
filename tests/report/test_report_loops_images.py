"""Issue 13, must show 4 (the render half): an image loop of 3 rounds on tiny local pipelines
(tests/tiny_image_models.py) runs into a store and renders in the report's Loops section:
thumbnails inline as data: PNGs, the image and caption figures drawn, in headless Chromium with
the report's checks (no console errors, no requests, no CSP violations)."""

from __future__ import annotations

import pytest

pytest.importorskip("diffusers")

from browser import open_page, require_browser  # noqa: E402
from monoculture.loops.images import ImageLoopSpec, run_image_loops  # noqa: E402
from monoculture.report import build_report  # noqa: E402
from monoculture.store import Store  # noqa: E402
from tiny_image_models import cached_image_model  # noqa: E402

SEEDS = ["A stormy lighthouse on a cliff at night.", "A cat <script>alert(1)</script> sleeping on books."]


@pytest.fixture(scope="module")
def image_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-image-models")
    tiny = {k: cached_image_model(k, cache_dir=d) for k in ("sd", "captioner", "clip")}
    spec = ImageLoopSpec.model_validate(
        {
            "text_to_image": {"name": "tiny-sd", "model": str(tiny["sd"]), "params": {"steps": 2, "guidance": 3.0}},
            "captioner": {"name": "tiny-cap", "model": str(tiny["captioner"]), "params": {"max_new_tokens": 8}},
            "embedder": {"model": str(tiny["clip"])},
            "rounds": 3,
            "seeds": SEEDS,
            "device": "cpu",
        }
    )
    path = tmp_path_factory.mktemp("report-images") / "images.duckdb"
    with Store(path) as st:
        run = run_image_loops(st, "pictures", spec, show_progress=False)
    assert (run.chains, run.generated, run.failed) == (2, 6, 0)
    return path


@pytest.mark.slow
def test_image_loop_renders_in_the_report(image_store, tmp_path):
    require_browser()
    out = tmp_path / "r.html"
    info = build_report(image_store, out, study="pictures")
    assert {"loops_image_drift", "loops_image_convergence", "loops_caption_drift"} <= set(info.figures), info.notes
    html = out.read_text(encoding="utf-8")
    assert "<h3>Image chains</h3>" in html and "<script>alert" not in html
    assert html.index("<h3>Image chains</h3>") < html.index('id="figure-loops_image_motifs"')  # in its subsection
    assert html.count('<img src="data:image/png;base64,') >= 6  # first, middle and last round of both chains
    with open_page(out, viewport=(1280, 900)) as page:
        page.page.wait_for_function("document.documentElement.getAttribute('data-rendered') === 'true'", timeout=30_000)
        assert page.console_errors == [] and page.external_requests() == [] and page.blocked == [] and page.dialogs == []
        imgs = page.evaluate(
            "Array.from(document.querySelectorAll('#loops img')).map(i => ({ok: i.complete && i.naturalWidth > 0, "
            "src: i.src.slice(0, 22), w: i.getBoundingClientRect().width}))"
        )
        assert len(imgs) >= 6 and all(i["ok"] and i["src"] == "data:image/png;base64," and i["w"] == 64 for i in imgs), imgs
        drawn = page.evaluate(
            "Array.from(document.querySelectorAll('#loops [data-figure]')).map(d => d.getAttribute('data-rendered'))"
        )
        assert drawn and all(d == "true" for d in drawn)
        assert page.csp_violations() == []
        page.screenshot(tmp_path / "loops_images.png")
