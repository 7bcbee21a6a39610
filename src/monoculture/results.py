"""Stored measurements: every one kept, each table a real DuckDB table.

A measurement is one row of ``measure_runs`` (label, study, embedder, calibrated, created_at, mu,
summary, settings) and one typed table per result table (``per_model``, ``similarity``, ...),
catalogued in ``measure_tables``. The label is ``study|embedder|raw-or-calibrated|tag``, the tag
a short hash of every setting that changes the figures (tau, groups, reference, -B, seed, q,
--center-from, ...): measuring with other settings adds a measurement instead of overwriting
the last one, and measuring again with identical settings replaces just that one (the texts may
have changed since; the settings are the same question asked again).

Why one DuckDB table per (measurement, table) rather than one table per table name with a label
column: several tables have one column per model (``similarity``, ``loo_per_prompt``), so their
columns differ from study to study, and a column that is all missing in one measurement has no
type of its own to agree with the next. Per-measurement tables keep each measurement's exact
columns and types; ``measure_tables`` records the pandas side (index, column labels, dtypes) so
a DataFrame comes back as it went in, dtypes and index names included.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from monoculture.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from monoculture.measure import Measured

# The tables as the first migration creates them (m001 in monoculture.migrations); a later change
# is a new migration, never an edit here that old stores would not see.
RUNS_DDL = """
CREATE TABLE IF NOT EXISTS {name} (
    label TEXT PRIMARY KEY,
    study TEXT,
    embedder TEXT,
    calibrated BOOLEAN,
    created_at DOUBLE,
    mu FLOAT[],
    summary JSON,
    settings JSON,
    settings_key TEXT
);
"""
TABLES_DDL = """
CREATE TABLE IF NOT EXISTS measure_tables (
    label TEXT,
    name TEXT,
    sql_table TEXT,
    position INTEGER,
    spec JSON,
    PRIMARY KEY (label, name)
);
"""

# Settings that describe the data or the run rather than the question asked: left out of the tag,
# so measuring the same store again with the same options replaces that measurement.
RUNTIME_SETTINGS = frozenset({"responses", "models", "prompts", "seconds", "monoculture_version"})
TAG_LENGTH = 8
ROW = "_row"  # row order column of every result table


# -- JSON --------------------------------------------------------------------------------------
def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return _nan_to_none(o.tolist())
    return str(o)


def dumps(obj, **kw) -> str:
    """JSON for results: numpy scalars converted, NaN written as null (JSON has no NaN)."""
    return json.dumps(_nan_to_none(obj), default=_json_default, ensure_ascii=False, **kw)


def _nan_to_none(o):
    if isinstance(o, float) and not np.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _nan_to_none(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_nan_to_none(v) for v in o]
    return o


# -- labels ------------------------------------------------------------------------------------
def settings_key(settings: dict[str, Any]) -> str:
    """A hash of the settings that decide the figures (all but :data:`RUNTIME_SETTINGS`).

    Every other key counts, so a setting added to ``measure`` later tells measurements apart
    without a change here."""
    wanted = {k: v for k, v in (settings or {}).items() if k not in RUNTIME_SETTINGS}
    return hashlib.sha256(dumps(wanted, sort_keys=True).encode("utf-8")).hexdigest()


def run_label(
    study: str | None, embedder: str, calibrated: bool, settings: dict[str, Any] | None = None, tag_length: int = TAG_LENGTH
) -> str:
    base = f"{study or '*'}|{embedder}|{'calibrated' if calibrated else 'raw'}"
    return base if settings is None else f"{base}|{settings_key(settings)[:tag_length]}"


def _free_label(con, study, embedder, calibrated, settings, key: str) -> str:
    """The label for these settings: the short tag unless another measurement's settings share it."""
    for n in (TAG_LENGTH, 16, len(key)):
        label = run_label(study, embedder, calibrated, settings, n)
        row = con.execute("SELECT settings_key FROM measure_runs WHERE label = ?", [label]).fetchone()
        if row is None or row[0] == key:
            return label
    raise AssertionError("sha256 collision")  # pragma: no cover


