"""Running chains over a real local OpenAI-compatible server: faults, kills, resume, lengthening.

The fake server's answer is a pure function of the last user message and the seed, so every
stored step can be checked against what the chain must have read at that step."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from clihelp import mc
from fake_openai import FakeOpenAIServer, expected_text
from monoculture.backends.base import Backend, Result
from monoculture.loops.runner import prepare_loops, run_loops, step_messages, step_model, step_seed
from monoculture.loops.summary import chains_digest, summary_digest, summary_settings
from monoculture.loops.tables import read_steps
from monoculture.store import Store
from monoculture.study import load_study


def loop_study(
    tmp_path: Path,
    base_url: str,
    *,
    steps: int = 4,
    chains: int = 2,
    mix: str = "both",
    max_retries: int = 8,
    batch_size: int = 4,
    name: str = "lp.yaml",
    extra: str = "",
) -> Path:
    path = tmp_path / name
    params = f'{{base_url: "{base_url}", api_key_env: none, concurrency: 2, timeout: 2, max_retries: {max_retries}}}'
    path.write_text(
        textwrap.dedent(
            f"""
            name: lp
            models:
              - {{name: fake-a, backend: openai, model: fake-a, params: {params}}}
              - {{name: fake-b, backend: openai, model: fake-b, params: {params}}}
            batch_size: {batch_size}
            sampling: {{temperature: 0.7, max_tokens: 16, seed: 11, system_prompt: "Be brief."}}
            loops:
              tasks: [rephrase, continue]
              seed_ids: [story-short, tiny-thirty]
              steps: {steps}
              chains: {chains}
              mix: {mix}
            {extra}
            """
        )
    )
    return path


def step_rows(store: Path) -> dict[str, tuple]:
    """Every stored step: key -> (chain, step, model, input key, text, error); no key twice."""
    with Store(store, read_only=True) as st:
        rows = st.con.execute("SELECT key, chain_id, step, model, input_key, text, error FROM loop_steps").fetchall()
    assert len({r[0] for r in rows}) == len(rows)
    return {r[0]: tuple(r[1:]) for r in rows}


def check_chains(study_path: Path, store: Path) -> int:
    """Each chain, step by step, is what the server must answer to the previous step's text with
    that step's model and seed; each step is present exactly once. Returns the steps checked."""
    study = load_study(study_path)
    prepared = prepare_loops(study)
    by_id = {c.chain_id: c for c in prepared.chains}
    sampling = {m.spec.name: m.sampling for m in prepared.models}
    with Store(store, read_only=True) as st:
        frame = read_steps(st, study.name)
    n = 0
    for cid, g in frame.groupby("chain_id"):
        c = by_id[cid]
        g = g.sort_values("step")
        assert list(g["step"]) == list(range(c.steps + 1)), "every step present once"
        prev = c.seed_text
        for t, model, text in zip(g["step"].iloc[1:], g["model"].iloc[1:], g["text"].iloc[1:]):
            assert model == c.models[step_model(c, t)]
            s = sampling[model]
            messages = step_messages(c.instruction, prev, s)
            assert messages[0] == {"role": "system", "content": "Be brief."}
            assert text == expected_text(messages, step_seed(c, s, t))
            prev = text
            n += 1
    assert set(frame["chain_id"]) == set(by_id)
    return n


