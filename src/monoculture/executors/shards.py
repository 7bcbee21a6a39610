"""Parquet shards: how results computed elsewhere (a Ray cluster) reach the DuckDB store.

The store stays the single source of truth and is written by one process only, so a cluster's
results come back as files first: one Parquet shard per batch, written whole to a temporary name
and renamed (a reader never sees half a shard). Merging a shard is one transaction that inserts
its rows *and* records the shard's name in ``merged_shards``; a shard merged twice (a crash
between the commit and the rename, or a copy of the folder) therefore adds nothing. A row whose
key already has a successful generation is never replaced by the shard's, so the order in which
shards merge cannot turn an answer back into an error.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from monoculture.store import GEN_COLUMNS, Store

SUFFIX = ".parquet"
MERGED_SUFFIX = ".merged"
# Created on first merge: a table of its own that the store's own tables never depend on.
_TABLE = "CREATE TABLE IF NOT EXISTS merged_shards (shard TEXT PRIMARY KEY, rows INTEGER, merged_at DOUBLE)"

#: The columns a shard holds: the store's generation columns; logprobs and params as JSON text
#: (their shape varies by backend, and Parquet wants one type per column).
_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("model", pa.string()),
        ("prompt_key", pa.string()),
        ("sample_index", pa.int64()),
        ("text", pa.string()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("latency_s", pa.float64()),
        ("error", pa.string()),
        ("n_mode", pa.string()),
        ("logprobs", pa.string()),
        ("params", pa.string()),
        ("source", pa.string()),
        ("attempts", pa.int64()),
    ]
)


def shards_dir_for(store_path: Path, override: str | Path | None = None) -> Path:
    """The folder of a store's shards: ``STORE.shards`` beside it unless the study names one."""
    if override:
        return Path(override)
    return store_path.with_name(store_path.name + ".shards")


def write_shard(folder: Path, rows: list[dict]) -> Path | None:
    """Write ``rows`` (store generation rows) as one shard; returns its path (None for no rows).
    Written to a dot-name and renamed, so a kill leaves either a whole shard or none."""
    if not rows:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    cols: dict[str, list] = {name: [] for name in _SCHEMA.names}
    for r in rows:
        for name in _SCHEMA.names:
            v = r.get(name)
            if name in ("logprobs", "params"):
                v = None if v is None else json.dumps(v, sort_keys=True, ensure_ascii=False)
            cols[name].append(v)
    table = pa.table(cols, schema=_SCHEMA)
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}{SUFFIX}"
    tmp = folder / f".{name}.tmp"
    pq.write_table(table, tmp)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    final = folder / name
    os.replace(tmp, final)
    return final


def read_shard(path: Path) -> list[dict]:
    """A shard's rows as the store takes them (JSON columns parsed back)."""
    out = []
    for r in pq.read_table(path).to_pylist():
        for name in ("logprobs", "params"):
            if r.get(name) is not None:
                r[name] = json.loads(r[name])
        out.append({c: r.get(c) for c in GEN_COLUMNS if c in r})
    return out


def pending_shards(folder: Path) -> list[Path]:
    """Complete shards not yet marked merged, oldest first (temporary files are not shards)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))


def merge_shard(store: Store, path: Path) -> int:
    """Merge one shard in one transaction; returns the rows it added or replaced (0 when the
    shard was merged before). Renamed to ``*.merged`` afterwards: the rename is bookkeeping
    only, the ``merged_shards`` row is what makes a second merge add nothing."""
    store.con.execute(_TABLE)
    added = 0
    with store.transaction():
        seen = store.con.execute("SELECT 1 FROM merged_shards WHERE shard = ?", [path.name]).fetchone()
        if not seen:
            rows = read_shard(path)
            done = store.done_keys([r["key"] for r in rows])
            fresh = [r for r in rows if r["key"] not in done]
            store.insert_generations(fresh)
            store.con.execute("INSERT INTO merged_shards VALUES (?, ?, ?)", [path.name, len(rows), time.time()])
            added = len(fresh)
    os.replace(path, path.with_name(path.name + MERGED_SUFFIX))
    return added


def merge_pending(store: Store, folder: Path) -> tuple[int, int]:
    """Merge every complete shard left in ``folder`` (a killed driver's); returns (shards, rows)."""
    shards = pending_shards(folder)
    rows = sum(merge_shard(store, p) for p in shards)
    return len(shards), rows
