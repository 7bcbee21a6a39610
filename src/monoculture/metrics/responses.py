"""The responses a study measures, and the index every metric reads them through.

Every metric in METRICS.md is a per-prompt quantity over the cells (model m, prompt p) that
hold the k_{m,p} responses of m to p. Sorting the rows once by (prompt, model, sample) makes
every cell and every per-prompt pool a contiguous run, so the metrics can work on padded
stacks and segment sums instead of looping over prompts in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy import sparse

from monoculture.errors import UserError


class MetricsInputError(UserError, ValueError):
    """Input the metrics cannot use; a ValueError for library callers, a UserError for the CLI."""


@dataclass(frozen=True)
class ResponseSet:
    """Embeddings of a study's responses plus who answered what.

    ``model`` and ``prompt`` are integer codes into ``model_names`` and ``prompt_ids`` so that
    grouping is integer arithmetic. ``sample`` fixes the order inside a cell, which the
    partition rule depends on; without it the row order is used.

    ``clusters`` gives each prompt (by code, so one label per entry of ``prompt_ids``) the
    cluster it belongs to: prompts that share a ``group`` (translations, paraphrases of one
    prompt) are not independent, so the bootstrap resamples whole clusters and
    cross-validation folds never split one (METRICS.md, "Uncertainty"). None: every prompt
    is its own cluster.
    """

    X: np.ndarray
    model: np.ndarray
    prompt: np.ndarray
    model_names: list[str]
    prompt_ids: list[str]
    texts: list[str] | None = None
    sample: np.ndarray | None = None
    clusters: Sequence[str] | None = None

    def __post_init__(self) -> None:
        X = np.asarray(self.X)
        if X.ndim != 2:
            raise MetricsInputError(f"X must be a 2-D (n, d) array, got shape {X.shape}")
        n = X.shape[0]
        for name in ("model", "prompt") + (("sample",) if self.sample is not None else ()):
            arr = np.asarray(getattr(self, name))
            if arr.shape != (n,):
                raise MetricsInputError(f"{name} must have shape ({n},), got {arr.shape}")
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise MetricsInputError(f"{name} must hold integer codes, got dtype {arr.dtype}")
        if self.texts is not None and len(self.texts) != n:
            raise MetricsInputError(f"texts has {len(self.texts)} entries for {n} embeddings")
        if len(set(self.model_names)) != len(self.model_names):
            raise MetricsInputError("model_names has duplicates")
        if len(set(self.prompt_ids)) != len(self.prompt_ids):
            raise MetricsInputError("prompt_ids has duplicates")
        if self.clusters is not None and len(self.clusters) != len(self.prompt_ids):
            raise MetricsInputError(f"clusters has {len(self.clusters)} entries for {len(self.prompt_ids)} prompts")

    @property
    def n(self) -> int:
        return int(np.asarray(self.X).shape[0])

    @classmethod
    def from_labels(
        cls,
        X: np.ndarray,
        models: Sequence[str],
        prompts: Sequence[str],
        texts: Sequence[str] | None = None,
        sample: Sequence[int] | None = None,
        clusters: Sequence[str] | None = None,
    ) -> ResponseSet:
        """Build from per-row string labels; names keep their order of first appearance.

        ``clusters`` is per row here (the prompt's group); a prompt with two is an error.
        """
        m_names, m_codes = _codes(models)
        p_names, p_codes = _codes(prompts)
        per_prompt = None
        if clusters is not None:
            if len(clusters) != len(p_codes):
                raise MetricsInputError(f"clusters has {len(clusters)} entries for {len(p_codes)} rows")
            seen: dict[int, str] = {}
            for code, c in zip(p_codes.tolist(), clusters):
                if seen.setdefault(code, str(c)) != str(c):
                    raise MetricsInputError(f"prompt {p_names[code]!r} is in two clusters: {seen[code]!r} and {str(c)!r}")
            per_prompt = [seen[i] for i in range(len(p_names))]
        return cls(
            X=np.asarray(X),
            model=m_codes,
            prompt=p_codes,
            model_names=m_names,
            prompt_ids=p_names,
            texts=list(texts) if texts is not None else None,
            sample=np.asarray(sample, dtype=np.int64) if sample is not None else None,
            clusters=per_prompt,
        )

    def subset(self, rows: np.ndarray) -> ResponseSet:
        """The same study restricted to ``rows`` (a boolean mask or indices); names are kept."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return ResponseSet(
            X=np.asarray(self.X)[rows],
            model=np.asarray(self.model)[rows],
            prompt=np.asarray(self.prompt)[rows],
            model_names=list(self.model_names),
            prompt_ids=list(self.prompt_ids),
            texts=[self.texts[i] for i in rows] if self.texts is not None else None,
            sample=np.asarray(self.sample)[rows] if self.sample is not None else None,
            clusters=self.clusters,
        )


