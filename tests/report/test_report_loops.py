"""Issue 13, must show 5 (and the render half of 4): the report's "Loops" section.

Chains are written straight into a store with the loop tables' own writers (two models, one
with a hostile name, three tasks, several seeds, texts carrying markup and a right-to-left
override), summarised by the real ``loop_summary`` and rendered; the page is opened in headless
Chromium with the checks the rest of the report passes (no console errors, no requests, no CSP
violations, untrusted text shown as text). A summary dict written to the contract renders the
parts a tiny text store cannot exercise (image thumbnails, a thumbnail that is not a PNG).
"""

from __future__ import annotations

import base64
import io
import random
import re
import shutil
from html import unescape

import pytest

from browser import open_page, require_browser
from monoculture.errors import UserError
from monoculture.loops.tables import Chain, register_chains, step_key, write_steps
from monoculture.report import build_report
from monoculture.report.build import loops_page
from monoculture.report.loops import loops_only, loops_section, section_from_summary, thumbnails
from monoculture.store import Store

EVIL = "evil<img src=x onerror=alert(4)>"
RLO = "rtl\u202e-model"
SCRIPT = "<script>alert(1)</script>"
TASKS = ("rephrase", "inspiration", "continue")
LABELS = ("alpha", EVIL)
VOCAB = {
    "alpha": "lighthouse storm harbour keeper lantern waves rocks night beacon gull".split(),
    EVIL: "market spice drum sunrise elder story rain canoe ember festival".split(),
}
SEEDS = {
    "s-short": "A cat sat.",
    "s-long": " ".join(["The committee reviewed the long and winding proposal in great detail"] * 6),
    "s-hostile": f"A seed with {SCRIPT} and an override \u202e inside it.",
    "s-mid": "Rain fell on the quiet town while the bakers lit their ovens before dawn.",
}
STEPS = 12
LOOP_FIGURES = {"loops_trajectory_length", "loops_drift", "loops_convergence"}


def _text(rng: random.Random, label: str, words: int, step: int) -> str:
    body = " ".join(rng.choice(VOCAB[label]) for _ in range(max(1, words)))
    if step % 4 == 0:  # markup and an override in the models' own outputs
        body = f"{SCRIPT} {body} \u202e{label}"
    return body.capitalize() + "."


def write_chains(store_path, study: str | None, *, replicates: int = 1, seed: int = 0) -> int:
    """Chains with known dynamics: alpha's length pulls hard toward 12 words (b = 0.3), the
    other model's is a random walk (b = 1: the end remembers the start). Returns the number of chains."""
    rng = random.Random(seed)
    chains, rows = [], []
    for label in LABELS:
        b = 0.3 if label == "alpha" else 1.0
        for task in TASKS:
            for sid, stext in SEEDS.items():
                for r in range(replicates):
                    c = Chain(
                        kind="text",
                        task=task,
                        instruction=f"Do {task}:",
                        seed_id=sid,
                        seed_text=stext,
                        models=[label],
                        identities=[{"name": label}],
                        replicate=r,
                        steps=STEPS,
                        source="test",
                    )
                    chains.append(c)
                    prev, n = stext, len(stext.split())
                    prev_key = ""
                    for t in range(1, STEPS + 1):
                        n = round(12 + b * (n - 12) + rng.gauss(0, 1.5))
                        text = _text(rng, label, n, t)
                        key = step_key(c.chain_id, t, prev)
                        rows.append(
                            {"key": key, "chain_id": c.chain_id, "step": t, "model": label, "input_key": prev_key, "text": text}
                        )
                        prev, prev_key = text, key
    with Store(store_path) as st:
        register_chains(st, study, chains)
        write_steps(st, rows)
    return len(chains)


@pytest.fixture(scope="module")
def loops_store(tmp_path_factory):
    """A store with loop chains of study "loopy" and no measurement."""
    path = tmp_path_factory.mktemp("report-loops") / "loops.duckdb"
    write_chains(path, "loopy")
    return path


@pytest.fixture(scope="module")
def loops_report(loops_store, tmp_path_factory):
    """The report of the loops-only store, built once: (info, path)."""
    out = tmp_path_factory.mktemp("report-loops-html") / "r.html"
    return build_report(loops_store, out), out


