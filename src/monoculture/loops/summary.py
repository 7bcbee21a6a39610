"""The loop summary: every figure of a store's loops in one JSON-safe dict.

:func:`loop_summary` reads the chains (:func:`monoculture.loops.tables.read_steps`), scores every
text once per scorer, and puts together: attractors at the final step and at step 10
(:mod:`monoculture.loops.attractors`), the paired test between models, the trajectory of each
property (mean and bootstrap band over chains, step by step), the embedding measures of
:mod:`monoculture.loops.dynamics` and the motifs of :mod:`monoculture.loops.motifs`, and the image
loop's own summary (:mod:`monoculture.loops.images`). ``monoculture loop summary`` prints it and
the report's Loops section draws it.

:func:`loop_summary` writes nothing to the store but the embeddings cache (and not even that
when the store is open read-only); scores are not stored: every text is scored once per call.
:func:`stored_loop_summary` is what the commands call: it keeps each computed summary in the
``loop_summaries`` table under a digest of its settings and of the study's chains and step keys
(:func:`summary_digest`), and hands a stored one back while that digest still matches, so a
report of a large store does not rescore and re-embed every text each time it is written. A chain
that grows, a step retried, other settings or another release: another digest, a fresh summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monoculture.errors import UserError
from monoculture.jsonsafe import jsonable
from monoculture.loops import dynamics
from monoculture.loops.attractors import X_FROM, _rng, attractor_table, cluster_weights, paired_table
from monoculture.loops.image_measures import image_summary
from monoculture.loops.motifs import find_motifs
from monoculture.loops.scorers import DEFAULT_SCORERS, Scorer, get_scorers, score_frame
from monoculture.loops.tables import read_steps
from monoculture.store import Store

#: The second step attractors are reported at (METRICS.md: "the same at t = 10").
EARLY_STEP = 10

#: The settings a summary is computed with, and their defaults (``loops: summary:`` in a study
#: file and ``monoculture loop summary``'s options).
SUMMARY_DEFAULTS: dict[str, Any] = {
    "embedder": "tfidf",
    "scorers": list(DEFAULT_SCORERS),
    "x_from": "seed",
    "bootstrap": 1000,
    "seed": 0,
    "permutations": 999,
}

#: Packages behind the built-in scorers and the default embedder: a summary computed under other
#: versions of them is not reused.
_SUMMARY_PACKAGES = ("monoculture", "numpy", "scipy", "scikit-learn", "vaderSentiment", "textstat", "pyphen", "detoxify")


def _records(df: pd.DataFrame | None) -> list[dict]:
    """Row dicts of a dynamics frame, each ``<x>ci_low``/``<x>ci_high`` pair as ``<x>ci``."""
    if df is None or len(df) == 0:
        return []
    from monoculture.loops.dynamics import frame_records

    return jsonable(frame_records(df))


def trajectories(scored: pd.DataFrame, properties: Sequence[str], *, bootstrap: int = 1000, seed: int = 0) -> list[dict]:
    """Per (model, task, property, step): the mean over chains that reached the step and a
    percentile band from resampling seeds, each with all its replicate chains (the chains of one
    seed are not independent draws; with one chain per seed this is the chain bootstrap). One
    weight matrix per group, all steps at once."""
    rows: list[dict] = []
    for (label, task), g in scored.groupby(["label", "task"], sort=True):
        seed_of = g.drop_duplicates("chain_id").set_index("chain_id")["seed_id"]
        for prop in properties:
            wide = g.pivot_table(index="chain_id", columns="step", values=prop, aggfunc="first", dropna=False)
            Y = wide.to_numpy(dtype=float)  # (chains, steps), NaN where a chain has no score
            M = np.isfinite(Y)
            Y0 = np.where(M, Y, 0.0)
            n = Y.shape[0]
            count = M.sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = Y0.sum(axis=0) / count
            lo = hi = np.full(Y.shape[1], np.nan)
            if bootstrap > 0 and n >= 2 and seed_of.reindex(wide.index).nunique() >= 2:
                rng = _rng(seed, "trajectory", label, task, prop)
                W = cluster_weights(seed_of.reindex(wide.index).to_numpy(), bootstrap, rng)
                with np.errstate(invalid="ignore", divide="ignore"):
                    R = (W @ Y0) / (W @ M)  # (B, steps): NaN where a replicate drew no chain there
                with np.errstate(all="ignore"):
                    lo, hi = np.nanquantile(R, [0.025, 0.975], axis=0) if np.isfinite(R).any() else (lo, hi)
            for j, step in enumerate(wide.columns):
                rows.append(
                    {
                        "model": label,
                        "task": task,
                        "property": prop,
                        "step": int(step),
                        "mean": mean[j],
                        "ci": [lo[j], hi[j]] if count[j] >= 2 else [None, None],
                        "chains": int(count[j]),
                    }
                )
    return jsonable(rows)


def _read_only(store: Store) -> bool:
    try:
        rows = store.con.execute("SELECT readonly FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
        return bool(rows and rows[0][0])  # fetchall: DuckDB refuses the next query while a result is unfinished
    except Exception:
        return False


def embed_frame(store: Store, embedder: Any, texts: Sequence[str]) -> tuple[np.ndarray, str, list[str]]:
    """Unit-norm vectors of ``texts`` (row-aligned), the embedder's name, and notes. Vectors go
    through the store's embeddings cache (:func:`monoculture.embed.embed_cached`); a store
    opened read-only is only read, and the vectors it lacks are computed and not kept."""
    from monoculture.embed import embed_cached, get_embedder
    from monoculture.embedders.cache import _load
    from monoculture.hashing import text_hash

    emb = get_embedder(embedder)
    notes: list[str] = []
    if not _read_only(store):
        X, _, _ = embed_cached(store, emb, list(texts))
    else:
        hashes = [text_hash(t) for t in texts]
        uniq = dict(zip(hashes, texts))
        emb.fit(list(uniq.values()))
        try:
            have = {h: v for h, (v, _) in _load(store, getattr(emb, "cache_key", emb.name), list(uniq)).items()}
        except Exception:  # a store without an embeddings table yet
            have = {}
        todo = [h for h in uniq if h not in have]
        if todo:
            vecs = emb.embed([uniq[h] for h in todo])
            have.update(zip(todo, np.asarray(vecs, dtype=np.float32)))
            notes.append(f"store open read-only: {len(todo)} texts embedded with {emb.name} and not cached")
        X = np.stack([have[h] for h in hashes]) if hashes else np.zeros((0, 1), np.float32)
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        X = np.where(norms > 0, X / np.where(norms > 0, norms, 1.0), 0.0)
    return X, emb.name, notes


def _methods(x_from: str, scorers: Sequence[Scorer], embedder: str | None, bootstrap: int, permutations: int) -> str:
    x = (
        "f(x_0), the seed text"
        if x_from == "seed"
        else "f(x_1), the first generation (the variant of Perez et al.'s published length figures)"
    )
    props = "; ".join(f"{s.name}: {s.version}" for s in scorers)
    parts = [
        f"Attractors (Perez et al. 2024): for each model and task, the least-squares line f(x_T) = a + b x over its chains, "
        f"with x = {x}, at the final step T (the longest chain's last step; shorter chains left out and counted) and at "
        f"step {EARLY_STEP}. If -1 < b < 1, strength = 1 - |b| and position = a / (1 - b) clipped to the property's range; "
        "otherwise both are 0. p: the p-value of |b| < 1 from two one-sided t tests (the larger of the two). "
        f"Intervals: 95% percentile intervals from {bootstrap} resamples of the seeds of each model and task, each seed "
        "with all its replicate chains (they share everything but the sampling seed, so they are not independent draws); "
        "the position's over the resamples whose line has a fixed point. Strength at step T is 1 - |b|^T for chains "
        "x_{t+1} = a + b x_t + noise, so it grows with the chain's length: compare strengths at the same step.",
        f"Paired test: the difference of two models' strengths on the same task and property; seeds resampled in both "
        f"when the models ran the same seeds (else each model's seeds on their own), and p from {permutations} "
        "shuffles of the model labels among each seed's chains.",
        "Trajectories: the mean of each property over the chains that reached each step, with a 95% band from resampling "
        "seeds (each with its chains).",
        f"Properties: {props}. The built-in scorers remove #hashtags first, as the paper's code does.",
    ]
    if embedder:
        parts.append(f"Embedding measures (drift, convergence, diversity, motifs): {embedder}, unit-normalised vectors.")
    return " ".join(parts)


def loop_summary(
    store: Store,
    study: str | None = None,
    *,
    embedder: Any = "tfidf",
    scorers: Sequence[str | Scorer] = DEFAULT_SCORERS,
    x_from: str = "seed",
    bootstrap: int = 1000,
    seed: int = 0,
    permutations: int = 999,
) -> dict:
    """Every loop figure of ``study`` (all studies when None) in ``store``; keys as
    docs/loops.md lists them (chains, labels, scorers, x_from, attractors, paired, trajectories,
    drift, convergence, diversity, lexical, motifs, images, notes, methods). ``embedder=None``
    leaves the embedding measures out."""
    if x_from not in X_FROM:
        raise UserError(f"--x-from must be one of {', '.join(X_FROM)} (got {x_from!r})")
    if bootstrap < 0 or permutations < 0:
        raise UserError("bootstrap and permutations must be 0 or more")
    scorer_objs = get_scorers(list(scorers))
    notes: list[str] = []
    frame = read_steps(store, study, kind="text")
    if study is None:  # a chain two studies use appears once per study: measure it once
        frame = frame.drop_duplicates(["chain_id", "step"], keep="first").reset_index(drop=True)
    frame = frame[frame["text"].map(lambda t: isinstance(t, str))].reset_index(drop=True)
    out: dict[str, Any] = {
        "attractors": [],
        "chains": int(frame["chain_id"].nunique()) if len(frame) else 0,
        "labels": [],
        "scorers": [s.describe() for s in scorer_objs],
        "x_from": x_from,
        "paired": [],
        "trajectories": [],
        "drift": [],
        "convergence": [],
        "diversity": [],
        "lexical": [],
        "motifs": None,
        "images": None,
        "embedder": None,
    }
    for s in scorer_objs:
        if s.note:
            notes.append(f"{s.name}: {s.note}")
    if len(frame):
        last = frame.groupby("chain_id")["step"].max()
        per = frame.drop_duplicates("chain_id")[["chain_id", "label", "task"]].assign(last=lambda d: d["chain_id"].map(last))
        for (label, task), g in per.groupby(["label", "task"], sort=True):
            out["labels"].append(
                {
                    "label": label,
                    "task": task,
                    "chains": len(g),
                    "steps_min": int(g["last"].min()),
                    "steps_max": int(g["last"].max()),
                }
            )
        unstarted = int((last == 0).sum())
        if unstarted:
            notes.append(f"{unstarted} chain(s) have no step yet (only their seed) and are left out of every measure")

        cache: dict[tuple[str, str], float] = {}
        scored = score_frame(frame, scorer_objs, cache=cache)
        props = {s.name: s.bounds for s in scorer_objs}
        rows, att_notes = attractor_table(
            scored, props, x_from=x_from, steps=("final", EARLY_STEP), bootstrap=bootstrap, seed=seed
        )
        out["attractors"] = jsonable(rows)
        notes.extend(att_notes)
        out["paired"] = jsonable(
            paired_table(scored, list(props), x_from=x_from, bootstrap=bootstrap, permutations=permutations, seed=seed)
        )
        out["trajectories"] = trajectories(scored, list(props), bootstrap=bootstrap, seed=seed)
        if embedder is not None:
            _embedding_measures(store, frame, embedder, out, notes, bootstrap=bootstrap, seed=seed, permutations=permutations)
    else:
        notes.append("no text chains in the store" + (f" for study {study!r}" if study else ""))
    out["images"] = _images(store, study, seed, notes)
    out["notes"] = list(dict.fromkeys(notes))
    out["methods"] = _methods(x_from, scorer_objs, out["embedder"], bootstrap, permutations)
    return jsonable(out)


def _embedding_measures(
    store: Store, frame: pd.DataFrame, embedder: Any, out: dict, notes: list[str], *, bootstrap: int, seed: int, permutations: int
) -> None:
    """Drift, convergence, diversity, lexical and motifs into ``out``; a measure that cannot be
    computed is left empty with a note saying why (the attractors still stand)."""
    try:
        X, name, emb_notes = embed_frame(store, embedder, frame["text"].tolist())
    except UserError as e:
        notes.append(f"embedding measures left out: {e}")
        return
    out["embedder"] = name
    notes.extend(emb_notes)
    for key, call in (
        ("drift", lambda: dynamics.drift(frame, X, bootstrap=bootstrap, seed=seed)),
        ("convergence", lambda: dynamics.convergence(frame, X, bootstrap=bootstrap, seed=seed)),
        ("diversity", lambda: dynamics.diversity_loss(frame, X, bootstrap=bootstrap, seed=seed)),
        ("lexical", lambda: dynamics.lexical_by_step(frame)),
    ):
        try:
            out[key] = _records(call())
        except (UserError, ValueError) as e:
            notes.append(f"{key} left out: {e}")
    final, X_final = dynamics.finals(frame, X)
    if final["chain_id"].nunique() < 3:
        notes.append("motifs left out: fewer than 3 chains with a final text")
        return
    try:
        res = find_motifs(final, X_final, seed=seed, permutations=permutations)
        out["motifs"] = jsonable(res.to_dict())
    except (UserError, ValueError) as e:
        notes.append(f"motifs left out: {e}")


def _images(store: Store, study: str | None, seed: int, notes: list[str]) -> dict | None:
    """The image loop's summary (None when there are no image chains)."""
    try:
        return jsonable(image_summary(store, study, seed=seed))
    except (UserError, ValueError) as e:
        notes.append(f"image loops left out: {e}")
        return None


