"""A local stand-in for the Hub's ``/api/models`` endpoints, with scriptable faults.

It serves recorded-shape model records with the Hub's cursor pagination (``cursor=`` query
parameter and a ``Link: <...>; rel="next"`` header), can answer 429 with the Hub's RateLimit
headers, and can drop the connection before or in the middle of a response. Every request is
logged so tests can check what was (not) fetched again after a resume.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlencode, urlparse


def hub_model(
    mid: str,
    *,
    created: str = "2024-09-19T10:00:00.000Z",
    modified: str | None = None,
    downloads: int = 100,
    all_time: int | None = None,
    licence: str = "apache-2.0",
    bases: list[tuple[str, str]] = (),
    gated=False,
    params: int | None = 7_000_000_000,
    extra_tags: list[str] = (),
) -> dict:
    """A model record shaped like ``/api/models?expand=...`` returns it."""
    tags = ["transformers", "safetensors", "text-generation", f"license:{licence}", *extra_tags]
    for rel, base in bases:
        tags += [f"base_model:{base}", f"base_model:{rel}:{base}"]
    rec = {
        "_id": base64.b16encode(mid.encode()).decode()[:24].lower(),
        "id": mid,
        "author": mid.split("/")[0],
        "createdAt": created,
        "lastModified": modified or created,
        "downloads": downloads,
        "downloadsAllTime": all_time if all_time is not None else downloads * 5,
        "likes": downloads // 10,
        "tags": tags,
        "gated": gated,
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "cardData": {"license": licence, **({"base_model": [b for _, b in bases]} if bases else {})},
        "sha": "0" * 40,
    }
    if params:
        rec["safetensors"] = {"parameters": {"BF16": params}, "total": params}
    return rec


class FakeHub:
    def __init__(self, models: list[dict], *, page_size: int = 3):
        self.models = models
        self.page_size = page_size
        self.log: list[str] = []
        self.served = Counter()  # (query, cursor) -> successful responses
        self.rate_limit: Counter = Counter()  # page key -> 429s still to send
        self.drop_before: Counter = Counter()  # page key -> connections to drop before answering
        self.drop_mid: Counter = Counter()  # page key -> responses to cut in the middle
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # keep pytest output clean
                pass

            def do_GET(self):
                hub._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- helpers -------------------------------------------------------------------------
    @staticmethod
    def page_key(query: dict, cursor: int) -> str:
        q = query.get("author", [""])[0] or query.get("filter", [""])[0]
        return f"{q}#{cursor}"

    def _select(self, query: dict) -> list[dict]:
        out = self.models
        if "author" in query:
            out = [m for m in out if m["author"] == query["author"][0]]
        for f in query.get("filter", []):
            out = [m for m in out if f in m.get("tags", [])]
        return out

    def _send(
        self, h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict | None = None, *, cut: bool = False
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if cut:  # promise the whole body, deliver a third, hang up
            h.wfile.write(body[: len(body) // 3])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        h.wfile.write(body)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        u = urlparse(h.path)
        query = parse_qs(u.query)
        with self.lock:
            self.log.append(h.path)
        if u.path == "/api/models":
            cursor = int(base64.urlsafe_b64decode(query["cursor"][0]).decode()) if "cursor" in query else 0
            key = self.page_key(query, cursor)
            with self.lock:
                if self.drop_before[key] > 0:
                    self.drop_before[key] -= 1
                    h.close_connection = True
                    h.connection.shutdown(socket.SHUT_RDWR)
                    return
                if self.rate_limit[key] > 0:
                    self.rate_limit[key] -= 1
                    self._send(
                        h,
                        429,
                        b'{"error":"rate limited"}',
                        {"RateLimit": '"api";r=0;t=2', "RateLimit-Policy": '"fixed window";"api";q=500;w=300'},
                    )
                    return
                cut = self.drop_mid[key] > 0
                if cut:
                    self.drop_mid[key] -= 1
            sel = self._select(query)
            limit = min(int(query.get("limit", [str(self.page_size)])[0]), self.page_size)
            page = sel[cursor : cursor + limit]
            headers = {}
            if cursor + limit < len(sel):
                nq = {k: v for k, v in query.items() if k != "cursor"}
                nq["cursor"] = [base64.urlsafe_b64encode(str(cursor + limit).encode()).decode()]
                headers["Link"] = f'<{self.url}/api/models?{urlencode(nq, doseq=True)}>; rel="next"'
            if not cut:
                with self.lock:
                    self.served[key] += 1
            self._send(h, 200, json.dumps(page).encode(), headers, cut=cut)
            return
        if u.path.startswith("/api/models/"):
            mid = u.path[len("/api/models/") :]
            rec = next((m for m in self.models if m["id"] == mid), None)
            if rec is None:
                self._send(h, 404, b'{"error":"Repository not found"}')
                return
            rec = dict(rec)
            bases = [t.split(":", 2) for t in rec["tags"] if t.count(":") >= 2 and t.startswith("base_model:")]
            if bases:
                rec["baseModels"] = {"relation": bases[0][1], "models": [{"id": b[2]} for b in bases]}
            rec["childrenModelCount"] = sum(1 for m in self.models if f"base_model:{mid}" in m.get("tags", []))
            self._send(h, 200, json.dumps(rec).encode())
            return
        self._send(h, 404, b'{"error":"not found"}')


def quoted(mid: str) -> str:
    return quote(mid, safe="/")
