"""The OpenAI-compatible backend against a real local HTTP server (tests/fake_openai.py).

The server answers deterministically from (messages, seed, choice), so every test can check
each generation's text, not just that something came back."""

from __future__ import annotations

import math
import time
from collections import Counter
from email.utils import formatdate

import pytest

from fake_openai import FakeOpenAIServer, expected_text
from monoculture.backends import create_backend
from monoculture.backends.base import Job, Result
from monoculture.backends.openai_compat import OpenAIBackend, match_candidates
from monoculture.errors import UserError
from monoculture.retry import backoff_delay, retry_after_seconds
from monoculture.study import ModelSpec, Sampling

FAKE_KEY = "sk-test-Zq9SECRETkey-4f1c2a"


@pytest.fixture
def servers(fake_server):
    """Start servers on demand; all are stopped at the end of the test (tests/conftest.py)."""
    return fake_server


@pytest.fixture
def backends():
    made: list[OpenAIBackend] = []

    def make(server: FakeOpenAIServer, *, name: str = "fake-model", **params) -> OpenAIBackend:
        params = {"base_url": server.base_url, "api_key_env": None, **params}
        b = create_backend(ModelSpec(name=name, backend="openai", model="fake", params=params))
        b.backoff_base = 0.02  # keep tests fast; the schedule itself is tested separately
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def make_jobs(n_prompts: int, k: int, *, seed: int = 11, temperature: float = 0.7, **sampling) -> list[Job]:
    s = Sampling(seed=seed, temperature=temperature, **sampling)
    return [
        Job(
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": f"question number {p}"}],
            sample_indices=list(range(k)),
            keys=[f"p{p}-s{i}" for i in range(k)],
            sampling=s,
            prompt_key=f"p{p}",
        )
        for p in range(n_prompts)
    ]


def by_key(results: list[Result]) -> dict[str, Result]:
    counts = Counter(r.key for r in results)
    dupes = [k for k, c in counts.items() if c != 1]
    assert not dupes, f"keys yielded more than once: {dupes[:5]}"
    return {r.key: r for r in results}


def expected_for(job: Job, i: int, mode: str) -> str:
    """What the server produces for sample i of a job in each mode."""
    if mode == "native":
        first = job.sample_indices[0]
        return expected_text(job.messages, job.seed_for(first), job.sample_indices.index(i))
    return expected_text(job.messages, job.seed_for(i), 0)


# ---- 1. failures are retried until every sample is there ----------------------------------


@pytest.mark.parametrize("n_native", [False, "auto"])
def test_injected_failures_are_retried_and_every_sample_arrives_once(servers, backends, n_native):
    server = servers(latency=0.02, fail_rate=0.2, slow_s=1.6, seed=3)
    backend = backends(server, timeout=1.0, concurrency=16, max_retries=10, n_native=n_native)
    jobs = make_jobs(30, 3)

    results = list(backend.generate(jobs))

    got = by_key(results)
    assert len(results) == 90
    assert set(got) == {k for j in jobs for k in j.keys}
    mode = "emulated" if n_native is False else "native"
    for job in jobs:
        for key, i in zip(job.keys, job.sample_indices):
            r = got[key]
            assert r.error is None, r.error
            assert r.sample_index == i
            assert r.n_mode == mode
            assert r.text == expected_for(job, i, mode)
            assert r.finish_reason == "stop"
            assert r.prompt_tokens == 5  # "be brief" + "question number p"
            assert r.latency_s is not None and r.latency_s > 0
    # Failures really happened, and each was retried by the sample (or native job) it hit.
    needed = 90 if mode == "emulated" else 30
    assert server.failures >= 3
    assert server.counts["ok"] >= needed  # more only if a loaded machine timed out a good answer
    per_request = results if mode == "emulated" else [got[j.keys[0]] for j in jobs]
    retries = sum(r.meta["attempts"] - 1 for r in per_request)
    assert retries >= server.failures
    assert server.counts["requests"] == needed + retries
    if mode == "emulated":
        for kind in ("429", "500", "slow", "drop"):
            assert server.counts[kind] > 0, f"no {kind} failure was injected: {server.counts}"
        # every sample used its own seed: seed + i
        sent = Counter((r["messages"][-1]["content"], r["seed"]) for r in server.requests)
        for job in jobs:
            for i in job.sample_indices:
                assert sent[(job.messages[-1]["content"], job.seed_for(i))] >= 1


