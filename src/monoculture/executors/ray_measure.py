"""Measuring in shards of prompts as Ray tasks (``monoculture measure --ray``).

The expensive part of measuring is per prompt: each prompt's Gram matrices, the Vendi
eigendecompositions of every leave-out scenario, and the partition into distinct answers. Those
figures depend on the prompt's own rows only (and on the study's model list and seed, which fix
the random groups), so slices of prompts are measured as independent Ray tasks and their
per-prompt arrays put end to end (:class:`~monoculture.metrics.pipeline.PromptFigures`). The
driver then runs the rest of :func:`~monoculture.metrics.pipeline.measure_all` on the combined
table exactly as on one machine: the calibration mean, the off-prompt floor, the one bootstrap
over the combined per-prompt table, separability, lineage and the lexical figures. Hence the
stored figures equal the single-machine ones on the same store (tested to 1e-12).

What stays on the driver: the cleaned vectors (the calibration mean and the separability fits
need all of them) and the texts; the tasks receive only their slice. A study whose vectors do
not fit in the driver's memory is therefore not yet measurable here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from monoculture.errors import UserError
from monoculture.executors.ray import connect
from monoculture.metrics.pipeline import PerPromptHook, PromptFigures, prompt_figures
from monoculture.metrics.responses import index_cells
from monoculture.metrics.voices import VoicesResult


def _shard(
    X: np.ndarray,
    model: np.ndarray,
    prompt: np.ndarray,
    texts: list[str] | None,
    n_models: int,
    n_prompts: int,
    masks: dict[str, np.ndarray],
    opts: dict[str, Any],
) -> PromptFigures:
    """One Ray task: the per-prompt figures of one slice of prompts. The rows arrive in the
    study's cell order, so indexing them by (prompt, model, row) gives the same cells, in the
    same order, as the whole study's index does."""
    index = index_cells(model, prompt, n_models, n_prompts)
    return prompt_figures(X, index, texts, masks, **opts)


def combine(parts: list[PromptFigures]) -> PromptFigures:
    """Shards' figures, in prompt order, as one study's."""
    first = parts[0].voices
    voices = VoicesResult(
        voices=np.concatenate([p.voices.voices for p in parts]),
        own_range=np.concatenate([p.voices.own_range for p in parts]),
        loo=np.concatenate([p.voices.loo for p in parts]),
        group_loss={k: np.concatenate([p.voices.group_loss[k] for p in parts]) for k in first.group_loss},
        group_baseline={k: np.concatenate([p.voices.group_baseline[k] for p in parts]) for k in first.group_baseline},
        baseline_draws=dict(first.baseline_draws),  # fixed by the model list and the seed: the same in every shard
    )
    distinct = None if parts[0].distinct is None else np.concatenate([p.distinct for p in parts])
    return PromptFigures(np.concatenate([p.pair for p in parts]), voices, distinct)


def shard_bounds(n_prompts: int, shards: int) -> list[tuple[int, int]]:
    """[lo, hi) prompt ranges of at most ``shards`` non-empty slices of near-equal size."""
    cuts = np.unique(np.linspace(0, n_prompts, min(shards, n_prompts) + 1).round().astype(int))
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]


def slices(st, masks: dict[str, np.ndarray], opts: dict[str, Any], shards: int) -> Iterator[tuple]:
    """The arguments of :func:`_shard` for each slice of the cleaned study ``st``'s prompts, in
    prompt order: the slice's rows in the study's cell order (sorted by prompt, then model,
    then sample), its prompt codes counted from the slice's first, and the texts only when the
    partition (the one stage that reads them) runs."""
    bounds = shard_bounds(st.P, shards)
    order = st.index.order
    starts = np.searchsorted(st.prompt[order], [lo for lo, _ in bounds] + [st.P])
    partition = opts["tau"] is not None or opts["equivalent"] is not None
    for i, (lo, hi) in enumerate(bounds):
        rows = order[starts[i] : starts[i + 1]]
        texts = [st.texts[r] for r in rows] if st.texts is not None and partition else None
        yield st.X[rows], st.model[rows], st.prompt[rows] - lo, texts, st.M, hi - lo, masks, opts


def sharded(shards: int | None = None, *, address: str | None = None, show_progress: bool = True) -> PerPromptHook:
    """A ``per_prompt`` hook for measure_all that computes the per-prompt figures as Ray tasks,
    ``shards`` slices of prompts (default: twice the cluster's CPUs, so a slow slice does not
    hold the rest up)."""
    if shards is not None and shards < 1:
        raise UserError(f"--ray-shards {shards}: at least 1")

    def hook(st, masks: dict[str, np.ndarray], opts: dict[str, Any]) -> PromptFigures:
        ray = connect(address, show_progress=show_progress)
        n = shards or max(1, 2 * int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1)(_shard)
        masks_ref = ray.put(masks)
        refs = [task.remote(*args[:6], masks_ref, args[7]) for args in slices(st, masks, opts, n)]
        return combine(ray.get(refs))

    return hook
