"""`monoculture demo`: the shipped data, run end to end with the network blocked.

One fresh demo run (about a minute) is shared by the tests of this module: the headline's
figures are finite, both pages render in Chromium without errors or requests, a rerun reuses
everything, and a missing report is the only thing a rerun redoes.
"""

from __future__ import annotations

import contextlib
import hashlib
import lzma
import math
import socket

import pytest
from typer.testing import CliRunner

from monoculture.cli import app

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def no_network():
    """Every way out of the process to a socket address raises, and is recorded: a library that
    catches the error and carries on still fails the test through ``attempts``."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[1:] if args and isinstance(args[0], socket.socket) else args)[:200])
        raise OSError("network access is blocked in this test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        yield attempts


def test_the_network_guard_blocks_and_records():
    """The guard the demo runs under: a connection attempt raises and is recorded."""
    with no_network() as attempts:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 9))
        s = socket.socket()
        try:
            with pytest.raises(OSError):
                s.connect(("127.0.0.1", 9))
        finally:
            s.close()
    assert len(attempts) == 2


def run_cli(*args):
    return CliRunner().invoke(app, ["demo", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A fresh demo in a new folder, run offline through the CLI, as a user would."""
    from monoculture.demo import run_demo

    out = tmp_path_factory.mktemp("demo") / "monoculture-demo"
    with no_network() as attempts:
        r = run_cli("-o", str(out), "--quiet")
    assert r.exit_code == 0, r.output
    assert attempts == []
    # the same folder again, in process, to get the figures (a rerun: it only reads)
    with no_network() as attempts:
        res = run_demo(out, show_progress=False)
    assert attempts == []
    return out, r.output, res


def test_headline_figures_are_finite_and_printed(demo):
    _, printed, res = demo
    f = res.figures
    for key in (
        "V",
        "V_lo",
        "V_hi",
        "H",
        "H_lo",
        "H_hi",
        "F",
        "loss1",
        "loss2",
        "loss3",
        "group1_loss",
        "group1_random",
        "distinct_gpt-4o",
        "distinct_humans",
        "within_gpt-4o",
        "within_humans",
        "judged_gpt-4o",
        "judged_humans",
        "ratio",
        "ratio_lo",
        "ratio_hi",
    ):
        assert key in f, key
    bad = {k: v for k, v in f.items() if not math.isfinite(v)}
    assert bad == {}
    n_models = len(res.parts["arena"].measured.summary["models"])
    assert n_models == 13
    assert 1 <= f["V"] <= n_models and f["V_lo"] <= f["V"] <= f["V_hi"]
    assert f["F"] < f["H"]  # answers to one prompt are more alike than answers to different prompts
    # the headline the CLI printed carries these figures
    assert f"V = {f['V']:.2f} [{f['V_lo']:.2f}, {f['V_hi']:.2f}]" in printed
    assert f"H = {f['H']:.3f}" in printed and f"F = {f['F']:.3f}" in printed
    assert f"{f['distinct_gpt-4o']:.2f} distinct answers per prompt against {f['distinct_humans']:.2f} for humans" in printed
    assert "random groups of its size" in printed
    # the finding the data are known for: GPT-4o asked again repeats itself more than people do
    assert f["distinct_gpt-4o"] < f["distinct_humans"] and f["judged_gpt-4o"] < f["judged_humans"]
    assert f["within_gpt-4o"] > f["within_humans"]


def test_every_arena_model_has_its_attributes(demo):
    from monoculture.store import Store

    res = demo[2]
    with Store(res.store, read_only=True) as st:
        attrs = st.model_attributes()
        studies = st.study_names()
    assert sorted(studies) == ["arena", "noveltybench"]
    for m in res.parts["arena"].measured.summary["models"]:
        a = attrs[m]
        assert {"family", "organisation", "country", "open_weights", "release_date"} <= set(a), m


def test_pages_render_offline_in_chromium(demo):
    from browser import open_page, require_browser

    require_browser()
    out, _, res = demo
    for name in ("report.html", "noveltybench.html"):
        with open_page(out / name) as page:
            assert page.console_errors == [], name
            assert page.external_requests() == [], name
            assert page.dialogs == []
            text = page.text()
            n_svg = page.evaluate("document.querySelectorAll('svg.main-svg').length")
        assert n_svg > 0, name
        if name == "report.html":  # the page and the terminal agree on the headline
            assert f"{res.figures['V']:.3f}" in text


def test_rerun_reuses_the_store(demo):
    from monoculture.demo import run_demo
    from monoculture.store import Store

    out, _, first = demo
    with Store(first.store, read_only=True) as st:
        runs = st.con.execute("SELECT label, created_at FROM measure_runs ORDER BY label").fetchall()
    pages = {p: (out / p).stat().st_mtime_ns for p in ("report.html", "noveltybench.html")}
    with no_network() as attempts:
        res = run_demo(out, show_progress=False)
    assert attempts == []
    assert [(r.imported, r.measured_now, r.reported_now) for r in res.parts.values()] == [(False, False, False)] * 2
    with Store(res.store, read_only=True) as st:
        assert st.con.execute("SELECT label, created_at FROM measure_runs ORDER BY label").fetchall() == runs
    assert {p: (out / p).stat().st_mtime_ns for p in pages} == pages
    assert res.figures == first.figures


def test_a_missing_page_is_the_only_thing_redone(demo):
    from monoculture.demo import run_demo

    out, _, _ = demo
    kept = (out / "report.html").stat().st_mtime_ns
    (out / "noveltybench.html").unlink()
    with no_network():
        res = run_demo(out, show_progress=False)
    assert (out / "noveltybench.html").is_file()
    assert res.parts["noveltybench"].reported_now and not res.parts["noveltybench"].measured_now
    assert not res.parts["arena"].reported_now and (out / "report.html").stat().st_mtime_ns == kept


def test_out_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "taken"
    target.write_text("mine")
    r = run_cli("-o", str(target), "--quiet")
    assert r.exit_code == 2
    assert "error:" in r.output and str(target) in r.output and "not a folder" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert target.read_text() == "mine"


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_shipped_files_match_their_sources():
    """Each shipped file, uncompressed, is byte for byte the file its source commit holds (the
    git blob SHA-1 in MANIFEST.tsv); and the folder ships nothing the manifest does not name
    except the licences, NOTICE and the hand-written attributes."""
    from monoculture.demo import data_root

    root = data_root()
    rows = [line.split("\t") for line in (root / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:] if line]
    assert len(rows) == 20
    listed = set()
    for name, _repo, _commit, _src_path, sha1, size in rows:
        node = root
        for piece in name.split("/"):
            node = node / piece
        data = node.read_bytes()
        if name.endswith(".xz"):
            data = lzma.decompress(data)
        assert (len(data), _git_blob_sha1(data)) == (int(size), sha1), name
        listed.add(name)
    shipped = set()
    stack = [(root, "")]
    while stack:
        node, rel = stack.pop()
        for c in node.iterdir():
            (stack.append((c, rel + c.name + "/")) if c.is_dir() else shipped.add(rel + c.name))
    assert shipped - listed == {"MANIFEST.tsv", "NOTICE", "attributes.yaml", "arena_bench_v1/LICENSE"}