# -- terminal ---------------------------------------------------------------------------------
def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def _ci(ci: Any, digits: int = 3) -> str:
    if not ci or ci[0] is None:
        return "-"
    return f"[{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]"


def print_summary(summary: dict) -> None:
    """The attractor table (and the paired tests and notes) on the terminal, through the safe
    console: model and task names are other people's text."""
    from rich.table import Table

    from monoculture.terminal import stdout_console, styled

    console = stdout_console(highlight=False, soft_wrap=True)
    console.print(
        styled(
            "[bold]loops[/bold]: {} chains; x = {}; properties {}",
            summary["chains"],
            "f(x_0) (the seed)" if summary["x_from"] == "seed" else "f(x_1) (the first generation)",
            ", ".join(s["name"] for s in summary["scorers"]),
        )
    )
    t = Table(
        title="attractors (strength 1 - |slope|, position a / (1 - slope); 95% intervals over seeds, each with its chains)",
        title_justify="left",
    )
    for col in ("model", "task", "property", "step", "strength", "95% CI", "position", "95% CI ", "p (|b|<1)", "chains"):
        t.add_column(col, overflow="fold")
    for r in summary["attractors"]:
        t.add_row(
            str(r["model"]),
            str(r["task"]),
            r["property"],
            str(r["step"]),
            _fmt(r["strength"]),
            _ci(r["ci"]),
            _fmt(r["position"]),
            _ci(r["position_ci"]),
            "-" if r["p"] is None else f"{r['p']:.3g}",
            str(r["chains"]),
        )
    console.print(t)
    if summary["paired"]:
        pt = Table(title="paired: strength of A minus strength of B (final step)", title_justify="left")
        for col in ("task", "property", "model A", "model B", "difference", "95% CI", "p", "by seed"):
            pt.add_column(col, overflow="fold")
        for r in summary["paired"]:
            pt.add_row(
                str(r["task"]),
                r["property"],
                str(r["model_a"]),
                str(r["model_b"]),
                _fmt(r["difference"]),
                _ci(r["ci"]),
                "-" if r["p"] is None else f"{r['p']:.3g}",
                "yes" if r.get("paired") else "no",
            )
        console.print(pt)
    for note in summary["notes"]:
        console.print(f"note: {note}", style="dim")


