"""Writing snapshot files for the ecosystem tests.

A module of its own, not conftest.py: ``from conftest import`` resolves to whichever conftest
module pytest imported first, so it broke when another folder's tests ran in the same session.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_snapshot(path: Path, models: list, taken_at: str = "2025-01-01T00:00:00Z", snapshot_id: str | None = None) -> Path:
    doc = {"format": "monoculture-ecosystem-snapshot", "version": 1, "taken_at": taken_at, "models": models}
    if snapshot_id:
        doc["snapshot_id"] = snapshot_id
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path
