"""Generation on a real local Ray cluster (``ray.init(num_cpus=2)``) through Ray Data's
``HttpRequestProcessorConfig``, against the local OpenAI-compatible server with 20% injected
faults, checked against the single-machine run on the same deterministic server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fake_openai import FakeOpenAIServer, prompt_hash
from monoculture.collect import run_study
from monoculture.store import Store
from monoculture.study import ExecutorSection, load_study

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'monoculture[ray]')")

pytestmark = pytest.mark.slow

SECRET = "sk-test-Zq8vY1-never-in-a-shard"
SEED = 11


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module: starting Ray costs seconds on a small machine."""
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def write_study(tmp: Path, base_url: str, *, n_prompts: int, store: str, two_models: bool = True, batch: int = 8) -> Path:
    suite = tmp / "suite.jsonl"
    with suite.open("w") as f:
        for i in range(n_prompts):
            f.write(json.dumps({"id": f"q{i:03d}", "text": f"Question number {i}: what do you think?", "language": "en"}) + "\n")
    common = f'base_url: "{base_url}", api_key_env: RAYTEST_KEY, timeout: 5, max_retries: 8'
    models = f"  - {{name: fake-a, backend: openai, model: fake-a, params: {{{common}}}}}\n"
    if two_models:
        models += f"  - {{name: fake-b, backend: openai, model: fake-b, params: {{{common}, n_native: false}}}}\n"
    path = tmp / f"{store}.yaml"
    path.write_text(
        f"name: scale\nmodels:\n{models}"
        + textwrap.dedent(
            f"""\
            suites: ["{suite}"]
            samples: 2
            batch_size: 8
            store: {store}.duckdb
            executor: {{kind: local, concurrency: 2, batch_size: {batch}}}
            sampling: {{temperature: 0.7, max_tokens: 32, seed: {SEED}}}
            """
        )
    )
    return path


def table(path: Path) -> list[tuple]:
    with Store(path, read_only=True) as st:
        return st.con.execute(
            "SELECT key, model, prompt_key, sample_index, text, finish_reason, error, n_mode FROM generations ORDER BY key"
        ).fetchall()


def test_ray_run_equals_single_machine_run(tmp_path, cluster, monkeypatch):
    monkeypatch.setenv("RAYTEST_KEY", SECRET)
    # Small planning chunks and dataset windows, so that a plan spans several datasets.
    monkeypatch.setattr("monoculture.collect.CHUNK_SAMPLES", 8)
    monkeypatch.setattr("monoculture.executors.ray.WINDOW", 10)
    with FakeOpenAIServer(latency=0.01, fail_rate=0.2, api_key=SECRET, slow_s=1.0) as server:
        local_study = load_study(write_study(tmp_path, server.base_url, n_prompts=12, store="local"))
        with Store(local_study.store_path()) as st:
            local_stats = run_study(local_study, st, show_progress=False)
        ray_study = load_study(write_study(tmp_path, server.base_url, n_prompts=12, store="ray"))
        server.reset_counts()
        with Store(ray_study.store_path()) as st:
            stats = run_study(ray_study, st, show_progress=False, executor=ExecutorSection(kind="ray", batch_size=6))
        assert server.failures > 0  # faults were injected on the Ray path too
        assert SECRET not in json.dumps(server.requests)  # the key travels in headers only
        assert all(h == f"Bearer {SECRET}" for h in server.auth_headers)
        # A rerun on Ray sends nothing.
        server.reset_counts()
        with Store(ray_study.store_path()) as st:
            again = run_study(ray_study, st, show_progress=False, executor=ExecutorSection(kind="ray"))
        assert server.counts["requests"] == 0 and again.generated == 0 and again.skipped == 48
    assert local_stats.generated == stats.generated == 48 and stats.failed == 0
    got, want = table(ray_study.store_path()), table(local_study.store_path())
    assert len(got) == len({r[0] for r in got}) == 48  # every generation exactly once
    assert got == want  # same keys, texts, finish reasons and n modes as on one machine
    assert {r[7] for r in got if r[1] == "fake-a"} == {"native"} and {r[7] for r in got if r[1] == "fake-b"} == {"emulated"}
    shards = sorted((tmp_path / "ray.duckdb.shards").iterdir())
    assert shards and all(p.name.endswith(".parquet.merged") for p in shards)
    rows = [r for p in shards for r in pq.read_table(p).to_pylist()]
    assert len(rows) == 48 and SECRET not in json.dumps(rows)


def _sent_keys(requests: list[dict], key_of: dict[tuple[str, int], str]) -> list[str]:
    """The generation keys a list of request bodies asked for (native n: seed .. seed + n - 1)."""
    out = []
    for body in requests:
        h, seed, n = prompt_hash(body["messages"]), int(body["seed"]), int(body.get("n") or 1)
        out += [key_of[(h, seed - SEED + j)] for j in range(n)]
    return out


def test_killed_driver_resumes_without_resending(tmp_path, cluster, monkeypatch):
    """SIGKILL the driver (a subprocess on the test's cluster) mid-run, rerun: the final table
    equals the single-machine one and nothing already stored is asked for again."""
    monkeypatch.setenv("RAYTEST_KEY", SECRET)
    env = {**os.environ, "RAYTEST_KEY": SECRET}
    cmd = [sys.executable, "-c", "from monoculture.cli import main; main()"]
    with FakeOpenAIServer(latency=0.25, fail_rate=0.2, api_key=SECRET, slow_s=1.0) as server:
        study_path = write_study(tmp_path, server.base_url, n_prompts=24, store="ray", two_models=False, batch=2)
        shards = tmp_path / "ray.duckdb.shards"
        run = [*cmd, "run", str(study_path), "--ray", "--ray-address", cluster, "-q"]
        proc = subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if shards.is_dir() and len([p for p in shards.iterdir() if p.name.endswith(".merged")]) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stdout.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        time.sleep(1.0)  # requests of the dead job's actors may still land at the server
        with Store(tmp_path / "ray.duckdb", read_only=True) as st:
            stored = {k for (k,) in st.con.execute("SELECT key FROM generations WHERE error IS NULL").fetchall()}
        # Shards written but not yet merged (killed between the two) count as stored too: the rerun merges them first.
        for p in shards.iterdir():
            if p.name.endswith(".parquet"):
                stored |= {r["key"] for r in pq.read_table(p).to_pylist() if r["error"] is None}
        assert 0 < len(stored) < 48
        server.reset_counts()
        done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        rerun_requests = list(server.requests)
        local = load_study(write_study(tmp_path, server.base_url, n_prompts=24, store="local", two_models=False))
        with Store(local.store_path()) as st:
            run_study(local, st, show_progress=False)
    got, want = table(tmp_path / "ray.duckdb"), table(tmp_path / "local.duckdb")
    assert len(got) == 48 and got == want
    key_of: dict[tuple[str, int], str] = {}
    with Store(tmp_path / "local.duckdb", read_only=True) as st:
        for key, i, text in st.con.execute("SELECT key, sample_index, text FROM generations").fetchall():
            key_of[(text.split()[2], i)] = key  # "answer to <prompt hash> seed <s>"
    again = _sent_keys(rerun_requests, key_of)
    assert again and not set(again) & stored  # only what was missing went out
