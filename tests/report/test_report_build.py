"""Building the report without a browser: contents, offline guarantees, the explorer's subset,
the methods section, errors a user can fix, and the CLI function."""

from __future__ import annotations

import json
import re
import sys
import types

import pytest

from monoculture.errors import UserError
from monoculture.report import build_report
from monoculture.report.explorer import select_prompts
from monoculture.store import Store
from pagecheck import check_csp

JSON_BLOCK = re.compile(r'<script type="application/json"[^>]*id="([^"]+)"[^>]*>(.*?)</script>', re.S)


def blocks(html: str) -> dict[str, object]:
    return {k: json.loads(v) for k, v in JSON_BLOCK.findall(html)}


def test_page_is_self_contained(measured_store, tmp_path):
    info = build_report(measured_store, tmp_path / "r.html")
    html = info.path.read_text(encoding="utf-8")
    assert info.bytes == info.path.stat().st_size
    check_csp(html, scripts=2)
    for bad in ("<script src", "<link ", "<img", "@import", "url(http", "<iframe"):
        assert bad not in html, bad
    assert html.count("<script>") == 2  # plotly.js and the page's own script, both inline
    data = blocks(html)
    assert set(data) >= {f"data-{f}" for f in info.figures} | {"explorer-data"}
    for f in info.figures:
        assert data[f"data-{f}"]["data"], f


def test_headline_and_captions(measured_store, tmp_path):
    html = build_report(measured_store, tmp_path / "r.html").path.read_text(encoding="utf-8")
    head = html[html.index('id="headline"') : html.index('id="figures"')]
    assert "Voices per prompt" in head and "off-prompt floor" in head.lower() and "Biggest losses" in head
    assert head.count("95% interval") >= 2
    assert "12 prompts" in head
    caps = re.findall(r"<figcaption>(.*?)</figcaption>", html, re.S)
    assert len(caps) == html.count('class="fig"')
    for c in caps:
        assert c.strip() and "\n" not in c.strip()


def test_methods_section_comes_from_the_study(measured_store, tmp_path):
    html = build_report(measured_store, tmp_path / "r.html").path.read_text(encoding="utf-8")
    methods = html[html.index('id="methods"') :]
    from monoculture import __version__

    for needle in (
        "tfidf",
        "200 resamples",
        "seed 0",
        "alpha-small",
        "Org A",
        "jsonl",
        f"monoculture {__version__}",
        "en, fr",
        "What was left out",
        "95% percentile bootstrap",
        "The unit resampled (and kept whole in separability's folds) is the prompt: 12 prompts",
    ):
        assert needle in methods, needle


def test_explorer_holds_a_stated_subset(measured_store, tmp_path):
    info = build_report(measured_store, tmp_path / "r.html", max_prompts=4)
    assert (info.explorer_prompts, info.total_prompts) == (4, 12)
    data = blocks(info.path.read_text(encoding="utf-8"))["explorer-data"]
    assert data["held"] == 4 and data["total"] == 12
    assert "4 of 12 prompts" in data["description"] and "fewest" in data["description"]
    assert len(data["prompts"]) == 12  # every prompt is still searchable
    voices = {p["id"]: p["voices"] for p in data["prompts"]}
    held = set(data["answers"])
    order = sorted(voices, key=voices.get)
    assert set(order[:2]) | set(order[-2:]) == held
    assert "4 of 12 prompts" in info.path.read_text(encoding="utf-8")
    for p in data["prompts"]:
        assert p["answers"] == (p["id"] in held)
        assert len(p["most"]) == 3 and len(p["least"]) == 3

    none = build_report(measured_store, tmp_path / "none.html", max_prompts=0)
    assert none.explorer_prompts == 0
    every = build_report(measured_store, tmp_path / "all.html", max_prompts=1000)
    assert every.explorer_prompts == 12


def test_select_prompts_alternates_ends():
    v = {f"p{i}": float(i) for i in range(10)}
    assert select_prompts(list(v), v, 4) == ["p0", "p9", "p1", "p8"]
    assert select_prompts(list(v), v, 0) == []
    assert select_prompts(list(v), v, 50) == list(v)