# -- stored summaries ---------------------------------------------------------------------------
def summary_settings(**given: Any) -> dict[str, Any] | None:
    """The full, canonical settings of a summary (defaults filled in, scorers as a list of
    names, ``embedder`` a name or None), or None when a scorer or the embedder is an object
    rather than a name: such a summary cannot be keyed, so it is neither stored nor reused."""
    unknown = set(given) - set(SUMMARY_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown summary settings: {', '.join(sorted(unknown))}")
    # None leaves a setting at its default, except the embedder's: None leaves the embedding measures out
    out = {**SUMMARY_DEFAULTS, **{k: v for k, v in given.items() if v is not None or k == "embedder"}}
    scorers = out["scorers"]
    if isinstance(scorers, str):
        scorers = [x.strip() for x in scorers.split(",") if x.strip()]
    if not all(isinstance(x, str) for x in scorers) or not (out["embedder"] is None or isinstance(out["embedder"], str)):
        return None
    out["scorers"] = list(scorers)
    return out


def study_file_settings(target: str | Path | None) -> dict[str, Any]:
    """The ``loops: summary:`` settings of a study file (all of them, defaults filled in), or an
    empty dict when ``target`` is not a study file or the study has no ``loops:`` section."""
    if target is None or not str(target).endswith((".yaml", ".yml")):
        return {}
    from monoculture.study import load_study

    loops = load_study(target).loops
    return loops.summary.settings() if loops is not None else {}


def chains_digest(store: Store, study: str | None) -> str | None:
    """A digest of the chains a summary of ``study`` (all studies when None) reads: their ids
    and the keys of their successful steps (a key hashes the chain, the step and the exact
    input, so a retried or regenerated step changes it). None in a store without loop tables."""
    scope = "SELECT chain_id FROM study_loop_chains WHERE study = ?" if study is not None else "SELECT chain_id FROM loop_chains"
    args = [study] if study is not None else []
    try:
        chains = store.con.execute(
            f"SELECT count(*), md5(coalesce(string_agg(chain_id, ',' ORDER BY chain_id), '')) FROM ({scope})", args
        ).fetchall()[0]
        steps = store.con.execute(
            "SELECT count(*), md5(coalesce(string_agg(key, ',' ORDER BY key), '')) FROM loop_steps "
            f"WHERE error IS NULL AND chain_id IN ({scope})",
            args,
        ).fetchall()[0]
    except Exception:  # noqa: BLE001 - a store from before the loop tables
        return None
    return f"{chains[0]}:{chains[1]}/{steps[0]}:{steps[1]}"


def summary_digest(store: Store, study: str | None, settings: dict[str, Any]) -> str | None:
    """The key of a stored summary: the settings, the chains (:func:`chains_digest`), the
    versions of the packages behind the scorers, and a VADER lexicon named in the environment.
    A scorer or embedder named by a path is keyed by its path, not its files."""
    import os

    from monoculture.hashing import digest
    from monoculture.loops.scorers import VADER_LEXICON_ENV, _pkg_version

    chains = chains_digest(store, study)
    if chains is None:
        return None
    return digest(
        {
            "study": study,
            "settings": settings,
            "chains": chains,
            "packages": {p: _pkg_version(p) for p in _SUMMARY_PACKAGES},
            "vader_lexicon": os.environ.get(VADER_LEXICON_ENV, ""),
        }
    )


def read_stored_summary(store: Store, key: str | None) -> dict | None:
    """The summary stored under ``key``, or None (none there, no table yet, or unreadable)."""
    import json

    if key is None:
        return None
    try:
        rows = store.con.execute("SELECT summary FROM loop_summaries WHERE digest = ?", [key]).fetchall()
    except Exception:  # noqa: BLE001 - a store from before the table (opened read-only, nothing creates it)
        return None
    if not rows or rows[0][0] is None:
        return None
    try:
        out = json.loads(rows[0][0])
    except (TypeError, ValueError):
        return None
    return out if isinstance(out, dict) else None


def write_stored_summary(store: Store, key: str, study: str | None, settings: dict, summary: dict) -> bool:
    """Keep ``summary`` under ``key``; the study's earlier summaries with the same settings
    (for chains since grown) are dropped. False when the store is open read-only."""
    import json
    import time

    from monoculture.results import dumps

    if _read_only(store):
        return False
    settings = json.loads(dumps(settings))
    with store.transaction():
        old = store.con.execute(
            "SELECT digest, settings FROM loop_summaries WHERE study IS NOT DISTINCT FROM ?", [study]
        ).fetchall()
        stale = [d for d, s in old if d == key or _loads(s) == settings]
        for d in stale:
            store.con.execute("DELETE FROM loop_summaries WHERE digest = ?", [d])
        store.con.execute(
            "INSERT INTO loop_summaries VALUES (?, ?, ?, ?, ?)", [key, study, dumps(settings), dumps(summary), time.time()]
        )
    return True


def _loads(text: Any) -> Any:
    import json

    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def stored_loop_summary(
    store: Store,
    study: str | None = None,
    *,
    recompute: bool = False,
    write: bool = True,
    pending: list[tuple[str, str | None, dict, dict]] | None = None,
    **settings: Any,
) -> tuple[dict, bool]:
    """(the summary of ``study`` with ``settings`` (:data:`SUMMARY_DEFAULTS` where left out),
    whether it was read from the store). A stored summary whose digest matches is returned as
    it is, without scoring or embedding a text; otherwise it is computed and, with ``write``
    and a writable store, kept for next time. A summary computed on a store open read-only is
    appended to ``pending`` as (digest, study, settings, summary), for :func:`keep_summaries`
    to write once the store can be opened for writing."""
    canon = summary_settings(**settings)
    key = summary_digest(store, study, canon) if canon is not None else None
    if not recompute:
        found = read_stored_summary(store, key)
        if found is not None:
            return found, True
    full = canon if canon is not None else {**SUMMARY_DEFAULTS, **settings}
    result = loop_summary(store, study, **full)
    if write and key is not None and canon is not None:
        if not write_stored_summary(store, key, study, canon, result) and pending is not None:
            pending.append((key, study, canon, result))
    return result, False


def keep_summaries(store_path: str | Path, pending: Sequence[tuple[str, str | None, dict, dict]]) -> str | None:
    """Write summaries computed on a read-only connection (see :func:`stored_loop_summary`) to
    the store at ``store_path``; a note when it cannot be opened for writing (another process
    holds it, or the file is read-only), None otherwise. The summaries are only a cache, so a
    failure here loses nothing but the time the next reader spends computing them again."""
    if not pending:
        return None
    try:
        with Store(Path(store_path)) as st:
            for key, study, settings, summary in pending:
                write_stored_summary(st, key, study, settings, summary)
    except Exception as e:  # noqa: BLE001 - a cache write must never cost the report
        return f"the loop summary could not be kept in the store ({type(e).__name__}: {e}); the next report computes it again"
    return None
