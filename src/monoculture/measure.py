"""The measure phase: embed what the store lacks, compute every metric, store the results.

Results are stored under a label (study, embedder, raw or calibrated), so changing the
embedder gives a separate, labelled set of results rather than overwriting the first.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from io import StringIO
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from monoculture.embed import embed_cached, get_embedder
from monoculture.errors import UserError
from monoculture.store import Store

RESULTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS measure_runs (
    label TEXT PRIMARY KEY,
    study TEXT,
    embedder TEXT,
    calibrated BOOLEAN,
    created_at DOUBLE,
    mu FLOAT[],
    summary JSON,
    tables JSON,
    settings JSON
);
"""

GROUP_ATTRIBUTES = ("family", "organisation", "country", "open_weights")


@dataclass
class Measured:
    """What ``measure`` returns: the JSON summary, the DataFrames, and how it was made."""

    label: str
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    settings: dict[str, Any]
    newly_embedded: int = 0


def run_label(study: str | None, embedder: str, calibrated: bool) -> str:
    return f"{study or '*'}|{embedder}|{'calibrated' if calibrated else 'raw'}"


def load_mu(path, label: str | None = None) -> np.ndarray:
    """The calibration mean of an earlier measurement, to put a second study on its scale."""
    with Store(path, read_only=True) as st:
        rows = st.con.execute("SELECT label, mu FROM measure_runs WHERE calibrated ORDER BY created_at DESC").fetchall() if _has_runs(st) else []
    if label:
        rows = [r for r in rows if r[0] == label]
    if not rows:
        raise UserError(f"--center-from {path}: no calibrated measurement there{' labelled ' + label if label else ''}")
    return np.asarray(rows[0][1], dtype=np.float32)


def _has_runs(st: Store) -> bool:
    return bool(st.con.execute("SELECT 1 FROM information_schema.tables WHERE table_name='measure_runs'").fetchone())


