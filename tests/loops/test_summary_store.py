"""Stored loop summaries: computed once, kept in ``loop_summaries`` under a digest of the settings
and of the chains' step keys, read back while both are unchanged; a grown chain, a retried step
or other settings compute a new one. And ``loops: summary:`` in a study file."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

import monoculture.loops.summary as summary_mod
from clihelp import mc
from monoculture.loops.summary import (
    SUMMARY_DEFAULTS,
    chains_digest,
    keep_summaries,
    stored_loop_summary,
    summary_digest,
    summary_settings,
)
from monoculture.loops.tables import Chain, register_chains, step_key, write_steps
from monoculture.store import Store

WORDS = "sun river stone light dream city night garden window story road field".split()
FAST = {"scorers": ["length"], "embedder": None, "bootstrap": 50, "permutations": 19}


def write_chains(path, *, seeds=3, reps=2, steps=4, study="s", extra_step=False):
    """Small chains of two models; returns {chain_id: (last text, last key)}."""
    rng = np.random.default_rng(0)
    chains, rows, last = [], [], {}
    for model in ("m1", "m2"):
        for si in range(seeds):
            for r in range(reps):
                seed_text = " ".join(rng.choice(WORDS, size=5 + 10 * si))
                c = Chain(
                    kind="text",
                    task="rephrase",
                    instruction="Rephrase:",
                    seed_id=f"seed{si}",
                    seed_text=seed_text,
                    models=[model],
                    identities=[model],
                    replicate=r,
                    steps=steps,
                )
                chains.append(c)
                prev, prev_key = seed_text, ""
                for t in range(1, steps + 1):
                    text = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 20))))
                    key = step_key(c.chain_id, t, prev)
                    rows.append(
                        {"key": key, "chain_id": c.chain_id, "step": t, "model": model, "input_key": prev_key, "text": text}
                    )
                    prev, prev_key = text, key
                last[c.chain_id] = (prev, prev_key, model, steps)
    with Store(path) as st:
        register_chains(st, study, chains)
        write_steps(st, rows)
    return last


def grow(path, last: dict, *, error: str | None = None, text: str = "a new step of the chain") -> None:
    """One more step on one chain (a failed one with ``error``)."""
    cid, (prev, prev_key, model, steps) = sorted(last.items())[0]
    key = step_key(cid, steps + 1, prev)
    row = {"key": key, "chain_id": cid, "step": steps + 1, "model": model, "input_key": prev_key}
    row |= {"text": None, "error": error} if error else {"text": text, "error": None}
    with Store(path) as st:
        write_steps(st, [row])


class Calls:
    """Counts calls of the summary's scoring and embedding (or makes them fail)."""

    def __init__(self, monkeypatch, fail: bool = False):
        self.n = 0
        real_score, real_embed = summary_mod.score_frame, summary_mod.embed_frame

        def score(*a, **k):
            self.n += 1
            if fail:
                raise AssertionError("scored a text although the store holds the summary")
            return real_score(*a, **k)

        def embed(*a, **k):
            self.n += 1
            if fail:
                raise AssertionError("embedded a text although the store holds the summary")
            return real_embed(*a, **k)

        monkeypatch.setattr(summary_mod, "score_frame", score)
        monkeypatch.setattr(summary_mod, "embed_frame", embed)


def rows(path) -> list[tuple]:
    with Store(path, read_only=True) as st:
        return st.con.execute("SELECT digest, study, settings FROM loop_summaries ORDER BY created_at").fetchall()


def test_second_summary_is_read_back_and_a_grown_or_retried_chain_recomputes(tmp_path, monkeypatch):
    path = tmp_path / "s.duckdb"
    last = write_chains(path)
    with Store(path) as st:
        first, reused = stored_loop_summary(st, "s", **FAST)
    assert not reused and len(rows(path)) == 1
    assert json.loads(rows(path)[0][2]) == {**SUMMARY_DEFAULTS, **FAST}
    calls = Calls(monkeypatch, fail=True)
    with Store(path, read_only=True) as st:
        again, reused = stored_loop_summary(st, "s", **FAST)
    assert reused and again == json.loads(json.dumps(first)) and calls.n == 0
    monkeypatch.undo()

    grow(path, last, error="HTTP 500")  # a failed step is not read: nothing changes
    with Store(path) as st:
        assert stored_loop_summary(st, "s", **FAST)[1] is True
    calls = Calls(monkeypatch)
    grow(path, last)  # the step retried and now there: the chain grew
    with Store(path) as st:
        grown, reused = stored_loop_summary(st, "s", **FAST)
    assert not reused and calls.n > 0
    assert max(r["steps_max"] for r in grown["labels"]) == 5
    assert len(rows(path)) == 1, "the summary of the chains before they grew is replaced"
    with Store(path) as st:
        other, reused = stored_loop_summary(st, "s", **{**FAST, "bootstrap": 60})
    assert not reused and len(rows(path)) == 2, "other settings: a summary of their own, the first kept"


def test_digest_follows_settings_chains_and_study(tmp_path):
    path = tmp_path / "d.duckdb"
    write_chains(path)
    base = summary_settings(**FAST)
    assert base == {**SUMMARY_DEFAULTS, **FAST}
    assert summary_settings() == SUMMARY_DEFAULTS and summary_settings(embedder=None)["embedder"] is None
    assert summary_settings(scorers="length, positivity")["scorers"] == ["length", "positivity"]
    assert summary_settings(scorers=[summary_mod.get_scorers(["length"])[0]]) is None  # an object: not keyed
    with Store(path, read_only=True) as st:
        d = summary_digest(st, "s", base)
        assert d == summary_digest(st, "s", dict(base))
        assert d != summary_digest(st, "s", {**base, "seed": 1})
        assert d != summary_digest(st, None, base)
        assert chains_digest(st, "s") == chains_digest(st, None)  # one study: the same chains
        assert chains_digest(st, "nobody").startswith("0:")
    with pytest.raises(TypeError, match="unknown summary settings"):
        summary_settings(bootstraps=3)


