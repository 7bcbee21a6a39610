"""Synthetic dated studies for the trend tests: answers whose closeness to the earlier field is
planted (or not), so the slopes and tests have a known truth."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from monoculture.metrics.responses import ResponseSet


def dated_study(
    n_models: int = 12,
    n_prompts: int = 30,
    dim: int = 24,
    k: int = 1,
    trend: float = 0.0,
    base: float = 0.35,
    seed: int = 0,
    start: date = date(2022, 1, 15),
    spacing_days: int = 45,
) -> tuple[ResponseSet, dict[str, date]]:
    """Model i (released i * spacing_days after ``start``) answers prompt p with
    normalise(a_i f_p + g_{i,p} + noise): f_p is what the field shares on p, g is the model's
    own voice. With trend = 0 every a_i = base (no trend, models exchangeable); with trend > 0,
    a_i grows with release order, so later models sit closer to what came before.
    """
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((n_prompts, dim))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    rows, models, prompts = [], [], []
    dates = {}
    for i in range(n_models):
        a = base + trend * i / max(n_models - 1, 1)
        name = f"m{i:02d}"
        dates[name] = start + timedelta(days=spacing_days * i)
        g = rng.standard_normal((n_prompts, dim))
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        for p in range(n_prompts):
            for _ in range(k):
                v = a * f[p] + (1 - a) * g[p] + 0.15 * rng.standard_normal(dim) / np.sqrt(dim)
                rows.append(v / np.linalg.norm(v))
                models.append(name)
                prompts.append(f"p{p:03d}")
    return ResponseSet.from_labels(np.array(rows), models, prompts), dates