def _codes(labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    names: dict[str, int] = {}
    codes = np.fromiter((names.setdefault(str(v), len(names)) for v in labels), dtype=np.int64, count=len(labels))
    return list(names), codes


ZERO_NORM = 1e-12


def blank_texts(texts: Sequence[object]) -> np.ndarray:
    """True for each text with nothing to measure: missing, not a string, or only whitespace.

    The one test of an empty answer: measure skips it before embedding, the metrics drop it,
    the report leaves it out, and all three count the same rows.
    """
    return np.fromiter((not isinstance(t, str) or not t.strip() for t in texts), dtype=bool, count=len(texts))


def vector_defects(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(not finite, zero length) masks of raw embedding rows; a row is counted under the first.

    An embedder that fails quietly returns NaN or all-zero rows; neither has a direction, and
    a zero row would also pull the calibration mean, so both are dropped before centring.
    """
    X = np.asarray(X, dtype=np.float64)
    nonfinite = ~np.isfinite(X).all(axis=1)
    X0 = np.where(nonfinite[:, None], 0.0, X)
    norm = np.sqrt(np.einsum("ij,ij->i", X0, X0))  # np.linalg.norm is ~10x slower here
    return nonfinite, ~nonfinite & (norm <= ZERO_NORM)


def unit_rows(raw_X: np.ndarray, mu: np.ndarray | None = None) -> np.ndarray:
    """The measurement's embeddings for display: centred on ``mu`` when calibrated, unit
    length; NaN rows where a row has no direction (not finite, zero, or equal to mu)."""
    raw = np.asarray(raw_X, dtype=np.float64)
    nonfinite, zero = vector_defects(raw)
    bad = nonfinite | zero
    if mu is not None:
        cal = calibrate(np.where(bad[:, None], np.nan, raw), mu)
        X, bad = cal.X, bad | cal.zero
    else:
        norm = np.sqrt(np.einsum("ij,ij->i", np.where(bad[:, None], 0.0, raw), np.where(bad[:, None], 0.0, raw)))
        X = np.where(bad[:, None], 0.0, raw) / np.where(bad, 1.0, norm)[:, None]
    return np.where(bad[:, None], np.nan, X)


def prompt_labels(keys: Sequence[str], ids: Sequence[object]) -> list[str]:
    """Display label of each row's prompt: a prompt is its key; its id is only a label.

    The label is the prompt_id, or the key where there is none; where prompts with different
    keys share an id (two suites both with a "q1"), each gets the id and the first 8
    characters of its key, so per-prompt tables keep one row per prompt.
    """

    def plain(i, k) -> str:
        return str(k) if i is None or (isinstance(i, float) and np.isnan(i)) or i == "" else str(i)

    first: dict[str, str] = {}
    for k, i in zip(keys, ids):
        first.setdefault(str(k), plain(i, k))
    owners: dict[str, set[str]] = {}
    for k, lab in first.items():
        owners.setdefault(lab, set()).add(k)
    return [first[str(k)] if len(owners[first[str(k)]]) == 1 else f"{first[str(k)]} [{str(k)[:8]}]" for k in keys]


class Calibrated(NamedTuple):
    """Calibrated embeddings; ``zero`` marks rows with no direction left (dropped by callers)."""

    X: np.ndarray
    mu: np.ndarray
    zero: np.ndarray


def calibrate(raw_X: np.ndarray, mu: np.ndarray | None = None, *, rtol: float = 1e-6) -> Calibrated:
    """Centre on the study mean and renormalise (METRICS.md, "Calibrated embeddings").

    Anisotropic embedders put every text in a narrow cone; subtracting the mean embedding
    removes what all texts share so that cosines spread out. A row equal to mu (to ``rtol`` of
    its own norm) has no direction after centring: it is returned as zeros and flagged in
    ``zero`` instead of becoming NaN, and rows that are not finite are flagged the same way.
    Pass the ``mu`` of another study to put two studies on one scale. Returns three values,
    not two, so that the mask cannot be forgotten (DEVIATIONS.md, item 2).
    """
    raw = np.asarray(raw_X, dtype=np.float64)
    if raw.ndim != 2:
        raise MetricsInputError(f"raw_X must be 2-D, got shape {raw.shape}")
    finite = np.asarray(np.isfinite(raw).all(axis=1))  # asarray: numpy types all(axis=) as bool | array
    if mu is None:
        if not finite.any():
            raise MetricsInputError("no finite embedding to take the mean of")
        mu = raw[finite].mean(axis=0)
    mu = np.asarray(mu, dtype=np.float64)
    if mu.shape != (raw.shape[1],):
        raise MetricsInputError(f"mu has shape {mu.shape}, embeddings have {raw.shape[1]} dims")
    centred = np.where(finite[:, None], raw - mu, 0.0)
    norm = np.sqrt(np.einsum("ij,ij->i", centred, centred))
    raw0 = np.where(finite[:, None], raw, 0.0)
    scale = np.maximum(np.sqrt(np.einsum("ij,ij->i", raw0, raw0)), 1.0)
    zero = ~finite | (norm <= rtol * scale)
    out = np.zeros_like(centred)
    ok = ~zero
    out[ok] = centred[ok] / norm[ok, None]
    return Calibrated(out, mu, zero)


@dataclass(frozen=True)
class CellIndex:
    """Rows grouped into (prompt, model) cells and per-prompt pools.

    ``order`` lists row numbers sorted by (prompt, model, sample); cells and pools are runs of
    it. ``counts[p, m]`` is k_{m,p}. The padded tables put the rows of each cell (or pool) left
    aligned and fill the rest with -1, which is what the batched kernels consume.
    """

    n_models: int
    n_prompts: int
    order: np.ndarray
    counts: np.ndarray
    cell_prompt: np.ndarray
    cell_model: np.ndarray
    cell_start: np.ndarray
    cell_size: np.ndarray
    prompt_start: np.ndarray
    prompt_size: np.ndarray
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def models_per_prompt(self) -> np.ndarray:
        return (self.counts > 0).sum(axis=1)

    def cell_rows(self) -> np.ndarray:
        """(n_cells, k_max) row numbers of each cell, -1 padded."""
        if "cells" not in self._cache:
            self._cache["cells"] = _padded(self.order, self.cell_start, self.cell_size)
        return self._cache["cells"]

    def pool_rows(self) -> np.ndarray:
        """(n_prompts, n_max) row numbers of each prompt's pool, -1 padded."""
        if "pools" not in self._cache:
            self._cache["pools"] = _padded(self.order, self.prompt_start, self.prompt_size)
        return self._cache["pools"]

    def pool_models(self) -> np.ndarray:
        """Model code of each entry of :meth:`pool_rows`, -1 where padded."""
        if "pool_models" not in self._cache:
            sorted_model = np.repeat(self.cell_model, self.cell_size)
            self._cache["pool_models"] = _padded(sorted_model, self.prompt_start, self.prompt_size)
        return self._cache["pool_models"]

    def cell_sums(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sum of embeddings and of squared norms per cell (float64)."""
        X = np.asarray(X, dtype=np.float64)
        n_cells = len(self.cell_start)
        if n_cells == 0:
            return np.zeros((0, X.shape[1])), np.zeros(0)
        # A sparse (cells x rows) indicator times X: np.add.reduceat is ~10x slower when most
        # cells hold one or two rows.
        cell_of = np.repeat(np.arange(n_cells), self.cell_size)
        A = sparse.csr_matrix((np.ones(len(self.order)), (cell_of, self.order)), shape=(n_cells, X.shape[0]))
        sums = np.asarray(A @ X)
        sq = A @ np.einsum("ij,ij->i", X, X)
        return sums, sq


def _padded(values: np.ndarray, start: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Runs values[start:start+size] as left-aligned rows of a -1 padded table."""
    width = int(size.max()) if size.size else 0
    out = np.full((len(start), width), -1, dtype=np.int64)
    group = np.repeat(np.arange(len(start)), size)
    first = np.repeat(start, size)
    pos = np.arange(first.size) - np.repeat(np.cumsum(size) - size, size)
    out[group, pos] = values[first + pos]
    return out


def index_cells(
    model: np.ndarray,
    prompt: np.ndarray,
    n_models: int,
    n_prompts: int,
    sample: np.ndarray | None = None,
) -> CellIndex:
    """Sort rows into cells; ties in ``sample`` keep row order so the result is deterministic."""
    model = np.asarray(model, dtype=np.int64)
    prompt = np.asarray(prompt, dtype=np.int64)
    n = len(model)
    rows = np.arange(n)
    keys = [rows] if sample is None else [rows, np.asarray(sample, dtype=np.int64)]
    order = np.lexsort(tuple(keys) + (model, prompt))
    cell_key = prompt[order] * n_models + model[order]
    if n:
        change = np.flatnonzero(np.diff(cell_key)) + 1
        cell_start = np.concatenate([[0], change]).astype(np.int64)
    else:
        cell_start = np.zeros(0, dtype=np.int64)
    cell_size = np.diff(np.append(cell_start, n)).astype(np.int64)
    first = order[cell_start] if n else np.zeros(0, dtype=np.int64)
    cell_prompt, cell_model = prompt[first], model[first]
    counts = np.zeros((n_prompts, n_models), dtype=np.int64)
    counts[cell_prompt, cell_model] = cell_size
    prompt_size = counts.sum(axis=1)
    prompt_start = np.concatenate([[0], np.cumsum(prompt_size)[:-1]]).astype(np.int64)
    return CellIndex(
        n_models=n_models,
        n_prompts=n_prompts,
        order=order,
        counts=counts,
        cell_prompt=cell_prompt,
        cell_model=cell_model,
        cell_start=cell_start,
        cell_size=cell_size,
        prompt_start=prompt_start,
        prompt_size=prompt_size,
    )
