"""Reading the model_metadata_analyses lineage crawls.

Each CSV is one family tree crawled from a base model: a row per crawled model with its Hub
metadata as a JSON string, its depth, and lists of children, adapters, quantisations and merges
(as a Python-list string in some files, comma-separated in others). The lists name models that
were never crawled as rows, so links come from both places: the child's own ``base_model`` tags
and the parent's lists. Keeping both lets the tests check our counts against the crawler's own
``*_count`` and ``depth`` columns.
"""

from __future__ import annotations

import ast
import json
import re
from datetime import datetime
from pathlib import Path

import pandas as pd

from monoculture.ecosystem.databases import read_csv
from monoculture.ecosystem.quality import Tally, is_missing
from monoculture.ecosystem.snapshots import clean_model_id

LIST_COLUMNS = {"children": "finetune", "adapters": "adapter", "quantized": "quantized", "merges": "merge"}
_STAMP = re.compile(r"_(\d{8})_(\d{6})$")


def looks_like_lineage_dump(columns: list[str]) -> bool:
    cols = set(columns)
    return {"model_id", "depth", "children"} <= cols and "metadata" in cols


def parse_list_cell(v) -> list[str]:
    """A crawler list cell as model ids (Python-list string or comma-separated URLs)."""
    if is_missing(v):
        return []
    s = str(v).strip()
    items: list = []
    if s.startswith("["):
        try:
            items = ast.literal_eval(s)
        except (ValueError, SyntaxError):
            items = [x.strip(" '\"") for x in s.strip("[]").split(",")]
    else:
        items = s.split(",")
    out = []
    for it in items:
        mid = clean_model_id(str(it))
        if mid:
            out.append(mid)
    return out


def taken_at_from_name(path: Path) -> datetime | None:
    m = _STAMP.search(path.stem)
    if not m:
        return None
    return datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S")


def read_lineage_dump(path: Path, tally: Tally) -> tuple[list[dict], list[tuple[str, str, str, str]], pd.DataFrame]:
    """Records (Hub-shaped dicts), extra links from the list columns, and the raw frame."""
    df = read_csv(path)  # decoded like every other import: a BOM dropped, a bad byte named by line
    records: list[dict] = []
    links: list[tuple[str, str, str, str]] = []
    for i, row in enumerate(df.itertuples(index=False)):
        r = row._asdict()
        mid = clean_model_id(r.get("model_id"))
        if mid is None:
            tally.add("bad_model_id", f"{path.name}:{i}")
            continue
        meta = r.get("metadata")
        rec: dict = {}
        if is_missing(meta):
            tally.add("missing_metadata", mid)
        else:
            try:
                rec = json.loads(meta)
                if not isinstance(rec, dict):
                    raise ValueError
            except ValueError:
                tally.add("bad_json", mid, "metadata")
                rec = {}
        rec = {
            k: v
            for k, v in rec.items()
            if k
            not in (
                "siblings",
                "widget_data",
                "widgetData",
                "config",
                "transformers_info",
                "transformersInfo",
                "spaces",
                "card_data",
                "model_index",
            )
        }
        rec["id"] = mid
        records.append(rec)
        for col, relation in LIST_COLUMNS.items():
            if col in r:
                for child in parse_list_cell(r[col]):
                    links.append((child, mid, relation, "dump-list"))
    return records, links, df