def test_retry_after_is_honoured(servers, backends):
    # Every request gets 429 with Retry-After: 1. With backoff jitter at zero, only the header
    # can make the client wait.
    server = servers(fail_rate=1.0, failure_kinds=("429",), retry_after=("1",))
    backend = backends(server, max_retries=1)
    backend.backoff_base = 0.0
    t0 = time.perf_counter()
    (r,) = list(backend.generate(make_jobs(1, 1)))
    elapsed = time.perf_counter() - t0
    assert elapsed >= 0.95
    assert server.counts["requests"] == 2
    assert r.error is not None and "429" in r.error and "2 attempts" in r.error
    assert r.text is None and not r.ok


def test_exhausted_retries_yield_an_error_result_not_an_exception(servers, backends):
    server = servers(fail_rate=1.0, failure_kinds=("500", "drop"))
    backend = backends(server, max_retries=2)
    results = list(backend.generate(make_jobs(3, 2)))
    assert len(results) == 6
    assert all(r.error and "3 attempts" in r.error for r in results)
    # native attempt: one request per job, three attempts each
    assert server.counts["requests"] == 3 * 3


# ---- 2. native n versus emulation ---------------------------------------------------------


def test_server_without_n_support_is_emulated_with_seed_plus_i(servers, backends):
    server = servers(n_supported=False)
    backend = backends(server, concurrency=2)  # n_native defaults to "auto"
    jobs = make_jobs(4, 3, seed=100)

    got = by_key(list(backend.generate(jobs)))

    for job in jobs:
        for key, i in zip(job.keys, job.sample_indices):
            assert got[key].n_mode == "emulated"
            assert got[key].text == expected_text(job.messages, 100 + i)
            assert got[key].ok
    multi = [r for r in server.requests if (r.get("n") or 1) > 1]
    assert 1 <= len(multi) <= 2 * 2  # only the jobs already in flight tried n > 1
    assert server.counts["400_n"] == len(multi)
    single_seeds = sorted(r["seed"] for r in server.requests if (r.get("n") or 1) == 1)
    assert single_seeds == sorted([100, 101, 102] * 4)

    # The refusal is remembered: a second run never asks for n > 1.
    server.reset_counts()
    got2 = by_key(list(backend.generate(make_jobs(2, 3, seed=100))))
    assert all(r.n_mode == "emulated" for r in got2.values())
    assert all((r.get("n") or 1) == 1 for r in server.requests)
    assert server.counts["requests"] == 6


def test_server_that_ignores_n_is_emulated(servers, backends):
    server = servers(max_choices=1)  # accepts n, returns one choice (like Ollama)
    backend = backends(server, concurrency=1)
    jobs = make_jobs(3, 2, seed=5)
    got = by_key(list(backend.generate(jobs)))
    for job in jobs:
        for key, i in zip(job.keys, job.sample_indices):
            assert got[key].n_mode == "emulated"
            assert got[key].text == expected_text(job.messages, 5 + i)


def test_server_with_n_support_is_native(servers, backends):
    server = servers(n_supported=True)
    backend = backends(server)
    jobs = make_jobs(5, 4, seed=20)
    got = by_key(list(backend.generate(jobs)))
    assert server.counts["requests"] == 5
    assert all(r["n"] == 4 and r["seed"] == 20 for r in server.requests)
    for job in jobs:
        for pos, key in enumerate(job.keys):
            r = got[key]
            assert r.n_mode == "native"
            assert r.text == expected_text(job.messages, 20, pos)
            assert r.meta["usage_scope"] == "request" and r.meta["request_n"] == 4
        # the completion-token split adds up to the request's usage
        total = sum(got[k].completion_tokens for k in job.keys)
        assert total == got[job.keys[0]].meta["request_completion_tokens"]


def test_native_n_maps_choices_onto_a_subset_of_sample_indices(servers, backends):
    server = servers()
    backend = backends(server, n_native=True)
    s = Sampling(seed=50)
    msgs = [{"role": "user", "content": "partial"}]
    job = Job(messages=msgs, sample_indices=[2, 5], keys=["a", "b"], sampling=s)
    got = by_key(list(backend.generate([job])))
    assert server.requests[0]["seed"] == 52 and server.requests[0]["n"] == 2
    assert got["a"].sample_index == 2 and got["a"].text == expected_text(msgs, 52, 0)
    assert got["b"].sample_index == 5 and got["b"].text == expected_text(msgs, 52, 1)