def test_long_answers_are_cut_and_budget_is_kept(measured_store, tmp_path, monkeypatch):
    import monoculture.report.build as B
    from monoculture.report import explorer as X

    real = X.build_explorer

    def small_budget(*a, **kw):
        return real(*a, **{**kw, "budget_bytes": 6000, "max_answer_chars": 50})

    monkeypatch.setattr(B, "build_explorer", small_budget)
    info = build_report(measured_store, tmp_path / "r.html", max_prompts=12)
    data = blocks(info.path.read_text(encoding="utf-8"))["explorer-data"]
    assert 0 < data["held"] < 12
    assert "size budget" in data["description"] and "cut" in data["description"]
    assert all(len(a[2]) <= 50 for ans in data["answers"].values() for a in ans)
    assert any(a[3] > 0 for ans in data["answers"].values() for a in ans)


def test_single_sample_study(single_sample_store, tmp_path):
    """k = 1: W and own range are undefined, so the diversity figure falls back to wording."""
    info = build_report(single_sample_store, tmp_path / "r.html")
    html = info.path.read_text(encoding="utf-8")
    assert "diversity" in info.figures
    assert "k = 1" in html


def test_language_panels_only_when_multilingual(measured_store, single_sample_store, tmp_path):
    assert "languages" in build_report(measured_store, tmp_path / "a.html").figures
    import shutil

    one = tmp_path / "one.duckdb"
    shutil.copy(single_sample_store, one)
    with Store(one) as st:
        st.con.execute("UPDATE prompts SET language = 'en'")
    assert "languages" not in build_report(one, tmp_path / "b.html").figures


def test_user_errors(measured_store, tmp_path):
    with pytest.raises(UserError, match="no measurement labelled"):
        build_report(measured_store, tmp_path / "r.html", label="nope")
    with pytest.raises(UserError, match="max-prompts"):
        build_report(measured_store, tmp_path / "r.html", max_prompts=-1)
    with pytest.raises(UserError, match="folder"):
        build_report(measured_store, tmp_path)
    empty = tmp_path / "empty.duckdb"
    Store(empty).close()
    with pytest.raises(UserError, match="measure"):
        build_report(empty, tmp_path / "r.html")
    with pytest.raises(UserError, match="no store"):
        build_report(tmp_path / "missing.duckdb", tmp_path / "r.html")


def test_label_selects_a_measurement(measured_store, tmp_path):
    with Store(measured_store, read_only=True) as st:
        labels = [r[0] for r in st.con.execute("SELECT label FROM measure_runs").fetchall()]
    info = build_report(measured_store, tmp_path / "r.html", label=labels[0])
    assert info.label == labels[0]


def _fake_perspectives(monkeypatch, fn):
    mod = types.ModuleType("monoculture.probes.report_section")
    mod.perspectives_section = fn
    monkeypatch.setitem(sys.modules, "monoculture.probes.report_section", mod)


def test_perspectives_section_included_when_present(measured_store, tmp_path, monkeypatch):
    fig = {"data": [{"type": "bar", "x": ["a", "b"], "y": [1, 2]}], "layout": {"title": {"text": "views"}}}
    _fake_perspectives(
        monkeypatch,
        lambda store, study=None: {
            "title": "Perspectives",
            "html": '<p>from the probes</p><div id="perspectives-fig-0"></div>',
            "figures": [fig],
            "figure_ids": ["perspectives-fig-0"],
        },
    )
    html = build_report(measured_store, tmp_path / "r.html").path.read_text(encoding="utf-8")
    assert 'id="perspectives"' in html and "from the probes" in html and 'data-target="perspectives-fig-0"' in html


def test_perspectives_section_skipped_quietly(measured_store, tmp_path, monkeypatch):
    _fake_perspectives(monkeypatch, lambda store, study=None: None)
    info = build_report(measured_store, tmp_path / "a.html")
    assert 'id="perspectives"' not in info.path.read_text(encoding="utf-8") and info.notes == []

    def broken(store, study=None):
        raise RuntimeError("probe tables half-written")

    _fake_perspectives(monkeypatch, broken)
    info = build_report(measured_store, tmp_path / "c.html")
    assert any("perspectives" in n and "probe tables half-written" in n for n in info.notes)


