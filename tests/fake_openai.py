"""A real, local OpenAI-compatible chat-completions server for tests and benchmarks.

A mock of the client would test our assumptions about the client; a socket-level server tests
what actually happens on the wire: retries, timeouts, dropped connections, concurrency. Every
answer is a pure function of (messages, seed, choice index), so a test can check each generation
without knowing which attempt produced it, and failures are drawn per request so retries can
succeed.

Usage::

    with FakeOpenAIServer(latency=0.05, fail_rate=0.2) as server:
        spec = ModelSpec(name="m", backend="openai", model="fake",
                         params={"base_url": server.base_url, "api_key_env": None})
        ...
        assert server.counts["ok"] > 0
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAILURE_KINDS = ("429", "500", "slow", "drop")


def prompt_hash(messages: list[dict[str, Any]]) -> str:
    """Short hash of the last user message: enough to tell prompts apart in a test."""
    last = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    if not isinstance(last, str):
        last = json.dumps(last, sort_keys=True)
    return hashlib.sha256(last.encode("utf-8")).hexdigest()[:12]


def expected_text(messages: list[dict[str, Any]], seed: int | None, choice: int = 0) -> str:
    """The text the server produces. Choice 0 carries no suffix so that the first choice of a
    native-n request equals the single answer for the same seed, mirroring seed + i sampling."""
    text = f"answer to {prompt_hash(messages)} seed {seed}"
    return text if choice == 0 else f"{text} choice {choice}"


def _count_words(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content") or "").split()) for m in messages)


class _Server(ThreadingHTTPServer):
    # A burst of concurrent connects must not be refused by a short listen backlog, or the
    # benchmark would measure the server instead of the client.
    request_queue_size = 1024
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeOpenAIServer


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as real servers do; without it every request pays a
    # TCP handshake and the client's pool is never exercised.
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections hold a thread each; let them go eventually.
    timeout = 30
    # Headers and body go out in separate writes; with Nagle on, the second waits for the
    # client's delayed ACK (~40 ms), which would be billed to the backend in the benchmark.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - quiet: tests read counters, not logs
        pass

    def _send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (TimeoutError, BrokenPipeError, ConnectionResetError, OSError):
            # The client gave up (a timed-out request); nothing to answer.
            self.close_connection = True

    def _error(self, status: int, message: str, *, param: str | None = None, headers=None) -> None:
        kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
            status, "server_error"
        )
        self._send_json(status, {"error": {"message": message, "type": kind, "param": param, "code": None}}, headers)

    def do_GET(self):
        fake = self.server.fake
        if self.path.split("?")[0].rstrip("/").endswith("/models"):
            fake._count("models")
            self._send_json(
                200,
                {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in fake.models]},
            )
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self):
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self.path.split("?")[0].rstrip("/").endswith("/chat/completions"):  # a gateway's ?api-key= may follow
            self._error(404, f"no route {self.path}")
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            fake._count("400")
            self._error(400, "request body is not JSON")
            return
        fake._record(body, self.headers.get("Authorization"))

        if fake.api_key is not None:
            auth = self.headers.get("Authorization") or ""
            given = auth.removeprefix("Bearer ")
            if given != fake.api_key:
                fake._count("401")
                # Echo the key, as some servers do, so tests can check it is redacted.
                self._error(401, f"Incorrect API key provided: {given}")
                return

        failure = fake._draw_failure()
        if failure == "drop":
            fake._count("drop")
            # Close without a byte of response: the client sees a dropped connection.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if failure == "slow":
            fake._count("slow")
            time.sleep(fake.slow_s)
            self._send_json(200, fake._completion(body))
            return
        if fake.latency:
            time.sleep(fake.latency)
        if failure == "429":
            fake._count("429")
            self._error(429, "Rate limit reached, slow down", headers={"Retry-After": fake._retry_after()})
            return
        if failure == "500":
            fake._count("500")
            self._error(500, "internal error (injected)")
            return

        model = body.get("model")
        if fake.models and model not in fake.models:
            fake._count("404")
            self._error(404, f"The model `{model}` does not exist")
            return
        temperature = body.get("temperature")
        if temperature is not None and not (0.0 <= float(temperature) <= 2.0):
            fake._count("400")
            self._error(400, f"temperature must be between 0 and 2, got {temperature}", param="temperature")
            return
        n = int(body.get("n") or 1)
        if n > 1 and not fake.n_supported:
            fake._count("400")
            fake._count("400_n")
            self._error(400, "n > 1 is not supported: 'n' must be 1", param="n")
            return
        fake._count("ok")
        self._send_json(200, fake._completion(body))


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 (a free port) in a background thread.

    Parameters
    ----------
    latency: seconds each request takes (slept in its handler thread, so requests overlap).
    fail_rate: probability that a request fails; the kind is drawn from ``failure_kinds``.
    slow_s: how long a "slow" failure waits before answering (set it past the client's timeout).
    n_supported: if false, n > 1 is rejected with a 400 that names ``n``.
    max_choices: if set, at most this many choices are returned whatever n asks (servers that
        silently ignore n, like Ollama).
    top_logprobs: the distribution (token -> probability) returned as the first position's
        top_logprobs when a request asks for logprobs.
    api_key: if set, requests must carry it as a bearer token (401 otherwise).
    models: if non-empty, the model ids that exist (404 for others).
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        fail_rate: float = 0.0,
        failure_kinds: tuple[str, ...] = FAILURE_KINDS,
        slow_s: float = 3.0,
        retry_after: tuple[str, ...] = ("0", "1"),
        n_supported: bool = True,
        max_choices: int | None = None,
        top_logprobs: Mapping[str, float] | None = None,
        api_key: str | None = None,
        models: tuple[str, ...] = (),
        seed: int = 0,
    ):
        unknown = set(failure_kinds) - set(FAILURE_KINDS)
        if unknown:
            raise ValueError(f"unknown failure kinds {sorted(unknown)}; known: {FAILURE_KINDS}")
        self.latency = latency
        self.fail_rate = fail_rate
        self.failure_kinds = tuple(failure_kinds)
        self.slow_s = slow_s
        self.retry_after_values = tuple(retry_after)
        self.n_supported = n_supported
        self.max_choices = max_choices
        self.top_logprobs = dict(top_logprobs or {"A": 0.6, "B": 0.3, "C": 0.1})
        self.api_key = api_key
        self.models = tuple(models)
        self._rng = random.Random(seed)
        # A second stream for Retry-After values, so that the failure kinds drawn do not depend on
        # how the threads' requests interleave (a loaded machine reorders them).
        self._hint_rng = random.Random(seed + 1)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ---- assertions helpers ----------------------------------------------------------------

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.requests.clear()
            self.auth_headers.clear()

    @property
    def failures(self) -> int:
        with self._lock:
            return sum(self.counts[k] for k in FAILURE_KINDS)

    expected_text = staticmethod(expected_text)

    # ---- internals (called from handler threads) -------------------------------------------

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def _record(self, body: dict[str, Any], auth: str | None) -> None:
        with self._lock:
            self.counts["requests"] += 1
            self.requests.append(body)
            self.auth_headers.append(auth)

    def _draw_failure(self) -> str | None:
        with self._lock:
            if self.fail_rate <= 0 or self._rng.random() >= self.fail_rate:
                return None
            return self._rng.choice(self.failure_kinds)

    def _retry_after(self) -> str:
        with self._lock:
            return self._hint_rng.choice(self.retry_after_values)

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages") or []
        seed = body.get("seed")
        n = int(body.get("n") or 1)
        if self.max_choices is not None:
            n = min(n, self.max_choices)
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        want_logprobs = bool(body.get("logprobs"))
        n_top = int(body.get("top_logprobs") or 0)
        ranked = sorted(self.top_logprobs.items(), key=lambda kv: -kv[1])
        choices = []
        completion_tokens = 0
        for i in range(n):
            if want_logprobs and max_tokens == 1 and ranked:
                words = [ranked[0][0]]  # a one-token answer is the most likely token
            else:
                words = expected_text(messages, seed, i).split()
            finish = "stop"
            if max_tokens is not None and len(words) > int(max_tokens):
                words, finish = words[: int(max_tokens)], "length"
            completion_tokens += len(words)
            choice: dict[str, Any] = {
                "index": i,
                "message": {"role": "assistant", "content": " ".join(words)},
                "finish_reason": finish,
                "logprobs": None,
            }
            if want_logprobs:
                top = [{"token": t, "logprob": math.log(p), "bytes": list(t.encode("utf-8"))} for t, p in ranked[:n_top]]
                first = words[0] if words else ""
                choice["logprobs"] = {
                    "content": [
                        {
                            "token": first,
                            "logprob": math.log(dict(ranked).get(first, 1.0)),
                            "bytes": list(first.encode("utf-8")),
                            "top_logprobs": top,
                        }
                    ],
                    "refusal": None,
                }
            choices.append(choice)
        prompt_tokens = _count_words(messages)
        return {
            "id": f"chatcmpl-{prompt_hash(messages)}-{seed}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


if __name__ == "__main__":  # handy for poking at it with curl
    import sys

    with FakeOpenAIServer(latency=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0) as s:
        print(s.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