@pytest.mark.slow
def test_faults_every_step_once_and_failures_retried(tmp_path):
    with FakeOpenAIServer(fail_rate=0.25, failure_kinds=("429", "500", "drop"), retry_after=("0",), seed=5) as server:
        path = loop_study(tmp_path, server.base_url, chains=1, max_retries=0)  # every fault becomes a failed step
        study = load_study(path)
        with Store(study.store_path()) as st:
            first = run_loops(study, st, show_progress=False)
        assert server.failures > 0
        # 2 seeds x 2 tasks x (2 models + 2 orders), 4 steps each
        assert first.chains == 16 and first.planned == 64
        assert first.failed > 0 and first.generated + first.failed <= 64
        rows = step_rows(study.store_path())
        failed = [r for r in rows.values() if r[5] is not None]
        assert len(failed) == first.failed  # a failed chain stopped: one failed row each
        assert all(r[4] is None for r in failed)

        # the CLI retries them (max_retries is transport: same chains, same keys); exit 3 while some fail
        for _ in range(20):
            code, out = mc("loop", "run", path, "-q")
            if code == 0:
                break
            assert code == 3 and "failed (rerun to retry)" in out, out
        assert code == 0 and "16 of 16 chains complete" in out, out
        code, out = mc("loop", "run", path, "-q")
        assert code == 0 and "0 steps generated, 64 already in the store" in out, out
        assert check_chains(path, study.store_path()) == 64
        rows = step_rows(study.store_path())
        assert len(rows) == 64  # each failed row was replaced by its retry, under the same key
        with Store(study.store_path(), read_only=True) as st:
            assert st.con.execute("SELECT max(attempts) FROM loop_steps").fetchone()[0] >= 2
            assert st.con.execute("SELECT count(*) FROM loop_steps WHERE error IS NOT NULL").fetchone()[0] == 0


def test_retries_inside_a_run_and_study_phase(tmp_path):
    """Faults retried by the client complete in one run; `monoculture study` runs the loops phase
    (a loops-only study has no run phase) and skips it when every chain is complete."""
    with FakeOpenAIServer(fail_rate=0.2, failure_kinds=("429", "500", "drop"), retry_after=("0",), seed=9) as server:
        path = loop_study(tmp_path, server.base_url, steps=3, chains=1, mix="fixed")
        code, out = mc("study", path, "-q")
        assert code == 0, out
        assert server.failures > 0
        assert "[1/1] loops" in out and "36 steps generated, 0 already in the store, 0 failed" in out, out
        assert check_chains(path, load_study(path).store_path()) == 36
        server.reset_counts()
        code, out = mc("study", path, "-q")
        assert code == 0 and "all 12 chains complete: 36 steps already in the store" in out, out
        assert sum(server.counts.values()) == 0, "a rerun must not send a single request"
        code, out = mc("ls", load_study(path).store_path())
        assert code == 0 and "lp" in out


def test_lengthening_continues_the_same_chains(tmp_path):
    with FakeOpenAIServer() as server:
        short = loop_study(tmp_path, server.base_url, steps=2, chains=1, mix="random")
        study = load_study(short)
        with Store(study.store_path()) as st:
            run_loops(study, st, show_progress=False)
        before = step_rows(study.store_path())
        with Store(study.store_path()) as st:
            # the report phase's key of the Loops section (phases._run_report)
            digest_before = summary_digest(st, "lp", summary_settings(**study.loops.summary.settings()))
        longer = loop_study(tmp_path, server.base_url, steps=5, chains=1, mix="random")
        server.reset_counts()
        study = load_study(longer)
        with Store(study.store_path()) as st:
            res = run_loops(study, st, show_progress=False)
        assert (res.skipped, res.generated) == (12 * 2, 12 * 3)
        assert server.counts["requests"] == 12 * 3
        after = step_rows(study.store_path())
        assert before.items() <= after.items() and len(after) == 60
        with Store(study.store_path()) as st:  # the study's report is rewritten: its Loops section changed
            assert summary_digest(st, "lp", summary_settings(**study.loops.summary.settings())) != digest_before
            assert str(chains_digest(st, "lp")).split("/")[1].startswith("60:")  # all 60 steps are keyed
        assert check_chains(longer, study.store_path()) == 60
        # the same as a five-step run from scratch
        fresh = tmp_path / "fresh.duckdb"
        with Store(fresh) as st:
            run_loops(study, st, show_progress=False)
        assert step_rows(fresh) == after


