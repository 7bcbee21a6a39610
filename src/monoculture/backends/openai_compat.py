"""Any OpenAI-compatible chat-completions server: vLLM serve, Ollama, llama.cpp, hosted APIs.

Design notes (the why):

* Network calls are I/O-bound, so one event loop with bounded concurrency beats a thread pool;
  but the runner is synchronous, so the loop lives in a daemon thread owned by the backend and
  results cross back through a queue as they complete. A kill therefore loses at most the
  results of the runner's unwritten batch, never a finished generation waiting on a slow one.
* The client's own retries are off: ours add full jitter (many workers hitting a rate limit
  together must not retry in lockstep), honour Retry-After, and turn exhaustion into a failed
  Result instead of an exception, because a failure is data that the next run retries.
* Sampling n answers in one request (native n) is cheaper, but many servers ignore or reject
  n > 1. "auto" tries it and, on the first refusal, emulates n with one request per sample for
  the rest of this backend's life, using seed + i so each sample stays reproducible alone.
* The API key is read from the environment when the client is built and redacted from every
  error string: results and errors are stored in the study database and shared.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import queue
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from monoculture.backends.base import Backend, Job, LogprobsUnavailable, Result, best_logprobs
from monoculture.errors import UserError
from monoculture.retry import Again, Backoff, aretry, backoff_delay, retry_after_seconds  # noqa: F401 - backoff_delay: public here too
from monoculture.study import ModelSpec, Sampling
from monoculture.urls import public_url, scrub_text, url_secrets

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
# Servers without authentication still get a bearer token: the client insists on one, and some
# servers (llama.cpp) document this exact placeholder.
NO_KEY = "sk-no-key-required"
TOP_LOGPROBS = 20
# 408 (timeout), 409 (conflict, e.g. a model still loading) and 429 (rate limit) are the 4xx
# that a later identical request can pass; any other 4xx is a property of the request.
RETRYABLE_4XX = frozenset({408, 409, 429})
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# "n" as a word: a 400 that names it means the server refuses n > 1, not that the prompt is bad.
_MENTIONS_N = re.compile(r"(?<![\w])n(?![\w])")
_MAX_ERROR_CHARS = 300


# ---- helpers that do not need a backend ----------------------------------------------------


def match_candidates(top: Iterable[tuple[str, float]], candidates: Iterable[str]) -> dict[str, float]:
    """Map each candidate to the best logprob among tokens equal to it once stripped.

    Tokenizers often carry a leading space (" A") or offer several spellings; the max keeps the
    most likely spelling. Case-insensitive matches count only when no exact one exists, so "a"
    stands in for "A" only if the model never offered "A"."""
    top = [(str(tok).strip(), float(lp)) for tok, lp in top]
    out: dict[str, float] = {}
    for cand in candidates:
        target = cand.strip()
        hits = [lp for tok, lp in top if tok == target]
        if not hits:
            low = target.casefold()
            hits = [lp for tok, lp in top if tok.casefold() == low]
        out[cand] = max(hits) if hits else -math.inf
    return out


def _first_top_logprobs(choice: Any) -> list[tuple[str, float]] | None:
    lp = getattr(choice, "logprobs", None)
    content = getattr(lp, "content", None) if lp is not None else None
    if not content:
        return None
    first = content[0]
    top = getattr(first, "top_logprobs", None) or []
    pairs = [(t.token, t.logprob) for t in top if getattr(t, "token", None) is not None and t.logprob is not None]
    if not pairs and getattr(first, "token", None) is not None and first.logprob is not None:
        pairs = [(first.token, first.logprob)]
    return pairs or None


def _http_module():
    # openai 3.x ships on httpx2, 1.x on httpx; both have the same Limits.
    try:
        import httpx2 as http
    except ImportError:  # pragma: no cover - depends on the installed openai
        import httpx as http  # type: ignore[no-redef]  # the same Limits under either name
    return http


@dataclass
class APIFailure:
    """A failed request to an OpenAI-compatible server, read once for every caller (chat
    completions here, embeddings in monoculture.embed): whether an identical request can pass
    later, and the server's wait hint."""

    error: str
    retryable: bool
    status: int | None = None
    message: str = ""
    param: str | None = None
    hint: float | None = None


