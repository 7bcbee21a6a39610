"""Schema migrations of the store, in the style of simonw/llm's ``migrations.py``.

Each migration is a small function ``mNNN_what(con)``, applied once, in order, in its own
transaction, and recorded by name in ``_monoculture_migrations``; the schema version of a store
is the number of migrations it has had. A migration never drops a table that holds data
without first copying its rows (in the same transaction, so a failure leaves the store as it
was). A store written by release 0.1.0 has no record at all: every migration runs on it.

Add a migration to change a table that already exists; a new table may go in ``store.SCHEMA``
(``CREATE TABLE IF NOT EXISTS`` runs on every opening for writing).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import duckdb

MIGRATIONS_TABLE = "_monoculture_migrations"
MIGRATIONS: list[Callable[[duckdb.DuckDBPyConnection], None]] = []


def migration(fn: Callable[[duckdb.DuckDBPyConnection], None]):
    MIGRATIONS.append(fn)
    return fn


def _has_table(con, name: str) -> bool:
    return bool(
        con.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_name = ? AND table_schema = current_schema()", [name]
        ).fetchone()
    )


def _columns(con, table: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = current_schema()", [table]
        ).fetchall()
    ]


def applied(con) -> list[str]:
    """Names of the migrations this store has had, oldest first."""
    if not _has_table(con, MIGRATIONS_TABLE):
        return []
    return [r[0] for r in con.execute(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY applied_at, name").fetchall()]


def pending(con) -> list[str]:
    done = set(applied(con))
    return [fn.__name__ for fn in MIGRATIONS if fn.__name__ not in done]


def unknown(con) -> list[str]:
    """Migrations the store has had that this version does not know: it was written by a newer one."""
    known = {fn.__name__ for fn in MIGRATIONS}
    return [n for n in applied(con) if n not in known]


def schema_version(con) -> int:
    return len(applied(con))


def migrate(con) -> list[str]:
    """Apply every pending migration; returns the names applied."""
    con.execute(f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (name TEXT PRIMARY KEY, applied_at DOUBLE)")
    done = set(applied(con))
    ran = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            fn(con)
            con.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES (?, ?)", [fn.__name__, time.time()])
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        ran.append(fn.__name__)
    return ran


@migration
def m001_typed_results(con) -> None:
    """Measurements as typed tables (``measure_runs`` + ``measure_tables`` + one table per result).

    Release 0.1.0 kept each measurement's tables as DataFrame-JSON in ``measure_runs.tables``
    and labelled it ``study|embedder|calibrated``; its rows are converted and relabelled with
    the tag of their settings."""
    from monoculture.results import RUNS_DDL, TABLES_DDL, migrate_legacy_runs

    if _has_table(con, "measure_runs") and "tables" in _columns(con, "measure_runs"):
        migrate_legacy_runs(con)
    else:
        con.execute(RUNS_DDL.format(name="measure_runs"))
        con.execute(TABLES_DDL)
