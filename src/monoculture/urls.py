"""Server URLs without their secrets.

A ``base_url`` may carry credentials: ``https://user:password@host/v1`` or an
``?api-key=...`` query (Azure-style gateways). The study spec, model identities, stored error
texts and logs are all written to a store that people share, so everything that writes a URL
goes through here first. The backend itself keeps the full URL in memory to connect.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameter names that carry a credential: api-key, api_key, apikey, access_token, sig,
# signature, password, client_secret, auth, X-Amz-Credential, ...
_SECRET_NAME = re.compile(r"key|token|secret|pass|pwd|auth|sig|credential|session", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Anything that looks like scheme://... inside a longer text (an error message, a log line).
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def _split(url: str):
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return parts


def _host(parts, *, keep_default_port: bool = True) -> str:
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    if port is not None and (keep_default_port or _DEFAULT_PORTS.get(parts.scheme.lower()) != port):
        host = f"{host}:{port}"
    return host


def public_url(url: str) -> str:
    """The URL with userinfo replaced by ``***@`` and the values of secret-looking query
    parameters by ``***``; otherwise as written. A string that is not a URL comes back unchanged."""
    parts = _split(url)
    if parts is None:
        return url
    has_userinfo = parts.username is not None or parts.password is not None
    pairs = parse_qsl(parts.query, keep_blank_values=True) if parts.query else []
    if not has_userinfo and not any(is_secret_name(k) for k, _ in pairs):
        return url
    netloc = f"{MASK}@{_host(parts)}" if has_userinfo else _host(parts)
    query = urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="*") if pairs else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def server_identity(url: str) -> str:
    """What names a server in a model's identity: scheme and host lower-cased, the default port
    and a trailing slash dropped, credentials (userinfo and secret query parameters) removed,
    the remaining query sorted. Two spellings of one server give one string, and rotating a key
    does not change it."""
    parts = _split(url.strip())
    if parts is None:
        return url.strip().rstrip("/")
    scheme = parts.scheme.lower()
    pairs = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_secret_name(k))
    path = re.sub(r"/+$", "", parts.path)
    return urlunsplit((scheme, _host(parts, keep_default_port=False), path, urlencode(pairs), ""))


def url_secrets(url: str) -> list[str]:
    """The secret strings inside a URL (password, user name, secret query values), longest
    first, for scrubbing texts that a library may have built from the URL."""
    parts = _split(url)
    if parts is None:
        return []
    found = [s for s in (parts.password, parts.username) if s]
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if is_secret_name(k) and v]
    # percent-encoded and decoded spellings both may appear in a message
    raw_query = [p.partition("=")[2] for p in parts.query.split("&") if is_secret_name(p.partition("=")[0])]
    found += [v for v in raw_query if v]
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    found += [s for s in userinfo.split(":") if s]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def scrub_text(text: str, secrets: Sequence[str] = ()) -> str:
    """A text with every URL in it made public and the given secret strings masked."""
    for s in secrets:
        text = text.replace(s, MASK)
    return _URL_IN_TEXT.sub(lambda m: public_url(m.group(0)), text)


def redact(obj: Any) -> Any:
    """A copy of nested JSON-like data in which every URL (a whole string, or one inside a
    longer text) is made public: the form in which a study spec may be stored. Other text is
    left exactly as written."""
    if isinstance(obj, str):
        return scrub_text(obj) if "://" in obj else obj
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    return obj
