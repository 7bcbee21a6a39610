"""The whole path a user takes: run a study, probe it, measure, and open the study report with
its Perspectives section in headless Chromium (no console errors, no network, no dialog, every
figure drawn, including the Perspectives figures)."""

from __future__ import annotations

from probe_helpers import write_study

from browser import open_page, require_browser
from monoculture.collect import run_study
from monoculture.measure import measure
from monoculture.probes.cli import probe_command
from monoculture.store import Store
from monoculture.study import load_study

COUNTRIES = "question_id,country,option,share\n" + "".join(
    f"{q},{c},{o},{s}\n"
    for q in ("val-01", "val-05", "val-06")
    for c, shares in (("Kenya", (0.7, 0.2, 0.1)), ("Sweden", (0.1, 0.3, 0.6)))
    for o, s in zip((1, 2, 3), shares)
)


def test_study_report_with_perspectives_renders(tmp_path, fake_server, small_suite):
    require_browser()
    from monoculture.report.build import build_report

    servers = [fake_server(top_logprobs=d) for d in ({"A": 0.6, "B": 0.3, "C": 0.1}, {"A": 0.2, "B": 0.3, "C": 0.5})]
    models = [
        {
            "name": name,
            "backend": "openai",
            "model": name,
            "params": {"base_url": s.base_url, "api_key_env": None},
            "attributes": {"family": name},
        }
        for name, s in zip(("alpha", "beta"), servers)
    ]
    study_file = write_study(tmp_path / "s.yaml", models, samples=2)
    study_file.write_text(study_file.read_text().replace("- values", "- name: open-ended\n  limit: 12"))
    study = load_study(study_file)
    with Store(study.store_path()) as st:
        assert run_study(study, st, show_progress=False).generated == 2 * 12 * 2
        measure(st, study="probe-test", embedder="tfidf", n_boot=100, show_progress=False)
    countries = tmp_path / "countries.csv"
    countries.write_text(COUNTRIES)
    probe_command(study_file, suite=str(small_suite), countries=countries, quiet=True)

    out = tmp_path / "report.html"
    build_report(study.store_path(), out, study="probe-test")
    html = out.read_text(encoding="utf-8")
    assert 'id="perspectives"' in html

    with open_page(out) as page:
        page.page.wait_for_function("document.documentElement.getAttribute('data-rendered') === 'true'", timeout=30_000)
        assert page.console_errors == []
        assert page.external_requests() == [] and page.dialogs == []
        section = page.page.locator("#perspectives")
        assert "Kenya" in section.inner_text() and "alpha" in section.inner_text()
        drawn = page.evaluate(
            "() => Array.from(document.querySelectorAll('#perspectives [id^=perspectives-fig-]'))"
            ".map(d => d.querySelectorAll('svg.main-svg').length)"
        )
        assert drawn and all(n >= 1 for n in drawn), drawn
        page.screenshot(tmp_path / "perspectives.png")
