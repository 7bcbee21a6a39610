"""Adoption: downloads, derivatives and their shares by family, country and month.

Two things make adoption figures easy to get wrong, and both are handled here explicitly.
First, every share must be traceable to the rows it rests on, so the Epoch-based shares return
the source rows with each group. Second, a derivative's origin is the family it ultimately rests
on (a fine-tune of a fine-tune of Qwen is Qwen's), and when it rests on two (a merge of Llama and
Qwen) each family gets an equal fraction of it, so monthly shares add up to one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date

import duckdb
import numpy as np
import pandas as pd

from monoculture.ecosystem import databases, snapshots
from monoculture.ecosystem.countries import REGION_LABELS, region_of
from monoculture.ecosystem.lineage import Lineage, topmost_owned_ancestors
from monoculture.ecosystem.openness import is_open_weight
from monoculture.ecosystem.quality import Tally
from monoculture.ecosystem.registry import Registry

SIZE_CLASSES = (
    ("<1B", 0.0, 1.0),
    ("1-5B", 1.0, 6.0),
    ("7-9B", 6.0, 10.0),
    ("10-50B", 10.0, 50.0),
    ("50-100B", 50.0, 100.0),
    ("100-250B", 100.0, 250.0),
    ("250B+", 250.0, math.inf),
)


def size_class(params_b: float | None) -> str | None:
    """Size class of a model; the gaps in the names (5-7B, 9-10B) are closed at 6B and 10B."""
    if params_b is None or (isinstance(params_b, float) and math.isnan(params_b)) or params_b <= 0:
        return None
    for name, lo, hi in SIZE_CLASSES:
        if lo <= params_b < hi:
            return name
    return None


def build_lineage(con: duckdb.DuckDBPyConnection, tally: Tally | None = None) -> Lineage:
    e = snapshots.all_edges(con)
    return Lineage.from_edges(zip(e["child"], e["parent"], e["relation"]), tally)


class Attribution:
    """Which family, country and region a model (or the base it rests on) belongs to."""

    def __init__(self, registry: Registry, lineage: Lineage, org_regions: dict[str, str]):
        self.registry, self.lineage, self.org_regions = registry, lineage, org_regions
        self._fam: dict[str, str | None] = {}

    def family(self, model_id: str) -> str | None:
        if model_id not in self._fam:
            f = self.registry.family_of_repo(model_id)
            self._fam[model_id] = f.key if f else None
        return self._fam[model_id]

    def origins(self, model_id: str) -> list[tuple[str, str, str]]:
        """(family or author, country label, region key) of the bases a derivative rests on."""
        fams = sorted(topmost_owned_ancestors(self.lineage, model_id, self.family))
        if fams:
            out = []
            for k in fams:
                f = self.registry.families[k]
                out.append((k, f.country or "Unknown", f.region))
            return out
        out = []
        for root in sorted(self.lineage.roots_of(model_id)):
            if root == model_id:
                continue
            author = root.split("/")[0] if "/" in root else root
            region = self.org_regions.get(author.lower(), "unknown")
            out.append((f"other:{author}", REGION_LABELS.get(region, "Unknown"), region))
        return out or [("unknown", "Unknown", "unknown")]


def family_adoption(con: duckdb.DuckDBPyConnection, registry: Registry, lineage: Lineage | None = None) -> pd.DataFrame:
    """Per family: own checkpoints and their downloads, derivatives direct and transitive by relation."""
    models = snapshots.current_models(con)
    lineage = lineage or build_lineage(con)
    downloads = dict(zip(models["model_id"], models["downloads"]))
    rows = []
    nodes = set(models["model_id"]) | lineage.nodes()
    for fam in registry:
        own = sorted(m for m in nodes if fam.owns_repo(m))
        mine = models[models["model_id"].isin(own)]
        summ = lineage.summary(own)
        desc = lineage.descendants(own, exclude=own)
        d_dl = [None if (v := downloads.get(m)) is None or pd.isna(v) else float(v) for m in desc]
        row = {
            "family": fam.key,
            "name": fam.name,
            "country": fam.country,
            "region": fam.region,
            "own_models": len(mine),
            "downloads_30d": _sum(mine["downloads"]),
            "downloads_all_time": _sum(mine["downloads_all_time"]),
            "derivatives_direct": summ["direct"],
            "derivatives_transitive": summ["transitive"],
            "max_depth": summ["max_depth"],
            "derivative_downloads_30d": _sum(pd.Series(d_dl, dtype="object")),
        }
        for rel, n in summ["transitive_by_relation"].items():
            row[f"transitive_{rel}"] = n
        for rel, n in summ["direct_by_relation"].items():
            row[f"direct_{rel}"] = n
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("downloads_30d", "downloads_all_time", "derivatives_transitive"):
        tot = df[col].sum()
        df[f"share_{col}"] = df[col].fillna(0) / tot if tot else np.nan
    return df


def _sum(s: pd.Series) -> float:
    """Sum of the known values; NaN (shown as unknown) when none is known, never a false zero."""
    s = pd.to_numeric(s, errors="coerce")
    return float(s.sum()) if s.notna().any() else np.nan


def by_country(fam_df: pd.DataFrame) -> pd.DataFrame:
    cols = ["own_models", "downloads_30d", "downloads_all_time", "derivatives_direct", "derivatives_transitive"]
    g = fam_df.groupby("country", dropna=False)[cols].sum(min_count=1).reset_index()
    g["families"] = fam_df.groupby("country", dropna=False)["family"].apply(lambda s: ", ".join(sorted(s))).values
    for col in ("downloads_30d", "downloads_all_time", "derivatives_transitive"):
        tot = g[col].sum()
        g[f"share_{col}"] = g[col].fillna(0) / tot if tot else np.nan
    return g.sort_values("downloads_30d", ascending=False, na_position="last").reset_index(drop=True)


#: Snapshot kinds that sample many families alike; a lineage crawl covers one family by design.
TREND_KINDS = ("hub", "snapshot-file")


def shares_over_time(con: duckdb.DuckDBPyConnection, registry: Registry, kinds: tuple[str, ...] = TREND_KINDS) -> pd.DataFrame:
    """Download shares per family in each snapshot; comparable only within one snapshot kind."""
    df = con.execute(
        "SELECT s.snapshot_id, s.taken_at, s.kind, m.model_id, m.downloads, m.downloads_all_time "
        "FROM eco_models m JOIN eco_snapshots s USING (snapshot_id) WHERE s.status = 'complete' AND s.kind IN (SELECT unnest(?))",
        [list(kinds)],
    ).df()
    if df.empty:
        return pd.DataFrame(
            columns=[
                "snapshot_id",
                "taken_at",
                "kind",
                "family",
                "country",
                "downloads_30d",
                "downloads_all_time",
                "share_downloads_30d",
            ]
        )
    fam = {m: registry.family_of_repo(m) for m in df["model_id"].unique()}
    df["family"] = df["model_id"].map(lambda m: f.key if (f := fam[m]) else None)
    df["country"] = df["model_id"].map(lambda m: f.country if (f := fam[m]) else None)
    df = df.dropna(subset=["family"])
    g = (
        df.groupby(["snapshot_id", "taken_at", "kind", "family", "country"], dropna=False)
        .agg(
            downloads_30d=("downloads", lambda x: x.sum(min_count=1)),
            downloads_all_time=("downloads_all_time", lambda x: x.sum(min_count=1)),
            models=("model_id", "count"),
        )
        .reset_index()
    )
    tot = g.groupby("snapshot_id")["downloads_30d"].transform("sum")
    g["share_downloads_30d"] = np.where(tot > 0, g["downloads_30d"].fillna(0) / tot.where(tot > 0, 1), np.nan)
    return g.sort_values(["taken_at", "family"]).reset_index(drop=True)


def derivative_origins(con: duckdb.DuckDBPyConnection, registry: Registry, lineage: Lineage | None = None) -> pd.DataFrame:
    """One row per (derivative, origin) with its fractional weight and creation month."""
    lineage = lineage or build_lineage(con)
    models = snapshots.current_models(con)
    att = Attribution(registry, lineage, databases.org_regions(con))
    rows = []
    for r in models.itertuples(index=False):
        if not lineage.parents.get(r.model_id) or att.family(r.model_id):
            continue  # not a derivative, or a family's own checkpoint
        origins = att.origins(r.model_id)
        dated = not pd.isna(r.created_at) and not r.created_floor
        for origin, country, region in origins:
            rows.append(
                {
                    "model_id": r.model_id,
                    "origin": origin,
                    "country": country,
                    "region": region,
                    "weight": 1.0 / len(origins),
                    "month": pd.Timestamp(r.created_at).strftime("%Y-%m") if dated else None,
                }
            )
    return pd.DataFrame(rows, columns=["model_id", "origin", "country", "region", "weight", "month"])


def origin_share_by_month(origins: pd.DataFrame, by: str = "country") -> pd.DataFrame:
    """Share of new derivatives each month by the origin of their base (fractional credit)."""
    d = origins.dropna(subset=["month"])
    if d.empty:
        return pd.DataFrame(columns=["month", by, "derivatives", "share"])
    g = d.groupby(["month", by])["weight"].sum().rename("derivatives").reset_index()
    g["share"] = g["derivatives"] / g.groupby("month")["derivatives"].transform("sum")
    return g.sort_values(["month", "share"], ascending=[True, False]).reset_index(drop=True)


def origin_share_total(origins: pd.DataFrame, by: str = "country") -> pd.DataFrame:
    if origins.empty:
        return pd.DataFrame(columns=[by, "derivatives", "share"])
    g = origins.groupby(by)["weight"].sum().rename("derivatives").reset_index()
    g["share"] = g["derivatives"] / g["derivatives"].sum()
    return g.sort_values("share", ascending=False).reset_index(drop=True)


# -- relative adoption ----------------------------------------------------------------------


def _cum_at(obs: list[tuple[float, float]], age: float) -> float | None:
    """Cumulative downloads at ``age`` days by linear interpolation from (0, 0) through the observations."""
    pts = [(0.0, 0.0)] + sorted(obs)
    if age > pts[-1][0]:
        return None
    for (a0, v0), (a1, v1) in zip(pts, pts[1:]):
        if a0 <= age <= a1:
            return v0 if a1 == a0 else v0 + (v1 - v0) * (age - a0) / (a1 - a0)
    return None


def relative_adoption(history: pd.DataFrame, *, rank: int = 10, params_b: dict[str, float] | None = None) -> pd.DataFrame:
    """Each model's all-time downloads at its latest observed age against the ``rank``-th model of its size class at the same age.

    ``history`` has one row per observation: model_id, created_at, taken_at, downloads_all_time,
    params (count). A peer counts at age t only if it was observed at age t or later, so no
    curve is extrapolated; with fewer than ``rank`` such peers the measure is left empty."""
    params_b = params_b or {}
    h = history.dropna(subset=["created_at", "taken_at", "downloads_all_time"])
    if "created_floor" in h:
        h = h[~h["created_floor"].fillna(False).astype(bool)]
    curves: dict[str, list[tuple[float, float]]] = defaultdict(list)
    sizes: dict[str, str | None] = {}
    for r in h.itertuples(index=False):
        age = (pd.Timestamp(r.taken_at) - pd.Timestamp(r.created_at)).total_seconds() / 86400
        if age <= 0:
            continue
        curves[r.model_id].append((age, float(r.downloads_all_time)))
        p = params_b.get(r.model_id)
        if p is None and not pd.isna(r.params):
            p = float(r.params) / 1e9
        sizes[r.model_id] = size_class(p) if p is not None else sizes.get(r.model_id)
    rows = []
    for m, obs in curves.items():
        cls = sizes.get(m)
        age, value = max(obs)
        row = {
            "model_id": m,
            "size_class": cls,
            "age_days": round(age, 1),
            "downloads_all_time": value,
            "observations": len(obs),
            "reference_downloads": np.nan,
            "reference_model": None,
            "ratio": np.nan,
            "peers": 0,
            "status": "",
        }
        if cls is None:
            row["status"] = "size unknown"
            rows.append(row)
            continue
        peers = []
        for peer, pobs in curves.items():
            if sizes.get(peer) != cls:
                continue
            v = _cum_at(pobs, age)
            if v is not None:
                peers.append((v, peer))
        peers.sort(key=lambda t: (-t[0], t[1]))
        row["peers"] = len(peers)
        if len(peers) < rank:
            row["status"] = f"insufficient history: {len(peers)} {cls} models observed at {age:.0f} days, need {rank}"
        else:
            ref, ref_model = peers[rank - 1]
            row.update(reference_downloads=ref, reference_model=ref_model, ratio=value / ref if ref > 0 else np.nan, status="ok")
        rows.append(row)
    cols = [
        "model_id",
        "size_class",
        "age_days",
        "downloads_all_time",
        "observations",
        "reference_downloads",
        "reference_model",
        "ratio",
        "peers",
        "status",
    ]
    return (
        pd.DataFrame(rows, columns=cols)
        .sort_values(["size_class", "ratio"], ascending=[True, False], na_position="last")
        .reset_index(drop=True)
    )


# -- Epoch shares -----------------------------------------------------------------------------


def epoch_shares(
    releases: pd.DataFrame,
    registry: Registry,
    *,
    by: str = "country",
    open_only: bool = True,
    dataset: str | None = None,
    since: str | date | None = None,
    until: str | date | None = None,
    domain: str | None = "Language",
) -> pd.DataFrame:
    """Shares of Epoch releases by country or family, each with the rows it rests on.

    ``by="family"`` counts only rows that a registry family owns; the rest go to "(other)"."""
    d = releases
    if dataset:
        d = d[d["dataset"] == dataset]
    if domain:
        d = d[d["domain"].fillna("").str.contains(domain, case=False)]
    if open_only:
        d = d[d["level"].map(lambda v: is_open_weight(None if pd.isna(v) else int(v)))]
    if since:
        d = d[d["published"] >= pd.Timestamp(since)]
    if until:
        d = d[d["published"] <= pd.Timestamp(until)]
    d = d.copy()
    if by == "country":
        d["group"] = d["country"].fillna("Unknown")
    elif by == "region":
        d["group"] = d["country"].map(lambda c: REGION_LABELS[region_of(c if isinstance(c, str) else None)])
    elif by == "family":
        d["group"] = [
            (f.key if (f := registry.family_of_epoch(n, o)) else "(other)") for n, o in zip(d["name"], d["organization"])
        ]
    else:
        raise ValueError(by)
    g = (
        d.groupby("group")
        .agg(rows=("name", "size"), row_ids=("source_row", list), names=("name", list), datasets=("dataset", "unique"))
        .reset_index()
    )
    g["share"] = g["rows"] / g["rows"].sum() if len(g) else []
    return g.rename(columns={"group": by}).sort_values(["rows", by], ascending=[False, True]).reset_index(drop=True)
