"""Dated snapshots of Hub metadata in the shared store.

The Hub only ever shows the present: today's 30-day downloads, today's licence. Trends exist
only if every fetch is kept, so each fetch or imported file becomes a snapshot with the moment
it was taken, and the same model appears once per snapshot. All metadata, whatever its source
(the live API, a saved JSON file, a crawler's CSV), passes through :func:`normalize_model`, which
accepts both the API's camelCase and huggingface_hub's snake_case spellings and counts what it
cannot use instead of failing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import yaml

from monoculture.ecosystem.quality import Tally, is_floor_date, is_missing, parse_int, parse_timestamp

SNAPSHOT_FORMAT = "monoculture-ecosystem-snapshot"
RELATIONS = ("finetune", "adapter", "quantized", "merge")
UNSPECIFIED = "unspecified"

SCHEMA = """
CREATE TABLE IF NOT EXISTS eco_snapshots (
    snapshot_id TEXT PRIMARY KEY,
    taken_at TIMESTAMP,
    kind TEXT,
    origin TEXT,
    status TEXT,
    n_models INTEGER,
    n_edges INTEGER,
    note TEXT
);
CREATE TABLE IF NOT EXISTS eco_models (
    snapshot_id TEXT,
    model_id TEXT,
    author TEXT,
    created_at TIMESTAMP,
    created_floor BOOLEAN,
    last_modified TIMESTAMP,
    downloads BIGINT,
    downloads_all_time BIGINT,
    likes BIGINT,
    gated TEXT,
    licence TEXT,
    library_name TEXT,
    pipeline_tag TEXT,
    params BIGINT,
    children_count BIGINT,
    sha TEXT,
    tags JSON,
    raw JSON,
    PRIMARY KEY (snapshot_id, model_id)
);
CREATE TABLE IF NOT EXISTS eco_edges (
    snapshot_id TEXT,
    child TEXT,
    parent TEXT,
    relation TEXT,
    origin TEXT,
    PRIMARY KEY (snapshot_id, child, parent, relation)
);
CREATE TABLE IF NOT EXISTS eco_issues (
    source TEXT,
    kind TEXT,
    count INTEGER,
    examples JSON,
    PRIMARY KEY (source, kind)
);
"""

MODEL_COLUMNS = [
    "snapshot_id",
    "model_id",
    "author",
    "created_at",
    "created_floor",
    "last_modified",
    "downloads",
    "downloads_all_time",
    "likes",
    "gated",
    "licence",
    "library_name",
    "pipeline_tag",
    "params",
    "children_count",
    "sha",
    "tags",
    "raw",
]
EDGE_COLUMNS = ["snapshot_id", "child", "parent", "relation", "origin"]

_CARD_KEYS = (
    "license",
    "license_name",
    "license_link",
    "base_model",
    "base_model_relation",
    "language",
    "pipeline_tag",
    "library_name",
    "tags",
)
_HUB_PREFIX = re.compile(r"^https?://(www\.)?huggingface\.co/", re.I)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(SCHEMA)


def clean_model_id(v: Any) -> str | None:
    """A Hub id from an id, a model URL, or a crawler's cell; None if unusable."""
    if is_missing(v) or not isinstance(v, str):
        return None
    s = _HUB_PREFIX.sub("", v.strip()).strip("/")
    s = s.split("?")[0].split("#")[0]
    return s or None


def _first(d: dict, *keys: str) -> Any:
    for k in keys:
        if k in d and not is_missing(d[k]):
            return d[k]
    return None


def _text(d: dict, tally: Tally, mid: str, *keys: str) -> str | None:
    """A text field, or None (counted as ``bad_type``) when it holds a list, number or object: a
    crawler's odd cell must not reach a TEXT column, where it would stop the whole import."""
    v = _first(d, *keys)
    if v is None or isinstance(v, str):
        return v
    tally.add("bad_type", mid, f"{keys[0]} is not text")
    return None


def _params(d: dict) -> Any:
    st = d.get("safetensors")
    if isinstance(st, dict):
        if not is_missing(st.get("total")):
            return st.get("total")
        p = st.get("parameters")
        if isinstance(p, dict) and p:
            try:
                return sum(float(x) for x in p.values())
            except (TypeError, ValueError):
                return repr(p)  # not a number: parse_int counts it
    return _first(d, "num_parameters", "parameters_raw")


def _licence(tags: list[str], card: dict) -> str | None:
    lic: Any = next((t.split(":", 1)[1] for t in tags if t.startswith("license:")), None)  # the card may hold any JSON
    if lic is None:
        raw = card.get("license")
        lic = raw[0] if isinstance(raw, list) and raw else raw
    if lic in (None, "other") and card.get("license_name"):
        return str(card["license_name"])
    return None if lic is None else str(lic)


