"""The report's Loops section reads a stored summary: the first report of a store computes the
loop summary and keeps it (loop_summaries), the second draws it without scoring or embedding a
text, and a chain that grew is summarised again. The report command's line for a loops-only
store. A study's loops phase stores the summary with its ``loops: summary:`` settings, and the
report phase (and ``monoculture report STUDY.yaml``) reuse it."""

from __future__ import annotations

import json
import shutil

import pytest
from test_report_loops import write_chains

import monoculture.loops.summary as summary_mod
from clihelp import mc
from monoculture.loops.tables import step_key, write_steps
from monoculture.report import build_report
from monoculture.store import Store


class Calls:
    """Counts the summary's scoring and embedding calls; with ``fail`` they raise."""

    def __init__(self, monkeypatch, fail: bool = False):
        self.n = 0
        for name in ("score_frame", "embed_frame"):
            real = getattr(summary_mod, name)

            def wrapped(*a, _real=real, _name=name, **k):
                self.n += 1
                if fail:
                    raise AssertionError(f"{_name} called although the store holds the summary")
                return _real(*a, **k)

            monkeypatch.setattr(summary_mod, name, wrapped)


def _loops_html(path) -> str:
    html = path.read_text(encoding="utf-8")
    return html[html.index('<section id="loops">') : html.index("</section>", html.index('<section id="loops">'))]


def _grow_one_chain(path) -> None:
    with Store(path) as st:
        cid, step, text, key = st.con.execute(
            "SELECT s.chain_id, s.step, s.text, s.key FROM loop_steps s ORDER BY s.chain_id, s.step DESC LIMIT 1"
        ).fetchone()
        new = step_key(cid, step + 1, text)
        write_steps(st, [{"key": new, "chain_id": cid, "step": step + 1, "model": "alpha", "input_key": key, "text": "Grown."}])


@pytest.mark.slow
def test_second_report_reads_the_stored_summary_and_a_grown_chain_recomputes(tmp_path, monkeypatch):
    path = tmp_path / "loops.duckdb"
    write_chains(path, "loopy", replicates=2)
    first = build_report(path, tmp_path / "1.html")
    with Store(path, read_only=True) as st:
        assert st.con.execute("SELECT count(*), any_value(study) FROM loop_summaries").fetchone() == (1, None)
    calls = Calls(monkeypatch, fail=True)
    second = build_report(path, tmp_path / "2.html")
    assert calls.n == 0 and second.figures == first.figures and second.loop_chains == first.loop_chains == 48
    assert not any("left out" in n for n in second.notes), second.notes
    assert _loops_html(tmp_path / "2.html") == _loops_html(tmp_path / "1.html")
    monkeypatch.undo()

    _grow_one_chain(path)
    calls = Calls(monkeypatch)
    build_report(path, tmp_path / "3.html")
    assert calls.n > 0, "a chain grew: the summary is computed again"
    with Store(path, read_only=True) as st:
        assert st.con.execute("SELECT count(*) FROM loop_summaries").fetchone()[0] == 1  # the stale one replaced


def test_report_command_line_of_a_loops_only_store(tmp_path):
    path = tmp_path / "l.duckdb"
    write_chains(path, "loopy")
    code, out = mc("report", path, "-o", tmp_path / "r.html")
    assert code == 0, out
    assert "Loops section alone (24 loop chains; nothing measured yet)" in out and "explorer holds" not in out, out


def test_measured_report_line_names_its_loop_chains(measured_store, tmp_path):
    path = tmp_path / "m.duckdb"
    shutil.copy(measured_store, path)
    code, out = mc("report", path, "-o", tmp_path / "r.html", "--max-prompts", "5")
    assert code == 0 and "explorer holds" in out and "Loops section" not in out, out


@pytest.mark.slow
def test_study_loops_phase_stores_the_summary_the_report_reuses(tmp_path, monkeypatch):
    from fake_openai import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        path = tmp_path / "lp.yaml"
        params = f'{{base_url: "{server.base_url}", api_key_env: none, concurrency: 2, timeout: 2}}'
        path.write_text(
            f"""name: lp
models:
  - {{name: fake-a, backend: openai, model: fake-a, params: {params}}}
  - {{name: fake-b, backend: openai, model: fake-b, params: {params}}}
sampling: {{temperature: 0.7, max_tokens: 16, seed: 11}}
loops:
  tasks: [rephrase, continue]
  seed_ids: [story-short, tiny-thirty]
  steps: 2
  chains: 1
  summary: {{scorers: [length, difficulty], embedder: none, bootstrap: 80, permutations: 19}}
report: {{path: r.html}}
"""
        )
        code, out = mc("study", path, "-q", "--only", "loops")
        assert code == 0 and "summary computed and stored" in out, out
        calls = Calls(monkeypatch, fail=True)
        code, out = mc("study", path, "-q")
        assert code == 0 and "summary unchanged (stored)" in out and "report: wrote" in out, out
        code, out = mc("report", path, "-o", tmp_path / "again.html")
        assert code == 0 and "Loops section alone (8 loop chains" in out, out
        assert calls.n == 0
        code, out = mc("loop", "summary", path, "--json")
        assert code == 0 and calls.n == 0
        got = json.loads(out)
        assert [s["name"] for s in got["scorers"]] == ["length", "difficulty"] and got["embedder"] is None
        html = (tmp_path / "r.html").read_text(encoding="utf-8")
        assert "80 resamples" in html or "80 bootstrap" in html
