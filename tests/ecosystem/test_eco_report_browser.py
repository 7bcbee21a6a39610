"""The ecosystem report in headless Chromium: renders, stays offline, and shows hostile hub strings as text."""

from __future__ import annotations

from eco_hub_fake import hub_model
from eco_snapshots import write_snapshot

from browser import open_page, require_browser
from monoculture.ecosystem.importers import import_paths
from monoculture.ecosystem.registry import load_registry
from monoculture.ecosystem.report import build_report
from monoculture.store import Store

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"


def hostile_world(qwen_models: list[dict]) -> list[dict]:
    """A family whose repository names and licence text are markup, built on Qwen."""
    base = [("finetune", "Qwen/Qwen2.5-7B")]
    evil = [hub_model(f"evil/m{i}", created=f"2023-{2 * i + 1:02d}-01T00:00:00Z", bases=base) for i in range(4)]
    evil.append(hub_model(f"evil/{IMG}", created="2023-09-01T00:00:00Z", bases=base, licence="other"))
    evil[-1]["cardData"]["license_name"] = IMG
    evil.append(hub_model(f"evil/{SCRIPT}", created="2023-11-01T00:00:00Z", bases=base, extra_tags=[SCRIPT]))
    return qwen_models + evil


def test_report_in_headless_chromium(tmp_path, qwen_models):
    require_browser()
    reg_file = tmp_path / "registry.yaml"
    reg_file.write_text("families:\n  evil:\n    name: Evil\n    organisations: [evil]\n    country: Nowhere\n")
    registry = load_registry(reg_file)
    with Store(tmp_path / "eco.duckdb") as st:
        import_paths(
            st.con, [write_snapshot(tmp_path / "snap.json", hostile_world(qwen_models), "2025-06-01T00:00:00Z")], registry
        )
        out, data = build_report(st.con, registry, tmp_path / "ecosystem.html")
    assert any(SCRIPT in e for e in data.alerts["evidence"])  # the hostile name leads an alert line

    html = out.read_text()
    assert SCRIPT not in html and IMG not in html  # escaped everywhere, in tables and in figure JSON

    with open_page(out) as page:
        shot = page.screenshot(tmp_path / "ecosystem.png")
        assert shot.stat().st_size > 10_000
        assert page.console_errors == []
        assert page.dialogs == []
        assert page.external_requests() == [] and page.blocked == []
        assert page.requests == [page.url]
        sizes = page.evaluate(
            """() => Array.from(document.querySelectorAll('div.figure')).map(d => {
                   const svg = d.querySelector('svg.main-svg');
                   if (!svg) return [0, 0, 0];
                   const r = svg.getBoundingClientRect();
                   return [r.width, r.height, d.querySelectorAll('path, rect, text').length];
               })"""
        )
        assert len(sizes) >= 5 and all(w > 100 and h > 100 and n > 5 for w, h, n in sizes)
        # the hostile strings are text on the page, not elements
        assert page.evaluate("s => document.querySelector('main').textContent.includes(s)", SCRIPT)
        assert page.evaluate("s => document.querySelector('main').textContent.includes(s)", IMG)
        assert SCRIPT in page.evaluate("document.querySelector('#alerts').innerText")
        assert page.evaluate("document.querySelectorAll('img').length") == 0
        assert page.evaluate("document.querySelectorAll('script:not([type=\"application/json\"])').length") == 2
        # and they reach the figures as text too (plotly decodes the escaped label)
        labels = page.evaluate(
            "Array.from(document.querySelectorAll('.treemap text, g.slicetext text')).map(t => t.textContent).join(' ')"
        )
        assert "alert(1)" in labels
        assert page.csp_violations() == []  # scripts allowed by hash only, no 'unsafe-eval'
    from pagecheck import check_csp

    check_csp(html, scripts=2)
