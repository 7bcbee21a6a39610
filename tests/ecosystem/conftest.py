"""Fixtures for the ecosystem-watch tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from eco_hub_fake import hub_model

from monoculture.ecosystem.registry import load_registry


def shared_data_dir() -> Path | None:
    """Same lookup as the top-level ``shared_data`` fixture, usable from session fixtures."""
    env = os.environ.get("MONOCULTURE_SHARED_DATA")
    repo = Path(__file__).resolve().parents[2]
    for c in ([Path(env)] if env else []) + [repo.parent / "shared" / "data", repo / "shared" / "data"]:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def registry():
    return load_registry()


def qwen_world() -> list[dict]:
    """Ten Qwen checkpoints (four pages of three) and a small derivative tree around them."""
    own = [
        hub_model("Qwen/Qwen2.5-7B", downloads=10_000, created="2024-09-15T10:00:00.000Z"),
        hub_model(
            "Qwen/Qwen2.5-72B",
            downloads=9_000,
            created="2024-09-15T11:00:00.000Z",
            params=72_700_000_000,
            licence="other",
            extra_tags=[],
        ),
        hub_model(
            "Qwen/Qwen2.5-7B-Instruct", downloads=800, created="2024-09-16T10:00:00.000Z", bases=[("finetune", "Qwen/Qwen2.5-7B")]
        ),
        hub_model(
            "Qwen/Qwen2.5-7B-Instruct-GGUF",
            downloads=700,
            created="2024-09-17T10:00:00.000Z",
            bases=[("quantized", "Qwen/Qwen2.5-7B-Instruct")],
        ),
        hub_model("Qwen/Qwen2-7B", downloads=600, created="2024-06-06T10:00:00.000Z"),
        hub_model("Qwen/Qwen1.5-7B", downloads=500, created="2024-02-04T10:00:00.000Z", licence="other"),
        hub_model("Qwen/Qwen-7B", downloads=400, created="2023-08-03T10:00:00.000Z", licence="other"),
        hub_model("Qwen/Qwen3-8B", downloads=300, created="2025-04-28T10:00:00.000Z"),
        hub_model("Qwen/Qwen3-32B", downloads=200, created="2025-04-28T12:00:00.000Z", params=32_800_000_000),
        hub_model("Qwen/QwQ-32B", downloads=100, created="2025-03-05T10:00:00.000Z", params=32_800_000_000),
    ]
    derived = [
        hub_model("alice/qwen-ft", downloads=5_000, created="2024-10-01T00:00:00.000Z", bases=[("finetune", "Qwen/Qwen2.5-7B")]),
        hub_model("bob/qwen-ft-ft", downloads=50, created="2024-11-01T00:00:00.000Z", bases=[("finetune", "alice/qwen-ft")]),
        hub_model("carol/qwen-gguf", downloads=40, created="2024-10-02T00:00:00.000Z", bases=[("quantized", "Qwen/Qwen2.5-7B")]),
        hub_model("dave/qwen-lora", downloads=30, created="2024-10-03T00:00:00.000Z", bases=[("adapter", "Qwen/Qwen2.5-7B")]),
        hub_model(
            "erin/merge",
            downloads=20,
            created="2024-11-04T00:00:00.000Z",
            bases=[("merge", "Qwen/Qwen2.5-7B"), ("merge", "meta-llama/Llama-3.1-8B")],
        ),
        hub_model(
            "frank/qwen72-ft",
            downloads=10,
            created="2024-11-05T00:00:00.000Z",
            bases=[("finetune", "Qwen/Qwen2.5-72B")],
            params=72_700_000_000,
        ),
    ]
    return own + derived


@pytest.fixture
def qwen_models() -> list[dict]:
    return qwen_world()


@pytest.fixture(scope="session")
def real_store(tmp_path_factory):
    """The whole shared ecosystem folder imported once into a store (skips without the data)."""
    d = shared_data_dir()
    if d is None or not (d / "ecosystem").is_dir():
        pytest.skip("real data not found: ../shared/data/ecosystem is absent (set MONOCULTURE_SHARED_DATA to point at it)")
    from monoculture.ecosystem.importers import import_paths
    from monoculture.store import Store

    path = tmp_path_factory.mktemp("eco_real") / "real.duckdb"
    with Store(path) as st:
        results = import_paths(st.con, [d / "ecosystem"], load_registry())
    return path, d / "ecosystem", results
