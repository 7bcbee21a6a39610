"""A small Hub API client that owns its pagination cursor.

``huggingface_hub.HfApi.list_models`` follows the Link header inside a generator and retries
inside ``http_backoff``, which is right for interactive use but wrong for a long crawl: the
cursor of the next page is never exposed, so a crash after page 40 of 60 restarts from page 1,
and its sleeps cannot be observed or shortened in tests. This client talks to the same
``/api/models`` endpoint with httpx, hands every page back together with its ``next`` URL (so the
caller can commit both in one transaction and resume from it), and honours the Hub's
``RateLimit`` headers on 429 (monoculture.retry, shared with the other clients).
The endpoint and token come from huggingface_hub, so ``HF_ENDPOINT`` and ``hf auth login`` work
as usual.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from monoculture.errors import UserError
from monoculture.retry import Again, Backoff, retry, retry_after_seconds

#: Fields the list endpoint can expand (``baseModels`` is only accepted by the single-model endpoint).
LIST_EXPAND = (
    "author",
    "createdAt",
    "lastModified",
    "downloads",
    "downloadsAllTime",
    "likes",
    "tags",
    "gated",
    "safetensors",
    "cardData",
    "library_name",
    "pipeline_tag",
    "sha",
)
INFO_EXPAND = LIST_EXPAND + ("baseModels", "childrenModelCount")


class HubUnavailable(UserError):
    """The Hub kept failing after all retries; what was fetched so far is kept for a resume."""


@dataclass
class Page:
    items: list[dict]
    url: str
    next_url: str | None


def default_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def default_token() -> str | None:
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001 - a missing or unreadable token just means anonymous access
        return None


#: The Hub's RateLimit headers and Retry-After are read by the one parser every client uses.
ratelimit_wait = retry_after_seconds


class HubClient:
    """GETs against the Hub API with retries, backoff and explicit cursors."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        max_retries: int = 6,
        base_wait: float = 1.0,
        max_wait: float = 600.0,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ):
        self.endpoint = (endpoint or default_endpoint()).rstrip("/")
        token = token if token is not None else default_token()
        headers = {"user-agent": "monoculture-ecosystem/0.1"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.http = httpx.Client(headers=headers, timeout=timeout, follow_redirects=True, transport=transport)
        self.max_retries, self.base_wait, self.max_wait, self.sleep = max_retries, base_wait, max_wait, sleep
        self.stats: dict[str, Any] = Counter()  # missing counts read 0; waited_s sums float seconds
        self.waits: list[tuple[str, float]] = []

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _wait(self, why: str, seconds: float) -> None:
        self.waits.append((why, seconds))
        self.stats["waited_s"] += seconds

    def get(self, url: str, params: Any = None) -> httpx.Response:
        # About base_wait * 2**n, +-25%: one client crawling, not a herd, so it need not spread
        # as widely as full jitter; a 429's own wait gets half a second of margin.
        policy = Backoff(
            max_retries=self.max_retries,
            base=self.base_wait,
            cap=self.max_wait,
            jitter=0.25,
            hint_cap=self.max_wait,
            hint_pad=0.5,
        )

        def attempt(n: int) -> httpx.Response | Again:
            self.stats["requests"] += 1
            try:
                r = self.http.get(url, params=params)
            except httpx.TransportError as e:  # dropped connection, reset, timeout, refused
                self.stats["network_errors"] += 1
                return Again(f"{type(e).__name__}: {e}", kind="network")
            if r.status_code == 429:
                self.stats["rate_limited"] += 1
                return Again("429 Too Many Requests", hint=retry_after_seconds(r.headers), kind="429")
            if r.status_code >= 500:
                self.stats["server_errors"] += 1
                return Again(f"HTTP {r.status_code}", kind=str(r.status_code))
            if r.status_code in (401, 403):
                raise UserError(
                    f"the Hub refused the request (HTTP {r.status_code}); log in with `hf auth login` or set HF_TOKEN",
                    where=str(r.url),
                )
            if r.status_code == 404:
                raise UserError("not found on the Hub (HTTP 404)", where=str(r.url))
            if r.status_code >= 400:
                raise UserError(f"the Hub rejected the request (HTTP {r.status_code}): {r.text[:200]}", where=str(r.url))
            return r

        out, _ = retry(attempt, policy, sleep=self.sleep, on_wait=self._wait)
        if isinstance(out, Again):
            raise HubUnavailable(
                f"the Hub did not answer after {self.max_retries + 1} attempts ({out.why}); what was fetched is kept, rerun the same command to resume",
                where=url,
            )
        return out

    def pages(self, path: str, params: Any = None, *, start_url: str | None = None) -> Iterator[Page]:
        """Pages of a list endpoint, following ``Link: <...>; rel="next"`` until there is none.

        ``start_url`` resumes from a saved cursor (the next link already carries the query)."""
        url: str | None = start_url or f"{self.endpoint}{path}"
        first = start_url is None
        while url:
            r = self.get(url, params=params if first else None)
            first = False
            try:
                items = r.json()
            except ValueError:
                raise HubUnavailable("the Hub sent a page that is not JSON; rerun to resume", where=url) from None
            if not isinstance(items, list):
                raise HubUnavailable("the Hub sent a page that is not a list of models", where=url)
            nxt = r.links.get("next", {}).get("url")
            if nxt and nxt.startswith("/"):
                nxt = f"{self.endpoint}{nxt}"
            self.stats["pages"] += 1
            yield Page(items=items, url=str(r.url), next_url=nxt)
            url = nxt

    def model_info(self, model_id: str, expand: tuple[str, ...] = INFO_EXPAND) -> dict:
        r = self.get(f"{self.endpoint}/api/models/{quote(model_id, safe='/')}", params=[("expand", e) for e in expand])
        data = r.json()
        if not isinstance(data, dict):
            raise HubUnavailable("the Hub sent model info that is not an object", where=model_id)
        return data


def list_params(
    *, author: str | None = None, filter: str | None = None, limit: int = 1000, expand: tuple[str, ...] = LIST_EXPAND
) -> list[tuple[str, str]]:
    p: list[tuple[str, str]] = []
    if author:
        p.append(("author", author))
    if filter:
        p.append(("filter", filter))
    p.append(("limit", str(limit)))
    p += [("expand", e) for e in expand]
    return p
