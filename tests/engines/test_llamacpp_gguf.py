"""The real llama.cpp engine (llama-cpp-python) on a tiny GGUF written here (tiny_gguf.py) from
the tiny Qwen2 checkpoint, through our ``llamacpp`` backend, checked against the transformers
backend's rows of the same study: the same (prompt, sample index) pairs, no errors, finish
reasons, token counts, logprobs present, the main environment's keys; and the first-token
logprobs of both backends, which agree (the same float32 weights on the same prompt tokens).
Texts are not compared (two engines, two random streams; see the last test on greedy).

llama-cpp-python is an sdist compiled at install (scripts/setup_engines.sh); where it could not
be installed the test skips with the install's own failure message.
"""

from __future__ import annotations

import importlib.util
import json
import math
import textwrap
import time
from pathlib import Path

import pytest

from monoculture.backends import create_backend
from monoculture.backends.base import Job
from monoculture.collect import run_study
from monoculture.store import Store
from monoculture.study import ModelSpec, Sampling, load_study

pytest.importorskip("transformers", reason="the tiny model is built with transformers")

from engine_rows import stored_rows  # noqa: E402
from tiny_gguf import write_tiny_gguf  # noqa: E402

from tiny_models import cached_tiny_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FAILED = REPO / ".engines" / "llamacpp.failed"
N_PROMPTS, K, MAX_TOKENS = 3, 3, 12


def _require_llama_cpp() -> None:
    for module, what in (("llama_cpp", "llama-cpp-python"), ("gguf", "gguf")):
        if importlib.util.find_spec(module) is None:
            why = FAILED.read_text().strip() if FAILED.is_file() else "run scripts/setup_engines.sh"
            pytest.skip(f"{what} is not installed ({why})")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    _require_llama_cpp()
    root = tmp_path_factory.mktemp("llamacpp")
    model = cached_tiny_model("qwen2", seed=0, cache_dir=root / "models")
    return model, write_tiny_gguf(model, root / "tiny.gguf"), root


def _study(root: Path, model: Path, gguf: Path, temperature: float, name: str):
    suite = root / "suite.jsonl"
    texts = ["Which answer is correct?", "Write a short poem about the sea.", "Say hello."][:N_PROMPTS]
    suite.write_text("".join(json.dumps({"id": f"q{i}", "text": t, "language": "en"}) + "\n" for i, t in enumerate(texts)))
    f = root / f"{name}.yaml"
    f.write_text(
        textwrap.dedent(
            f"""
            name: {name}
            models:
              - name: tf
                backend: transformers
                model: "{model}"
                params: {{dtype: float32}}
              - name: ll
                backend: llamacpp
                model: "{gguf}"
                params: {{n_ctx: 512, n_threads: 2, logprobs: 3}}
            suites: ["{suite}"]
            samples: {K}
            sampling: {{temperature: {temperature}, top_p: 0.95, max_tokens: {MAX_TOKENS}, seed: 5}}
            store: "{root / (name + ".duckdb")}"
            """
        )
    )
    return load_study(f)


@pytest.mark.parametrize("temperature", [0.8, 0.0], ids=["sampled", "greedy"])
def test_llamacpp_study_against_transformers(tiny, temperature):
    model, gguf, root = tiny
    study = _study(root, model, gguf, temperature, f"t{int(temperature * 10)}")
    t0 = time.perf_counter()
    with Store(study.store_path()) as st:
        stats = run_study(study, st, show_progress=False)
    took = time.perf_counter() - t0
    assert stats.generated == 2 * N_PROMPTS * K and stats.failed == 0
    ref, got = stored_rows(study, "tf"), stored_rows(study, "ll")
    assert set(got) == set(ref) and len(got) == N_PROMPTS * K
    for pair, r in got.items():
        assert r["error"] is None and isinstance(r["text"], str), (pair, r["error"])
        # no upper bound: llama-cpp-python keeps decoding past max_tokens while the text ends in
        # an incomplete UTF-8 character (measured: 17 tokens for max_tokens 12 on this random model)
        assert r["finish_reason"] in ("stop", "length") and r["completion_tokens"] > 0
        assert ref[pair]["completion_tokens"] <= MAX_TOKENS
        lp = json.loads(r["logprobs"]) if isinstance(r["logprobs"], str) else r["logprobs"]
        assert lp and all(math.isfinite(v) and v <= 1e-6 for v in lp.values()), lp
    if temperature == 0:  # greedy: one answer per prompt, shared by its k samples
        assert all(len({got[(p, i)]["text"] for i in range(K)}) == 1 for p, _ in got)
    with Store(study.store_path()) as st:  # the keys: nothing left to plan
        assert run_study(study, st, show_progress=False).generated == 0
    print(f"llama.cpp + transformers study ({temperature=}): {2 * N_PROMPTS * K} rows in {took:.1f} s")


def test_llamacpp_sample_alone_and_first_token_logprobs(tiny):
    model, gguf, _ = tiny
    sampling = Sampling(temperature=0.8, top_p=0.9, max_tokens=8, seed=3)

    def job(indices):
        return Job(
            messages=[{"role": "user", "content": "Say hello."}],
            sample_indices=list(indices),
            keys=[f"k{i}" for i in indices],
            sampling=sampling,
        )

    spec = ModelSpec(name="l", backend="llamacpp", model=str(gguf), params={"n_ctx": 512, "n_threads": 2})
    with create_backend(spec) as b:
        results = {r.sample_index: r for r in b.generate([job([0, 1, 2])])}
        assert all(r.ok for r in results.values()) and len(results) == 3
        alone = next(iter(b.generate([job([1])])))
        assert alone.text == results[1].text, "a sample regenerated alone is the same sample"
        lp = b.first_token_logprobs([{"role": "user", "content": "A or B?"}], ["A", "B", "C", "D"])
        assert set(lp) == {"A", "B", "C", "D"} and all(math.isfinite(v) and v <= 0 for v in lp.values())
        assert sum(math.exp(v) for v in lp.values()) <= 1 + 1e-6
    # the same float32 weights on the same prompt tokens: the transformers backend scores the
    # candidates alike. (Greedy texts are not compared: a random model's near-tied logits flip
    # the argmax between the two engines' float sums within a few tokens, and llama.cpp drops
    # incomplete UTF-8 bytes where transformers writes U+FFFD.)
    with create_backend(ModelSpec(name="t", backend="transformers", model=str(model), params={"dtype": "float32"})) as t:
        ref = t.first_token_logprobs([{"role": "user", "content": "A or B?"}], ["A", "B", "C", "D"])
    assert lp == pytest.approx(ref, abs=1e-3)
