"""``ecosystem fetch``: one dated snapshot of the families' Hub metadata, resumable.

A fetch is a list of queries (each family organisation's models, then the derivatives of the
family's most downloaded checkpoints, then model info for those checkpoints). Each page is
written together with the cursor of the page after it in one transaction, so a fetch killed at
any moment resumes from the last committed page, and re-sending a page cannot duplicate models
(the store's key is snapshot + model id). A fetch is resumed when an unfinished fetch with the
same plan exists; a finished one is never reopened, so every completed fetch is its own
snapshot and time series build up across fetches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from monoculture.ecosystem import hub_client, snapshots
from monoculture.ecosystem.quality import Tally, utcnow
from monoculture.ecosystem.registry import Family
from monoculture.store import scalar

SCHEMA = """
CREATE TABLE IF NOT EXISTS eco_fetches (
    fetch_id TEXT PRIMARY KEY,
    plan_key TEXT,
    plan JSON,
    endpoint TEXT,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    status TEXT
);
CREATE TABLE IF NOT EXISTS eco_fetch_cursors (
    fetch_id TEXT,
    query_key TEXT,
    next_url TEXT,
    pages INTEGER,
    items INTEGER,
    done BOOLEAN,
    truncated BOOLEAN,
    PRIMARY KEY (fetch_id, query_key)
);
"""


@dataclass
class FetchPlan:
    families: list[str]
    organisations: list[str]
    derivatives_top: int = 3
    derivative_depth: int = 1
    max_pages: int | None = None
    page_size: int = 1000

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class FetchResult:
    snapshot_id: str
    resumed: bool
    models: int
    queries: int
    stats: dict = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    snapshots.ensure_schema(con)
    con.execute(SCHEMA)


def _open_fetch(con, plan: FetchPlan, endpoint: str, now: datetime) -> tuple[str, bool]:
    row = con.execute(
        "SELECT fetch_id FROM eco_fetches WHERE plan_key = ? AND endpoint = ? AND status = 'running' ORDER BY started_at DESC LIMIT 1",
        [plan.key(), endpoint],
    ).fetchone()
    if row:
        return row[0], True
    fid = "hub-" + now.strftime("%Y%m%dT%H%M%SZ")
    while con.execute("SELECT 1 FROM eco_snapshots WHERE snapshot_id = ?", [fid]).fetchone():
        fid += "x"
    con.execute(
        "INSERT INTO eco_fetches VALUES (?, ?, ?, ?, ?, NULL, 'running')",
        [fid, plan.key(), json.dumps(plan.__dict__), endpoint, now],
    )
    snapshots.register_snapshot(con, fid, now, "hub", endpoint, "partial", "families: " + ",".join(plan.families))
    return fid, False


def _cursor(con, fid: str, qkey: str) -> tuple[str | None, int, int, bool]:
    row = con.execute(
        "SELECT next_url, pages, items, done FROM eco_fetch_cursors WHERE fetch_id = ? AND query_key = ?", [fid, qkey]
    ).fetchone()
    return (row[0], row[1], row[2], row[3]) if row else (None, 0, 0, False)


def run_query(
    con,
    client: hub_client.HubClient,
    fid: str,
    qkey: str,
    params,
    *,
    taken_at: datetime,
    tally: Tally,
    max_pages: int | None,
    on_page: Callable[[str, int], None] | None = None,
) -> int:
    """Fetch one list query to the end (or ``max_pages``), committing page and cursor together."""
    next_url, pages, items, done = _cursor(con, fid, qkey)
    if done:
        return items
    if pages and next_url is None:  # finished but not marked (cannot happen with the transaction below)
        return items
    for page in client.pages("/api/models", params, start_url=next_url):
        rows, edges = [], []
        for rec in page.items:
            row, links = snapshots.normalize_model(rec, tally, taken_at=taken_at)
            if row is not None:
                rows.append(row)
                edges += [(row["model_id"], p, r, o) for p, r, o in links]
        pages += 1
        items += len(rows)
        truncated = page.next_url is not None and max_pages is not None and pages >= max_pages
        is_done = page.next_url is None or truncated
        con.execute("BEGIN TRANSACTION")
        try:
            snapshots.write_models(con, fid, rows, edges)
            con.execute(
                "INSERT OR REPLACE INTO eco_fetch_cursors VALUES (?, ?, ?, ?, ?, ?, ?)",
                [fid, qkey, page.next_url, pages, items, is_done, truncated],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if on_page:
            on_page(qkey, len(rows))
        if is_done:
            break
    return items


def _top_models(con, fid: str, family: Family, n: int, exclude: set[str]) -> list[str]:
    rows = con.execute(
        "SELECT model_id, author FROM eco_models WHERE snapshot_id = ? ORDER BY coalesce(downloads, 0) DESC, model_id",
        [fid],
    ).fetchall()
    out = [m for m, _ in rows if family.owns_repo(m) and m not in exclude]
    return out[:n]


def _top_derivatives(con, fid: str, parents: list[str], n: int) -> list[str]:
    if not parents:
        return []
    rows = con.execute(
        """SELECT DISTINCT e.child, coalesce(m.downloads, 0) AS d FROM eco_edges e
           LEFT JOIN eco_models m ON m.snapshot_id = e.snapshot_id AND m.model_id = e.child
           WHERE e.snapshot_id = ? AND e.parent IN (SELECT unnest(?)) ORDER BY d DESC, e.child""",
        [fid, parents],
    ).fetchall()
    return [c for c, _ in rows][: n * len(parents)]


def fetch_families(
    con: duckdb.DuckDBPyConnection,
    families: list[Family],
    client: hub_client.HubClient,
    *,
    derivatives_top: int = 3,
    derivative_depth: int = 1,
    max_pages: int | None = None,
    page_size: int = 1000,
    now: datetime | None = None,
    on_query: Callable[[str], None] | None = None,
    on_page: Callable[[str, int], None] | None = None,
) -> FetchResult:
    ensure_schema(con)
    plan = FetchPlan(
        families=[f.key for f in families],
        organisations=[o for f in families for o in f.organisations],
        derivatives_top=derivatives_top,
        derivative_depth=derivative_depth,
        max_pages=max_pages,
        page_size=page_size,
    )
    fid, resumed = _open_fetch(con, plan, client.endpoint, now or utcnow())
    taken_at = scalar(con, "SELECT taken_at FROM eco_snapshots WHERE snapshot_id = ?", [fid])
    tally = Tally()
    queries = 0
    for fam in families:
        for org in fam.organisations:
            qkey = f"author:{org}"
            if on_query:
                on_query(qkey)
            run_query(
                con,
                client,
                fid,
                qkey,
                hub_client.list_params(author=org, limit=page_size),
                taken_at=taken_at,
                tally=tally,
                max_pages=max_pages,
                on_page=on_page,
            )
            queries += 1
    for fam in families:
        own = _top_models(con, fid, fam, derivatives_top, set())
        level = own
        for depth in range(1, derivative_depth + 1):
            for base in level:
                qkey = f"derivatives:{base}"
                if on_query:
                    on_query(qkey)
                run_query(
                    con,
                    client,
                    fid,
                    qkey,
                    hub_client.list_params(filter=f"base_model:{base}", limit=page_size),
                    taken_at=taken_at,
                    tally=tally,
                    max_pages=max_pages,
                    on_page=on_page,
                )
                queries += 1
            level = _top_derivatives(con, fid, level, derivatives_top) if depth < derivative_depth else []
        for mid in own:
            qkey = f"info:{mid}"
            _, _, _, done = _cursor(con, fid, qkey)
            if done:
                continue
            if on_query:
                on_query(qkey)
            info = client.model_info(mid)
            row, links = snapshots.normalize_model(info, tally, taken_at=taken_at)
            con.execute("BEGIN TRANSACTION")
            try:
                if row is not None:
                    snapshots.write_models(con, fid, [row], [(row["model_id"], p, r, o) for p, r, o in links])
                con.execute("INSERT OR REPLACE INTO eco_fetch_cursors VALUES (?, ?, NULL, 1, 1, TRUE, FALSE)", [fid, qkey])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            queries += 1
    truncated = scalar(con, "SELECT count(*) FROM eco_fetch_cursors WHERE fetch_id = ? AND truncated", [fid])
    note = "families: " + ",".join(plan.families) + (f"; {truncated} queries stopped at --max-pages" if truncated else "")
    con.execute("UPDATE eco_snapshots SET note = ? WHERE snapshot_id = ?", [note, fid])
    snapshots.finish_snapshot(con, fid, "complete")
    snapshots.record_issues(con, fid, tally)
    con.execute("UPDATE eco_fetches SET status = 'complete', finished_at = ? WHERE fetch_id = ?", [utcnow(), fid])
    n = scalar(con, "SELECT count(*) FROM eco_models WHERE snapshot_id = ?", [fid])
    return FetchResult(snapshot_id=fid, resumed=resumed, models=n, queries=queries, stats=dict(client.stats), tally=tally)


def save_snapshot_file(con: duckdb.DuckDBPyConnection, snapshot_id: str, out_dir: str | Path) -> Path:
    return snapshots.export_snapshot(con, snapshot_id, Path(out_dir) / f"{snapshot_id}.json")
