"""Content addressing.

A generation's key is the hash of everything that determines it, so that a rerun finds what is
already done and any change to a determining input (a revision, max_tokens, the system prompt)
makes a new key instead of silently reusing an old answer.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal inputs give equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(obj: Any, length: int = 32) -> str:
    """Hex SHA-256 of the canonical JSON of ``obj``, truncated to ``length`` characters."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def text_hash(text: str) -> str:
    """Hash of a text, used to embed identical texts once."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