def test_n_native_false_always_emulates_and_single_samples_are_single(servers, backends):
    server = servers(n_supported=True)
    backend = backends(server, n_native=False)
    single = Job(messages=[{"role": "user", "content": "alone"}], sample_indices=[4], keys=["alone-4"], sampling=Sampling(seed=9))
    got = by_key(list(backend.generate(make_jobs(2, 3) + [single])))
    assert all((r.get("n") or 1) == 1 for r in server.requests)
    assert server.counts["requests"] == 7
    modes = Counter(r.n_mode for r in got.values())
    assert modes["single"] == 1 and modes["emulated"] == 6
    assert got["alone-4"].n_mode == "single" and got["alone-4"].text == expected_text(single.messages, 13)


def test_sampling_parameters_reach_the_server(servers, backends):
    server = servers()
    backend = backends(server)
    job = make_jobs(1, 1, seed=4, temperature=0.3, top_p=0.9, max_tokens=3, stop=["\n\n"])[0]
    (r,) = list(backend.generate([job]))
    req = server.requests[0]
    assert req["temperature"] == 0.3 and req["top_p"] == 0.9 and req["max_tokens"] == 3
    assert req["seed"] == 4 and req["stop"] == ["\n\n"] and req["model"] == "fake"
    assert req["messages"] == job.messages
    assert r.finish_reason == "length" and r.text == " ".join(expected_text(job.messages, 4).split()[:3])


# ---- 3. keys --------------------------------------------------------------------------------


def test_missing_key_variable_is_a_user_error_naming_it(monkeypatch):
    monkeypatch.delenv("MONO_TEST_OPENAI_KEY", raising=False)
    spec = ModelSpec(
        name="gpt-x",
        backend="openai",
        model="gpt-x-2025",
        params={"api_key_env": "MONO_TEST_OPENAI_KEY", "base_url": "http://127.0.0.1:9/v1"},
    )
    with pytest.raises(UserError) as e:
        create_backend(spec)
    assert "MONO_TEST_OPENAI_KEY" in str(e.value)
    assert "gpt-x" in str(e.value)


def test_default_key_variable_is_openai_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        create_backend(ModelSpec(name="m", backend="openai", model="gpt", params={}))


@pytest.mark.parametrize("bad", [{"api_key": FAKE_KEY}, {"api_key_env": FAKE_KEY}])
def test_key_in_params_is_refused_without_echoing_it(bad):
    # model_construct skips the study's own validation, so the backend's check is what is tested
    spec = ModelSpec.model_construct(name="m", backend="openai", model="gpt", revision=None, params=bad, sampling={})
    with pytest.raises(UserError) as e:
        OpenAIBackend(spec)
    assert FAKE_KEY not in str(e.value)


def test_key_is_sent_but_never_shown(servers, backends, monkeypatch):
    monkeypatch.setenv("MONO_TEST_OPENAI_KEY", FAKE_KEY)
    server = servers(api_key=FAKE_KEY)
    good = backends(server, api_key_env="MONO_TEST_OPENAI_KEY")
    ok = list(good.generate(make_jobs(2, 2)))
    assert all(r.ok for r in ok)
    assert all(h == f"Bearer {FAKE_KEY}" for h in server.auth_headers)

    # A server that rejects the key and echoes it back (some do) must not get it into results.
    server2 = servers(api_key="sk-the-right-one")
    bad = backends(server2, api_key_env="MONO_TEST_OPENAI_KEY")
    failed = list(bad.generate(make_jobs(2, 2)))
    assert all(r.error and "401" in r.error for r in failed)
    assert server2.counts["401"] == 2  # not retried
    # the server did echo it, so the redaction is what keeps it out
    for text in [repr(good), repr(bad), str(vars(good)), str(vars(bad))] + [repr(r) for r in ok + failed]:
        assert FAKE_KEY not in text
    assert "SECRET" not in " ".join(r.error for r in failed)


@pytest.mark.parametrize("key_env", [None, "none", "null"])
def test_servers_without_keys_get_a_dummy(servers, backends, monkeypatch, key_env):
    server = servers()
    backend = backends(server, api_key_env=key_env)
    (r,) = list(backend.generate(make_jobs(1, 1)))
    assert r.ok
    assert server.auth_headers[0].startswith("Bearer ") and len(server.auth_headers[0]) > len("Bearer ")


# ---- 4. non-retryable errors ----------------------------------------------------------------


