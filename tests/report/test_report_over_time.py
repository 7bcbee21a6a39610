"""Must show 5: the report's "Over time" section, built and rendered in headless Chromium with
the checks the rest of the report passes (no console errors, no requests, no CSP violations,
untrusted names as text)."""

from __future__ import annotations

import shutil

import pytest

from browser import open_page, require_browser
from monoculture.attributes import apply_attributes
from monoculture.report import build_report
from monoculture.store import Store

DATES = {
    "alpha-small": "2023-01",
    "alpha-large": "2023-06-20",
    "beta-one": "2024-02",
    "beta-two": "2024-07-01",
    "loner": "2025-03",
}
EVIL = "evil<img src=x onerror=alert(4)>"
TIME_FIGURES = {"over_time_earlier", "over_time_centre", "over_time_cohorts", "over_time_voices"}


def _dated_copy(store, path, dates: dict[str, str]):
    """A copy of a measured report store with release dates set the way a user sets them."""
    shutil.copy(store, path)
    with Store(path) as st:
        apply_attributes(st, assignments=[f"{m}:released={d}" for m, d in dates.items()])
    return path


@pytest.fixture(scope="module")
def dated_store(hostile_store, tmp_path_factory):
    return _dated_copy(hostile_store, tmp_path_factory.mktemp("report-dated") / "dated.duckdb", DATES | {EVIL: "2025-06"})


def test_section_built_when_three_models_are_dated(dated_store, tmp_path):
    out = tmp_path / "r.html"
    info = build_report(dated_store, out)
    assert TIME_FIGURES <= set(info.figures)
    html = out.read_text(encoding="utf-8")
    assert '<section id="over-time">' in html and 'href="#over-time"' in html
    assert "6 models with a release date" in html
    for label in ("2023", "2024", "2025"):  # the cohort table, by year
        assert f"<tr><td>{label}</td>" in html
    assert "similarity to the earlier field" in html and "voices, equal n" in html  # the slope table
    assert "attribute released" in html  # each date's source is shown
    assert "<img src=x" not in html  # the hostile name is escaped in the tables


def test_section_absent_without_dates(measured_store, tmp_path):
    out = tmp_path / "r.html"
    info = build_report(measured_store, out)
    assert not TIME_FIGURES & set(info.figures)
    html = out.read_text(encoding="utf-8")
    assert 'id="over-time"' not in html and "over time section left out" not in html


def test_section_absent_with_two_dated_models(measured_store, tmp_path):
    store = _dated_copy(measured_store, tmp_path / "two.duckdb", {"alpha-small": "2023-01", "loner": "2024-01"})
    out = tmp_path / "r.html"
    build_report(store, out)
    assert 'id="over-time"' not in out.read_text(encoding="utf-8")


def test_over_time_renders_in_chromium(dated_store, tmp_path):
    require_browser()
    out = tmp_path / "r.html"
    info = build_report(dated_store, out)
    with open_page(out, viewport=(1280, 900)) as page:
        page.page.wait_for_function("document.documentElement.getAttribute('data-rendered') === 'true'", timeout=30_000)
        assert page.console_errors == []
        assert page.external_requests() == []
        assert page.blocked == [] and page.dialogs == []
        drawn = page.evaluate(
            """() => Array.from(document.querySelectorAll('#over-time [data-figure]')).map(div => ({
                name: div.getAttribute('data-name'), rendered: div.getAttribute('data-rendered'),
                traces: div.querySelectorAll('.plot .trace, .plot path').length,
                width: div.getBoundingClientRect().width}))"""
        )
        assert {d["name"] for d in drawn} == TIME_FIGURES & set(info.figures)
        for d in drawn:
            assert d["rendered"] == "true" and d["traces"] > 0 and d["width"] > 200, d
        # the hostile model name is text in the dates table and created no element
        dates_text = page.evaluate("document.querySelector('#over-time').innerText")
        assert EVIL in dates_text
        assert page.evaluate("document.querySelectorAll('img').length") == 0
        assert page.evaluate("document.querySelectorAll('script:not([type])').length") == 2
        # hovering a point shows its label as text (plotly's label markup escaped)
        point = page.page.locator("#plot-over_time_earlier .scatterlayer .trace:last-child .points path").last
        point.scroll_into_view_if_needed()
        box = point.bounding_box()  # plotly's drag layer takes the pointer: move the mouse there
        page.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.page.wait_for_timeout(300)
        assert page.evaluate("document.querySelectorAll('#plot-over_time_earlier .hovertext').length") >= 1
        assert page.console_errors == [] and page.csp_violations() == []
        page.screenshot(tmp_path / "over_time.png")
