"""Probe tables in the study's DuckDB store (all prefixed ``probe_``).

* ``probe_items``: the items as asked (question, options, ordered), for the report.
* ``probe_answers``: every sampled answer, its text and how it parsed (``sample`` method).
  Keyed like a generation (model identity, messages, sampling, sample index), so a rerun asks
  only for what is missing or failed.
* ``probe_distributions``: one option distribution per (model, item, language, method, steer
  country or NULL), keyed by a hash of everything that determines it. For ``logprobs`` the row
  is the measurement; for ``sample`` it is recomputed from the answers at the end of each run.
  A model whose identity changed (new revision) gets new keys; readers take the newest row.
* ``probe_countries``: human reference distributions, per (question group, country).
* ``probe_study_models``: which models a study probed, so a report can keep to one study.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from monoculture.probes.items import Item
from monoculture.store import Store, scalar

SCHEMA = """
CREATE TABLE IF NOT EXISTS probe_items (
    item_id TEXT PRIMARY KEY, group_id TEXT, language TEXT, suite TEXT, question TEXT,
    options JSON, ordered BOOLEAN
);
CREATE TABLE IF NOT EXISTS probe_answers (
    key TEXT PRIMARY KEY, model TEXT, item_id TEXT, group_id TEXT, language TEXT, steer TEXT,
    sample_index INTEGER, text TEXT, error TEXT, finish_reason TEXT, outcome TEXT,
    option_index INTEGER, parse_via TEXT, parser_version INTEGER, attempts INTEGER, created_at DOUBLE
);
CREATE TABLE IF NOT EXISTS probe_distributions (
    key TEXT PRIMARY KEY, model TEXT, item_id TEXT, group_id TEXT, language TEXT, method TEXT,
    steer TEXT, status TEXT, probs JSON, n_options INTEGER, n_answers INTEGER, n_total INTEGER,
    outcomes JSON, option_mass DOUBLE, raw JSON, error TEXT, identity TEXT, created_at DOUBLE
);
CREATE TABLE IF NOT EXISTS probe_countries (
    group_id TEXT, country TEXT, probs JSON, dropped_share DOUBLE, source TEXT, created_at DOUBLE,
    PRIMARY KEY (group_id, country)
);
CREATE TABLE IF NOT EXISTS probe_study_models (study TEXT, model TEXT, PRIMARY KEY (study, model));
"""

ANSWER_COLUMNS = [
    "key",
    "model",
    "item_id",
    "group_id",
    "language",
    "steer",
    "sample_index",
    "text",
    "error",
    "finish_reason",
    "outcome",
    "option_index",
    "parse_via",
    "parser_version",
    "attempts",
    "created_at",
]
DIST_COLUMNS = [
    "key",
    "model",
    "item_id",
    "group_id",
    "language",
    "method",
    "steer",
    "status",
    "probs",
    "n_options",
    "n_answers",
    "n_total",
    "outcomes",
    "option_mass",
    "raw",
    "error",
    "identity",
    "created_at",
]


def _json(v) -> str | None:
    return None if v is None else json.dumps(v, ensure_ascii=False, sort_keys=True)


def ensure_schema(store: Store) -> None:
    store.con.execute(SCHEMA)


def has_tables(store: Store) -> bool:
    n = scalar(
        store.con,
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('probe_distributions', 'probe_countries')",
    )
    return n == 2


def write_items(store: Store, items: Sequence[Item]) -> None:
    df = pd.DataFrame(
        [
            {
                "item_id": i.id,
                "group_id": i.group,
                "language": i.language,
                "suite": i.suite,
                "question": i.question,
                "options": _json(list(i.options)),
                "ordered": i.ordered,
            }
            for i in items
        ],
        columns=["item_id", "group_id", "language", "suite", "question", "options", "ordered"],
    ).drop_duplicates("item_id", keep="last")
    if len(df):
        with store.transaction():
            store.con.execute("INSERT OR REPLACE INTO probe_items SELECT * FROM df")


def register_models(store: Store, study: str, models: Iterable[str]) -> None:
    df = pd.DataFrame({"study": study, "model": list(models)})
    if len(df):
        with store.transaction():
            store.con.execute("INSERT OR REPLACE INTO probe_study_models SELECT * FROM df")


def _keys_where(store: Store, table: str, keys: Sequence[str], condition: str) -> set[str]:
    if not keys:
        return set()
    kdf = pd.DataFrame({"key": list(keys)})  # noqa: F841 - read by the SQL (DuckDB replacement scan)
    rows = store.con.execute(f"SELECT t.key FROM {table} t JOIN kdf USING (key) WHERE {condition}").fetchall()
    return {k for (k,) in rows}


def done_distribution_keys(store: Store, keys: Sequence[str]) -> set[str]:
    """Rows that need no retry: measured, or found to put no mass on any option (asking again
    gives the same answer). Errors are retried."""
    return _keys_where(store, "probe_distributions", keys, "t.status <> 'error'")


def done_answer_keys(store: Store, keys: Sequence[str]) -> set[str]:
    return _keys_where(store, "probe_answers", keys, "t.error IS NULL AND t.text IS NOT NULL")


def write_distributions(store: Store, rows: list[dict]) -> None:
    if not rows:
        return
    now = time.time()
    df = pd.DataFrame(  # noqa: F841 - read by the SQL (DuckDB replacement scan)
        [
            {
                c: (_json(r.get(c)) if c in ("probs", "outcomes", "raw") else r.get(c, now if c == "created_at" else None))
                for c in DIST_COLUMNS
            }
            for r in rows
        ],
        columns=DIST_COLUMNS,
    ).drop_duplicates("key", keep="last")
    with store.transaction():
        store.con.execute("INSERT OR REPLACE INTO probe_distributions SELECT * FROM df")


def write_answers(store: Store, rows: list[dict]) -> None:
    """One batch, one transaction; a retried key replaces its failure and counts the attempt."""
    if not rows:
        return
    now = time.time()
    df = pd.DataFrame([{c: r.get(c) for c in ANSWER_COLUMNS} for r in rows], columns=ANSWER_COLUMNS)
    df["created_at"] = df["created_at"].fillna(now)
    df["attempts"] = df["attempts"].fillna(1).astype("int64")
    df["sample_index"] = df["sample_index"].astype("int64")
    df["option_index"] = df["option_index"].astype("Int64")
    df["parser_version"] = df["parser_version"].astype("Int64")
    df = df.drop_duplicates("key", keep="last")
    with store.transaction():
        store.con.execute(
            """INSERT OR REPLACE INTO probe_answers
               SELECT df.* REPLACE (coalesce(a.attempts, 0) + df.attempts AS attempts)
               FROM df LEFT JOIN probe_answers a ON a.key = df.key"""
        )


def answers_for(store: Store, keys: Sequence[str]) -> pd.DataFrame:
    kdf = pd.DataFrame({"key": list(keys)})  # noqa: F841 - read by the SQL (DuckDB replacement scan)
    return store.con.execute("SELECT a.* FROM probe_answers a JOIN kdf USING (key)").df()


def stale_answers(store: Store, model: str, version: int) -> pd.DataFrame:
    return store.con.execute(
        "SELECT key, group_id, text FROM probe_answers WHERE model = ? AND text IS NOT NULL AND coalesce(parser_version, -1) <> ?",
        [model, version],
    ).df()


def update_parses(store: Store, rows: list[dict]) -> None:
    if not rows:
        return
    df = pd.DataFrame(rows, columns=["key", "outcome", "option_index", "parse_via", "parser_version"])
    df["option_index"] = df["option_index"].astype("Int64")
    with store.transaction():
        store.con.execute(
            """UPDATE probe_answers SET outcome = df.outcome, option_index = df.option_index,
                      parse_via = df.parse_via, parser_version = df.parser_version
               FROM df WHERE probe_answers.key = df.key"""
        )


def write_countries(
    store: Store, dists: dict[tuple[str, str], np.ndarray], dropped: dict[tuple[str, str], float], source: str
) -> None:
    now = time.time()
    df = pd.DataFrame(
        [
            {
                "group_id": g,
                "country": c,
                "probs": _json([float(x) for x in p]),
                "dropped_share": float(dropped.get((g, c), 0.0)),
                "source": source,
                "created_at": now,
            }
            for (g, c), p in dists.items()
        ],
        columns=["group_id", "country", "probs", "dropped_share", "source", "created_at"],
    )
    if len(df):
        with store.transaction():
            store.con.execute("INSERT OR REPLACE INTO probe_countries SELECT * FROM df")


# -- reads ------------------------------------------------------------------------------------


def read_distributions(store: Store, *, study: str | None = None, models: Sequence[str] | None = None) -> pd.DataFrame:
    """The newest row per (model, item, language, method, steer), with its item's details."""
    where: list[str] = []
    params: list[object] = []
    if study is not None:
        where.append(
            "(d.model IN (SELECT model FROM probe_study_models WHERE study = ?)"
            " OR d.model IN (SELECT model FROM study_models WHERE study = ?))"
        )
        params += [study, study]
    if models:
        where.append("d.model IN (SELECT unnest(?))")
        params.append(list(models))
    sql = f"""
        SELECT d.*, i.ordered, i.question
        FROM probe_distributions d LEFT JOIN probe_items i USING (item_id)
        {"WHERE " + " AND ".join(where) if where else ""}
        QUALIFY row_number() OVER (
            PARTITION BY d.model, d.item_id, d.language, d.method, coalesce(d.steer, '')
            ORDER BY d.created_at DESC, d.key) = 1
        ORDER BY d.model, d.method, d.item_id
    """
    df = store.con.execute(sql, params).df()
    df["probs"] = df["probs"].map(lambda s: np.asarray(json.loads(s), dtype=float) if isinstance(s, str) else None)
    df["outcomes"] = df["outcomes"].map(lambda s: json.loads(s) if isinstance(s, str) else None)
    df["steer"] = df["steer"].astype(object).where(df["steer"].notna(), None)
    return df


def read_countries(store: Store) -> dict[tuple[str, str], np.ndarray]:
    rows = store.con.execute("SELECT group_id, country, probs FROM probe_countries").fetchall()
    return {(g, c): np.asarray(json.loads(p), dtype=float) for g, c, p in rows}


def read_items(store: Store) -> pd.DataFrame:
    return store.con.execute("SELECT * FROM probe_items ORDER BY group_id, language").df()


def unparsed_examples(store: Store, models: Sequence[str] | None = None, per_model: int = 3) -> pd.DataFrame:
    """A few answers that did not parse, per model and outcome, to show what the counts hide."""
    params: list = []
    cond = ""
    if models:
        cond = "AND model IN (SELECT unnest(?))"
        params.append(list(models))
    return store.con.execute(
        f"""SELECT model, outcome, language, item_id, text FROM probe_answers
            WHERE outcome IN ('refusal', 'ambiguous', 'unparseable') AND text IS NOT NULL {cond}
            QUALIFY row_number() OVER (PARTITION BY model, outcome ORDER BY item_id, sample_index, key) <= ?
            ORDER BY model, outcome, item_id""",
        params + [per_model],
    ).df()