def test_non_retryable_400_is_reported_once_per_sample(servers, backends):
    server = servers()
    backend = backends(server, max_retries=6, n_native=False)
    # temperature 3 is valid in a study but out of range for the server: a 400
    results = list(backend.generate(make_jobs(3, 2, temperature=3.0)))
    assert len(results) == 6
    for r in results:
        assert not r.ok and r.text is None
        assert "400" in r.error and "temperature" in r.error and "not retried" in r.error
        assert r.meta["attempts"] == 1 and r.meta["status"] == 400
    assert server.counts["requests"] == 6


def test_a_400_on_a_native_request_that_is_not_about_n_stays_an_error(servers, backends):
    server = servers()
    backend = backends(server)  # auto: tries native first
    results = list(backend.generate(make_jobs(2, 3, temperature=3.0)))
    assert len(results) == 6 and all(r.error and "temperature" in r.error for r in results)
    assert server.counts["requests"] == 2  # one native request per job, no fallback, no retry
    assert backend._native_ok is None


def test_unknown_model_404_is_not_retried(servers, backends):
    server = servers(models=("some-other-model",))
    backend = backends(server)
    (r,) = list(backend.generate(make_jobs(1, 1)))
    assert "404" in r.error and server.counts["requests"] == 1


# ---- 5. logprobs ---------------------------------------------------------------------------


def test_first_token_logprobs_returns_the_servers_distribution(servers, backends):
    dist = {"A": 0.45, " A": 0.05, "B": 0.3, "c": 0.15, "Other": 0.05}
    server = servers(top_logprobs=dist)
    backend = backends(server)
    msgs = [{"role": "user", "content": "Pick A, B, C or D."}]
    lp = backend.first_token_logprobs(msgs, ["A", "B", "C", "D"])
    assert lp["A"] == pytest.approx(math.log(0.45))  # max of "A" and " A"
    assert lp["B"] == pytest.approx(math.log(0.3))
    assert lp["C"] == pytest.approx(math.log(0.15))  # case-insensitive fallback to "c"
    assert lp["D"] == -math.inf
    req = server.requests[-1]
    assert req["max_tokens"] == 1 and req["logprobs"] is True and req["top_logprobs"] == 20 and req["temperature"] == 0


def test_results_carry_first_token_logprobs_when_asked(servers, backends):
    server = servers(top_logprobs={"A": 0.7, "B": 0.3})
    backend = backends(server, logprobs=True)
    results = list(backend.generate(make_jobs(2, 2)))
    for r in results:
        assert r.logprobs == pytest.approx({"A": math.log(0.7), "B": math.log(0.3)})
    plain = backends(server)
    assert all(r.logprobs is None for r in plain.generate(make_jobs(1, 1)))


def test_match_candidates_prefers_exact_case():
    top = [("a", -0.1), ("A", -2.0), (" B", -1.0), ("B", -3.0)]
    out = match_candidates(top, ["A", "B", "Z"])
    assert out == {"A": -2.0, "B": -1.0, "Z": -math.inf}


# ---- plumbing -------------------------------------------------------------------------------


def test_retry_after_parsing():
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "0"}) == 0.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = time.time()
    assert retry_after_seconds({"retry-after": formatdate(now + 30, usegmt=True)}, now=now) == pytest.approx(30, abs=1.5)
    assert retry_after_seconds({"retry-after": formatdate(now - 30, usegmt=True)}, now=now) == 0.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_backoff_is_full_jitter_and_capped():
    import random

    rng = random.Random(0)
    for attempt in range(1, 12):
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        draws = [backoff_delay(attempt, base=0.5, cap=4.0, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > 0.8 * ceiling and min(draws) < 0.2 * ceiling


def test_closing_the_generator_early_stops_the_requests(servers, backends):
    server = servers(latency=0.3)
    backend = backends(server, concurrency=4, n_native=False)
    gen = backend.generate(make_jobs(200, 1))
    first = next(gen)
    assert first.ok
    t0 = time.perf_counter()
    gen.close()
    assert time.perf_counter() - t0 < 2.0
    time.sleep(0.4)
    assert server.counts["requests"] <= 12  # nowhere near 200
    # the backend is still usable afterwards
    assert all(r.ok for r in backend.generate(make_jobs(2, 1)))


def test_bad_params_are_user_errors():
    for params in ({"concurrency": 0}, {"timeout": -1}, {"max_retries": "x"}, {"n_native": "sometimes"}, {"logprobs": "yes"}):
        with pytest.raises(UserError, match="params"):
            create_backend(ModelSpec(name="m", backend="openai", model="x", params={"api_key_env": None, **params}))


def test_registry_name():
    assert OpenAIBackend.name == "openai" and OpenAIBackend.supports_logprobs
