"""Running the CLI in-process (fast enough for property-based tests) and snapshotting a store."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

RUNNER = CliRunner()


def mc(*args: str | Path) -> tuple[int, str]:
    """Run ``monoculture ARGS`` in this process: (exit status, stdout and stderr together on
    one line each). An uncaught exception is re-raised, so a crash fails the test with its
    traceback rather than passing as 'exit 1'."""
    from monoculture.cli import app

    r = RUNNER.invoke(app, [str(a) for a in args], catch_exceptions=False, env={"COLUMNS": "400"})
    return r.exit_code, r.output + (r.stderr if r.stderr_bytes is not None and r.stderr not in r.output else "")


STORE_TABLES = ("models", "prompts", "studies", "study_models", "study_prompts", "generations")


def snapshot(store: Path) -> dict[str, list]:
    """Every row of the store's tables, ordered, so two snapshots compare equal exactly when the
    contents are the same (``created_at`` included: a failed command must not touch a row)."""
    import duckdb

    if not Path(store).exists():
        return {}
    con = duckdb.connect(str(store), read_only=True)
    try:
        tables = {t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        out = {}
        for t in sorted(tables):
            rows = con.execute(f"SELECT * FROM {t}").fetchall()
            out[t] = sorted(json.dumps(r, default=str, sort_keys=True) for r in rows)
        return out
    finally:
        con.close()
