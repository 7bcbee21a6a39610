"""Public model databases: Epoch AI exports, the Model Openness Tool, and organisation tables.

Hub metadata starts in 2022 and knows nothing about API-only releases, so release histories and
country shares lean on curated databases as well. Every Epoch row keeps its dataset and row
number, so any share computed from them can list the exact rows it rests on.
"""

from __future__ import annotations

import io
from pathlib import Path

import duckdb
import pandas as pd
import yaml

from monoculture.ecosystem.countries import country_of_cell, normalize_country
from monoculture.ecosystem.openness import Openness
from monoculture.ecosystem.quality import Tally, is_missing, parse_timestamp
from monoculture.files import read_utf8

SCHEMA = """
CREATE TABLE IF NOT EXISTS eco_releases (
    dataset TEXT,
    source_row INTEGER,
    name TEXT,
    organization TEXT,
    country TEXT,
    published DATE,
    params DOUBLE,
    accessibility TEXT,
    level INTEGER,
    base_model TEXT,
    domain TEXT,
    PRIMARY KEY (dataset, source_row)
);
CREATE TABLE IF NOT EXISTS eco_org_regions (hf_org TEXT PRIMARY KEY, region TEXT, notes TEXT);
CREATE TABLE IF NOT EXISTS eco_organisations (organization TEXT PRIMARY KEY, country TEXT, category TEXT);
CREATE TABLE IF NOT EXISTS eco_params (model_id TEXT PRIMARY KEY, total_params_b DOUBLE, active_params_b DOUBLE, is_moe BOOLEAN);
CREATE TABLE IF NOT EXISTS eco_date_corrections (model_id TEXT PRIMARY KEY, hf_created_at DATE, actual_release_date DATE, notes TEXT);
CREATE TABLE IF NOT EXISTS eco_licence_refs (
    file TEXT PRIMARY KEY, name TEXT, producer TEXT, hub_id TEXT, weights_licence TEXT, distribution_licence TEXT, level INTEGER
);
"""

NAME_COLUMNS = ("Model", "System")
COUNTRY_COLUMNS = ("Country (from Organization)", "Country (of organization)")


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(SCHEMA)


def sniff(columns: list[str]) -> str | None:
    cols = set(columns)
    if "Model accessibility" in cols and "Publication date" in cols and cols & set(NAME_COLUMNS):
        return "epoch"
    if {"hf_org", "region"} <= cols:
        return "org-regions"
    if {"Organization", "Country"} <= cols:
        return "organisations"
    if {"model_id", "total_params_b"} <= cols:
        return "params"
    if {"model_id", "actual_release_date"} <= cols:
        return "date-corrections"
    if {"org", "model", "modelId"} <= cols:
        return "tracked-list"
    return None


def read_csv(path: Path) -> pd.DataFrame:
    """CSV with optional leading ``#`` comment lines, decoded like every other import
    (:func:`monoculture.files.read_utf8`: a BOM dropped, a bad byte an error naming the line)."""
    text = read_utf8(path)
    return pd.read_csv(io.StringIO(text), comment=None, skiprows=_comment_lines(text))


def _comment_lines(text: str) -> int:
    n = 0
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        n += 1
    return n


def import_epoch(con: duckdb.DuckDBPyConnection, df: pd.DataFrame, dataset: str, openness: Openness, tally: Tally) -> int:
    name_col = next(c for c in NAME_COLUMNS if c in df.columns)
    country_col = next((c for c in COUNTRY_COLUMNS if c in df.columns), None)
    rows = []
    for i, r in enumerate(df.to_dict("records")):
        name = r.get(name_col)
        if is_missing(name):
            tally.add("missing_field", f"{dataset}:{i}", name_col)
            continue
        name = " ".join(str(name).split())  # some names carry newlines
        published = parse_timestamp(r.get("Publication date"), tally, f"{dataset}:{i}", "Publication date", earliest=None)
        if published is None and is_missing(r.get("Publication date")):
            tally.add("missing_field", f"{dataset}:{i}", "Publication date")
        acc = r.get("Model accessibility")
        params = r.get("Parameters")
        try:
            params = None if is_missing(params) else float(params)
        except (TypeError, ValueError):
            tally.add("bad_number", f"{dataset}:{i}", f"Parameters={params!r}")
            params = None
        rows.append(
            {
                "dataset": dataset,
                "source_row": i,
                "name": name,
                "organization": None if is_missing(r.get("Organization")) else " ".join(str(r["Organization"]).split()),
                "country": country_of_cell(r.get(country_col)) if country_col else None,
                "published": published.date() if published else None,
                "params": params,
                "accessibility": None if is_missing(acc) else str(acc),
                "level": openness.epoch_level(acc),
                "base_model": None if is_missing(r.get("Base model")) else str(r.get("Base model")),
                "domain": None if is_missing(r.get("Domain")) else str(r.get("Domain")),
            }
        )
    out = pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "source_row",
            "name",
            "organization",
            "country",
            "published",
            "params",
            "accessibility",
            "level",
            "base_model",
            "domain",
        ],
    )
    out["level"] = out["level"].astype("Int64")
    out["published"] = pd.to_datetime(out["published"])
    con.execute("DELETE FROM eco_releases WHERE dataset = ?", [dataset])
    con.execute("INSERT INTO eco_releases SELECT * FROM out")
    return len(out)


def _read_column(df: pd.DataFrame, column: str, tally: Tally, source: str, *, dates: bool = False) -> pd.Series:
    """``df[column]`` read as numbers (or dates); each cell that was given but could not be read
    becomes null and is counted, so a dropped number or date shows in the import's issues
    instead of vanishing."""
    values = df[column]
    converted = pd.to_datetime(values, errors="coerce") if dates else pd.to_numeric(values, errors="coerce")
    given = values.map(lambda v: not is_missing(v))
    for i in values.index[given & converted.isna()]:
        tally.add("bad_date" if dates else "bad_number", f"{source} row {i + 1}", f"{column}={values[i]!r}")
    return converted


