"""Helpers shared by the metrics tests (a module of its own, as tests/conftest.py asks)."""

from __future__ import annotations

import numpy as np


def unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


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
