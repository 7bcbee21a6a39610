"""A headless-Chromium harness for testing self-contained HTML reports.

Reports promise three things a unit test cannot see: they render, they make no network request,
and text from the data cannot run as script. This opens a page in the system Chromium through
playwright and records what happened: console errors, uncaught page errors, every request the
page tried (non-local ones are recorded and then blocked, so a test never reaches the network),
and any dialog (``alert`` and friends). Tests skip with a clear reason when Chromium or
playwright is not installed.

Usage::

    from browser import open_page

    with open_page(tmp_path / "report.html") as page:
        assert page.console_errors == []
        assert page.external_requests() == []
        page.screenshot(tmp_path / "report.png")
        n = page.evaluate("document.querySelectorAll('svg.main-svg').length")
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("MONOCULTURE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


CSP_LISTENER = """window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', e => window.__cspViolations.push(
    {directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample}));"""


def require_browser() -> None:
    """Skip the calling test unless playwright and a Chromium binary are available."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright (python package) is not installed: pip install playwright")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set MONOCULTURE_CHROMIUM)")


@dataclass
class PageReport:
    """What happened while a page loaded, plus the live page for further checks."""

    url: str
    console: list[tuple[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    dialogs: list[tuple[str, str]] = field(default_factory=list)
    page: Any = None
    _closers: list = field(default_factory=list, repr=False)

    @property
    def console_errors(self) -> list[str]:
        """Console messages of type error, and uncaught exceptions."""
        return [t for kind, t in self.console if kind == "error"] + self.page_errors

    def external_requests(self, allowed: tuple[str, ...] = ()) -> list[str]:
        """Requests other than the page itself and ``data:`` URLs (plus any ``allowed`` prefixes)."""
        return [u for u in self.requests if u != self.url and not u.startswith("data:") and not u.startswith(allowed or ("\0",))]

    def csp_violations(self) -> list[str]:
        """Content-Security-Policy violations the page reported, including those a script
        caught (a blocked ``eval`` inside ``try`` logs nothing to the console)."""
        return [f"{v['directive']}: {v['blocked']} {v['sample']}" for v in self.page.evaluate("window.__cspViolations || []")]

    def evaluate(self, js: str, arg: Any = None) -> Any:
        return self.page.evaluate(js, arg) if arg is not None else self.page.evaluate(js)

    def text(self) -> str:
        return self.page.inner_text("body")

    def screenshot(self, path: str | Path, *, full_page: bool = True) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def close(self) -> None:
        while self._closers:
            try:
                self._closers.pop()()
            except Exception:  # noqa: BLE001 - closing a dead browser must not mask the test result
                pass

    def __enter__(self) -> PageReport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_page(
    html_path: str | Path, *, viewport: tuple[int, int] = (1280, 900), settle_ms: int = 500, timeout_ms: int = 30_000
) -> PageReport:
    """Open a local HTML file in headless Chromium and wait until it has loaded and settled.

    Call :meth:`PageReport.close` (or use it as a context manager) when done."""
    require_browser()
    from playwright.sync_api import sync_playwright

    url = Path(html_path).resolve().as_uri()
    report = PageReport(url=url)
    pw = sync_playwright().start()
    report._closers.append(pw.stop)
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        report._closers.append(browser.close)
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, service_workers="block")

        def route(r):
            u = r.request.url
            if u == url or u.startswith("data:"):
                r.continue_()
            else:
                report.blocked.append(u)
                r.abort()

        context.route("**/*", route)
        context.add_init_script(CSP_LISTENER)
        page = context.new_page()
        page.on("console", lambda m: report.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: report.page_errors.append(str(e)))
        page.on("request", lambda r: report.requests.append(r.url))

        def on_dialog(d):
            report.dialogs.append((d.type, d.message))
            d.dismiss()

        page.on("dialog", on_dialog)
        page.goto(url, wait_until="load", timeout=timeout_ms)
        page.wait_for_timeout(settle_ms)
        report.page = page
    except BaseException:
        report.close()
        raise
    return report