def _run_cli(study: Path, store: Path) -> subprocess.Popen:
    """``monoculture loop STUDY --store STORE -q`` in a process of its own. The group is started
    by itself: the whole CLI imports every command's libraries first, seconds per start here."""
    return subprocess.Popen(
        [sys.executable, "-c", "from monoculture.loops.cli import app; app()", str(study), "--store", str(store), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.slow
def test_sigkill_mid_chain_then_resume_matches_uninterrupted(tmp_path):
    """SIGKILL `monoculture loop` several times once steps are being stored; the resumed store
    holds exactly the steps (keys, chains, texts) an uninterrupted run writes."""
    rng = random.Random(3)
    with FakeOpenAIServer(latency=0.02) as server:
        path = loop_study(tmp_path, server.base_url, steps=5, chains=1, mix="fixed", batch_size=2)
        reference = tmp_path / "reference.duckdb"
        with Store(reference) as st:
            run_loops(load_study(path), st, show_progress=False)
        want = step_rows(reference)
        assert len(want) == 12 * 5

        killed = tmp_path / "killed.duckdb"
        kills = 0
        for _ in range(3):
            served = sum(server.counts.values())
            p = _run_cli(path, killed)
            deadline = time.monotonic() + 60
            while p.poll() is None and sum(server.counts.values()) < served + 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.4))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills += 1
        assert kills >= 2, "the runs finished before they could be killed: the test would prove nothing"
        partial = step_rows(killed) if killed.exists() else {}
        assert 0 < len(partial) < len(want)
        assert partial.items() <= want.items()  # what survived a kill is exactly what a clean run wrote
        p = _run_cli(path, killed)
        assert p.wait(timeout=240) == 0, p.stderr.read() if p.stderr else ""
    assert step_rows(killed) == want
    assert check_chains(path, killed) == 60


class _EmptyThenBack(Backend):
    """A backend that answers "" to a text and "back" to the instruction alone: a chain that
    reads its own empty answer must go on from the empty text."""

    name = "empty-then-back"

    def generate(self, jobs):
        for job in jobs:
            content = job.messages[-1]["content"]
            text = "back" if content.endswith("Here is the text:") else ""
            for i, key in zip(job.sample_indices, job.keys):
                yield Result(key=key, sample_index=i, text=text, finish_reason="stop")


def test_empty_outputs_are_stored_and_the_chain_continues_from_them(tmp_path, monkeypatch):
    from monoculture import backends

    monkeypatch.setitem(backends.BUILTIN, "empty-then-back", f"{__name__}:_EmptyThenBack")
    path = tmp_path / "empty.yaml"
    path.write_text(
        "name: empty\nmodels: [{name: e, backend: empty-then-back, model: e}]\n"
        "loops: {steps: 4, chains: 1, tasks: [continue], seed_ids: [story-short]}\n"
    )
    study = load_study(path)
    with Store(study.store_path()) as st:
        res = run_loops(study, st, show_progress=False)
        frame = read_steps(st, "empty")
    assert (res.generated, res.empty, res.failed, res.finished) == (4, 2, 0, 1)
    assert list(frame["text"].iloc[1:]) == ["", "back", "", "back"]
    code, out = mc("loop", path)
    assert code == 0 and "4 already in the store" in out, out


@pytest.mark.slow
def test_study_with_loops_and_report_only(tmp_path):
    """A loops-only study's report holds its loops; it is kept while the chains are unchanged and
    rewritten when they grow."""
    with FakeOpenAIServer() as server:
        extra = "report: {path: r.html}"
        path = loop_study(tmp_path, server.base_url, steps=2, chains=1, mix="none", extra=extra)
        code, out = mc("study", path, "-q")
        assert code == 0 and "[2/2] report" in out and "wrote" in out and (tmp_path / "r.html").is_file(), out
        code, out = mc("study", path, "-q")
        assert code == 0 and "all 8 chains complete" in out and "unchanged since it was written" in out, out
        path = loop_study(tmp_path, server.base_url, steps=3, chains=1, mix="none", extra=extra)
        code, out = mc("study", path, "-q")
        assert code == 0 and "8 steps generated, 16 already in the store" in out and "report: wrote" in out, out