@pytest.fixture(scope="module")
def measured_loops_store(hostile_store, tmp_path_factory):
    """The measured hostile store with chains (of no study, as the measurement is of the whole store)."""
    path = tmp_path_factory.mktemp("report-loops-measured") / "both.duckdb"
    shutil.copy(hostile_store, path)
    write_chains(path, None, seed=1)
    return path


def test_loops_only_store_gets_a_loops_report(loops_report, loops_store):
    info, out = loops_report
    assert LOOP_FIGURES <= set(info.figures), info.notes
    assert info.label == "" and any("loop chains only" in n for n in info.notes)
    html = out.read_text(encoding="utf-8")
    assert '<section id="loops">' in html and "loops section left out" not in html
    assert f"{len(LABELS) * len(TASKS) * len(SEEDS)} chains" in html
    assert 'id="loops-attractors"' in html and "step 10" in html
    for bad in ("<script>alert", "<img src=x", "evil<img"):
        assert bad not in html, bad
    assert "evil&lt;img src=x onerror=alert(4)&gt;" in html
    with Store(loops_store, read_only=True) as st:  # a study file names its study: the same page
        assert loops_only(st, "loopy") and loops_only(st, None) and not loops_only(st, "another")


def _strengths(html: str, prop: str) -> dict[tuple[str, str], float]:
    """(model, task) -> the final-step strength in the page's attractor table."""
    cell = r"<td><bdi>([^<]*)</bdi></td>"
    rows = re.findall(rf"<tr><td><bdi>{prop}</bdi></td>{cell}{cell}\s*<td>(-?[0-9.]+)", html)
    return {(unescape(m), unescape(t)): float(v) for t, m, v in rows}


def test_attractor_strengths_order_the_models(loops_report):
    """The table shows the summary's numbers: alpha's length attractor (b = 0.3) is strong, the
    random walk's (b = 1) weak, in every task."""
    final = _strengths(loops_report[1].read_text(encoding="utf-8"), "length")
    assert len(final) == len(LABELS) * len(TASKS), final
    for task in TASKS:
        assert final[("alpha", task)] > 0.7 and final[(EVIL, task)] < 0.4, final


