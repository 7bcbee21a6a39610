"""The collect phase end to end: real backends, real servers, a real store.

Every test checks every row, and that a rerun generates nothing."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fake_openai import FakeOpenAIServer
from monoculture.collect import run_study
from monoculture.store import Store
from monoculture.study import load_study


def write_suite(path: Path, n: int) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"q{i:03d}", "text": f"Question number {i}: what do you think?", "language": "en"}) + "\n")
    return path


def openai_study(
    tmp_path: Path, base_url: str, *, n_prompts: int, k: int, batch_size: int = 8, concurrency: int = 8, timeout: float = 5.0
) -> Path:
    suite = write_suite(tmp_path / "suite.jsonl", n_prompts)
    study = tmp_path / "study.yaml"
    study.write_text(
        textwrap.dedent(
            f"""
            name: wire
            models:
              - name: fake-a
                backend: openai
                model: fake-a
                params: {{base_url: "{base_url}", api_key_env: none, concurrency: {concurrency}, timeout: {timeout}, max_retries: 8}}
              - name: fake-b
                backend: openai
                model: fake-b
                params: {{base_url: "{base_url}", api_key_env: none, concurrency: {concurrency}, timeout: {timeout}, max_retries: 8, n_native: false}}
            suites: ["{suite}"]
            samples: {k}
            batch_size: {batch_size}
            sampling: {{temperature: 0.7, max_tokens: 32, seed: 11}}
            """
        )
    )
    return study


def rows(store_path: Path) -> dict[str, tuple]:
    with Store(store_path, read_only=True) as st:
        df = st.generations(include_failed=True)
        dupes = st.con.execute("SELECT count(*) - count(DISTINCT key) FROM generations").fetchone()[0]
    assert dupes == 0
    return {r.key: (r.model, r.prompt_id, r.sample_index, r.text, r.error) for r in df.itertuples()}


def test_study_over_flaky_server_completes_exactly_once(tmp_path):
    with FakeOpenAIServer(latency=0.01, fail_rate=0.2, slow_s=2.5, seed=3) as server:
        study = load_study(openai_study(tmp_path, server.base_url, n_prompts=30, k=3, timeout=1.0))
        with Store(study.store_path()) as st:
            stats = run_study(study, st, show_progress=False)
        failures = server.failures
        assert failures > 0, "the server injected no failures: the test would prove nothing"
        got = rows(study.store_path())
        assert stats.failed == 0 and stats.generated == 2 * 30 * 3
        assert len(got) == 2 * 30 * 3
        by = {}
        for model, pid, i, text, error in got.values():
            assert error is None
            by[(model, pid, i)] = text
        assert len(by) == 180  # every (model, prompt, sample) present exactly once
        for (model, pid, i), text in by.items():
            n = int(pid[1:])
            messages = [{"role": "user", "content": f"Question number {n}: what do you think?"}]
            if model == "fake-b":  # emulated: one request per sample, seed + i
                assert text == server.expected_text(messages, 11 + i)
            else:  # native n: one request with the first seed, choices in order
                assert text == server.expected_text(messages, 11, i)
        with Store(study.store_path()) as st:
            modes = dict(st.con.execute("SELECT model, any_value(n_mode) FROM generations GROUP BY model").fetchall())
        assert modes == {"fake-a": "native", "fake-b": "emulated"}

        server.reset_counts()
        with Store(study.store_path()) as st:
            again = run_study(study, st, show_progress=False)
        assert again.generated == 0 and again.skipped == 180
        assert sum(server.counts.values()) == 0, "a rerun must not send a single request"


def test_changing_max_tokens_makes_new_keys(tmp_path):
    with FakeOpenAIServer() as server:
        path = openai_study(tmp_path, server.base_url, n_prompts=3, k=2)
        study = load_study(path)
        with Store(study.store_path()) as st:
            run_study(study, st, show_progress=False)
        path.write_text(path.read_text().replace("max_tokens: 32", "max_tokens: 33"))
        study2 = load_study(path)
        with Store(study2.store_path()) as st:
            stats = run_study(study2, st, show_progress=False)
        assert stats.generated == 12 and stats.skipped == 0
        assert len(rows(study.store_path())) == 24


def _run_cli(study: Path, store: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "monoculture.cli", "run", str(study), "--store", str(store), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_sigkill_at_random_points_then_resume_matches_uninterrupted(tmp_path):
    """Kill `monoculture run` with SIGKILL several times mid-flight; the resumed table must equal
    an uninterrupted run's: same keys, same texts, no duplicates, nothing missing."""
    rng = random.Random(7)
    with FakeOpenAIServer(latency=0.08) as server:
        study = openai_study(tmp_path, server.base_url, n_prompts=40, k=2, batch_size=4, concurrency=2)
        reference = tmp_path / "reference.duckdb"
        p = _run_cli(study, reference)
        assert p.wait(timeout=240) == 0, p.stderr.read()
        want = rows(reference)
        assert len(want) == 160

        killed = tmp_path / "killed.duckdb"
        kills = 0
        for _ in range(4):
            served = sum(server.counts.values())
            p = _run_cli(study, killed)
            # kill only once generation is under way (the server has answered a few requests),
            # at a random moment after that, so kills land mid-batch as well as between batches
            deadline = time.monotonic() + 60
            while p.poll() is None and sum(server.counts.values()) < served + 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.6))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills += 1
        assert kills >= 3, "the runs finished before they could be killed: the test would prove nothing"
        partial = rows(killed) if killed.exists() else {}
        assert partial.items() <= want.items()  # what survived a kill is exactly what a clean run wrote
        p = _run_cli(study, killed)
        assert p.wait(timeout=240) == 0, p.stderr.read()
        got = rows(killed)
    assert got.keys() == want.keys()
    assert {k: v[3] for k, v in got.items()} == {k: v[3] for k, v in want.items()}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from tiny_models import build_tiny_llama, build_tiny_qwen2

    d = tmp_path_factory.mktemp("tiny")
    return build_tiny_qwen2(d / "qwen", seed=1), build_tiny_llama(d / "llama", seed=2)


