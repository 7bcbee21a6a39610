"""Retrying with backoff: one policy, one loop and one reading of a server's wait hints, for
every client that talks to a server (the OpenAI-compatible backend, the Hub client, the OpenAI
embeddings endpoint).

Why not the clients' own retries: ours add jitter (many workers that hit a rate limit together
must not retry in lockstep), honour every wait hint a server sends (``retry-after-ms``,
``Retry-After`` in seconds or as an HTTP date, and the IETF ``RateLimit`` headers the Hub sends),
can be observed and shortened in tests, and end in a value the caller decides about (a failed
Result that the next run retries, or an error that says what was kept) instead of an exception
from deep inside a library. Tenacity would do the looping, but not the hint parsing, and the
loop is a dozen lines.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timezone
from typing import Any


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        low = name.lower()
        for k, v in headers.items():
            if k.lower() == low:
                return v
    return value


def _seconds(raw: str | None, *, now: float | None) -> float | None:
    """Retry-After: a number of seconds, or an HTTP date."""
    if not raw:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
        return max(0.0, value) if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now_ts = time.time() if now is None else now
    return max(0.0, when.timestamp() - now_ts)


def _ratelimit_reset(headers: Mapping[str, str]) -> float | None:
    """Seconds until the quota resets, when the RateLimit headers say none is left."""
    value = _header(headers, "ratelimit")
    if value:
        # The IETF draft's structured header (draft-ietf-httpapi-ratelimit-headers-08 on), as the
        # Hub sends it: RateLimit: "api";r=0;t=55 (r: requests left, t: seconds until reset).
        for item in value.split(","):
            fields = dict(p.strip().split("=", 1) for p in item.split(";") if "=" in p)
            if fields.get("r", "").isdigit() and fields.get("t", "").isdigit():
                return float(fields["t"]) if int(fields["r"]) == 0 else None
    remaining = _header(headers, "ratelimit-remaining")  # the draft's earlier, separate headers
    reset = _header(headers, "ratelimit-reset")
    if remaining is not None and reset is not None and remaining.strip() == "0":
        try:
            return max(0.0, float(reset))
        except ValueError:
            return None
    return None


def retry_after_seconds(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, or None when it did not ask (or the values are
    unreadable). ``retry-after-ms`` is the precise form of ``Retry-After`` and wins over it; when
    ``RateLimit`` headers also name a wait, the longest wait is taken: retrying before any wait
    the server stated would only be refused again."""
    if not headers:
        return None
    hint = None
    ms = _header(headers, "retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
            if math.isfinite(value):
                hint = max(0.0, value)
        except ValueError:
            pass
    if hint is None:
        hint = _seconds(_header(headers, "retry-after"), now=now)
    reset = _ratelimit_reset(headers)
    if reset is not None:
        hint = reset if hint is None else max(hint, reset)
    return hint


def backoff_delay(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None, jitter: float | str = "full"
) -> float:
    """The wait after the ``attempt``-th failure (1-based): ``d = min(cap, base * 2**(attempt-1))``,
    then full jitter (uniform in [0, d]), which spreads a herd of workers that failed together
    best, or, with a fraction f, ``d * U(1-f, 1+f)`` (capped), for a lone client that should
    still wait about d."""
    r = rng or random
    d = min(cap, base * (2 ** max(0, attempt - 1)))
    if jitter == "full":
        return r.uniform(0.0, d)
    f = float(jitter)
    return min(cap, d * r.uniform(1.0 - f, 1.0 + f))


@dataclass(frozen=True)
class Backoff:
    """How a client retries: how often, how long between attempts, and how it treats a wait the
    server asked for (``hint_pad`` added, ``hint_cap`` at most)."""

    max_retries: int = 6
    base: float = 0.5
    cap: float = 30.0
    jitter: float | str = "full"
    hint_cap: float = 300.0
    hint_pad: float = 0.0

    def delay(self, attempt: int, hint: float | None = None, rng: random.Random | None = None) -> float:
        if hint is not None:
            return max(0.0, min(hint + self.hint_pad, self.hint_cap))
        return backoff_delay(attempt, base=self.base, cap=self.cap, rng=rng, jitter=self.jitter)


@dataclass
class Again:
    """What an attempt returns when a later identical attempt can pass: why (for the final
    error), the server's wait hint, a short kind for logs ("429", "network") and whatever the
    caller needs to build its error after the last attempt."""

    why: str
    hint: float | None = None
    kind: str | None = None
    detail: Any = None


def retry(
    attempt: Callable[[int], Any],
    policy: Backoff,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    on_wait: Callable[[str, float], None] | None = None,
) -> tuple[Any, int]:
    """Call ``attempt(n)`` for n = 1, 2, ... until it returns anything but :class:`Again`, or
    ``policy.max_retries`` retries are spent. Returns (the last value, attempts made): the value
    is an Again when every attempt failed. Exceptions from ``attempt`` are not retried."""
    n = 0
    while True:
        n += 1
        out = attempt(n)
        if not isinstance(out, Again) or n > policy.max_retries:
            return out, n
        wait = policy.delay(n, out.hint, rng)
        if on_wait is not None:
            on_wait(out.kind or out.why, wait)
        sleep(wait)


async def aretry(
    attempt: Callable[[int], Awaitable[Any]],
    policy: Backoff,
    *,
    rng: random.Random | None = None,
    on_wait: Callable[[str, float], None] | None = None,
) -> tuple[Any, int]:
    """:func:`retry` for coroutines; the waits are ``asyncio.sleep``, so other requests go on."""
    n = 0
    while True:
        n += 1
        out = await attempt(n)
        if not isinstance(out, Again) or n > policy.max_retries:
            return out, n
        wait = policy.delay(n, out.hint, rng)
        if on_wait is not None:
            on_wait(out.kind or out.why, wait)
        await asyncio.sleep(wait)
