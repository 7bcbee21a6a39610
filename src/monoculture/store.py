"""The DuckDB store: every prompt, model and generation, content-addressed.

Phases talk only through the store: ``run`` and ``import`` write generations, ``measure``
writes embeddings and results, ``report`` reads. Writes go in transactions of one batch, so a
SIGKILL loses at most the batch in flight and a rerun ends with exactly the rows an
uninterrupted run would have.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from monoculture.errors import UserError

DEFAULT_STORE = "monoculture.duckdb"

# The base tables, created where missing on every opening for writing. A change to a table that
# already exists is a migration (monoculture.migrations), which also upgrades old stores.
SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    name TEXT PRIMARY KEY,
    path TEXT,
    spec JSON,
    created_at DOUBLE,
    updated_at DOUBLE
);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    backend TEXT,
    model_id TEXT,
    revision TEXT,
    identity JSON,
    attributes JSON,
    source TEXT
);
CREATE TABLE IF NOT EXISTS prompts (
    prompt_key TEXT PRIMARY KEY,
    prompt_id TEXT,
    suite TEXT,
    text TEXT,
    messages JSON,
    language TEXT,
    category TEXT,
    tags JSON,
    group_id TEXT,
    options JSON,
    ordered BOOLEAN
);
CREATE TABLE IF NOT EXISTS study_models (study TEXT, model TEXT, PRIMARY KEY (study, model));
CREATE TABLE IF NOT EXISTS study_prompts (study TEXT, prompt_key TEXT, position INTEGER, PRIMARY KEY (study, prompt_key));
CREATE TABLE IF NOT EXISTS loop_chains (
    chain_id TEXT PRIMARY KEY,
    kind TEXT,
    task TEXT,
    instruction TEXT,
    seed_id TEXT,
    seed_text TEXT,
    models JSON,
    label TEXT,
    order_kind TEXT,
    replicate INTEGER,
    steps INTEGER,
    identity JSON,
    source TEXT,
    created_at DOUBLE
);
CREATE TABLE IF NOT EXISTS study_loop_chains (study TEXT, chain_id TEXT, PRIMARY KEY (study, chain_id));
CREATE TABLE IF NOT EXISTS loop_steps (
    key TEXT PRIMARY KEY,
    chain_id TEXT,
    step INTEGER,
    model TEXT,
    input_key TEXT,
    text TEXT,
    image BLOB,
    finish_reason TEXT,
    error TEXT,
    latency_s DOUBLE,
    attempts INTEGER,
    created_at DOUBLE
);
CREATE TABLE IF NOT EXISTS loop_summaries (digest TEXT PRIMARY KEY, study TEXT, settings JSON, summary JSON, created_at DOUBLE);
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    model TEXT,
    prompt_key TEXT,
    sample_index INTEGER,
    text TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_s DOUBLE,
    error TEXT,
    n_mode TEXT,
    logprobs JSON,
    params JSON,
    source TEXT,
    attempts INTEGER,
    created_at DOUBLE
);
"""