def test_two_tiny_transformers_models_k3(tmp_path, tiny_models):
    qwen, llama = tiny_models
    suite = write_suite(tmp_path / "suite.jsonl", 4)
    study_file = tmp_path / "tiny.yaml"
    study_file.write_text(
        textwrap.dedent(
            f"""
            name: tiny
            models:
              - {{name: tiny-qwen, backend: transformers, model: "{qwen}", params: {{batch_size: 4}}, attributes: {{family: qwen}}}}
              - {{name: tiny-llama, backend: transformers, model: "{llama}", params: {{batch_size: 4}}, attributes: {{family: llama}}}}
            suites: ["{suite}"]
            samples: 3
            sampling: {{temperature: 0.9, max_tokens: 12, seed: 5, system_prompt: "Be brief."}}
            """
        )
    )
    study = load_study(study_file)
    with Store(study.store_path()) as st:
        stats = run_study(study, st, show_progress=False)
        df = st.generations("tiny")
        attrs = st.model_attributes()
    assert stats.generated == 24 and stats.failed == 0
    assert len(df) == 24
    assert set(df["model"]) == {"tiny-qwen", "tiny-llama"}
    assert sorted(df.groupby(["model", "prompt_id"]).sample_index.apply(sorted).map(tuple).unique()) == [(0, 1, 2)]
    for r in df.itertuples():
        assert r.error is None and isinstance(r.text, str)
        assert r.finish_reason in ("stop", "length")
        assert r.completion_tokens is not None and 0 < r.completion_tokens <= 12
        assert r.latency_s is not None and r.latency_s >= 0
    assert attrs["tiny-qwen"]["family"] == "qwen"
    # different seeds give different samples (a model that ignores seeds would repeat itself)
    assert df.groupby(["model", "prompt_id"])["text"].nunique().max() > 1
    with Store(study.store_path()) as st:
        again = run_study(study, st, show_progress=False)
    assert again.generated == 0 and again.skipped == 24