# -- frames <-> tables ---------------------------------------------------------------------------
def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "table"


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def _json_label(x):
    """A column or index label as JSON can hold it (str, int, float, bool, None)."""
    if isinstance(x, np.generic):
        x = x.item()
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    raise TypeError(f"result table label {x!r} ({type(x).__name__}): only str, int, float, bool or None can be stored")


def _encoding(s: pd.Series) -> str | None:
    """Object columns of anything but strings (lists, dicts, mixed) are stored as JSON text."""
    if s.dtype != object:
        return None
    vals = s.dropna()
    return None if all(isinstance(v, str) for v in vals) else "json"


def _dtype(name: str):
    if name == "str":  # pandas 3's default string dtype; pandas 2 reads such a column as object
        try:
            return pd.StringDtype(na_value=np.nan)
        except TypeError:  # pragma: no cover - pandas < 2.3
            return object
    return pd.api.types.pandas_dtype(name)


def write_frame(con, label: str, name: str, sql_table: str, position: int, df: pd.DataFrame) -> None:
    """Write ``df`` as the DuckDB table ``sql_table`` and record how to read it back."""
    taken = {ROW.lower()}

    def physical(want: str) -> str:
        col, n = want, 1
        while col.lower() in taken:  # DuckDB column names are case-insensitive
            n += 1
            col = f"{want}_{n}"
        taken.add(col.lower())
        return col

    flat: dict[str, Any] = {ROW: np.arange(len(df), dtype=np.int64)}

    def add(values: pd.Series, want: str) -> dict:
        col = physical(want)
        enc = _encoding(values)
        flat[col] = np.array([_encode_json(v) for v in values], dtype=object) if enc else values.array
        return {"column": col, "dtype": str(values.dtype), "encoding": enc}

    index_spec = None
    if not (isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1 and df.index.name is None):
        index_spec = []
        for i, lev_name in enumerate(df.index.names):
            want = str(lev_name) if lev_name is not None else ("index" if df.index.nlevels == 1 else f"index_{i}")
            index_spec.append({"name": _json_label(lev_name), **add(pd.Series(df.index.get_level_values(i)), want)})
    col_spec = []
    for j in range(df.shape[1]):
        lab = _json_label(df.columns[j])
        col_spec.append({"label": lab, **add(df.iloc[:, j], str(lab))})
    frame = pd.DataFrame(flat)
    casts = [
        f"CAST({_quote(c['column'])} AS JSON) AS {_quote(c['column'])}"
        for c in (index_spec or []) + col_spec
        if c["encoding"] == "json"
    ]
    # An object column with no values at all gives DuckDB nothing to infer from: store it as text.
    empties = [
        c
        for c in (index_spec or []) + col_spec
        if c["encoding"] is None and frame[c["column"]].dtype == object and frame[c["column"]].isna().all()
    ]
    casts += [f"CAST({_quote(c['column'])} AS VARCHAR) AS {_quote(c['column'])}" for c in empties]
    select = "SELECT * REPLACE (" + ", ".join(casts) + ")" if casts else "SELECT *"
    con.register("_monoculture_frame", frame)
    try:
        con.execute(f"CREATE TABLE {_quote(sql_table)} AS {select} FROM _monoculture_frame")
    finally:
        con.unregister("_monoculture_frame")
    spec = {
        "index": index_spec,
        "columns": col_spec,
        "columns_name": _json_label(df.columns.name),
        "columns_dtype": str(df.columns.dtype),
    }
    con.execute("INSERT INTO measure_tables VALUES (?, ?, ?, ?, ?)", [label, name, sql_table, position, json.dumps(spec)])


def _encode_json(v):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return None
    return dumps(v)


