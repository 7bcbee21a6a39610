"""Shared fixtures. Helpers that several test modules use live in their own modules in this
folder (importable because pytest puts tests/ on the path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:  # property-based tests: the same examples on every run and machine, no wall-clock deadline
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "monoculture",
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=50,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "monoculture"))
except ImportError:  # pragma: no cover - hypothesis is in the dev extra
    pass


def shared_data_dir() -> Path | None:
    """The real data in ../shared/data (or $MONOCULTURE_SHARED_DATA), if present."""
    env = os.environ.get("MONOCULTURE_SHARED_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parent.parent
    candidates += [here.parent / "shared" / "data", here / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("real data not found: ../shared/data is absent (set MONOCULTURE_SHARED_DATA to point at it)")
    return d


@pytest.fixture
def store_path(tmp_path) -> Path:
    return tmp_path / "test.duckdb"


@pytest.fixture
def fake_server():
    """Start local OpenAI-compatible servers on demand (``fake_server(**options)``); all are
    stopped at the end of the test."""
    from fake_openai import FakeOpenAIServer

    started = []

    def start(**kw) -> FakeOpenAIServer:
        s = FakeOpenAIServer(**kw).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
