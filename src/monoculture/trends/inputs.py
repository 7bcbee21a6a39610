"""The answers and embeddings of one stored measurement, as the trend analysis reads them.

Nothing is embedded here: the vectors are the ones ``measure`` cached in the store under the
measurement's embedder name (for tfidf, the name carries the corpus it was fitted on), and the
calibration mean is the one it stored, so the trend's similarities are the measurement's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from monoculture.errors import UserError
from monoculture.metrics.responses import ResponseSet, blank_texts


def measured_responses(store, label: str | None = None) -> tuple[ResponseSet, np.ndarray | None, dict[str, Any]]:
    """(raw responses of the measurement's study, its calibration mean or None if raw, and what
    was measured: label, embedder, calibrated, study). Refuses a measurement whose vectors are
    no longer in the store rather than embedding again with another model."""
    from monoculture.measure import response_set
    from monoculture.report.explorer import load_vectors
    from monoculture.results import resolve_label

    lab = resolve_label(store, label)
    study, embedder, calibrated, mu = store.con.execute(
        "SELECT study, embedder, calibrated, mu FROM measure_runs WHERE label = ?", [lab]
    ).fetchone()
    df = store.generations(study)
    df = df[~blank_texts(df["text"].tolist())]
    if df.empty:
        raise UserError(f"{store.path}: measurement {lab!r} has no answers left in the store")
    texts = df["text"].tolist()
    X = load_vectors(store, embedder, texts)
    if X is None:
        raise UserError(
            f"{store.path}: the embeddings of measurement {lab!r} ({embedder}) are not in the store; run `monoculture measure` again"
        )
    missing = ~np.isfinite(X).all(axis=1)
    if missing.all():
        raise UserError(f"{store.path}: none of the answers has an embedding from {embedder}; run `monoculture measure` again")
    rs = response_set(df, np.asarray(X, dtype=np.float64))
    info = {
        "label": lab,
        "embedder": embedder,
        "calibrated": bool(calibrated),
        "study": study,
        "answers_without_embedding": int(missing.sum()),
    }
    return rs, (np.asarray(mu, dtype=np.float64) if calibrated and mu is not None else None), info
