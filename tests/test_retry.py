"""The one retry module (monoculture.retry): wait hints, backoff, the loop, and the clients that
use it (chat backend and Hub client have their own tests; the embeddings client is tested here
against a local server)."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from monoculture.errors import UserError
from monoculture.retry import Again, Backoff, backoff_delay, retry, retry_after_seconds


def test_every_wait_hint_is_read_and_the_longest_wins():
    assert retry_after_seconds({"Retry-After": "7"}) == 7.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # the precise form of one hint
    assert retry_after_seconds({"RateLimit": '"api";r=0;t=55'}) == 55.0
    assert retry_after_seconds({"RateLimit": '"api";r=3;t=55'}) is None  # requests left: no reason to wait
    assert retry_after_seconds({"ratelimit-remaining": "0", "ratelimit-reset": "4"}) == 4.0
    assert retry_after_seconds({"Retry-After": "3", "RateLimit": '"api";r=0;t=10'}) == 10.0
    assert retry_after_seconds({"Retry-After": "soon", "RateLimit": "garbage"}) is None
    assert retry_after_seconds(None) is None


def test_backoff_full_and_proportional_jitter():
    rng = random.Random(0)
    full = [backoff_delay(3, base=1.0, cap=60.0, rng=rng) for _ in range(500)]
    assert 0 <= min(full) < 0.5 and 3.5 < max(full) <= 4.0  # uniform in [0, 4]
    prop = [backoff_delay(3, base=1.0, cap=60.0, rng=rng, jitter=0.25) for _ in range(500)]
    assert 3.0 <= min(prop) < 3.2 and 4.8 < max(prop) <= 5.0  # 4 +- 25%
    assert all(backoff_delay(30, base=1.0, cap=8.0, rng=rng, jitter=0.25) <= 8.0 for _ in range(100))
    assert Backoff(hint_pad=0.5, hint_cap=10).delay(1, hint=2.0) == 2.5
    assert Backoff(hint_pad=0.5, hint_cap=10).delay(1, hint=600.0) == 10


def test_retry_loop_counts_attempts_and_never_sleeps_after_the_last():
    sleeps: list[float] = []
    waits: list[tuple[str, float]] = []
    calls: list[int] = []

    def always_busy(n):
        calls.append(n)
        return Again("busy", hint=1.0, kind="429")

    out, n = retry(always_busy, Backoff(max_retries=3), sleep=sleeps.append, on_wait=lambda k, s: waits.append((k, s)))
    assert isinstance(out, Again) and n == 4 and calls == [1, 2, 3, 4]
    assert sleeps == [1.0, 1.0, 1.0] and waits == [("429", 1.0)] * 3
    out, n = retry(lambda n: "ok" if n == 3 else Again("x"), Backoff(max_retries=5, base=0.001), sleep=sleeps.append)
    assert (out, n) == ("ok", 3)

    def broken(n):
        raise ValueError("not retried")

    with pytest.raises(ValueError):
        retry(broken, Backoff(), sleep=sleeps.append)


# ---- the embeddings client -----------------------------------------------------------------


class _Embeddings(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv.requests += 1
        if srv.requests <= srv.busy:
            return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
        if srv.bad:
            return self._send(400, {"error": {"message": "bad input"}})
        data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(body["input"])]
        return self._send(
            200, {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}}
        )

    def _send(self, status, obj, headers=None):
        raw = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture
def embeddings_server(monkeypatch):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Embeddings)
    srv.requests, srv.busy, srv.bad = 0, 0, False
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{srv.server_address[1]}/v1")
    yield srv
    srv.shutdown()
    srv.server_close()


def test_openai_embedder_retries_rate_limits_with_the_shared_policy(embeddings_server):
    from monoculture.embed import OpenAIEmbedder

    embeddings_server.busy = 2
    e = OpenAIEmbedder("emb")
    X = e.embed(["ab", "", "abcd"])
    assert X.tolist() == [[2.0, 1.0], [1.0, 1.0], [4.0, 1.0]]
    assert embeddings_server.requests == 3  # two 429s, then the answer: the client's own retries are off


def test_openai_embedder_gives_up_with_a_clear_error(embeddings_server):
    from monoculture.embed import OpenAIEmbedder

    embeddings_server.busy = 100
    e = OpenAIEmbedder("emb")
    e.backoff = Backoff(max_retries=2, base=0.001)
    with pytest.raises(UserError, match=r"did not answer after 3 attempts \(HTTP 429"):
        e.embed(["x"])
    assert embeddings_server.requests == 3


def test_openai_embedder_does_not_retry_a_bad_request(embeddings_server):
    import openai

    from monoculture.embed import OpenAIEmbedder

    embeddings_server.bad = True
    with pytest.raises(openai.BadRequestError):
        OpenAIEmbedder("emb").embed(["x"])
    assert embeddings_server.requests == 1
