"""The report's Perspectives section: its content, its escaping, and that it renders in
headless Chromium (no console errors, no network, no dialogs, every figure drawn)."""

from __future__ import annotations

import json

import numpy as np

from monoculture.probes import store as pstore
from monoculture.probes.items import load_items
from monoculture.probes.report_section import perspectives_section, standalone_page
from monoculture.store import Store

EVIL_COUNTRY = "<img src=x onerror=\"alert('country')\">"
EVIL_ANSWER = "</script><script>alert('answer')</script>"
EVIL_MODEL = "<b onmouseover=alert(1)>m3</b>"


def synthetic_store(path, *, with_countries=True):
    """Three models, two methods, a steered run, countries: every part of the section has data.
    Names and texts carry markup, which must come out escaped."""
    rng = np.random.default_rng(0)
    items = load_items("values", ["en", "zh", "ar"])
    groups = sorted({i.group for i in items})[:12]
    items = [i for i in items if i.group in groups]
    countries = ["Kenya", "Sweden", "Japan", EVIL_COUNTRY]
    k_of = {i.group: len(i.options) for i in items}
    human = {(g, c): rng.dirichlet(np.ones(k_of[g])) for g in groups for c in countries}
    with Store(path) as st:
        pstore.ensure_schema(st)
        pstore.write_items(st, items)
        pstore.write_countries(st, human if with_countries else {}, {}, "synthetic")
        rows, answers = [], []
        for model, like in (("m1", "Kenya"), ("m2", "Kenya"), (EVIL_MODEL, "Sweden")):
            for it in items:
                p = 0.7 * human[(it.group, like)] + 0.3 * rng.dirichlet(np.ones(k_of[it.group]))
                base = {
                    "model": model,
                    "item_id": it.id,
                    "group_id": it.group,
                    "language": it.language,
                    "n_options": len(it.options),
                }
                rows.append(
                    {
                        **base,
                        "key": f"{model}-{it.id}-lp",
                        "method": "logprobs",
                        "steer": None,
                        "status": "ok",
                        "probs": list(p),
                        "option_mass": 0.8,
                    }
                )
                rows.append(
                    {
                        **base,
                        "key": f"{model}-{it.id}-lp-jp",
                        "method": "logprobs",
                        "steer": "Japan",
                        "status": "ok",
                        "probs": list(human[(it.group, "Japan")]),
                        "option_mass": 0.8,
                    }
                )
                counts = rng.multinomial(8, p)
                rows.append(
                    {
                        **base,
                        "key": f"{model}-{it.id}-s",
                        "method": "sample",
                        "steer": None,
                        "status": "ok",
                        "probs": list(counts / 8),
                        "n_answers": 8,
                        "n_total": 10,
                        "outcomes": {"ok": 8, "refusal": 1, "unparseable": 1},
                    }
                )
                if it.language == "en":
                    answers.append(
                        {
                            "key": f"{model}-{it.id}-a",
                            "model": model,
                            "item_id": it.id,
                            "group_id": it.group,
                            "language": "en",
                            "steer": None,
                            "sample_index": 0,
                            "text": EVIL_ANSWER,
                            "outcome": "unparseable",
                            "parser_version": 1,
                        }
                    )
        pstore.write_distributions(st, rows)
        pstore.write_answers(st, answers)
        pstore.register_models(st, "synthetic", ["m1", "m2", EVIL_MODEL])
    return path


def test_no_probe_data_gives_no_section(tmp_path):
    with Store(tmp_path / "empty.duckdb") as st:
        assert perspectives_section(st) is None
        pstore.ensure_schema(st)
        assert perspectives_section(st) is None


def test_section_content_and_escaping(tmp_path):
    path = synthetic_store(tmp_path / "s.duckdb")
    with Store(path, read_only=True) as st:
        sec = perspectives_section(st, b=200)
        assert perspectives_section(st, study="synthetic", b=200)["html"] == sec["html"]
        assert perspectives_section(st, study="no-such-study", b=200) is None
    assert sec["title"] == "Perspectives"
    html = sec["html"]
    for heading in (
        "First-token probabilities",
        "Sampled answers",
        "Which countries",
        "Language sensitivity",
        "Value homogeneity",
        "Steerability",
        "Answers that chose no option",
        "What these numbers do not mean",
        "A multiple-choice answer is not a",
    ):
        assert heading in html, heading
    assert "<img src=x" not in html and "&lt;img src=x" in html
    assert "<script>" not in html and "&lt;/script&gt;&lt;script&gt;" in html
    assert "<b onmouseover" not in html and "&lt;b onmouseover" in html
    assert "Kenya" in html
    # figures: plain JSON, one placeholder each
    json.dumps(sec["figures"])
    assert len(sec["figures"]) == len(sec["figure_ids"]) >= 4
    for fid in sec["figure_ids"]:
        assert f'id="{fid}"' in html
    # the section keeps working without country data
    path2 = synthetic_store(tmp_path / "s2.duckdb", with_countries=False)
    with Store(path2, read_only=True) as st:
        sec2 = perspectives_section(st, b=100)
    assert "No human reference data" in sec2["html"] and "Which countries" not in sec2["html"]


def test_section_renders_in_headless_chromium(tmp_path):
    from browser import open_page

    path = synthetic_store(tmp_path / "s.duckdb")
    with Store(path, read_only=True) as st:
        sec = perspectives_section(st, b=200)
    page_path = tmp_path / "perspectives.html"
    page_path.write_text(standalone_page(sec), encoding="utf-8")
    with open_page(page_path) as page:
        assert page.console_errors == []
        assert page.external_requests() == [] and page.blocked == []
        assert page.dialogs == []
        drawn = page.evaluate(
            "Array.from(document.querySelectorAll('.mc-figure')).filter(e => e.querySelector('svg.main-svg')).length"
        )
        assert drawn == len(sec["figures"])
        text = page.text()
        assert EVIL_COUNTRY in text and EVIL_ANSWER in text  # shown as text, not run
        svg_text = page.evaluate("Array.from(document.querySelectorAll('svg text')).map(t => t.textContent).join('|')")
        assert EVIL_MODEL in svg_text and EVIL_COUNTRY in svg_text  # plotly labels too: text, not markup
        assert "What these numbers do not mean" in text
        shot = page.screenshot(tmp_path / "perspectives.png")
        assert page.csp_violations() == []  # the policy allows no 'unsafe-eval' and only the page's own scripts
    assert shot.stat().st_size > 10_000
    from pagecheck import check_csp

    check_csp(page_path.read_text(encoding="utf-8"), scripts=2)