def base_links(model_id: str, tags: list[str], card: dict, base_models: Any) -> list[tuple[str, str, str]]:
    """(parent, relation, origin) from tags, the ``baseModels`` expansion, and the card.

    The Hub writes two tags per base (``base_model:X`` and ``base_model:<relation>:X``); a plain
    tag only yields a link with relation "unspecified" when no typed tag names the same base. The card's
    ``base_model`` is used only when neither tags nor ``baseModels`` name a base: the tags are the
    Hub's resolved reading of the card, and stale card lists would otherwise add links the Hub dropped."""
    typed: dict[str, str] = {}
    plain: list[str] = []
    for t in tags:
        if not isinstance(t, str) or not t.startswith("base_model:"):
            continue
        rest = t[len("base_model:") :]
        head, _, tail = rest.partition(":")
        if tail and head in RELATIONS:
            typed.setdefault(clean_model_id(tail) or "", head)
        else:
            plain.append(clean_model_id(rest) or "")
    links = [(p, r, "tag") for p, r in typed.items() if p]
    links += [(p, UNSPECIFIED, "tag") for p in plain if p and p not in typed]
    seen = {p for p, _, _ in links}
    if base_models:
        items: list = []
        relation = UNSPECIFIED
        if isinstance(base_models, dict):
            relation = str(base_models.get("relation") or UNSPECIFIED)
            items = base_models.get("models") or []
        elif isinstance(base_models, list):
            items = base_models
        for it in items:
            pid = clean_model_id(it.get("id") if isinstance(it, dict) else it)
            if pid and pid not in seen:
                links.append((pid, relation if relation in RELATIONS else UNSPECIFIED, "baseModels"))
                seen.add(pid)
    bm = card.get("base_model")
    if bm and not links:  # the Hub's tags are its own reading of the card; the raw card is the fallback
        rel = str(card.get("base_model_relation") or UNSPECIFIED)
        for p in bm if isinstance(bm, list) else [bm]:
            pid = clean_model_id(p)
            if pid and pid not in seen:
                links.append((pid, rel if rel in RELATIONS else UNSPECIFIED, "cardData"))
                seen.add(pid)
    return links


