"""``ecosystem import``: offline files into the store, recognised by their shape.

Users point the command at a saved snapshot, a crawler CSV or a whole data folder; asking them to
name every file's format would be error-prone, so each file is recognised from its header or
JSON shape. Files that are not ecosystem data are skipped with a reason, never guessed at; a
file that is ecosystem data but cannot be read (bad bytes, truncated or absurdly nested JSON, an
implausible snapshot date) is an error naming the file and line. One call imports all its files
in one transaction, so a folder with one bad file imports nothing and names every bad file.
Re-importing a file replaces what it wrote before, so imports are idempotent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from monoculture.ecosystem import databases, lineage_dumps, snapshots
from monoculture.ecosystem.quality import CLOCK_SKEW, Tally, parse_timestamp, snapshot_time, utcnow
from monoculture.ecosystem.registry import Registry
from monoculture.errors import UserError
from monoculture.files import read_utf8

KINDS = ("auto", "snapshot", "lineage", "epoch", "hf-models", "mot", "org-regions", "organisations", "params", "date-corrections")


@dataclass
class ImportResult:
    path: str
    kind: str
    rows: int = 0
    target: str = ""
    skipped: str = ""
    tally: Tally = field(default_factory=Tally)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    snapshots.ensure_schema(con)
    databases.ensure_schema(con)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def _parse_json(text: str, path: Path, line: int | None = None):
    """One JSON document; a syntax error names the line, nesting past Python's limit is refused."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        at = line if line is not None else e.lineno
        raise UserError(f"not valid JSON ({e.msg}, column {e.colno})", where=f"{path}:{at}") from None
    except RecursionError:
        raise UserError(
            "JSON nested too deeply to read (more than about 1,000 levels)", where=f"{path}:{line}" if line else str(path)
        ) from None


