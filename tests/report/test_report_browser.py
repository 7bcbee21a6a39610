"""The report in a real headless Chromium: it renders offline, and model outputs stay text."""

from __future__ import annotations

from browser import open_page, require_browser
from monoculture.report import build_report

FIGURES_DRAWN = """() => Array.from(document.querySelectorAll('[data-figure]')).map(div => {
    const svg = Array.from(div.querySelectorAll('svg.main-svg'));
    const marks = div.querySelectorAll('.plot .trace, .plot path, .plot image, .plot rect, .heatmaplayer image').length;
    const canvas = Array.from(div.querySelectorAll('canvas')).filter(c => c.width > 0 && c.height > 0).length;
    const box = div.getBoundingClientRect();
    return {id: div.id, rendered: div.getAttribute('data-rendered'), svg: svg.length, marks: marks, canvas: canvas,
            width: box.width, height: box.height};
})"""


def _wait_rendered(page) -> None:
    page.page.wait_for_function("document.documentElement.getAttribute('data-rendered') === 'true'", timeout=30_000)


def test_report_renders_offline_in_chromium(measured_store, tmp_path):
    require_browser()
    out = tmp_path / "report.html"
    info = build_report(measured_store, out)
    assert {"similarity", "map", "leave_one_out", "groups", "diversity", "separability", "voices", "languages"} <= set(
        info.figures
    )

    with open_page(out, viewport=(1280, 900)) as page:
        _wait_rendered(page)
        assert page.console_errors == []
        assert page.external_requests() == [], page.external_requests()
        assert page.blocked == []
        assert page.dialogs == []

        figs = page.evaluate(FIGURES_DRAWN)
        assert len(figs) == len(info.figures)
        for f in figs:
            assert f["rendered"] == "true", f
            assert f["svg"] >= 1 or f["canvas"] >= 1, f
            assert f["marks"] > 0, f  # not an empty frame: traces were drawn
            assert f["width"] > 200 and f["height"] > 200, f

        # Choose a prompt through the explorer's search, as a reader would.
        page.page.fill("#ex-search", "topic number 7")
        page.page.wait_for_timeout(300)
        buttons = page.page.locator("#ex-list button")
        assert buttons.count() == 1
        buttons.first.click()
        detail = page.page.locator("#ex-detail")
        assert detail.get_attribute("data-prompt") == "p07"
        assert "Describe topic number 7" in detail.locator(".prompt-text").inner_text()
        cards = detail.locator(".answer")
        assert cards.count() == 5 * 2  # 5 models, k = 2
        names = set(detail.locator(".answer .who").all_inner_texts())
        assert any(n.startswith("loner") for n in names)
        assert all(cards.nth(i).locator(".text").inner_text().strip() for i in range(cards.count()))
        assert "Most similar pairs" in detail.inner_text()

        # Hover a heatmap, switch the map's colouring, zoom: plotly features that would call
        # eval under a policy that forbids it (it forbids it: see the CSP check).
        drag = page.page.locator("#plot-similarity .nsewdrag").last  # the heatmap's (the tree above has no hover)
        drag.scroll_into_view_if_needed()
        box = drag.bounding_box()
        page.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.page.wait_for_timeout(200)
        assert page.evaluate("document.querySelectorAll('#plot-similarity .hovertext').length") >= 1
        menu = page.page.locator("#plot-map .updatemenu-button")
        if menu.count() > 1:
            menu.nth(1).click()
        page.page.mouse.move(box["x"] + 10, box["y"] + 10)
        page.page.mouse.down()
        page.page.mouse.move(box["x"] + 120, box["y"] + 120)
        page.page.mouse.up()
        page.page.wait_for_timeout(300)

        shot = page.screenshot(tmp_path / "report.png")
        assert shot.exists() and shot.stat().st_size > 10_000
        assert page.console_errors == []
        assert page.csp_violations() == []


def test_model_outputs_render_as_text(hostile_store, tmp_path):
    """Outputs (and a model name and a prompt) carrying markup must show as the characters they are."""
    require_browser()
    out = tmp_path / "hostile.html"
    build_report(hostile_store, out)
    html = out.read_text(encoding="utf-8")
    for bad in ("<script>alert", "<img src=x", 'href="javascript:', "</script><script>"):
        assert bad not in html, bad

    with open_page(out) as page:
        _wait_rendered(page)
        page.evaluate("window.monocultureExplorer.show('p00', true)")
        page.page.wait_for_timeout(200)
        assert page.dialogs == []
        assert page.console_errors == []
        assert page.external_requests() == []
        detail = page.page.locator("#ex-detail")
        texts = "\n".join(detail.locator(".answer .text").all_inner_texts())
        for s in (
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            '<a href="javascript:alert(1)">click me</a>',
            "</script><script>alert(2)</script>",
        ):
            assert s in texts, s
        assert "Prompt with <script>alert(5)</script> inside" in detail.locator(".prompt-text").inner_text()
        assert "evil<img src=x onerror=alert(4)>" in "\n".join(detail.locator(".answer .who").all_inner_texts())
        # Nothing from the data became an element: no images, no javascript: links, and only
        # the page's own scripts exist.
        assert page.evaluate("document.querySelectorAll('img').length") == 0
        assert page.evaluate("document.querySelectorAll('a[href^=\"javascript:\" i]').length") == 0
        assert page.evaluate("document.querySelectorAll('script:not([type])').length") == 2
        assert page.evaluate("typeof window.alert") == "function"
        # The hostile model name in the figures' labels is shown as text too.
        ticks = page.evaluate(
            "Array.from(document.querySelectorAll('#plot-similarity .ytick text, #plot-similarity .y2tick text')).map(t => t.textContent)"
        )
        assert "evil<img src=x onerror=alert(4)>" in ticks
        # Searching the answers for the markup finds it as text and still runs nothing.
        page.page.check("#ex-in-answers")
        page.page.fill("#ex-search", "onerror=alert(1)")
        page.page.wait_for_timeout(300)
        assert page.page.locator("#ex-list button").count() == 1
        page.page.locator("#ex-list button").first.click()
        page.page.wait_for_timeout(200)
        assert page.dialogs == []
        page.screenshot(tmp_path / "hostile.png")
        assert page.csp_violations() == []