def read_frame(con, sql_table: str, spec: dict) -> pd.DataFrame:
    """The DataFrame :func:`write_frame` stored: same index, column labels, dtypes and order."""
    raw = con.execute(f"SELECT * FROM {_quote(sql_table)} ORDER BY {_quote(ROW)}").df()

    def restore(c: dict) -> pd.Series:
        s = raw[c["column"]]
        if c["encoding"] == "json":
            s = s.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else json.loads(v)).astype(object)
        return s.astype(_dtype(c["dtype"]))

    data = {j: restore(c).array for j, c in enumerate(spec["columns"])}
    if spec["index"] is None:
        index = pd.RangeIndex(len(raw))
    elif len(spec["index"]) == 1:
        c = spec["index"][0]
        index = pd.Index(restore(c).array, name=c["name"], dtype=_dtype(c["dtype"]))
    else:
        index = pd.MultiIndex.from_arrays([restore(c).array for c in spec["index"]], names=[c["name"] for c in spec["index"]])
    df = pd.DataFrame(data, index=index)
    df.columns = pd.Index(
        [c["label"] for c in spec["columns"]], name=spec["columns_name"], dtype=_dtype(spec.get("columns_dtype", "object"))
    )
    return df


# -- measurements ------------------------------------------------------------------------------
def save_results(store, *, study, embedder, calibrated, mu, summary, tables: dict[str, pd.DataFrame], settings) -> str:
    """Store one measurement and return its label; one with identical settings is replaced."""
    con = store.con
    key = settings_key(settings)
    with store.transaction():
        label = _free_label(con, study, embedder, calibrated, settings, key)
        _delete_run(con, label)
        con.execute(
            "INSERT INTO measure_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                label,
                study,
                embedder,
                calibrated,
                time.time(),
                None if mu is None else np.asarray(mu, dtype=np.float32).tolist(),
                dumps(summary),
                dumps(settings),
                key,
            ],
        )
        _write_tables(con, label, tables)
    return label


def _write_tables(con, label: str, tables: dict[str, pd.DataFrame]) -> None:
    tag = label.rsplit("|", 1)[-1]
    used: set[str] = set()
    for pos, (name, df) in enumerate(tables.items()):
        sql_table = f"result_{tag}_{_slug(name)}"
        n = 1
        while sql_table in used:
            n += 1
            sql_table = f"result_{tag}_{_slug(name)}_{n}"
        used.add(sql_table)
        write_frame(con, label, name, sql_table, pos, df)


def _delete_run(con, label: str) -> None:
    for (t,) in con.execute("SELECT sql_table FROM measure_tables WHERE label = ?", [label]).fetchall():
        con.execute(f"DROP TABLE IF EXISTS {_quote(t)}")
    con.execute("DELETE FROM measure_tables WHERE label = ?", [label])
    con.execute("DELETE FROM measure_runs WHERE label = ?", [label])


def list_runs(store, study: str | None = None) -> pd.DataFrame:
    """Every stored measurement, newest first: label, study, embedder, calibrated, created_at, settings (dict)."""
    sql = "SELECT label, study, embedder, calibrated, created_at, settings FROM measure_runs"
    params: list[Any] = []
    if study is not None:
        sql += " WHERE study = ?"
        params.append(study)
    df = store.con.execute(sql + " ORDER BY created_at DESC, label", params).df()
    df["settings"] = [json.loads(s) if s else {} for s in df["settings"]]
    return df