def measure(
    store: Store,
    *,
    study: str | None = None,
    embedder: str | None = None,
    groups: tuple[str, ...] | list[str] | None = None,
    what_if_removed: list[str] | None = None,
    reference: str | None = None,
    raw: bool = False,
    center_from: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    q: float = 1.0,
    tau: float | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> Measured:
    from monoculture.metrics.pipeline import measure_all
    from monoculture.metrics.responses import ResponseSet, calibrate

    console = console or Console(stderr=True)
    df = store.generations(study)
    if df.empty:
        raise UserError(f"{store.path}: no generations to measure{' in study ' + study if study else ''}")
    skipped: dict[str, int] = {}
    empty = df["text"].fillna("").str.strip() == ""
    if empty.any():
        skipped["empty texts"] = int(empty.sum())
        df = df[~empty].reset_index(drop=True)
    if df["model"].nunique() < 2:
        raise UserError(f"{store.path}: only one model ({df['model'].iloc[0]}) has answers; similarity across models needs at least two")

    emb = get_embedder(embedder)
    texts = df["text"].tolist()
    with Progress(TextColumn("[bold]embedding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, disable=not show_progress) as progress:
        task = progress.add_task("embed", total=None)
        X, truncated, new = embed_cached(store, emb, texts, progress=lambda n: progress.advance(task, n))
    bad = ~np.isfinite(X).all(axis=1) | (np.linalg.norm(X, axis=1) == 0)
    if bad.any():
        skipped["NaN or zero vectors from the embedder"] = int(bad.sum())
        keep = ~bad
        df, X, truncated = df[keep].reset_index(drop=True), X[keep], truncated[keep]

    calibrated = not raw
    mu = None
    if calibrated:
        mu_in = load_mu(center_from) if center_from else None
        Xc, mu, zero = calibrate(X, mu_in)
        if zero.any():
            skipped["vectors equal to the calibration mean"] = int(zero.sum())
            keep = ~zero
            df, Xc, truncated = df[keep].reset_index(drop=True), Xc[keep], truncated[keep]
        X = Xc
    else:
        X = X / np.linalg.norm(X, axis=1, keepdims=True)

    model_names = sorted(df["model"].unique())
    prompt_keys = list(dict.fromkeys(df["prompt_key"]))
    mcode = {m: i for i, m in enumerate(model_names)}
    pcode = {p: i for i, p in enumerate(prompt_keys)}
    pid = df.drop_duplicates("prompt_key").set_index("prompt_key")["prompt_id"].to_dict()
    rs = ResponseSet(
        X=X,
        model=df["model"].map(mcode).to_numpy(),
        prompt=df["prompt_key"].map(pcode).to_numpy(),
        model_names=model_names,
        prompt_ids=[str(pid.get(p) or p) for p in prompt_keys],
        texts=df["text"].tolist(),
        sample=df["sample_index"].to_numpy(),
    )
    attrs = store.model_attributes()
    group_map = _group_map(attrs, model_names, groups)
    derivatives = {m: a["base_model"] for m, a in attrs.items() if m in mcode and a.get("base_model") in mcode}
    if reference and reference not in mcode:
        raise UserError(f"--reference {reference!r} is not a model in the store; models: {', '.join(model_names)}")
    t0 = time.perf_counter()
    kwargs: dict[str, Any] = dict(groups=group_map, what_if_removed=list(what_if_removed or []), reference=reference, derivatives=derivatives or None, n_boot=n_boot, seed=seed, q=q)
    if tau is not None:
        kwargs["tau"] = tau
    result = measure_all(rs, **kwargs)
    elapsed = time.perf_counter() - t0

    summary = result.to_json_dict()
    summary["embedder"] = emb.name
    summary["calibrated"] = calibrated
    summary["truncated_texts"] = int(truncated.sum())
    summary.setdefault("skipped", {})
    summary["skipped"] = {**skipped, **(summary.get("skipped") or {})}
    settings = {
        "study": study, "embedder": emb.name, "calibrated": calibrated, "center_from": center_from,
        "n_boot": n_boot, "seed": seed, "q": q, "tau": tau, "groups": list(group_map), "what_if_removed": list(what_if_removed or []),
        "reference": reference, "responses": int(len(df)), "models": len(model_names), "prompts": len(prompt_keys),
        "seconds": round(elapsed, 3), "monoculture_version": _version(),
    }
    summary["settings"] = {**(summary.get("settings") or {}), **settings}  # the pipeline's own (permutations, draws) kept
    tables = result_tables(result)
    label = run_label(study, emb.name, calibrated)
    save_results(store, label, study, emb.name, calibrated, mu, summary, tables, settings)
    return Measured(label, summary, tables, settings, newly_embedded=new)


def result_tables(result) -> dict[str, pd.DataFrame]:
    """Every DataFrame a MeasureResult holds, by field name: what the report and notebooks read."""
    import dataclasses

    out = {}
    for f in dataclasses.fields(result):
        v = getattr(result, f.name)
        if isinstance(v, pd.DataFrame):
            out[f.name] = v
        elif hasattr(v, "__dataclass_fields__"):
            for g in dataclasses.fields(v):
                w = getattr(v, g.name)
                if isinstance(w, pd.DataFrame):
                    out[f"{f.name}.{g.name}"] = w
    return out


def _group_map(attrs: dict[str, dict], models: list[str], wanted) -> dict[str, dict[str, str]]:
    names = list(wanted) if wanted else list(GROUP_ATTRIBUTES)
    out: dict[str, dict[str, str]] = {}
    for attr in names:
        values = {m: str(attrs.get(m, {}).get(attr)) for m in models if attrs.get(m, {}).get(attr) is not None}
        if wanted and attr in wanted and not values:
            raise UserError(f"--groups {attr}: no model in the store has the attribute {attr!r} (set it under attributes: in the study file)")
        if values:
            out[attr] = values
    return out


def _version() -> str:
    from monoculture import __version__

    return __version__


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def dumps(obj) -> str:
    """JSON for results: numpy scalars converted, NaN written as null (JSON has no NaN)."""
    return json.dumps(_nan_to_none(obj), default=_json_default, ensure_ascii=False)


def _nan_to_none(o):
    if isinstance(o, float) and not np.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _nan_to_none(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_nan_to_none(v) for v in o]
    return o


def save_results(store: Store, label, study, embedder, calibrated, mu, summary, tables, settings) -> None:
    store.con.execute(RESULTS_SCHEMA)
    tables_json = {name: df.to_json(orient="split", index=True, double_precision=15) for name, df in tables.items()}
    with store.transaction():
        store.con.execute(
            "INSERT OR REPLACE INTO measure_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [label, study, embedder, calibrated, time.time(), None if mu is None else np.asarray(mu, dtype=np.float32).tolist(), dumps(summary), json.dumps(tables_json), dumps(settings)],
        )


def load_results(store: Store, label: str | None = None) -> Measured:
    """The latest stored measurement (or the one with ``label``) for the report and notebooks."""
    if not _has_runs(store):
        raise UserError(f"{store.path}: nothing measured yet; run `monoculture measure` first")
    sql = "SELECT label, summary, tables, settings FROM measure_runs"
    rows = store.con.execute(sql + (" WHERE label = ?" if label else "") + " ORDER BY created_at DESC", [label] if label else []).fetchall()
    if not rows:
        labels = [r[0] for r in store.con.execute("SELECT label FROM measure_runs").fetchall()]
        raise UserError(f"no measurement labelled {label!r}; labels: {', '.join(labels)}")
    lab, summary, tables, settings = rows[0]
    tables = {k: pd.read_json(StringIO(v), orient="split") for k, v in json.loads(tables).items()}
    return Measured(lab, json.loads(summary), tables, json.loads(settings))