@pytest.fixture(scope="module")
def measured_loops_report(measured_loops_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-loops-measured-html") / "r.html"
    return build_report(measured_loops_store, out), out


@pytest.mark.slow
def test_measured_report_gains_a_loops_section(measured_loops_report):
    info, out = measured_loops_report
    html = out.read_text(encoding="utf-8")
    assert 'href="#loops"' in html and '<section id="loops">' in html
    assert '<section id="explorer">' in html and "similarity" in info.figures  # the rest is still there
    assert LOOP_FIGURES <= set(info.figures)
    assert "<script>alert" not in html


def test_report_without_loops_has_no_loops_section(measured_store, tmp_path):
    out = tmp_path / "r.html"
    info = build_report(measured_store, out)
    html = out.read_text(encoding="utf-8")
    assert 'id="loops"' not in html and 'href="#loops"' not in html and "loops section" not in html
    assert not any(f.startswith("loops_") for f in info.figures)


def test_failing_summary_is_a_note_or_a_clear_error(loops_store, tmp_path, monkeypatch):
    """A summary that fails leaves the section out with a note naming the error; with nothing
    else to report (no measurement), it is an error that says so."""
    import monoculture.loops.summary as summary

    def broken(*a, **kw):
        raise RuntimeError("scorer exploded")

    monkeypatch.setattr(summary, "loop_summary", broken)
    monkeypatch.setattr(summary, "read_stored_summary", lambda *a: None)  # an earlier report kept one
    notes: list[str] = []
    with Store(loops_store, read_only=True) as st:
        assert loops_section(st, "loopy", notes) == (None, [])
    assert notes == ["loops section left out: RuntimeError: scorer exploded"]
    with pytest.raises(UserError, match="could not be summarised.*scorer exploded"):
        build_report(loops_store, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_store_without_measurement_or_chains_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.duckdb"
    Store(path).close()
    with pytest.raises(UserError, match="nothing measured yet"):
        build_report(path, tmp_path / "r.html")


# -- the contract's dict: the parts tiny text chains do not exercise -------------------------


def _png(colour: tuple[int, int, int]) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def contract_summary() -> dict:
    """A summary with every key of loop_summary's contract, hostile strings in every text field."""
    models = ["alpha", EVIL, RLO]
    traj, att, drift, conv, lex = [], [], [], [], []
    for m in models:
        for task in ("rephrase", f"task {SCRIPT}"):
            for step in range(0, 13):
                traj.append(
                    {
                        "model": m,
                        "task": task,
                        "property": "length",
                        "step": step,
                        "mean": 100 - 3 * step,
                        "ci": [90 - 3 * step, 110 - 3 * step],
                    }
                )
                traj.append({"model": m, "task": task, "property": "positivity", "step": step, "mean": 0.1, "ci": [None, None]})
                drift.append({"label": m, "task": task, "step": step, "value": 1 - 0.03 * step, "ci": [0.9 - 0.03 * step, 1.0]})
                conv.append(
                    {"label": m, "task": task, "step": step, "value": 0.2 + 0.01 * step, "seeds_value": 0.2, "ci": [0.15, 0.3]}
                )
                lex.append({"label": m, "task": task, "step": step, "texts": 4, "ngram_div_mean": 0.8, "compression_ratio": 2.0})
            for prop in ("length", "positivity"):
                for step in (10, 12):
                    att.append(
                        {
                            "model": m,
                            "task": task,
                            "property": prop,
                            "step": step,
                            "strength": 0.6,
                            "position": 80.0,
                            "ci": [0.4, 0.8],
                            "position_ci": [70.0, 90.0],
                            "slope": 0.4,
                            "intercept": 48.0,
                            "p": 0.003,
                            "chains": 8,
                        }
                    )
    return {
        "attractors": att,
        "chains": 48,
        "labels": [
            {"label": m, "task": t, "chains": 8, "steps_min": 12, "steps_max": 12}
            for m in models
            for t in ("rephrase", f"task {SCRIPT}")
        ],
        "scorers": [
            {"name": "length", "bounds": [0, None], "version": "1", "note": "characters, hashtags removed"},
            {"name": "positivity", "bounds": [-1, 1], "version": "vaderSentiment 3.3.2", "note": f"note {SCRIPT}"},
        ],
        "x_from": "seed",
        "paired": [
            {
                "task": "rephrase",
                "property": "length",
                "model_a": "alpha",
                "model_b": EVIL,
                "difference": 0.1,
                "ci": [-0.1, 0.3],
                "p": 0.4,
            }
        ],
        "trajectories": traj,
        "drift": drift,
        "convergence": conv,
        "diversity": [
            {"label": m, "task": "rephrase", "vendi_seeds": 3.5, "vendi_final": 1.5, "ratio": 0.43, "ci": [0.3, 0.6]}
            for m in models
        ],
        "lexical": lex,
        "motifs": {
            "motifs": [
                {
                    "motif": 0,
                    "name": f"storm {SCRIPT}",
                    "words": ["storm", "<b>bold</b>", "lighthouse\u202e"],
                    "size": 20,
                    "representatives": [f"Final text {SCRIPT} one \u202e reversed?", "Second <img src=x onerror=alert(7)> text"],
                },
                {"motif": 1, "name": "market", "words": "market, spice", "size": 28, "representatives": ["x" * 2000]},
            ],
            "shares": [
                {"label": m, "motif": k, "share": s, "chains": int(16 * s)} for m in models for k, s in ((0, 0.25), (1, 0.75))
            ],
            "overlap": {"value": 0.8, "p": 0.01, "permutations": 999},
        },
        "images": {  # the shape of loops.images.image_summary
            "chains": 2,
            "labels": [
                {"label": EVIL, "chains": 1, "rounds_min": 3, "rounds_max": 3},
                {"label": "x", "chains": 1, "rounds_min": 1, "rounds_max": 1},
            ],
            "embedder": "clip-image:tiny",
            "drift": [
                {"label": EVIL, "task": "caption", "step": s, "value": 1 - 0.05 * s, "ci": [0.8 - 0.05 * s, 1.0]}
                for s in range(1, 4)
            ],
            "convergence": [],
            "diversity": [
                {"label": EVIL, "task": "caption", "vendi_seeds": 2.0, "vendi_final": 1.2, "ratio": 0.6, "ci": [None, None]}
            ],
            "prompt_match": [],
            "motifs": {
                "motifs": [
                    {
                        "motif": 0,
                        "name": "lighthouse",
                        "words": ["lighthouse"],
                        "size": 2,
                        "representatives": [f"caption {SCRIPT}"],
                        "thumbnail_chains": ["c1"],
                    }
                ],
                "shares": [{"label": EVIL, "motif": 0, "share": 1.0, "chains": 1}],
                "overlap": {"value": None, "p": None, "permutations": 0, "note": "one label: no overlap between models"},
            },
            "thumbnails": [
                {
                    "chain_id": "c1",
                    "label": EVIL,
                    "seed_id": "storm",
                    "step": s,
                    "motif": 0 if s == 3 else None,
                    "caption": f"round {s} caption {SCRIPT}",
                    "png_base64": _png((40 * s, 90, 160)),
                }
                for s in range(1, 4)
            ]
            + [{"chain_id": "c2", "label": "x", "step": 1, "png_base64": 'AAAA" onerror="alert(3)'}],
            "captions": {
                "drift": [{"label": EVIL, "task": "caption", "step": s, "value": 0.5, "ci": [0.4, 0.6]} for s in range(4)],
                "convergence": [],
                "diversity": [],
                "lexical": [],
            },
            "notes": [f"image note {SCRIPT}"],
            "methods": "Images: CLIP.",
        },
        "notes": [f"a note {SCRIPT}"],
        "methods": "Embedder tfidf; 1000 bootstrap resamples over chains; seed 0.",
    }


def test_contract_summary_becomes_tables_and_figures():
    data, figs = section_from_summary(contract_summary())
    names = [f.name for f in figs]
    assert len(names) == len(set(names))
    assert {
        "loops_trajectory_length",
        "loops_trajectory_positivity",
        "loops_drift",
        "loops_convergence",
        "loops_motifs",
        "loops_image_drift",
        "loops_lexical_ngram_div_mean",
    } <= set(names)
    # one row per (model, task, property): the final step beside step 10
    assert len(data["attractors"]) == 3 * 2 * 2
    r = data["attractors"][0]
    assert r["final"]["step"] == 12 and r["step10"]["step"] == 10 and r["final"]["p"] == "0.003"
    assert [p["name"] for p in data["motifs"]["panels"]] == [f"storm {SCRIPT}", "market"]
    assert data["motifs"]["panels"][1]["words"] == ["market", "spice"]
    assert data["motifs"]["panels"][1]["texts"][0]["cut"]  # a long text is shortened
    # the thumbnail that is not base64 of a PNG is left out, with a note
    assert [len(c["images"]) for c in data["images"]["thumbnails"]] == [3]
    assert [len(m["images"]) for m in data["images"]["motifs"]["panels"]] == [1]  # c1's last image
    assert any("not PNG data" in n for n in data["notes"])
    assert section_from_summary({"chains": 0}) == (None, [])


def test_thumbnails_need_png_base64():
    notes: list[str] = []
    gif = base64.b64encode(b"GIF89a" + b"\0" * 20).decode()
    out = thumbnails([{"chain_id": "a", "step": 0, "png_base64": gif}, {"chain_id": "a", "step": 1, "png_base64": "%%%"}], notes)
    assert out == ([], {}) and notes == ["2 image thumbnail(s) left out: not PNG data"]


UNISOLATED = r"""() => {
    /* Text nodes holding a bidi control outside an isolating element (see test_report_browser). */
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


def _check_page(page, figure_names: set[str]) -> None:
    page.page.wait_for_function("document.documentElement.getAttribute('data-rendered') === 'true'", timeout=30_000)
    assert page.console_errors == []
    assert page.external_requests() == []
    assert page.blocked == [] and page.dialogs == []
    drawn = page.evaluate(
        """() => Array.from(document.querySelectorAll('#loops [data-figure]')).map(div => ({
            name: div.getAttribute('data-name'), rendered: div.getAttribute('data-rendered'),
            traces: div.querySelectorAll('.plot .trace, .plot path').length,
            width: div.getBoundingClientRect().width}))"""
    )
    assert {d["name"] for d in drawn} == figure_names
    for d in drawn:
        assert d["rendered"] == "true" and d["traces"] > 0 and d["width"] > 200, d
    assert page.evaluate("document.querySelectorAll('script:not([type])').length") == 2
    assert page.evaluate("document.querySelectorAll('a[href^=\"javascript:\" i]').length") == 0
    assert page.evaluate(UNISOLATED) == []
    # figure labels (SVG text cannot hold a <bdi>) drop the override: it reorders nothing
    assert (
        page.evaluate("Array.from(document.querySelectorAll('svg text')).filter(t => /\u202e/.test(t.textContent)).length") == 0
    )
    assert page.csp_violations() == []


@pytest.mark.slow
def test_contract_section_renders_in_chromium(tmp_path):
    """Motif panels, texts and thumbnails: hostile text shown as text, thumbnails drawn from data: URIs."""
    require_browser()
    notes: list[str] = []
    data, figs = section_from_summary(contract_summary())
    out = tmp_path / "c.html"
    out.write_text(loops_page(data, figs, store=tmp_path / "x.duckdb", study=f"study {SCRIPT}", notes=notes), encoding="utf-8")
    html = out.read_text(encoding="utf-8")
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold" not in html
    with open_page(out, viewport=(1280, 900)) as page:
        _check_page(page, {f.name for f in figs})
        text = page.evaluate("document.querySelector('#loops').innerText")
        for s in (
            f"storm {SCRIPT}",
            "<b>bold</b>",
            f"Final text {SCRIPT} one",
            "Second <img src=x onerror=alert(7)> text",
            EVIL,
            f"task {SCRIPT}",
            f"caption {SCRIPT}",
            f"image note {SCRIPT}",
        ):
            assert s in text, s
        titles = page.evaluate("Array.from(document.querySelectorAll('#loops img')).map(i => i.title)")
        assert f"round 1 caption {SCRIPT}" in titles  # a caption, as the image's tooltip text
        imgs = page.evaluate(
            "Array.from(document.querySelectorAll('img')).map(i => ({src: i.src.slice(0, 22), w: i.naturalWidth}))"
        )
        # the PNGs only (three rounds of chain c1, and its last image in its motif's panel), decoded; the bad one absent
        assert imgs == [{"src": "data:image/png;base64,", "w": 16}] * 4
        assert page.evaluate("document.querySelectorAll('#loops .motif').length") == 3  # two text motifs, one image motif
        bars = page.evaluate(
            "Array.from(document.querySelectorAll('#loops .motif .bar span')).map(s => s.getBoundingClientRect().width)"
        )
        assert len(bars) == 7 and bars[3] > 2.5 * bars[0] > 0  # share 0.75 (motif 1) against 0.25 (motif 0); one image bar
        page.screenshot(tmp_path / "loops_contract.png")


@pytest.mark.slow
def test_loops_section_renders_in_chromium(measured_loops_report, tmp_path):
    """The section inside the full report, beside the explorer and the other figures."""
    require_browser()
    info, out = measured_loops_report
    with open_page(out, viewport=(1280, 900)) as page:
        _check_page(page, {f for f in info.figures if f.startswith("loops_")})
        text = page.evaluate("document.querySelector('#loops').innerText")
        assert EVIL in text  # the hostile model name, as text, in the tables
        reps = page.evaluate("Array.from(document.querySelectorAll('#loops .motif .rep')).map(r => r.innerText)")
        assert reps and any(SCRIPT in r for r in reps)  # the models' own markup, as text in the motif panels
        assert page.evaluate("document.querySelectorAll('img').length") == 0
        # hovering a point of the first trajectory shows its label as text
        point = page.page.locator("#plot-loops_trajectory_length .scatterlayer .trace .points path").first
        point.scroll_into_view_if_needed()
        box = point.bounding_box()
        page.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.page.wait_for_timeout(300)
        assert page.evaluate("document.querySelectorAll('#plot-loops_trajectory_length .hovertext').length") >= 1
        assert page.console_errors == [] and page.csp_violations() == [] and page.dialogs == []
        page.screenshot(tmp_path / "loops.png")