def resolve_label(store, label: str | None = None, study: str | None = None) -> str:
    """The label of the latest measurement, or of the one ``label`` names: the whole label, a
    unique prefix of it, or a unique prefix of its tag (the hash after the last ``|``)."""
    runs = list_runs(store, study)
    if runs.empty:
        if study is not None and not list_runs(store).empty:
            raise UserError(f"study {study!r} has not been measured yet; run `monoculture measure` on its study file first")
        raise UserError(f"{store.path}: nothing measured yet; run `monoculture measure` first")
    labels = runs["label"].tolist()
    if label is None:
        return labels[0]
    if label in labels:
        return label
    hits = [x for x in labels if x.startswith(label)] or [x for x in labels if x.rsplit("|", 1)[-1].startswith(label)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise UserError(f"--label {label!r} matches {len(hits)} measurements: {', '.join(hits)}; give more of it")
    raise UserError(f"no measurement labelled {label!r}; labels: {', '.join(labels)}")


def load_results(store, label: str | None = None) -> Measured:
    """The latest stored measurement (or the one ``label`` names, see :func:`resolve_label`)."""
    from monoculture.measure import Measured  # measure imports this module

    lab = resolve_label(store, label)
    summary, settings = store.con.execute("SELECT summary, settings FROM measure_runs WHERE label = ?", [lab]).fetchone()
    rows = store.con.execute(
        "SELECT name, sql_table, spec FROM measure_tables WHERE label = ? ORDER BY position", [lab]
    ).fetchall()
    tables = {name: read_frame(store.con, t, json.loads(spec)) for name, t, spec in rows}
    return Measured(lab, json.loads(summary), tables, json.loads(settings))


def describe_settings(settings: dict[str, Any]) -> str:
    """The settings a reader tells measurements apart by, short: for ``monoculture ls``."""
    s = settings or {}
    parts = [
        f"tau={s['tau']:g}" if isinstance(s.get("tau"), (int, float)) else "tau=default",
        f"B={s.get('n_boot')}",
        f"seed={s.get('seed')}",
    ]
    if s.get("q") not in (None, 1, 1.0):
        parts.append(f"q={s['q']}")
    if s.get("groups"):
        parts.append("groups=" + ",".join(map(str, s["groups"])))
    for key, name in (("reference", "reference"), ("center_from", "center-from"), ("center_label", "center-label")):
        if s.get(key):
            parts.append(f"{name}={s[key]}")
    if s.get("what_if_removed"):
        parts.append("what-if-removed=" + ",".join(map(str, s["what_if_removed"])))
    if s.get("responses") is not None:
        parts.append(f"{s['responses']} responses")
    return " ".join(parts)


# -- the migration from release 0.1.0 (JSON tables inside measure_runs) ---------------------------
# Release 0.1.0 wrote DataFrame.to_json(orient="split"), which keeps no index names: these are
# the names its pipeline gave.
LEGACY_INDEX_NAMES = {
    "per_model": "model",
    "per_prompt": "prompt",
    "loo_per_prompt": "prompt",
    "groups": "group_key",
    "lexical": "model",
    "lineage": "attribute",
    "accent": "derivative",
}


def legacy_frame(name: str, text: str) -> pd.DataFrame:
    """A table from a 0.1.0 store, with the dtypes its JSON can tell (no guessing of ids as numbers)."""
    from io import StringIO

    df = pd.read_json(StringIO(text), orient="split", dtype=False, convert_axes=False)
    df.index.name = LEGACY_INDEX_NAMES.get(name)
    return df


def migrate_legacy_runs(con) -> int:
    """Copy 0.1.0's ``measure_runs`` rows into the typed form, then drop the old table.

    Runs inside the migration's transaction. Returns the number of measurements converted."""
    con.execute(RUNS_DDL.format(name="_measure_runs_new"))
    con.execute(TABLES_DDL)
    rows = con.execute(
        "SELECT label, study, embedder, calibrated, created_at, mu, summary, tables, settings FROM measure_runs"
    ).fetchall()
    for _old, study, embedder, calibrated, created_at, mu, summary, tables, settings in rows:
        s = json.loads(settings) if settings else {}
        key = settings_key(s)
        label = None
        for n in (TAG_LENGTH, 16, len(key)):
            label = run_label(study, embedder, calibrated, s, n)
            hit = con.execute("SELECT settings_key FROM _measure_runs_new WHERE label = ?", [label]).fetchone()
            if hit is None or hit[0] == key:
                break
        con.execute(
            "INSERT INTO _measure_runs_new VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [label, study, embedder, calibrated, created_at, mu, summary, settings, key],
        )
        frames = {name: legacy_frame(name, text) for name, text in json.loads(tables or "{}").items()}
        assert label is not None  # the loop above runs at least once
        _write_tables(con, label, frames)
    # every row is copied above, in this transaction: only now is the old table dropped
    con.execute("DROP TABLE measure_runs")
    con.execute("ALTER TABLE _measure_runs_new RENAME TO measure_runs")
    return len(rows)
