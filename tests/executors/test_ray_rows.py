"""The Ray executor's row functions and processors, without a cluster: what each row asks the
server or engine for, and how each answer (or error) becomes store rows."""

from __future__ import annotations

import json

import pytest

from monoculture.backends.base import Job
from monoculture.study import ExecutorSection, ModelSpec, Sampling

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'monoculture[ray]')")

from monoculture.executors.ray import RayExecutor, Unit, _outcome, _payload, _vllm_outcome, _vllm_preprocess  # noqa: E402

S = Sampling(temperature=0.7, top_p=0.9, max_tokens=8, seed=5, stop=["\n\n"])
MSG = [{"role": "user", "content": "Why?"}]


def _spec(backend: str = "openai", **params) -> ModelSpec:
    base = {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "none"} if backend == "openai" else {}
    return ModelSpec(
        name="m", backend=backend, model="fake" if backend == "openai" else "/tmp/no-such-model", params={**base, **params}
    )


def _job() -> Job:
    return Job(messages=MSG, sample_indices=[1, 3], keys=["k1", "k3"], sampling=S, prompt_key="p")


def test_units_follow_the_backends_n_and_seeds():
    native = list(RayExecutor.units(_spec(), [_job()], S))
    assert [(u.keys, u.seed, u.mode) for u in native] == [(["k1", "k3"], 6, "native")]  # seed of the first missing sample
    per = list(RayExecutor.units(_spec(n_native=False), [_job()], S))
    assert [(u.keys, u.seed, u.mode) for u in per] == [(["k1"], 6, "emulated"), (["k3"], 8, "emulated")]
    assert [(u.keys, u.seed) for u in native[0].emulated(S.seed)] == [(["k1"], 6), (["k3"], 8)]
    vllm = list(RayExecutor.units(_spec("vllm"), [_job()], S))
    assert [u.keys for u in vllm] == [["k1"], ["k3"]] and len({u.seed for u in vllm}) == 2
    assert Unit.from_row(native[0].row()) == native[0]


def test_payload_carries_every_sampling_parameter_of_its_row():
    row = Unit(["k1", "k3"], [1, 3], "p", MSG, 6, "native").row()
    p = _payload(row, model="fake", sampling=S.key_params(), logprobs=True)["payload"]
    assert p == {
        "model": "fake",
        "messages": MSG,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 8,
        "seed": 6,
        "stop": ["\n\n"],
        "n": 2,
        "logprobs": True,
        "top_logprobs": 20,
    }
    single = _payload(Unit(["k1"], [1], "p", MSG, 6, "single").row(), model="fake", sampling=S.key_params(), logprobs=False)
    assert "n" not in single["payload"] and "logprobs" not in single["payload"]


def _out(row_unit: Unit, response) -> tuple[str, list[dict]]:
    o = _outcome({**row_unit.row(), "http_response": response}, logprobs=False)
    return o["status"], json.loads(o["results"])


def test_outcomes_answers_errors_and_refused_n():
    u = Unit(["k1", "k3"], [1, 3], "p", MSG, 6, "native")
    choices = [{"index": 1, "message": {"content": "b"}, "finish_reason": "length"}, {"index": 0, "message": {"content": "a"}}]
    status, res = _out(u, {"choices": choices, "usage": {"prompt_tokens": 4, "completion_tokens": 5}, "model": "fake"})
    assert status == "ok" and [(r["key"], r["text"], r["completion_tokens"]) for r in res] == [("k1", "a", 3), ("k3", "b", 2)]
    assert res[1]["finish_reason"] == "length"
    assert _out(u, {"choices": choices[:1]})[0] == "emulate"  # n ignored
    refused = {"error": {"message": "'n' must be 1", "type": "invalid_request_error", "param": "n"}}
    assert _out(u, refused)[0] == "emulate"
    status, res = _out(u, {"error": {"message": "internal error", "type": "server_error"}})
    assert status == "retry" and res[0]["error"] == "server_error: internal error"
    status, res = _out(u, {"error": {"message": "temperature too high", "type": "invalid_request_error", "param": "temperature"}})
    assert status == "final" and len(res) == 2


def test_vllm_rows():
    row = Unit(["k1"], [1], "p", MSG, 123, "single").row()
    pre = _vllm_preprocess(row, sampling=S.key_params())
    assert pre == {
        "messages": MSG,
        "sampling_params": {"n": 1, "temperature": 0.7, "top_p": 0.9, "max_tokens": 8, "stop": ["\n\n"], "seed": 123},
    }
    greedy = _vllm_preprocess(row, sampling={**S.key_params(), "temperature": 0.0})["sampling_params"]
    assert "seed" not in greedy and greedy["top_p"] == 1.0
    out = json.loads(
        _vllm_outcome({**row, "generated_text": "hi", "num_input_tokens": 3, "num_generated_tokens": 8}, max_tokens=8)["results"]
    )
    assert out == [
        {"key": "k1", "sample_index": 1, "text": "hi", "finish_reason": "length", "prompt_tokens": 3, "completion_tokens": 8}
    ]


@pytest.fixture
def local_ray():
    """Building a processor creates Ray's telemetry actor, which needs a cluster: a small one,
    stopped afterwards unless it was there already."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.mark.slow
def test_processors_build_at_the_pinned_api(local_ray):
    # The pinned API: the engine processor is assembled (chat template, tokenize, engine,
    # detokenize) without vLLM installed; it runs on GPU machines only.
    proc = RayExecutor(ExecutorSection(kind="ray"), shards=None)._processor(_spec("vllm", max_model_len=256), S)  # type: ignore[arg-type]
    assert "vLLMEngineStage" in proc.stages
    http = RayExecutor(ExecutorSection(kind="ray", concurrency=3), shards=None)._processor(_spec(), S)  # type: ignore[arg-type]
    assert list(http.stages) == ["HttpRequestStage"] and http.config.concurrency == (3, 3)
