"""measure's options beyond the embedder (--q, --permutations, --no-separability, --level,
--random-groups) reach measure_all and the stored settings; its progress covers the metrics."""

from __future__ import annotations

import io
import json

from embedder_data import fill
from rich.console import Console

from clihelp import mc, snapshot
from monoculture.measure import measure
from monoculture.store import Store


def _store(tmp_path):
    path = tmp_path / "o.duckdb"
    with Store(path) as st:
        fill(st)
    return path


def test_options_reach_the_measurement(tmp_path):
    path = _store(tmp_path)
    args = ["measure", path, "-e", "tfidf", "-B", "40", "--json"]
    code, out = mc(*args, "--q", "2", "--permutations", "49", "--no-separability", "--level", "0.8", "--random-groups", "5")
    assert code == 0, out
    s = json.loads(out[out.index("{") :])
    st = s["settings"]
    assert (st["q"], st["n_perm"], st["separability"], st["level"], st["n_random"]) == (2.0, 49, False, 0.8, 5)
    assert "separability" not in s  # not fitted
    assert s["lineage"]["family"]["p_value"] >= 1 / 50  # 49 permutations: p has a resolution of 1/50
    code, out = mc(*args)
    d = json.loads(out[out.index("{") :])
    assert d["settings"]["n_perm"] == 999 and "separability" in d
    narrow, wide = s["homogeneity"]["ci"], d["homogeneity"]["ci"]
    assert narrow[1] - narrow[0] < wide[1] - wide[0]  # an 80% interval inside the 95% one's width
    assert s["voices"]["value"] != d["voices"]["value"]  # Vendi order 2 against 1


def test_bad_options_exit_2_and_change_nothing(tmp_path):
    path = _store(tmp_path)
    before = snapshot(path)
    for bad, says in [
        (["--level", "1.5"], "--level 1.5"),
        (["--permutations", "0"], "--permutations and --random-groups must be at least 1"),
        (["--q", "-1"], "--q -1.0"),
    ]:
        code, out = mc("measure", path, "-e", "tfidf", *bad)
        assert code == 2 and says in out, out
    assert snapshot(path) == before  # refused before anything was embedded


def test_progress_covers_the_metric_stages(tmp_path):
    path = _store(tmp_path)
    buf = io.StringIO()
    with Store(path) as st:
        measure(st, embedder="tfidf", n_boot=20, console=Console(file=buf, force_terminal=True, width=120), show_progress=True)
    text = buf.getvalue()
    assert "embedding" in text and "measuring" in text and "8/8" in text and "done" in text