def test_read_only_store_keeps_nothing_until_written_later(tmp_path):
    path = tmp_path / "r.duckdb"
    write_chains(path)
    pending: list = []
    with Store(path, read_only=True) as st:
        s, reused = stored_loop_summary(st, "s", pending=pending, **FAST)
    assert not reused and len(pending) == 1 and rows(path) == []
    assert keep_summaries(path, pending) is None
    with Store(path, read_only=True) as st:
        assert stored_loop_summary(st, "s", **FAST) == (json.loads(json.dumps(s)), True)
    with Store(path, read_only=True):  # held read-only by this process: the cache write gives up with a note
        note = keep_summaries(path, pending)
    assert note and "could not be kept" in note


def test_cli_stores_reuses_and_recomputes(tmp_path, monkeypatch):
    path = tmp_path / "c.duckdb"
    write_chains(path)
    args = ("loop", "summary", path, "--json", "-B", "50", "--permutations", "19", "--embedder", "none", "--scorers", "length")
    code, out = mc(*args)
    assert code == 0, out
    first = json.loads(out)
    calls = Calls(monkeypatch, fail=True)
    code, out = mc(*args)
    assert code == 0 and json.loads(out) == first and calls.n == 0
    monkeypatch.undo()
    calls = Calls(monkeypatch)
    code, out = mc(*args, "--recompute")
    assert code == 0 and json.loads(out) == first and calls.n > 0


STUDY = """
name: s
store: {store}
models:
  - {{name: m1, backend: openai, model: m1, params: {{base_url: "http://127.0.0.1:9/v1", api_key_env: none}}}}
loops:
  tasks: [rephrase]
  steps: 4
{summary}
"""


def study_file(tmp_path, summary: str) -> str:
    p = tmp_path / "study.yaml"
    p.write_text(STUDY.format(store=tmp_path / "st.duckdb", summary=textwrap.indent(summary, "  ")))
    return str(p)


def test_study_file_summary_settings_are_the_commands_defaults(tmp_path, monkeypatch):
    write_chains(tmp_path / "st.duckdb")
    f = study_file(tmp_path, "summary: {scorers: [length], embedder: none, bootstrap: 40, permutations: 9, seed: 3}")
    code, out = mc("loop", "summary", f, "--json")
    assert code == 0, out
    got = json.loads(out)
    assert [s["name"] for s in got["scorers"]] == ["length"] and got["embedder"] is None
    (d, study, settings) = rows(tmp_path / "st.duckdb")[0]
    assert study == "s" and json.loads(settings) == {**SUMMARY_DEFAULTS, **FAST, "bootstrap": 40, "permutations": 9, "seed": 3}
    code, out = mc("loop", "summary", f, "--json", "-B", "30")  # an option overrides the file
    assert code == 0 and len(rows(tmp_path / "st.duckdb")) == 2


@pytest.mark.parametrize(
    "summary,field,message",
    [
        ("summary: {x_from: middle}", "loops.summary.x_from", "'seed' or 'first'"),
        ("summary: {bootstrap: -1}", "loops.summary.bootstrap", "greater than or equal to 0"),
        ("summary: {bootstrap: true}", "loops.summary.bootstrap", "not true"),
        ("summary: {scorers: [length, nope]}", "loops.summary.scorers", "unknown scorer 'nope'"),
        ("summary: {scorers: [length, length]}", "loops.summary.scorers", "given twice"),
        ("summary: {embedder: not-an-embedder}", "loops.summary.embedder", "unknown embedder"),
        ("summary: {bootstraps: 10}", "loops.summary.bootstraps", "Extra inputs"),
    ],
)
def test_bad_summary_settings_exit_2_naming_the_field(tmp_path, summary, field, message):
    f = study_file(tmp_path, summary)
    for command in (("loop", "summary", f), ("study", f, "--check")):
        code, out = mc(*command)
        assert code == 2 and field in out and message in out, (command, out)


def test_loops_phase_survives_a_failing_summary(tmp_path, monkeypatch):
    """The chains are stored whatever the summary does: a summary that fails is a note."""
    from fake_openai import FakeOpenAIServer

    def broken(*a, **k):
        raise RuntimeError("scorer exploded")

    monkeypatch.setattr(summary_mod, "loop_summary", broken)
    with FakeOpenAIServer() as server:
        path = tmp_path / "f.yaml"
        params = f'{{base_url: "{server.base_url}", api_key_env: none, timeout: 2}}'
        path.write_text(
            f"name: f\nstore: {tmp_path / 'f.duckdb'}\nmodels:\n  - {{name: a, backend: openai, model: a, params: {params}}}\n"
            "loops: {tasks: [rephrase], seed_ids: [story-short, tiny-thirty], steps: 2, chains: 1}\n"
        )
        code, out = mc("study", path, "-q")
    assert code == 0 and "summary not computed" in out and "RuntimeError: scorer exploded" in out, out
    with Store(tmp_path / "f.duckdb", read_only=True) as st:
        assert st.con.execute("SELECT count(*) FROM loop_steps WHERE error IS NULL").fetchone()[0] == 4
        assert st.con.execute("SELECT count(*) FROM loop_summaries").fetchone()[0] == 0
