"""Checks on the HTML of the self-contained pages (study report, perspectives, ecosystem)."""

from __future__ import annotations

import base64
import hashlib
import re
from html import unescape


def check_csp(html: str, scripts: int) -> dict[str, list[str]]:
    """The page's policy forbids the network and string evaluation, and allows exactly its own
    inline scripts, by hash (shared with the perspectives and ecosystem page tests)."""
    metas = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', html)
    assert len(metas) == 1, metas
    policy = {d.split()[0]: d.split()[1:] for d in unescape(metas[0]).split(";") if d.strip()}
    assert policy["default-src"] == ["'none'"]
    assert "'unsafe-eval'" not in " ".join(sum(policy.values(), []))
    assert all(src.startswith("'sha256-") for src in policy["script-src"]), policy["script-src"]
    bodies = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(bodies) == scripts
    hashes = {"'sha256-" + base64.b64encode(hashlib.sha256(b.encode("utf-8")).digest()).decode() + "'" for b in bodies}
    assert set(policy["script-src"]) == hashes
    return policy
