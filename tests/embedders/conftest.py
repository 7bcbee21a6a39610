"""Fixtures of the embedder tests (their data and the network guard are in embedder_data.py)."""

from __future__ import annotations

import pytest
from embedder_data import fill, no_network

from monoculture.store import Store


@pytest.fixture
def small_store(tmp_path):
    with Store(tmp_path / "e.duckdb") as st:
        fill(st)
        yield st


@pytest.fixture
def offline():
    with no_network() as attempts:
        yield attempts
    assert attempts == [], f"network access attempted: {attempts}"