ORDER_AFTER = r"""(args) => {
    /* For each element matching args.sel whose text holds args.name: the characters outside any
       <bdi>, in DOM order, with their rendered line and left edge. */
    const out = [];
    for (const host of document.querySelectorAll(args.sel)) {
        if (!host.textContent.includes(args.name)) continue;
        const walker = document.createTreeWalker(host, NodeFilter.SHOW_TEXT);
        const pos = [];
        let n;
        while ((n = walker.nextNode())) {
            if (n.parentElement.closest('bdi')) continue;
            for (let i = 0; i < n.length; i++) {
                if (/[\s\u202a-\u202e\u2066-\u2069]/.test(n.data[i])) continue;
                const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + 1);
                const b = r.getBoundingClientRect();
                if (b.width === 0) continue;
                pos.push([Math.round(b.top), b.left, n.data[i]]);
            }
        }
        out.push(pos);
    }
    return out;
}"""

UNISOLATED = r"""() => {
    /* Text nodes of the page holding a bidi control, outside an isolating element: a <bdi>, an
       element with dir, or a block that holds nothing else (a table cell is its own paragraph). */
    const bad = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    let n;
    while ((n = walker.nextNode())) {
        const p = n.parentElement;
        if (!/[\u202a-\u202e\u2066-\u2069]/.test(n.data) || p.closest('script, style, svg')) continue;
        if (p.closest('bdi, [dir]')) continue;
        if (getComputedStyle(p).display !== 'inline' && p.textContent.trim() === n.data.trim()) continue;
        bad.push(p.tagName + ': ' + p.textContent.slice(0, 80));
    }
    return bad;
}"""

SVG_ORDER = r"""() => Array.from(document.querySelectorAll('svg text')).filter(t => /[\u2068\u202e]/.test(t.textContent)).map(t => {
    const xs = [];
    for (let i = 0; i < t.getNumberOfChars(); i++) {
        try { xs.push(t.getStartPositionOfChar(i).x); } catch (e) { xs.push(null); }
    }
    return {text: t.textContent, xs: xs};
})"""


def _reads_in_order(pos) -> bool:
    """Left edges increase along each rendered line (a reversed run decreases)."""
    return all(b[1] > a[1] for a, b in zip(pos, pos[1:]) if abs(a[0] - b[0]) <= 2)


def test_right_to_left_override_in_a_name_reverses_nothing(bidi_store, tmp_path):
    """Issue 16, 18: a model named "loner<U+202E>" once rendered "1.040 [1.014, 1.074], 12 prompts"
    beside it reversed. Every untrusted string is isolated in the page, and figure labels drop
    the controls and are wrapped in FSI ... PDI."""
    require_browser()
    from monoculture.report.htmlsafe import FSI, PDI

    store, RLO_MODEL, RLO_ORG = bidi_store
    out = tmp_path / "bidi.html"
    build_report(store, out)
    with open_page(out) as page:
        _wait_rendered(page)
        assert page.console_errors == [] and page.csp_violations() == []
        heads = page.evaluate(ORDER_AFTER, {"sel": "#headline li", "name": RLO_MODEL})
        assert heads, "the model with the override should lead the headline's losses"
        for pos in heads:
            assert len(pos) > 10 and _reads_in_order(pos), "".join(c for _, _, c in pos)
        page.evaluate("window.monocultureExplorer.show('p01', true)")
        page.page.wait_for_timeout(200)
        who = page.evaluate(ORDER_AFTER, {"sel": "#ex-detail .answer .who", "name": RLO_MODEL})
        assert len(who) == 2 and all(_reads_in_order(p) and "sample" in "".join(c for _, _, c in p) for p in who)
        assert page.evaluate(UNISOLATED) == []
        labels = page.evaluate(SVG_ORDER)
        assert labels, "the figures name the model and its organisation"
        for lab in labels:
            assert "\u202e" not in lab["text"] and lab["text"].count(FSI) == lab["text"].count(PDI), lab
            xs = [x for x, ch in zip(lab["xs"], lab["text"]) if x is not None and ch not in (FSI, PDI, " ")]
            assert all(b > a for a, b in zip(xs, xs[1:])), lab
        assert any(RLO_ORG.rstrip("\u202e") in lab["text"] for lab in labels)
