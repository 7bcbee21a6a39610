"""TransformersBackend on tiny local models (built in tests/tiny_models.py, no hub access)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the transformers extra (torch) is not installed")
pytest.importorskip("transformers", reason="the transformers extra is not installed")

from monoculture.backends import create_backend  # noqa: E402
from monoculture.backends.base import Job  # noqa: E402
from monoculture.backends.hf_transformers import TransformersBackend  # noqa: E402
from monoculture.backends.local_common import (  # noqa: E402
    apply_stop,
    candidate_token_ids,
    encode_prompt,
    engine_seed,
    render_chat,
    usable_cpus,
)
from monoculture.errors import UserError  # noqa: E402
from monoculture.study import ModelSpec, Sampling  # noqa: E402
from tiny_models import cached_tiny_model  # noqa: E402

KINDS = ["qwen2", "llama"]
PROMPTS = [
    "Which answer is correct: A, B, C or D?",
    "hi",
    "Write a short poem about the sea, the wind and the stars, in the style of an old sailor.",
]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="module", params=KINDS)
def backend(request, tiny_dir):
    path = cached_tiny_model(request.param, seed=0, cache_dir=tiny_dir)
    # one thread: tiny models gain nothing from more, and tests often share a busy machine
    b = create_backend(
        ModelSpec(name=request.param, backend="transformers", model=str(path), params={"batch_size": 4, "n_threads": 1})
    )
    yield b
    b.close()


def _job(prompt: str, indices, sampling: Sampling, tag: str = "", system: str | None = None) -> Job:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return Job(
        messages=messages, sample_indices=list(indices), keys=[f"{tag}{prompt[:8]}#{i}" for i in indices], sampling=sampling
    )


def _by_key(results):
    out = {}
    for r in results:
        assert r.key not in out, f"key {r.key} yielded twice"
        out[r.key] = r
    return out


SAMPLED = Sampling(temperature=0.8, top_p=0.95, max_tokens=10, seed=7)


def test_registry_and_params(backend):
    assert isinstance(backend, TransformersBackend)
    assert backend.supports_logprobs
    assert backend.tokenizer.padding_side == "left"
    assert backend.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if backend.device.type == "cpu":
        assert torch.get_num_threads() <= usable_cpus()
    # the checkpoint's own sampling defaults (tiny qwen ships repetition_penalty=1.3) are dropped
    gc = backend.model.generation_config
    assert not gc.do_sample and gc.repetition_penalty in (None, 1.0) and gc.top_k in (None, 50)


def test_batch_k3_every_key_once_and_reproducible_per_sample(backend):
    jobs = [_job(p, [0, 1, 2], SAMPLED) for p in PROMPTS]
    results = _by_key(backend.generate(jobs))
    assert set(results) == {k for j in jobs for k in j.keys}
    for r in results.values():
        assert r.ok, r.error
        assert r.text, f"empty text for {r.key}"
        assert r.finish_reason in ("stop", "length")
        assert 1 <= r.completion_tokens <= SAMPLED.max_tokens
        assert r.prompt_tokens > 0 and r.latency_s > 0
        assert r.n_mode == "single" and r.meta["prompt_format"] == "chat_template"
        if r.finish_reason == "length":
            assert r.completion_tokens == SAMPLED.max_tokens

    # different seeds usually differ
    for j in jobs:
        assert len({results[k].text for k in j.keys}) >= 2

    # sample 2 alone, in a batch of one, equals sample 2 generated alongside 0 and 1 and other prompts
    for j in jobs:
        alone = list(backend.generate([_job(j.messages[0]["content"], [2], SAMPLED)]))
        assert len(alone) == 1 and alone[0].text == results[j.keys[2]].text

    # and with a different batch composition (sample 1 of the short prompt next to a long prompt)
    mixed = [_job(PROMPTS[2], [5], SAMPLED), _job(PROMPTS[1], [1], SAMPLED)]
    again = _by_key(backend.generate(mixed))
    assert again[mixed[1].keys[0]].text == results[jobs[1].keys[1]].text


def test_same_seed_same_text_new_seed_new_text(backend):
    job = _job(PROMPTS[0], [0, 1, 2], SAMPLED)
    a = [r.text for r in sorted(backend.generate([job]), key=lambda r: r.sample_index)]
    b = [r.text for r in sorted(backend.generate([job]), key=lambda r: r.sample_index)]
    assert a == b
    other = _job(PROMPTS[0], [0, 1, 2], SAMPLED.model_copy(update={"seed": 1000}))
    c = [r.text for r in sorted(backend.generate([other]), key=lambda r: r.sample_index)]
    assert c != a


def _manual_greedy(backend, messages, n):
    """Reference decoding without generate(): argmax of a full forward pass each step."""
    text, fmt = render_chat(backend.tokenizer, messages)
    ids = encode_prompt(backend.tokenizer, text, fmt)
    new = []
    with torch.no_grad():
        for _ in range(n):
            logits = backend.model(input_ids=torch.tensor([ids + new], device=backend.device)).logits[0, -1]
            t = int(logits.argmax())
            new.append(t)
            if t in backend.eos_token_ids:
                break
    return new


def test_greedy_matches_reference_and_left_padding(backend):
    greedy = Sampling(temperature=0, max_tokens=8, seed=0)
    jobs = [_job(p, [0, 1, 2], greedy) for p in PROMPTS]
    results = _by_key(backend.generate(jobs))
    assert len(results) == 9
    for j in jobs:
        texts = {results[k].text for k in j.keys}
        assert len(texts) == 1, "greedy samples of one prompt must be identical"
        ref = _manual_greedy(backend, j.messages, greedy.max_tokens)
        body = [t for t in ref if t not in backend.eos_token_ids]
        assert results[j.keys[0]].text == backend.tokenizer.decode(body, skip_special_tokens=True)
        assert results[j.keys[0]].completion_tokens == len(ref)
    # the short prompt was padded (batched with longer ones) yet decodes as if alone:
    # with right padding, or wrong positions, this breaks
    widths = {len(encode_prompt(backend.tokenizer, *render_chat(backend.tokenizer, j.messages))) for j in jobs}
    assert len(widths) == 3


GREEDY12 = Sampling(temperature=0, max_tokens=12, seed=0)


def _greedy_answers(backend):
    return [next(iter(backend.generate([_job(p, [0], GREEDY12)]))) for p in PROMPTS]


# Three tests, not one: the stop-string check may have to skip (a tiny model's greedy answer can
# hold no usable stop string), and a skip must not take the max_tokens checks with it.


def test_greedy_finish_reasons_and_token_counts(backend):
    for r in _greedy_answers(backend):
        assert r.ok and r.finish_reason in ("stop", "length")
        assert r.finish_reason != "length" or r.completion_tokens == GREEDY12.max_tokens
        # "stop" without a stop string is the model's end-of-turn token, which is counted
        assert r.finish_reason != "stop" or r.completion_tokens >= 1


def test_max_tokens_caps_sampled_answers(backend):
    short = Sampling(temperature=0.8, max_tokens=3, seed=3)
    results = list(backend.generate([_job(p, [0, 1], short) for p in PROMPTS]))
    assert len(results) == 6
    for r in results:
        assert r.ok and r.completion_tokens <= 3
        # "length" means the cap was reached; "stop" may come on the last allowed token (an
        # end-of-turn token is counted), so it only bounds the count
        assert r.finish_reason != "length" or r.completion_tokens == 3


def test_sampled_answers_never_contain_a_stop_string(backend):
    common = Sampling(temperature=1.0, max_tokens=12, seed=5, stop=[" ", "e"])
    results = list(backend.generate([_job(p, [0, 1, 2], common) for p in PROMPTS]))
    assert len(results) == 9
    for r in results:
        assert r.ok and " " not in r.text and "e" not in r.text


def test_stop_string_cuts_the_greedy_answer_where_it_starts(backend):
    prompt, full = max(zip(PROMPTS, _greedy_answers(backend)), key=lambda pa: len(pa[1].text))
    assert len(full.text) >= 4
    # a stop string taken from the middle of the greedy answer
    for start in range(2, len(full.text) - 1):
        stop = full.text[start : start + 2]
        if stop.strip() and full.text.find(stop) == start:
            break
    else:
        pytest.skip("no usable stop string in the greedy answer")
    stopped = next(iter(backend.generate([_job(prompt, [0], GREEDY12.model_copy(update={"stop": [stop]}))])))
    assert stopped.text == full.text[:start]
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens <= full.completion_tokens


def test_chat_template_applied_without_double_bos(backend):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    text, fmt = render_chat(backend.tokenizer, messages)
    assert fmt == "chat_template"
    assert "Be brief." in text and text.rstrip().endswith(("assistant", "<|end_header_id|>"))
    ids = encode_prompt(backend.tokenizer, text, fmt)
    bos = backend.tokenizer.bos_token_id
    if bos is not None:
        assert ids.count(bos) == 1 and ids[0] == bos
    r = next(iter(backend.generate([_job("hi", [0], SAMPLED, system="Be brief.")])))
    assert r.prompt_tokens == len(ids)


def test_plain_fallback_without_template(tiny_dir):
    path = cached_tiny_model("qwen2", seed=1, cache_dir=tiny_dir, chat_template=False)
    with create_backend(ModelSpec(name="base", backend="transformers", model=str(path), params={"n_threads": 1})) as b:
        r = next(iter(b.generate([_job("hi", [0], SAMPLED)])))
        assert r.ok and r.meta["prompt_format"] == "plain"
        text, fmt = render_chat(b.tokenizer, [{"role": "user", "content": "hi"}])
        assert fmt == "plain" and text == "user: hi\n\nassistant:"
    assert b.model is None


def test_first_token_logprobs_match_manual_forward(backend):
    messages = [{"role": "user", "content": PROMPTS[0]}]
    cands = ["A", "B", "C", "D"]
    for prefix in ("", "Answer:"):
        got = backend.first_token_logprobs(messages, cands, assistant_prefix=prefix)
        assert set(got) == set(cands)
        text, fmt = render_chat(backend.tokenizer, messages)
        ids = encode_prompt(backend.tokenizer, text + prefix, fmt)
        with torch.no_grad():
            logits = backend.model(input_ids=torch.tensor([ids], device=backend.device)).logits[0, -1]
        lp = torch.log_softmax(logits.float(), -1)
        for c in cands:
            assert math.isfinite(got[c]) and got[c] <= 0
            firsts = [backend.tokenizer.encode(v, add_special_tokens=False)[0] for v in (c, " " + c)]
            # a first token that is a bare space (" C" -> " ", "C" in this vocabulary) says
            # nothing about the candidate and is not counted
            firsts = [t for t in firsts if backend.tokenizer.decode([t]).strip()]
            assert got[c] == pytest.approx(max(float(lp[t]) for t in firsts), abs=1e-5)
        assert len(set(got.values())) == 4


def test_different_models_differ(tiny_dir):
    paths = [cached_tiny_model("llama", seed=s, cache_dir=tiny_dir) for s in (0, 1)]
    texts = []
    for i, p in enumerate(paths):
        with create_backend(ModelSpec(name=f"m{i}", backend="transformers", model=str(p), params={"n_threads": 1})) as b:
            texts.append([r.text for r in b.generate([_job(PROMPTS[0], [0], Sampling(temperature=0, max_tokens=8))])])
    assert texts[0] != texts[1]


def test_engine_seed_mixes_model_prompt_and_sample():
    spec_a = ModelSpec(name="a", backend="transformers", model="x/a")
    spec_b = ModelSpec(name="b", backend="transformers", model="x/b")
    j1, j2 = _job("p1", [0, 1], SAMPLED), _job("p2", [0, 1], SAMPLED)
    seeds = {engine_seed(s, j, i) for s in (spec_a, spec_b) for j in (j1, j2) for i in (0, 1)}
    assert len(seeds) == 8
    assert engine_seed(spec_a, j1, 1) == engine_seed(spec_a, _job("p1", [1], SAMPLED), 1)
    assert 0 <= engine_seed(spec_a, j1, 0, bits=31) < 2**31


def test_missing_model_path_is_a_user_error(tmp_path):
    for ref in (str(tmp_path / "nope"), "./definitely-not-here"):
        with pytest.raises(UserError, match="does not exist"):
            create_backend(ModelSpec(name="m", backend="transformers", model=ref))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="cannot load model"):
        create_backend(ModelSpec(name="m", backend="transformers", model=str(empty)))
    with pytest.raises(UserError, match="dtype"):
        create_backend(ModelSpec(name="m", backend="transformers", model=str(empty), params={"dtype": "int3"}))


def test_failed_batch_becomes_error_results(backend, monkeypatch):
    calls = {"n": 0}
    real = backend.model.generate

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(backend.model, "generate", flaky)
    jobs = [_job(p, [0, 1, 2], SAMPLED, tag="f") for p in PROMPTS]  # 9 rows, batch_size 4: 3 batches
    results = _by_key(backend.generate(jobs))
    assert len(results) == 9
    failed = [r for r in results.values() if not r.ok]
    assert len(failed) == 4 and all("RuntimeError: boom" in r.error for r in failed)
    assert sum(r.ok for r in results.values()) == 5

    bad = Job(messages=[{"role": "user"}], sample_indices=[0], keys=["bad"], sampling=SAMPLED)
    out = list(backend.generate([bad, _job("hi", [0], SAMPLED, tag="g")]))
    assert len(out) == 2
    assert {r.key: r.ok for r in out}["bad"] is False


def test_helpers():
    assert apply_stop("hello world", ["o w", "l"]) == ("he", True)
    assert apply_stop("hello", ["x", ""]) == ("hello", False)

    class SpaceTok:
        """SentencePiece-like: ' A' starts with a bare space piece."""

        vocab = {"A": 5, "▁": 9}

        def __call__(self, text, add_special_tokens=False):
            ids = ([9] if text.startswith(" ") else []) + [5]
            return {"input_ids": ids}

        def decode(self, ids):
            return "" if ids == [9] else "A"

    assert candidate_token_ids(SpaceTok(), "A") == [5]


def test_tiny_builders(tmp_path):
    """The builders other test modules rely on: seeded and loadable by the real loaders."""
    from tiny_models import build_tiny_llama, build_tiny_sentence_transformer

    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    paths = [build_tiny_sentence_transformer(tmp_path / f"st{s}", seed=s) for s in (0, 1)]
    build_tiny_llama(tmp_path / "llama", seed=0)
    vecs = []
    for p in paths:
        model = st.SentenceTransformer(str(p), device="cpu")
        v = model.encode(["The quick brown fox.", "Which answer is correct?"])
        assert v.shape == (2, 32)
        assert abs(float((v[0] ** 2).sum()) - 1.0) < 1e-4  # normalised
        vecs.append(v)
    assert abs(vecs[0] - vecs[1]).max() > 1e-3, "different seeds must give different models"