def test_perspectives_section_failures_are_seen(measured_store, tmp_path, monkeypatch):
    """An error inside the section is reported, never retried away: a TypeError raised inside
    it once made the report call it again without the study and show another study's probes."""
    section = {"title": "Perspectives", "html": "<p>every study's probes</p>", "figures": [], "figure_ids": []}
    calls = []

    def fails_with_study(store, **kw):
        calls.append(kw)
        if "study" in kw:
            raise TypeError("bug inside the section")
        return section

    _fake_perspectives(monkeypatch, fails_with_study)
    info = build_report(measured_store, tmp_path / "a.html")
    html = info.path.read_text(encoding="utf-8")
    assert len(calls) == 1
    assert "every study's probes" not in html
    assert any("TypeError" in n and "bug inside the section" in n for n in info.notes), info.notes
    # A module that fails to import is a note too, not a silent absence.
    monkeypatch.setitem(sys.modules, "monoculture.probes.report_section", None)
    info = build_report(measured_store, tmp_path / "b.html")
    assert 'id="perspectives"' not in info.path.read_text(encoding="utf-8")
    assert any("perspectives section left out" in n and "ModuleNotFoundError" in n for n in info.notes), info.notes


def test_report_command(measured_store, tmp_path):
    from typer.testing import CliRunner

    from monoculture.report.cli import app

    out = tmp_path / "cli.html"
    res = CliRunner().invoke(app(), [str(measured_store), "-o", str(out), "--max-prompts", "3"])
    assert res.exit_code == 0, res.output
    assert out.exists() and "3 of 12 prompts" in res.output
    res = CliRunner().invoke(app(), ["--store", str(measured_store), "-o", str(tmp_path / "b.html")])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app(), [str(tmp_path / "missing.duckdb"), "-o", str(tmp_path / "c.html")])
    assert res.exit_code == 2 and "no store" in res.output
    res = CliRunner().invoke(app(), [str(measured_store), "-o", str(tmp_path / "d.html"), "--label", "nope"])
    assert res.exit_code == 2 and "no measurement labelled" in res.output


def test_mounted_in_the_cli(measured_store, tmp_path):
    from typer.testing import CliRunner

    from monoculture.cli import app as main_app

    res = CliRunner().invoke(main_app, ["report", str(measured_store), "-o", str(tmp_path / "m.html"), "--max-prompts", "2"])
    assert res.exit_code == 0, res.output  # no skip: a report.cli that fails to import must fail here
    assert (tmp_path / "m.html").exists()


def test_study_measurement_and_sampling_settings(measured_store, tmp_path):
    """A study file's report shows that study's measurement and its sampling settings."""
    import shutil

    from monoculture.measure import measure

    path = tmp_path / "study.duckdb"
    shutil.copy(measured_store, path)
    with Store(path) as st:
        keys = st.con.execute("SELECT prompt_key FROM prompts ORDER BY prompt_id LIMIT 6").fetchall()
        models = ["alpha-small", "beta-one", "loner"]
        spec = {
            "name": "s1",
            "samples": 2,
            "suites": [{"name": "open-ended", "limit": 6}],
            "sampling": {"temperature": 0.8, "top_p": 0.95, "max_tokens": 200, "seed": 0, "system_prompt": None, "stop": []},
        }
        st.register_study("s1", None, spec, models, [k for (k,) in keys])
        measure(st, study="s1", embedder="tfidf", n_boot=50, show_progress=False)
    info = build_report(path, tmp_path / "s1.html", study="s1")
    assert info.label.startswith("s1|") and info.total_prompts == 6
    html = info.path.read_text(encoding="utf-8")
    methods = html[html.index('id="methods"') :]
    for needle in ("Study <strong><bdi>s1</bdi></strong>", "temperature", "0.95", "open-ended (first 6)", "2 sample(s)"):
        assert needle in methods, needle
    # Without a study the latest measurement of the store is the study's too; asking for a
    # study that was never measured is a user error.
    with pytest.raises(UserError, match="not been measured"):
        build_report(path, tmp_path / "x.html", study="nope")