def import_table(
    con: duckdb.DuckDBPyConnection, kind: str, df: pd.DataFrame, tally: Tally | None = None, source: str = ""
) -> int:
    """One organisation / parameter / date-correction table; unreadable numbers and dates are
    counted in ``tally`` (by CSV line), rows without a usable release date are dropped."""
    tally = tally if tally is not None else Tally()
    if kind == "org-regions":
        out = pd.DataFrame(
            {
                "hf_org": df["hf_org"].astype(str).str.strip(),
                "region": df["region"].astype(str).str.strip().str.lower(),
                "notes": df.get("notes", pd.Series([None] * len(df))).astype(object),
            }
        ).drop_duplicates("hf_org")
        con.execute("INSERT OR REPLACE INTO eco_org_regions SELECT * FROM out")
    elif kind == "organisations":
        out = pd.DataFrame(
            {
                "organization": df["Organization"].astype(str).str.strip(),
                "country": [country_of_cell(c) for c in df["Country"]],
                "category": df.get("Organization categorization", pd.Series([None] * len(df))).astype(object),
            }
        ).drop_duplicates("organization")
        con.execute("INSERT OR REPLACE INTO eco_organisations SELECT * FROM out")
    elif kind == "params":
        out = pd.DataFrame(
            {
                "model_id": df["model_id"].astype(str).str.strip(),
                "total_params_b": _read_column(df, "total_params_b", tally, source),
                "active_params_b": (
                    _read_column(df, "active_params_b", tally, source)
                    if "active_params_b" in df
                    else pd.Series([None] * len(df), dtype=float)
                ),
                "is_moe": df.get("is_moe", pd.Series([None] * len(df))).map(
                    lambda v: None if is_missing(v) else str(v).lower() == "true"
                ),
            }
        ).drop_duplicates("model_id")
        con.execute("INSERT OR REPLACE INTO eco_params SELECT * FROM out")
    elif kind == "date-corrections":
        out = (
            pd.DataFrame(
                {
                    "model_id": df["model_id"].astype(str).str.strip(),
                    "hf_created_at": _read_column(df, "hf_created_at", tally, source, dates=True),
                    "actual_release_date": _read_column(df, "actual_release_date", tally, source, dates=True),
                    "notes": df.get("notes", pd.Series([None] * len(df))).astype(object),
                }
            )
            .dropna(subset=["actual_release_date"])
            .drop_duplicates("model_id")
        )
        con.execute("INSERT OR REPLACE INTO eco_date_corrections SELECT * FROM out")
    else:
        raise ValueError(kind)
    return len(out)


def import_mot(con: duckdb.DuckDBPyConnection, paths: list[Path], openness: Openness, tally: Tally) -> int:
    """Model Openness Tool YAMLs as licence references (their ``date`` is the review date, not a release date)."""
    rows = []
    for p in paths:
        try:
            doc = yaml.load(read_utf8(p), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        except yaml.YAMLError:
            tally.add("bad_json", p.name, "YAML")
            continue
        rel = doc.get("release") if isinstance(doc, dict) else None
        if not isinstance(rel, dict):
            tally.add("missing_field", p.name, "release")
            continue
        comps = {c.get("name"): c.get("license") for c in rel.get("components") or [] if isinstance(c, dict)}
        weights = comps.get("Model parameters (Final)")
        dist = rel.get("license")
        dist_name = (
            dist.get("distribution", {}).get("name")
            if isinstance(dist, dict) and isinstance(dist.get("distribution"), dict)
            else None
        )
        lic = weights if weights not in (None, "unlicensed", "None") else dist_name
        hf = str(rel.get("huggingface") or "")
        hub_id = hf.split("huggingface.co/", 1)[1].split(" ")[0].strip("/") if "huggingface.co/" in hf else None
        rows.append(
            {
                "file": p.name,
                "name": str(rel.get("name") or p.stem),
                "producer": None if is_missing(rel.get("producer")) else str(rel.get("producer")),
                "hub_id": hub_id,
                "weights_licence": None if weights is None else str(weights),
                "distribution_licence": dist_name,
                "level": openness.licence_level(lic) if lic else None,
            }
        )
    out = pd.DataFrame(rows, columns=["file", "name", "producer", "hub_id", "weights_licence", "distribution_licence", "level"])
    out["level"] = out["level"].astype("Int64")
    if len(out):
        con.execute("INSERT OR REPLACE INTO eco_licence_refs SELECT * FROM out")
    return len(out)


def releases(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute("SELECT * FROM eco_releases ORDER BY dataset, source_row").df()


def org_regions(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return {o.lower(): r for o, r in con.execute("SELECT hf_org, region FROM eco_org_regions").fetchall()}


def params_table(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    return {
        m: p
        for m, p in con.execute("SELECT model_id, total_params_b FROM eco_params WHERE total_params_b IS NOT NULL").fetchall()
    }


def date_corrections(con: duckdb.DuckDBPyConnection) -> dict[str, pd.Timestamp]:
    return {
        m: pd.Timestamp(d) for m, d in con.execute("SELECT model_id, actual_release_date FROM eco_date_corrections").fetchall()
    }


def organisation_countries(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return {
        o.lower(): country
        for o, c in con.execute("SELECT organization, country FROM eco_organisations WHERE country IS NOT NULL").fetchall()
        if (country := normalize_country(c)) is not None
    }