def _load_json(path: Path):
    """A .json document or the records of a .jsonl file, decoded like every other import
    (UTF-8, a leading BOM dropped, a bad byte named by line: :func:`monoculture.files.read_utf8`)."""
    text = read_utf8(path)
    if path.suffix.lower() == ".jsonl":
        return [_parse_json(line, path, i) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return _parse_json(text, path)


def _json_kind(doc) -> str | None:
    if isinstance(doc, dict) and (doc.get("format") == snapshots.SNAPSHOT_FORMAT or isinstance(doc.get("models"), list)):
        return "snapshot"
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        first = doc[0]
        if "hf_downloads" in first or ("provider" in first and "parameters_raw" in first):
            return "hf-models"
        if any(k in first for k in ("id", "modelId", "model_id")):
            return "snapshot"
    return None


def detect(path: Path) -> tuple[str | None, str]:
    """(kind, reason) for one file."""
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl"):
        # a JSON file that cannot be read is an error (raised), not "not ecosystem data"
        kind = _json_kind(_load_json(path))
        return (kind, "") if kind else (None, "JSON that is neither a snapshot nor an llmfit model list")
    if suffix in (".yml", ".yaml"):
        head = path.read_text(encoding="utf-8-sig", errors="replace")[:2000]  # only to recognise the format
        return ("mot", "") if "Model Openness Framework" in head else (None, "YAML that is not a Model Openness Tool file")
    if suffix == ".csv":
        try:
            cols = list(databases.read_csv(path).columns) if path.stat().st_size < 64_000_000 else []
        except (pd.errors.ParserError, ValueError) as e:  # bad bytes or an empty file raise a UserError instead
            return None, f"unreadable CSV ({e})"
        if lineage_dumps.looks_like_lineage_dump(cols):
            return "lineage", ""
        kind = databases.sniff(cols)
        if kind == "tracked-list":
            return None, "a list of tracked model ids without metadata (fetch them with `ecosystem fetch`)"
        return (kind, "") if kind else (None, "CSV with columns no ecosystem importer knows")
    return None, "not a .json, .jsonl, .csv or .yml file"


def _newest(stamps) -> datetime | None:
    """The newest of a file's dates that is not in the future: an estimate of when it was taken
    (a model dated 2999 must not date the snapshot)."""
    latest = utcnow() + CLOCK_SKEW
    stamps = [s for s in stamps if s is not None and s <= latest]
    return max(stamps) if stamps else None


def _snapshot_from_records(
    con,
    records: list,
    *,
    snapshot_id: str,
    taken_at: datetime | None,
    kind: str,
    origin: str,
    tally: Tally,
    extra_links: Sequence[tuple[str, str, str, str]] = (),
    note: str = "",
) -> int:
    """Write one snapshot inside the caller's transaction (see :func:`import_paths`)."""
    stamp = taken_at
    if stamp is None:
        stamp = (
            _newest(
                parse_timestamp(r.get(k))
                for r in records
                if isinstance(r, dict)
                for k in ("lastModified", "last_modified", "createdAt", "created_at")
            )
            or utcnow()
        )
        note = (note + "; " if note else "") + "taken_at estimated from the newest date in the file"
    con.execute("DELETE FROM eco_models WHERE snapshot_id = ?", [snapshot_id])
    con.execute("DELETE FROM eco_edges WHERE snapshot_id = ?", [snapshot_id])
    snapshots.register_snapshot(con, snapshot_id, stamp, kind, origin, "partial", note)
    n = snapshots.ingest_records(con, snapshot_id, records, tally, taken_at=taken_at)  # None: each record's own dates
    if extra_links:
        snapshots.add_links(con, snapshot_id, list(extra_links))
    snapshots.finish_snapshot(con, snapshot_id, "complete")
    snapshots.record_issues(con, snapshot_id, tally)
    return n


def import_file(
    con: duckdb.DuckDBPyConnection, path: Path, registry: Registry, *, kind: str = "auto", taken_at: datetime | None = None
) -> ImportResult:
    """Import one file inside the caller's transaction (use :func:`import_paths`)."""
    path = Path(path)
    res = ImportResult(path=str(path), kind=kind)
    if kind == "auto":
        detected, reason = detect(path)
        if detected is None:
            res.kind, res.skipped = "skipped", reason
            return res
        res.kind = kind = detected
    tally = res.tally
    if kind == "snapshot":
        doc = _load_json(path)
        if isinstance(doc, dict):
            records = doc.get("models")
            if not isinstance(records, list):
                raise UserError("a snapshot file needs a `models` list", where=str(path))
            ts = taken_at or snapshot_time(doc.get("taken_at"), field_name="taken_at", where=str(path))
            sid = str(doc.get("snapshot_id") or f"file-{path.stem}-{_digest(path)}")
            note = str(doc.get("note") or "")
        else:
            records, ts, sid, note = doc, taken_at, f"file-{path.stem}-{_digest(path)}", ""
        res.rows = _snapshot_from_records(
            con, records, snapshot_id=sid, taken_at=ts, kind="snapshot-file", origin=str(path), tally=tally, note=note
        )
        res.target = sid
    elif kind == "hf-models":
        doc = _load_json(path)
        records = [
            {
                "id": d.get("name"),
                "downloads": d.get("hf_downloads"),
                "likes": d.get("hf_likes"),
                "createdAt": d.get("release_date"),
                "pipeline_tag": d.get("pipeline_tag"),
                "safetensors": {"total": d.get("parameters_raw")},
            }
            for d in doc
            if isinstance(d, dict)
        ]
        if taken_at is None:
            taken_at = _newest(parse_timestamp(d.get("release_date")) for d in doc if isinstance(d, dict))
        sid = f"hfmodels-{path.stem}-{_digest(path)}"
        res.rows = _snapshot_from_records(
            con,
            records,
            snapshot_id=sid,
            taken_at=taken_at,
            kind="hf-models",
            origin=str(path),
            tally=tally,
            note="llmfit hf_models.json; downloads are the Hub's 30-day counts; taken_at = newest release_date",
        )
        res.target = sid
    elif kind == "lineage":
        records, links, _ = lineage_dumps.read_lineage_dump(path, tally)
        sid = f"lineage-{path.stem}"
        ts = taken_at or snapshot_time(
            lineage_dumps.taken_at_from_name(path), field_name="the date in the file name", where=str(path)
        )
        res.rows = _snapshot_from_records(
            con,
            records,
            snapshot_id=sid,
            taken_at=ts,
            kind="lineage-dump",
            origin=str(path),
            tally=tally,
            extra_links=links,
            note="model_metadata_analyses lineage crawl",
        )
        res.target = sid
    elif kind == "epoch":
        df = databases.read_csv(path)
        dataset = path.parent.parent.name if path.parent.name == "data" else path.parent.name
        dataset = f"{dataset}/{path.stem}"
        res.rows = databases.import_epoch(con, df, dataset, registry.openness, tally)
        snapshots.record_issues(con, dataset, tally)
        res.target = dataset
    elif kind == "mot":
        res.rows = databases.import_mot(con, [path], registry.openness, tally)
        res.target = "eco_licence_refs"
    elif kind in ("org-regions", "organisations", "params", "date-corrections"):
        res.rows = databases.import_table(con, kind, databases.read_csv(path), tally, source=path.name)
        res.target = {
            "org-regions": "eco_org_regions",
            "organisations": "eco_organisations",
            "params": "eco_params",
            "date-corrections": "eco_date_corrections",
        }[kind]
        snapshots.record_issues(
            con, f"{res.target}/{path.name}", tally
        )  # one source per file: re-importing it replaces its counts
    else:
        raise UserError(f"unknown import kind {kind!r}; use one of {', '.join(KINDS)}")
    return res


def collect(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise UserError("no such file or folder", where=str(p))
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        else:
            files.append(p)
    return files


def import_paths(
    con: duckdb.DuckDBPyConnection,
    paths: list[Path],
    registry: Registry,
    *,
    kind: str = "auto",
    taken_at: datetime | None = None,
    on_file: Callable[[Path], None] | None = None,
) -> list[ImportResult]:
    """Import every file under ``paths`` in one transaction: all or nothing.

    Every file is read even after one fails, so the error names every bad file at once; then
    the transaction is rolled back and the store is as it was (a folder import that stopped
    half-way would leave a mix the user cannot see). Model Openness Tool YAMLs go in one batch."""
    if kind not in KINDS:
        raise UserError(f"unknown import kind {kind!r}; use one of {', '.join(KINDS)}")
    if taken_at is not None:
        snapshot_time(taken_at, field_name="--taken-at")
    files = collect(paths)
    ensure_schema(con)
    results = []
    failed: list[str] = []
    mot: list[Path] = []
    con.execute("BEGIN TRANSACTION")
    try:
        for f in files:
            try:
                if kind == "mot" or (kind == "auto" and f.suffix.lower() in (".yml", ".yaml") and detect(f)[0] == "mot"):
                    mot.append(f)
                else:
                    results.append(import_file(con, f, registry, kind=kind, taken_at=taken_at))
            except UserError as e:
                failed.append(str(e) if str(f) in str(e) else f"{f}: {e}")
            if on_file:
                on_file(f)
        if mot and not failed:
            res = ImportResult(path=str(mot[0].parent) if len(mot) > 1 else str(mot[0]), kind="mot", target="eco_licence_refs")
            res.rows = databases.import_mot(con, mot, registry.openness, res.tally)
            results.append(res)
        if failed:
            raise UserError(_failure_message(failed, len(files)))
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return results


def _failure_message(failed: list[str], n_files: int) -> str:
    if len(failed) == 1 and n_files == 1:
        return failed[0]
    shown = "; ".join(failed[:10]) + (f"; and {len(failed) - 10} more" if len(failed) > 10 else "")
    return f"{len(failed)} of {n_files} files cannot be imported, so nothing was imported (fix them and rerun): {shown}"