GEN_COLUMNS = [
    "key",
    "model",
    "prompt_key",
    "sample_index",
    "text",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "error",
    "n_mode",
    "logprobs",
    "params",
    "source",
    "attempts",
    "created_at",
]


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first value of a query that always yields a row (an aggregate, or a row just written):
    one place that says so, so that callers need not each handle a missing row."""
    row = con.execute(sql, list(params)).fetchone()
    if row is None:
        raise LookupError(f"query returned no row: {sql}")
    return row[0]


def _json(v: Any) -> str | None:
    return None if v is None else json.dumps(v, ensure_ascii=False, sort_keys=True)


class Store:
    """A DuckDB file holding one or more studies.

    Use as a context manager; one process writes at a time (DuckDB's rule)."""

    def __init__(self, path: str | Path = DEFAULT_STORE, *, read_only: bool = False, create: bool = True):
        self.path = Path(path)
        if not self.path.exists():
            if read_only or not create:
                raise UserError(f"no store at {self.path} (run `monoculture run` or `monoculture import` first, or pass --store)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = self._connect(read_only)
        from monoculture import migrations

        newer = migrations.unknown(self.con)
        if newer:
            self.con.close()
            raise UserError(
                f"written by a newer monoculture (migrations {', '.join(newer)} unknown here); upgrade monoculture to open it",
                where=str(self.path),
            )
        if not read_only:
            self.con.execute(SCHEMA)
            migrations.migrate(self.con)
        elif migrations.pending(self.con):
            # A store from an older release is upgraded once, in place, even by a reader (report,
            # ls): its readers expect today's tables. The migrations copy before they drop.
            self.con.close()
            self.con = self._connect(False, upgrading=True)
            try:
                self.con.execute(SCHEMA)
                migrations.migrate(self.con)
            finally:
                self.con.close()
            self.con = self._connect(True)

    def _connect(self, read_only: bool, upgrading: bool = False) -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as e:
            why = "was written by an older monoculture and must be upgraded once with write access, but " if upgrading else ""
            raise UserError(f"cannot open store: {why}{e}", where=str(self.path)) from None

    # -- lifecycle -----------------------------------------------------------------
    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def transaction(self):
        return _Transaction(self.con)

    # -- writes ----------------------------------------------------------------------
    def upsert_models(self, rows: Iterable[dict]) -> None:
        df = pd.DataFrame(
            [
                {
                    "name": r["name"],
                    "backend": r.get("backend"),
                    "model_id": r.get("model_id"),
                    "revision": r.get("revision"),
                    "identity": _json(r.get("identity")),
                    "attributes": _json(r.get("attributes") or {}),
                    "source": r.get("source"),
                }
                for r in rows
            ],
            columns=["name", "backend", "model_id", "revision", "identity", "attributes", "source"],
        )
        if len(df):
            self.con.execute("INSERT OR REPLACE INTO models SELECT * FROM df")

    def upsert_prompts(self, prompts: Sequence) -> None:
        """Add prompts; a prompt already present (same messages) keeps its first id."""
        df = pd.DataFrame(
            [
                {
                    "prompt_key": p.key,
                    "prompt_id": p.id,
                    "suite": p.suite,
                    "text": p.text,
                    "messages": _json(p.message_dicts()),
                    "language": p.language,
                    "category": p.category,
                    "tags": _json(list(p.tags)),
                    "group_id": p.group,
                    "options": _json(list(p.options)) if p.options else None,
                    "ordered": p.ordered,
                }
                for p in prompts
            ],
            columns=[
                "prompt_key",
                "prompt_id",
                "suite",
                "text",
                "messages",
                "language",
                "category",
                "tags",
                "group_id",
                "options",
                "ordered",
            ],
        )
        if len(df):
            df = df.drop_duplicates("prompt_key")
            self.con.execute("INSERT INTO prompts SELECT * FROM df ON CONFLICT DO NOTHING")

    def register_study(self, name: str, path: str | None, spec: dict, models: list[str], prompt_keys: list[str]) -> None:
        now = time.time()
        with self.transaction():
            old = self.con.execute("SELECT created_at FROM studies WHERE name = ?", [name]).fetchone()
            self.con.execute(
                "INSERT OR REPLACE INTO studies VALUES (?, ?, ?, ?, ?)",
                [name, path, _json(spec), old[0] if old else now, now],
            )
            self.con.execute("DELETE FROM study_models WHERE study = ?", [name])
            self.con.execute("DELETE FROM study_prompts WHERE study = ?", [name])
            sm = pd.DataFrame({"study": name, "model": models})  # noqa: F841 - read by the SQL
            sp = pd.DataFrame(  # noqa: F841 - read by the SQL
                {"study": name, "prompt_key": prompt_keys, "position": range(len(prompt_keys))}
            ).drop_duplicates("prompt_key")
            self.con.execute("INSERT INTO study_models SELECT * FROM sm")
            self.con.execute("INSERT INTO study_prompts SELECT * FROM sp")

    def write_generations(self, rows: list[dict]) -> None:
        """Write one batch in one transaction. A key seen before is replaced (a failed attempt
        by its retry), and its attempt count carried on."""
        if rows:
            with self.transaction():
                self.insert_generations(rows)

    def insert_generations(self, rows: list[dict]) -> None:
        """Insert inside the caller's transaction (see :meth:`write_generations`)."""
        if not rows:
            return
        df = pd.DataFrame(
            [{c: (_json(r.get(c)) if c in ("logprobs", "params") else r.get(c)) for c in GEN_COLUMNS} for r in rows],
            columns=GEN_COLUMNS,
        )
        df["created_at"] = df["created_at"].fillna(time.time())
        df["attempts"] = df["attempts"].fillna(1).astype("int64")
        df = df.drop_duplicates("key", keep="last")
        self.con.execute(
            """
            INSERT OR REPLACE INTO generations
            SELECT df.* REPLACE (coalesce(g.attempts, 0) + df.attempts AS attempts)
            FROM df LEFT JOIN generations g ON g.key = df.key
            """
        )

    def set_prompt_groups(self, groups: dict[str, str]) -> None:
        """Set the group of prompts already stored (``import --replace`` regrouping them)."""
        if groups:
            gdf = pd.DataFrame({"prompt_key": list(groups), "group_id": list(groups.values())})  # noqa: F841 - read by the SQL
            self.con.execute("UPDATE prompts SET group_id = gdf.group_id FROM gdf WHERE prompts.prompt_key = gdf.prompt_key")

    def remove(
        self, *, models: Sequence[str] = (), studies: Sequence[str] = (), prompts: Sequence[str] = (), dry_run: bool = False
    ) -> dict[str, Any]:
        """Remove models, studies or prompts, with their generations, in one transaction.

        See :mod:`monoculture.removal` for what goes with each; ``dry_run`` does the same work
        and rolls it back, so what it reports is exactly what a real run would remove."""
        from monoculture.removal import remove

        return remove(self, models=models, studies=studies, prompts=prompts, dry_run=dry_run)

    # -- reads -----------------------------------------------------------------------
    def model_names(self) -> set[str]:
        return {n for (n,) in self.con.execute("SELECT name FROM models").fetchall()}

    def generation_texts(self, keys: Sequence[str]) -> dict[str, str | None]:
        """key -> stored text, for the keys that are in the store (import's conflict check)."""
        if not keys:
            return {}
        kdf = pd.DataFrame({"key": list(keys)})  # noqa: F841 - read by the SQL
        return dict(self.con.execute("SELECT g.key, g.text FROM generations g JOIN kdf USING (key)").fetchall())

    def prompts_with_ids(self, ids: Sequence[str]) -> list[tuple[str, str, str]]:
        """(prompt_id, prompt_key, text) of the stored prompts that carry one of ``ids``."""
        if not ids:
            return []
        idf = pd.DataFrame({"prompt_id": list(ids)})  # noqa: F841 - read by the SQL
        return self.con.execute(
            "SELECT p.prompt_id, p.prompt_key, p.text FROM prompts p JOIN idf USING (prompt_id) ORDER BY 1, 2"
        ).fetchall()

    def prompt_groups(self, keys: Sequence[str]) -> dict[str, str | None]:
        """prompt_key -> stored group (None where it has none), for the keys that are stored."""
        if not keys:
            return {}
        kdf = pd.DataFrame({"prompt_key": list(keys)})  # noqa: F841 - read by the SQL
        return dict(self.con.execute("SELECT p.prompt_key, p.group_id FROM prompts p JOIN kdf USING (prompt_key)").fetchall())

    def done_keys(self, keys: Sequence[str]) -> set[str]:
        """Keys that already have a successful generation."""
        if not keys:
            return set()
        kdf = pd.DataFrame({"key": list(keys)})  # noqa: F841 - read by the SQL (DuckDB replacement scan)
        got = self.con.execute(
            "SELECT g.key FROM generations g JOIN kdf USING (key) WHERE g.error IS NULL AND g.text IS NOT NULL"
        ).fetchall()
        return {k for (k,) in got}

    def study_names(self) -> list[str]:
        return [r[0] for r in self.con.execute("SELECT name FROM studies ORDER BY created_at").fetchall()]

    def generations(
        self, study: str | None = None, *, models: Sequence[str] | None = None, include_failed: bool = False
    ) -> pd.DataFrame:
        """One row per generation, joined with its prompt and model; the notebook entry point."""
        where: list[str] = []
        params: list[Any] = []
        if study is not None:
            if study not in self.study_names():
                raise UserError(f"no study named {study!r} in {self.path}; studies: {', '.join(self.study_names()) or 'none'}")
            where.append("g.model IN (SELECT model FROM study_models WHERE study = ?)")
            where.append("g.prompt_key IN (SELECT prompt_key FROM study_prompts WHERE study = ?)")
            params += [study, study]
        if models:
            where.append("g.model IN (SELECT unnest(?))")
            params.append(list(models))
        if not include_failed:
            where.append("g.error IS NULL AND g.text IS NOT NULL")
        sql = f"""
            SELECT g.model, p.prompt_id, g.prompt_key, p.text AS prompt, g.sample_index, g.text,
                   g.finish_reason, g.prompt_tokens, g.completion_tokens, g.latency_s, g.error,
                   g.n_mode, g.logprobs, g.source, p.language, p.category, p.group_id, p.suite, g.key
            FROM generations g LEFT JOIN prompts p USING (prompt_key)
            {"WHERE " + " AND ".join(where) if where else ""}
            ORDER BY g.model, p.prompt_id, g.prompt_key, g.sample_index
        """
        return self.con.execute(sql, params).df()

    def models(self) -> pd.DataFrame:
        df = self.con.execute("SELECT * FROM models ORDER BY name").df()
        return df

    def model_attributes(self) -> dict[str, dict]:
        return {n: json.loads(a or "{}") for n, a in self.con.execute("SELECT name, attributes FROM models").fetchall()}

    def prompts(self) -> pd.DataFrame:
        return self.con.execute("SELECT * FROM prompts ORDER BY suite, prompt_id").df()

    def summary(self) -> dict[str, Any]:
        c = self.con
        return {
            "studies": c.execute(
                """SELECT s.name, s.path,
                          (SELECT count(*) FROM study_models m WHERE m.study = s.name) AS models,
                          (SELECT count(*) FROM study_prompts p WHERE p.study = s.name) AS prompts
                   FROM studies s ORDER BY s.created_at"""
            ).df(),
            "models": c.execute(
                """SELECT m.name, m.backend, m.model_id, m.source,
                          count(DISTINCT g.prompt_key) FILTER (WHERE g.error IS NULL) AS prompts,
                          count(g.key) FILTER (WHERE g.error IS NULL) AS generations,
                          count(g.key) FILTER (WHERE g.error IS NOT NULL) AS failed
                   FROM models m LEFT JOIN generations g ON g.model = m.name
                   GROUP BY ALL ORDER BY m.name"""
            ).df(),
            "prompts": scalar(c, "SELECT count(*) FROM prompts"),
            "generations": scalar(c, "SELECT count(*) FROM generations WHERE error IS NULL"),
            "failed": scalar(c, "SELECT count(*) FROM generations WHERE error IS NOT NULL"),
        }

    def export(self, out: str | Path, fmt: str = "parquet", study: str | None = None) -> Path:
        """Write one row per generation (model, prompt_id, prompt, sample_index, text, ...)."""
        from monoculture.files import writable_file

        if fmt not in ("parquet", "jsonl"):
            raise UserError(f"unknown export format {fmt!r}; use parquet or jsonl")
        out = Path(out)
        target = out if out.suffix == f".{fmt}" else out / f"generations.{fmt}"
        df = self.generations(study)  # an unknown study is refused before any folder is made
        writable_file(target)
        try:
            if fmt == "parquet":
                df.to_parquet(target, index=False)
            else:
                df.to_json(target, orient="records", lines=True, force_ascii=False)
        except OSError as e:
            raise UserError(f"cannot write: {e.strerror or e}", where=str(target)) from None
        return target


class _Transaction:
    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    def __enter__(self):
        self.con.execute("BEGIN TRANSACTION")
        return self.con

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.con.execute("COMMIT")
        else:
            self.con.execute("ROLLBACK")
        return False


def open_store(path: str | Path | None = None, *, read_only: bool = False, create: bool = True) -> Store:
    return Store(path or DEFAULT_STORE, read_only=read_only, create=create)
