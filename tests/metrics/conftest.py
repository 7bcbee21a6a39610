"""Shared helpers for the metrics tests.

The package may not be installed in the environment the tests run in (a plain checkout), so
src/ is put on the path when ``monoculture`` cannot be imported.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
try:
    import monoculture  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the tests are run
    sys.path.insert(0, str(REPO / "src"))


def shared_data_dir() -> Path | None:
    """MONOCULTURE_SHARED_DATA, else <repo>/../shared/data; None when neither exists."""
    env = os.environ.get("MONOCULTURE_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


def unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def synthetic_study(
    rng: np.random.Generator,
    n_models: int = 5,
    n_prompts: int = 30,
    k: int = 3,
    d: int = 24,
    voice_scale: float = 1.0,
    noise: float = 0.5,
    voices: np.ndarray | None = None,
):
    """Responses = prompt topic + model voice + noise, unit-normalised; returns a ResponseSet."""
    from monoculture.metrics import ResponseSet

    topic = rng.standard_normal((n_prompts, d))
    if voices is None:
        voices = voice_scale * rng.standard_normal((n_models, d))
    X = topic[None, :, None, :] + voices[:, None, None, :] + noise * rng.standard_normal((n_models, n_prompts, k, d))
    mm, pp, ss = np.meshgrid(np.arange(n_models), np.arange(n_prompts), np.arange(k), indexing="ij")
    return ResponseSet(
        X=unit(X.reshape(-1, d)),
        model=mm.ravel(),
        prompt=pp.ravel(),
        model_names=[f"m{i}" for i in range(n_models)],
        prompt_ids=[f"p{i}" for i in range(n_prompts)],
        sample=ss.ravel(),
    )