def normalize_model(d: Any, tally: Tally, *, taken_at: datetime | None = None) -> tuple[dict | None, list[tuple[str, str, str]]]:
    """One Hub model record as a store row plus its base-model links; (None, []) if unusable."""
    if not isinstance(d, dict):
        tally.add("bad_type", repr(d)[:80], "model record is not an object")
        return None, []
    mid = clean_model_id(_first(d, "id", "modelId", "model_id", "name"))
    if mid is None or any(ord(ch) < 32 for ch in mid):
        tally.add("bad_model_id", repr(_first(d, "id", "modelId", "model_id"))[:80])
        return None, []
    tags = d.get("tags")
    if tags is None:
        tags = []
    elif not isinstance(tags, list):
        tally.add("bad_type", mid, "tags is not a list")
        tags = []
    tags = [t for t in tags if isinstance(t, str)]
    card = _first(d, "cardData", "card_data") or {}
    if isinstance(card, str):  # huggingface_hub's ModelCardData printed as YAML by some crawlers
        try:
            card = yaml.load(card, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        except yaml.YAMLError:
            card = None
    if not isinstance(card, dict):
        tally.add("bad_type", mid, "cardData is not an object")
        card = {}
    created = parse_timestamp(_first(d, "createdAt", "created_at"), tally, mid, "createdAt", not_after=taken_at)
    floor = is_floor_date(created)
    if floor:
        tally.add("floor_date", mid)
    if created is None and _first(d, "createdAt", "created_at") is None:
        tally.add("missing_field", mid, "createdAt")
    gated = d.get("gated")
    row = {
        "model_id": mid,
        "author": _text(d, tally, mid, "author") or (mid.split("/")[0] if "/" in mid else None),
        "created_at": created,
        "created_floor": floor,
        "last_modified": parse_timestamp(
            _first(d, "lastModified", "last_modified"), tally, mid, "lastModified", not_after=taken_at
        ),
        "downloads": parse_int(d.get("downloads"), tally, mid, "downloads"),
        "downloads_all_time": parse_int(_first(d, "downloadsAllTime", "downloads_all_time"), tally, mid, "downloadsAllTime"),
        "likes": parse_int(d.get("likes"), tally, mid, "likes"),
        "gated": None if gated is None else str(gated).lower(),
        "licence": _licence(tags, card),
        "library_name": _text(d, tally, mid, "library_name", "libraryName"),
        "pipeline_tag": _text(d, tally, mid, "pipeline_tag", "pipelineTag"),
        "params": parse_int(_params(d), tally, mid, "safetensors.total"),
        "children_count": parse_int(d.get("childrenModelCount"), tally, mid, "childrenModelCount"),
        "sha": d.get("sha") if isinstance(d.get("sha"), str) else None,
        "tags": tags,
    }
    raw = {
        k: d[k]
        for k in (
            "id",
            "modelId",
            "author",
            "createdAt",
            "created_at",
            "lastModified",
            "last_modified",
            "downloads",
            "downloadsAllTime",
            "likes",
            "gated",
            "library_name",
            "pipeline_tag",
            "baseModels",
            "childrenModelCount",
            "sha",
        )
        if k in d and not is_missing(d[k])
    }
    raw["id"] = mid
    raw["tags"] = tags
    if card:
        raw["cardData"] = {k: card[k] for k in _CARD_KEYS if k in card}
    if row["params"] is not None:
        raw["safetensors"] = {"total": row["params"]}
    row["raw"] = raw
    links = []
    for parent, relation, origin in base_links(mid, tags, card, _first(d, "baseModels", "base_models")):
        if parent == mid:
            tally.add("self_loop", mid)
            continue
        links.append((parent, relation, origin))
    return row, links


def _jsonable(v: Any) -> Any:
    if isinstance(v, (datetime, pd.Timestamp)):
        return v.isoformat()
    return str(v)


def write_models(
    con: duckdb.DuckDBPyConnection, snapshot_id: str, rows: list[dict], edges: list[tuple[str, str, str, str]]
) -> None:
    """Upsert one batch inside the caller's transaction; a re-sent model replaces itself."""
    if rows:
        df = pd.DataFrame(
            [
                {
                    **{c: r.get(c) for c in MODEL_COLUMNS},
                    "snapshot_id": snapshot_id,
                    "tags": json.dumps(r.get("tags") or [], ensure_ascii=False),
                    "raw": json.dumps(r.get("raw") or {}, ensure_ascii=False, default=_jsonable),
                }
                for r in rows
            ],
            columns=MODEL_COLUMNS,
        ).drop_duplicates("model_id", keep="last")
        for c in ("downloads", "downloads_all_time", "likes", "params", "children_count"):
            df[c] = df[c].astype("Int64")
        df["created_at"] = pd.to_datetime(df["created_at"])
        df["last_modified"] = pd.to_datetime(df["last_modified"])
        con.execute("INSERT OR REPLACE INTO eco_models SELECT * FROM df")
    if edges:
        edf = pd.DataFrame([(snapshot_id, c, p, r, o) for c, p, r, o in edges], columns=EDGE_COLUMNS)
        edf = edf.drop_duplicates(["child", "parent", "relation"], keep="first")
        con.execute("INSERT OR REPLACE INTO eco_edges SELECT * FROM edf")


def add_links(con: duckdb.DuckDBPyConnection, snapshot_id: str, links: list[tuple[str, str, str, str]]) -> None:
    """Add links from a second source; a link both sources name keeps both origins (``tag+dump-list``)."""
    if not links:
        return
    edf = pd.DataFrame([(snapshot_id, c, p, r, o) for c, p, r, o in links], columns=EDGE_COLUMNS)
    edf = edf.drop_duplicates(["child", "parent", "relation"], keep="first")
    con.execute(
        "INSERT INTO eco_edges SELECT * FROM edf ON CONFLICT (snapshot_id, child, parent, relation) "
        "DO UPDATE SET origin = CASE WHEN contains(eco_edges.origin, excluded.origin) THEN eco_edges.origin "
        "ELSE eco_edges.origin || '+' || excluded.origin END"
    )


def register_snapshot(
    con: duckdb.DuckDBPyConnection, snapshot_id: str, taken_at: datetime, kind: str, origin: str, status: str, note: str = ""
) -> None:
    con.execute(
        "INSERT OR REPLACE INTO eco_snapshots VALUES (?, ?, ?, ?, ?, "
        "(SELECT count(*) FROM eco_models WHERE snapshot_id = ?), (SELECT count(*) FROM eco_edges WHERE snapshot_id = ?), ?)",
        [snapshot_id, taken_at, kind, origin, status, snapshot_id, snapshot_id, note],
    )


def finish_snapshot(con: duckdb.DuckDBPyConnection, snapshot_id: str, status: str = "complete") -> None:
    con.execute(
        "UPDATE eco_snapshots SET status = ?, n_models = (SELECT count(*) FROM eco_models WHERE snapshot_id = ?), "
        "n_edges = (SELECT count(*) FROM eco_edges WHERE snapshot_id = ?) WHERE snapshot_id = ?",
        [status, snapshot_id, snapshot_id, snapshot_id],
    )


def record_issues(con: duckdb.DuckDBPyConnection, source: str, tally: Tally) -> None:
    """Replace the issue counts of one source (a snapshot or an imported file)."""
    con.execute("DELETE FROM eco_issues WHERE source = ?", [source])
    if tally.counts:
        df = pd.DataFrame(  # noqa: F841 - read by the SQL (DuckDB replacement scan)
            [(source, k, n, json.dumps(tally.examples.get(k, []), ensure_ascii=False)) for k, n in tally.counts.items()],
            columns=["source", "kind", "count", "examples"],
        )
        con.execute("INSERT INTO eco_issues SELECT * FROM df")


def ingest_records(
    con: duckdb.DuckDBPyConnection,
    snapshot_id: str,
    records: Iterable[Any],
    tally: Tally,
    *,
    taken_at: datetime | None,
    batch: int = 2000,
) -> int:
    """Normalise and write records in batches, inside the caller's transaction (an import is
    one transaction, so a file that fails half-way leaves nothing behind)."""
    n = 0
    rows: list[dict] = []
    edges: list[tuple[str, str, str, str]] = []
    seen: set[str] = set()

    def flush():
        write_models(con, snapshot_id, rows, edges)
        rows.clear()
        edges.clear()

    for rec in records:
        row, links = normalize_model(rec, tally, taken_at=taken_at)
        if row is None:
            continue
        if row["model_id"] in seen:
            tally.add("duplicate", row["model_id"])
        seen.add(row["model_id"])
        rows.append(row)
        edges.extend((row["model_id"], p, r, o) for p, r, o in links)
        n += 1
        if len(rows) >= batch:
            flush()
    if rows or edges:
        flush()
    return n


# -- reads ---------------------------------------------------------------------------------


def snapshots(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute("SELECT * FROM eco_snapshots ORDER BY taken_at, snapshot_id").df()


def current_models(con: duckdb.DuckDBPyConnection, *, include_partial: bool = False) -> pd.DataFrame:
    """Each model once, as seen in the latest snapshot that holds it."""
    status = "" if include_partial else "WHERE s.status = 'complete'"
    return con.execute(
        f"""
        SELECT m.* EXCLUDE (raw), s.taken_at, s.kind
        FROM eco_models m JOIN eco_snapshots s USING (snapshot_id) {status}
        QUALIFY row_number() OVER (PARTITION BY m.model_id ORDER BY s.taken_at DESC, m.snapshot_id DESC) = 1
        ORDER BY m.model_id
        """
    ).df()


def all_edges(con: duckdb.DuckDBPyConnection, *, include_partial: bool = False) -> pd.DataFrame:
    """Base-model links from every snapshot, once each (links rarely change once written)."""
    status = "" if include_partial else "WHERE s.status = 'complete'"
    return con.execute(
        f"""
        SELECT e.child, e.parent, min(e.relation) AS relation, min(e.origin) AS origin
        FROM eco_edges e JOIN eco_snapshots s USING (snapshot_id) {status}
        GROUP BY e.child, e.parent, e.relation
        ORDER BY e.child, e.parent
        """
    ).df()


def download_history(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every observation of a model's downloads, with the moment it was taken."""
    return con.execute(
        """
        SELECT m.model_id, m.author, s.snapshot_id, s.taken_at, m.created_at, m.created_floor, m.downloads,
               m.downloads_all_time, m.params
        FROM eco_models m JOIN eco_snapshots s USING (snapshot_id)
        WHERE s.status = 'complete'
        ORDER BY m.model_id, s.taken_at
        """
    ).df()


def issues(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(
        "SELECT kind, sum(count)::BIGINT AS count, list(source ORDER BY source) AS sources FROM eco_issues GROUP BY kind ORDER BY count DESC"
    ).df()


def export_snapshot(con: duckdb.DuckDBPyConnection, snapshot_id: str, path: str | Path) -> Path:
    """Write a snapshot in the JSON shape that ``ecosystem import`` reads back."""
    meta = con.execute(
        "SELECT taken_at, kind, origin, status, note FROM eco_snapshots WHERE snapshot_id = ?", [snapshot_id]
    ).fetchone()
    models = [
        json.loads(r)
        for (r,) in con.execute("SELECT raw FROM eco_models WHERE snapshot_id = ? ORDER BY model_id", [snapshot_id]).fetchall()
    ]
    doc = {
        "format": SNAPSHOT_FORMAT,
        "version": 1,
        "snapshot_id": snapshot_id,
        "taken_at": meta[0].isoformat() + "Z" if meta and meta[0] else None,
        "source": meta[1] if meta else None,
        "origin": meta[2] if meta else None,
        "status": meta[3] if meta else None,
        "note": meta[4] if meta else None,
        "models": models,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return path
