"""Helpers and fixtures for the perspective-probe tests.

Not a conftest.py on purpose: other test folders import helpers with ``from conftest import``,
which resolves to whichever conftest module was loaded last, so a conftest here would break
them when both folders are collected together. Test modules import the fixtures they use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monoculture.suites import suite_path

LANGS7 = ("en", "zh", "ar", "hi", "es", "ru", "sw")


def values_records() -> list[dict]:
    return [json.loads(line) for line in suite_path("values").read_text(encoding="utf-8").splitlines() if line.strip()]


def write_small_suite(path: Path, groups=("val-01", "val-06", "val-05"), languages=("en", "zh")) -> Path:
    """A cut of the values suite: a few questions (ordered and not, 3-5 options) so model tests
    stay fast but still cover translations."""
    recs = [r for r in values_records() if r["group"] in groups and r["language"] in languages]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in recs) + "\n", encoding="utf-8")
    return path


def write_study(path: Path, models: list[dict], *, store: Path | None = None, samples: int = 1, **sampling) -> Path:
    import yaml

    data = {
        "name": "probe-test",
        "models": models,
        "suites": ["values"],
        "samples": samples,
        "sampling": {"max_tokens": 16, "temperature": 1.0, **sampling},
    }
    if store is not None:
        data["store"] = str(store)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def small_suite(tmp_path) -> Path:
    return write_small_suite(tmp_path / "small-values.jsonl")


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_models import cached_tiny_model

    return cached_tiny_model("qwen2", 0, cache_dir=tmp_path_factory.mktemp("probe-tiny"))