def api_failure(e: BaseException, *, timeout: float | None = None) -> APIFailure:
    import openai

    if isinstance(e, openai.APIStatusError):
        status = e.status_code
        message, param = _error_details(e)
        hint = retry_after_seconds(e.response.headers) if e.response is not None else None
        error = f"HTTP {status}: {message}" if message else f"HTTP {status}"
        return APIFailure(error, status in RETRYABLE_4XX or status >= 500, status, message, param, hint)
    if isinstance(e, openai.APITimeoutError):
        return APIFailure(f"timed out after {timeout:g} s" if timeout else "timed out", True)
    if isinstance(e, openai.APIConnectionError):
        cause = e.__cause__ or e.__context__
        return APIFailure(
            f"connection error ({type(cause).__name__}: {cause})" if cause is not None else "connection error", True
        )
    # a malformed answer: asking again will not fix it
    return APIFailure(f"{type(e).__name__}: {e}", False)


@dataclass
class _Outcome:
    """The end of one request after its retries: a response, or why there is none."""

    response: Any = None
    error: str | None = None
    status: int | None = None
    message: str = ""
    param: str | None = None
    attempts: int = 0
    latency_s: float | None = None
    elapsed_s: float = 0.0


class _LoopThread:
    """An event loop running forever in a daemon thread, so the sync API can submit coroutines
    and a client (whose connection pool is bound to one loop) can live across calls."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, cleanup=None) -> None:
        if cleanup is not None:
            try:
                self.submit(cleanup).result(timeout=5)
            except Exception:  # best effort: closing sockets must not mask the caller's error
                log.debug("closing the OpenAI client failed", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


# ---- the backend ---------------------------------------------------------------------------


class OpenAIBackend(Backend):
    """OpenAI-compatible chat completions over HTTP, with bounded concurrency and retries.

    ``spec.params``: ``base_url``, ``api_key_env`` (null/"none" for servers without keys),
    ``concurrency`` (8), ``timeout`` (60 s), ``max_retries`` (6), ``n_native`` (true, false or
    "auto"), ``logprobs`` (attach first-token logprobs to each Result).
    """

    name: ClassVar[str] = "openai"
    supports_logprobs: ClassVar[bool] = True
    default_api_key_env: ClassVar[str | None] = DEFAULT_KEY_ENV
    # ``server``: a label that stands for the server in the model's identity (see ModelSpec.identity).
    accepted_params: ClassVar[frozenset[str] | None] = frozenset(
        {"base_url", "server", "api_key_env", "concurrency", "timeout", "max_retries", "n_native", "logprobs"}
    )
    param_ranges: ClassVar[dict[str, tuple[float, float]]] = {
        "concurrency": (1, 1024),
        "timeout": (0.001, 86_400.0),
        "max_retries": (0, 100),
    }

    # Class attributes rather than params: params outside the study's transport list enter the
    # generation key, and backoff tuning must not change which results count as done.
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_after_cap: float = 300.0

    @classmethod
    def check_params(cls, spec: ModelSpec) -> None:
        who = f"model {spec.name!r}"
        p = dict(spec.params or {})
        if "api_key" in p:
            # Params are stored with every generation's key; a key there would be written to disk.
            raise UserError(
                f"{who}: do not put the API key in params; put it in an environment variable and name that variable with api_key_env"
            )
        super().check_params(spec)
        base_url = p.get("base_url")
        if base_url is not None and (not isinstance(base_url, str) or "://" not in base_url):
            raise UserError(f"{who}: params.base_url must be a URL such as http://localhost:8000/v1")
        cls._parse_key_env(p.get("api_key_env", DEFAULT_KEY_ENV), who)
        cls._parse_n_native(p.get("n_native", "auto"), who)
        if not isinstance(p.get("logprobs", False), bool):
            raise UserError(f"{who}: params.logprobs must be true or false, got {p['logprobs']!r}")

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        p = dict(spec.params or {})
        who = f"model {spec.name!r}"
        type(self).check_params(spec)
        self.base_url = str(p.get("base_url") or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self._url_secrets = url_secrets(self.base_url)
        self.api_key_env = self._parse_key_env(p.get("api_key_env", DEFAULT_KEY_ENV), who)
        if self.api_key_env is not None and not os.environ.get(self.api_key_env):
            raise UserError(
                f"{who} (backend openai, {spec.model}) needs an API key in the environment variable {self.api_key_env}, which is not set; "
                f"export it, or set params.api_key_env: null for a server that needs no key"
            )
        self.concurrency = self._int_param(p, "concurrency", 8, 1, who)
        self.timeout = self._float_param(p, "timeout", 60.0, who)
        self.max_retries = self._int_param(p, "max_retries", 6, 0, who)
        self.n_native = self._parse_n_native(p.get("n_native", "auto"), who)
        logprobs = p.get("logprobs", False)
        if not isinstance(logprobs, bool):
            raise UserError(f"{who}: params.logprobs must be true or false, got {logprobs!r}")
        self.want_logprobs = logprobs
        # None: not known yet ("auto" before the first n > 1 answer); False: emulate from now on.
        self._native_ok: bool | None = {"auto": None, True: True, False: False}[self.n_native]
        self._runner: _LoopThread | None = None
        self._runner_lock = threading.Lock()
        self._client: AsyncOpenAI | None = None
        self._sem: asyncio.Semaphore | None = None
        self._rng = random.Random()

    # ---- params ----------------------------------------------------------------------------

    @staticmethod
    def _parse_key_env(value: Any, who: str) -> str | None:
        if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"}):
            return None
        if not isinstance(value, str) or not _ENV_NAME.match(value):
            # Do not echo the value: a common mistake is pasting the key itself here.
            raise UserError(
                f"{who}: params.api_key_env must be the name of an environment variable (letters, digits, _), not the key itself"
            )
        return value

    @staticmethod
    def _parse_n_native(value: Any, who: str) -> bool | str:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"auto", "true", "false"}:
            v = value.strip().lower()
            return "auto" if v == "auto" else v == "true"
        raise UserError(f'{who}: params.n_native must be true, false or "auto", got {value!r}')

    @staticmethod
    def _int_param(p: dict, key: str, default: int, minimum: int, who: str) -> int:
        value = p.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise UserError(f"{who}: params.{key} must be an integer >= {minimum}, got {value!r}")
        return value

    @staticmethod
    def _float_param(p: dict, key: str, default: float, who: str) -> float:
        value = p.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0) or not math.isfinite(value):
            raise UserError(f"{who}: params.{key} must be a positive number of seconds, got {value!r}")
        return float(value)

    def _api_key(self) -> str:
        if self.api_key_env is None:
            return NO_KEY
        return os.environ.get(self.api_key_env, "")

    def _redact(self, text: str) -> str:
        key = self._api_key()
        if key and key != NO_KEY and len(key) >= 4:
            text = text.replace(key, "***")
        text = re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)
        text = scrub_text(text, self._url_secrets)
        text = " ".join(text.split())
        return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"

    def __repr__(self) -> str:
        return f"OpenAIBackend(name={self.spec.name!r}, model={self.spec.model!r}, base_url={public_url(self.base_url)!r}, api_key_env={self.api_key_env!r}, concurrency={self.concurrency})"

    # ---- loop and client -------------------------------------------------------------------

    def _loop(self) -> _LoopThread:
        with self._runner_lock:
            if self._runner is None:
                self._runner = _LoopThread(f"openai-{self.spec.name}")
            return self._runner

    async def _ensure_client(self):
        if self._client is None:
            from openai import AsyncOpenAI, DefaultAsyncHttpxClient

            http = _http_module()
            # The semaphore bounds requests; the pool only needs to keep that many warm.
            limits = http.Limits(max_connections=None, max_keepalive_connections=max(self.concurrency, 8))
            # The client appends paths to base_url as text, so a query in it (a gateway's
            # ?api-key=...) goes in default_query, which it sends with every request.
            parts = urlsplit(self.base_url)
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            base_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) if query else self.base_url
            self._client = AsyncOpenAI(
                api_key=self._api_key(),
                base_url=base_url,
                timeout=self.timeout,
                max_retries=0,
                default_query=query or None,
                http_client=DefaultAsyncHttpxClient(limits=limits, timeout=self.timeout),
            )
            self._sem = asyncio.Semaphore(self.concurrency)
        return self._client

    async def _aclose(self) -> None:
        client, self._client, self._sem = self._client, None, None
        if client is not None:
            await client.close()

    def close(self) -> None:
        with self._runner_lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop(self._aclose())

    # ---- one request, with retries ---------------------------------------------------------

    def backoff(self) -> Backoff:
        """This backend's retry policy (read at each call: tests shorten ``backoff_base``)."""
        return Backoff(max_retries=self.max_retries, base=self.backoff_base, cap=self.backoff_cap, hint_cap=self.retry_after_cap)

    async def _call(self, **kwargs: Any) -> _Outcome:
        client = await self._ensure_client()
        sem = self._sem
        assert sem is not None
        start = time.perf_counter()

        async def attempt(n: int):
            async with sem:  # held for the request only, not while waiting to retry
                t0 = time.perf_counter()
                try:
                    response = await client.chat.completions.create(model=self.spec.model, **kwargs)
                except Exception as e:  # noqa: BLE001 - api_failure sorts out every failure, and a bug costs one sample
                    failure = api_failure(e, timeout=self.timeout)
                    return Again(failure.error, hint=failure.hint, detail=failure) if failure.retryable else failure
                now = time.perf_counter()
                return _Outcome(response=response, attempts=n, latency_s=now - t0, elapsed_s=now - start)

        out, attempts = await aretry(attempt, self.backoff(), rng=self._rng)
        if isinstance(out, _Outcome):
            return out
        failure: APIFailure = out.detail if isinstance(out, Again) else out
        tries = f"after {attempts} attempts" if attempts > 1 else "after 1 attempt" if failure.retryable else "not retried"
        return _Outcome(
            error=self._redact(f"{failure.error} ({tries})"),
            status=failure.status,
            message=self._redact(failure.message),
            param=failure.param,
            attempts=attempts,
            elapsed_s=time.perf_counter() - start,
        )

    def _request_args(self, messages: list[dict[str, str]], sampling: Sampling, *, seed: int, n: int = 1) -> dict[str, Any]:
        args: dict[str, Any] = {
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            # Always explicit: a server default would make results depend on the server.
            "max_tokens": sampling.max_tokens,
            "seed": seed,
        }
        if sampling.stop:
            args["stop"] = list(sampling.stop)
        if n > 1:
            args["n"] = n
        if self.want_logprobs:
            args["logprobs"] = True
            args["top_logprobs"] = TOP_LOGPROBS
        return args

    @staticmethod
    def _rejects_n(outcome: _Outcome) -> bool:
        if outcome.status not in (400, 422):
            return False
        return outcome.param == "n" or bool(_MENTIONS_N.search(outcome.message))

    def _result(
        self,
        key: str,
        index: int,
        choice: Any,
        outcome: _Outcome,
        *,
        n_mode: str,
        prompt_tokens,
        completion_tokens,
        meta: dict[str, Any],
    ) -> Result:
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        meta = {"attempts": outcome.attempts, **meta}
        model = getattr(outcome.response, "model", None)
        if model and model != self.spec.model:
            meta["served_model"] = model  # hosted APIs resolve aliases to dated snapshots
        fingerprint = getattr(outcome.response, "system_fingerprint", None)
        if fingerprint:
            meta["system_fingerprint"] = fingerprint
        refusal = getattr(message, "refusal", None)
        if refusal:
            meta["refusal"] = refusal
        pairs = _first_top_logprobs(choice) if self.want_logprobs else None
        return Result(
            key=key,
            sample_index=index,
            # No content (a refusal, a filter, a budget spent on reasoning) is an answer too.
            text=content if content is not None else "",
            finish_reason=getattr(choice, "finish_reason", None),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=outcome.latency_s,
            n_mode=n_mode,
            logprobs=best_logprobs(pairs) if pairs is not None else None,
            meta=meta,
        )

    def _failed(self, key: str, index: int, outcome: _Outcome, n_mode: str) -> Result:
        meta: dict[str, Any] = {"attempts": outcome.attempts}
        if outcome.status is not None:
            meta["status"] = outcome.status
        return Result(
            key=key, sample_index=index, error=outcome.error or "request failed", latency_s=None, n_mode=n_mode, meta=meta
        )

    # ---- jobs ------------------------------------------------------------------------------

    async def _native(self, job: Job, emit) -> bool:
        """Try all of a job's samples in one request; False means "emulate instead"."""
        n = len(job.sample_indices)
        outcome = await self._call(
            **self._request_args(job.messages, job.sampling, seed=job.seed_for(job.sample_indices[0]), n=n)
        )
        if outcome.response is None:
            if self._rejects_n(outcome):
                if self._native_ok is not False:
                    log.info(
                        "%s: server refused n=%d (%s); emulating n with one request per sample",
                        self.spec.name,
                        n,
                        outcome.message,
                    )
                self._native_ok = False
                return False
            for key, i in zip(job.keys, job.sample_indices):
                emit(self._failed(key, i, outcome, "native"))
            return True
        choices = sorted(outcome.response.choices or [], key=lambda c: getattr(c, "index", 0) or 0)
        if len(choices) < n:
            # The server ignored n (Ollama does): the one answer it gave came from a request whose
            # n was never honoured, so redo the job the emulated way rather than mix modes.
            if self._native_ok is not False:
                log.info(
                    "%s: asked for n=%d, got %d choices; emulating n with one request per sample", self.spec.name, n, len(choices)
                )
            self._native_ok = False
            return False
        self._native_ok = True
        usage = getattr(outcome.response, "usage", None)
        p_tok = getattr(usage, "prompt_tokens", None)
        c_tok = getattr(usage, "completion_tokens", None)
        meta = {
            # Usage is reported per request; each sample saw the whole prompt, so prompt_tokens is
            # the request's, and completion tokens are split evenly (summing to the request's).
            "usage_scope": "request",
            "request_n": n,
            "request_prompt_tokens": p_tok,
            "request_completion_tokens": c_tok,
            "completion_tokens_split": "even",
        }
        for pos, (key, i) in enumerate(zip(job.keys, job.sample_indices)):
            share = None if c_tok is None else c_tok // n + (1 if pos < c_tok % n else 0)
            emit(
                self._result(
                    key, i, choices[pos], outcome, n_mode="native", prompt_tokens=p_tok, completion_tokens=share, meta=dict(meta)
                )
            )
        return True

    async def _emulated(self, job: Job, emit) -> None:
        n_mode = "emulated" if len(job.sample_indices) > 1 else "single"

        async def one(key: str, i: int) -> None:
            try:
                outcome = await self._call(**self._request_args(job.messages, job.sampling, seed=job.seed_for(i)))
                if outcome.response is None:
                    emit(self._failed(key, i, outcome, n_mode))
                    return
                choices = outcome.response.choices or []
                if not choices:
                    emit(self._failed(key, i, _Outcome(error="response has no choices", attempts=outcome.attempts), n_mode))
                    return
                usage = getattr(outcome.response, "usage", None)
                emit(
                    self._result(
                        key,
                        i,
                        choices[0],
                        outcome,
                        n_mode=n_mode,
                        prompt_tokens=getattr(usage, "prompt_tokens", None),
                        completion_tokens=getattr(usage, "completion_tokens", None),
                        meta={},
                    )
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug costs one sample, not the run
                emit(
                    Result(key=key, sample_index=i, error=self._redact(f"internal error: {type(e).__name__}: {e}"), n_mode=n_mode)
                )

        await asyncio.gather(*(one(k, i) for k, i in zip(job.keys, job.sample_indices)))

    async def _run_job(self, job: Job, emit) -> None:
        done: set[int] = set()

        def out(r: Result) -> None:
            done.add(r.sample_index)
            emit(r)

        try:
            if len(job.sample_indices) > 1 and self._native_ok is not False:
                if await self._native(job, out):
                    return
            await self._emulated(job, out)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never let one job end the run: report what is missing
            msg = self._redact(f"internal error: {type(e).__name__}: {e}")
            for key, i in zip(job.keys, job.sample_indices):
                if i not in done:
                    emit(Result(key=key, sample_index=i, error=msg))

    async def _run_all(self, jobs: list[Job], emit, finished: threading.Event) -> None:
        tasks: set[asyncio.Task] = set()
        try:
            await self._ensure_client()
            # Jobs in flight are bounded too (twice the request limit keeps the pipe full while
            # some jobs sleep in backoff) so a million prompts do not become a million tasks.
            slots = asyncio.Semaphore(self.concurrency * 2)

            async def guarded(job: Job) -> None:
                try:
                    await self._run_job(job, emit)
                finally:
                    slots.release()

            for job in jobs:
                await slots.acquire()
                task = asyncio.ensure_future(guarded(job))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*list(tasks))
        except BaseException:
            for t in list(tasks):
                t.cancel()
            await asyncio.gather(*list(tasks), return_exceptions=True)
            raise
        finally:
            finished.set()

    def generate(self, jobs: Iterable[Job]) -> Iterator[Result]:
        # Materialised here, in the caller's thread: a lazy iterable (a database cursor) must not
        # be advanced from the loop thread while the caller writes results.
        jobs = [j for j in jobs if j.sample_indices]
        for j in jobs:
            if len(j.keys) != len(j.sample_indices):
                raise ValueError(f"job for prompt {j.prompt_key!r} has {len(j.keys)} keys for {len(j.sample_indices)} samples")
        if not jobs:
            return
        results: queue.Queue = queue.Queue()
        end = object()
        finished = threading.Event()
        future = self._loop().submit(self._run_all(jobs, results.put, finished))
        future.add_done_callback(lambda _f: results.put(end))
        try:
            while (item := results.get()) is not end:
                yield item
            if not future.cancelled() and (exc := future.exception()) is not None:
                raise exc
        finally:
            if not future.done():
                # The caller stopped early (closed the generator, or was killed): stop requests
                # rather than let them run on and spend quota.
                future.cancel()
                finished.wait(timeout=10)

    # ---- logprobs --------------------------------------------------------------------------

    async def _first_token(
        self, messages: list[dict[str, str]], candidates: list[str], assistant_prefix: str
    ) -> dict[str, float]:
        msgs = list(messages)
        extra: dict[str, Any] = {}
        if assistant_prefix:
            # Chat APIs have no standard way to continue an assistant turn; vLLM's
            # continue_final_message is the most widely implemented. Servers that reject it fail
            # loudly rather than silently answer a different question.
            msgs.append({"role": "assistant", "content": assistant_prefix})
            extra["extra_body"] = {"continue_final_message": True, "add_generation_prompt": False}
        outcome = await self._call(
            messages=msgs, temperature=0.0, max_tokens=1, logprobs=True, top_logprobs=TOP_LOGPROBS, **extra
        )
        if outcome.response is None:
            raise RuntimeError(f"model {self.spec.name!r}: first-token logprobs request failed: {outcome.error}")
        choices = outcome.response.choices or []
        pairs = _first_top_logprobs(choices[0]) if choices else None
        if pairs is None:
            raise LogprobsUnavailable(f"model {self.spec.name!r}: the server at {public_url(self.base_url)} returned no logprobs")
        return match_candidates(pairs, candidates)

    def first_token_logprobs(
        self, messages: list[dict[str, str]], candidates: list[str], *, assistant_prefix: str = ""
    ) -> dict[str, float]:
        return self._loop().submit(self._first_token(messages, list(candidates), assistant_prefix)).result()


def _error_details(e: Any) -> tuple[str, str | None]:
    """The server's own message and offending param, without the client's "Error code" prefix."""
    body = getattr(e, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            msg = inner.get("message")
            param = inner.get("param")
            if isinstance(msg, str):
                return msg, param if isinstance(param, str) else None
        elif isinstance(inner, str):
            return inner, None
    elif isinstance(body, str):
        return body, None
    return str(getattr(e, "message", "") or ""), None
