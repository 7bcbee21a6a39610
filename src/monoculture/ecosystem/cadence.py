"""Release histories: which releases a family made, merged into release events, and the gaps.

A launch is rarely one repository: Qwen2.5 shipped dozens of checkpoints over two days, and the
same launch appears again in Epoch and in the registry. Counting repositories would make a
family that uploads many sizes look busier than one that ships one large model, so releases
from all sources are merged into *events*: releases whose dates are within ``merge_days`` of
the previous one form one event. Gaps between events are what the retreat signals test.

An event's *lead* is its flagship: a registry flagship if the event has one, otherwise its largest
model. An API-only model of undisclosed size counts as larger than any open one, because closed
launches rarely publish sizes and they are usually the frontier model of the launch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import duckdb
import pandas as pd

from monoculture.ecosystem import databases, snapshots
from monoculture.ecosystem.openness import API_ONLY, hub_access, is_open_weight
from monoculture.ecosystem.quality import Tally
from monoculture.ecosystem.registry import Family, Registry
from monoculture.store import scalar

DEFAULT_MERGE_DAYS = 7
#: Repository names that are packagings of a checkpoint, not new weights.
PACKAGING = re.compile(
    r"(?i)(gguf|awq|gptq|[-_.]fp8|[-_.]int[48]|[-_.]w[48]a\d+|mlx|bnb|exl2|onnx|[-_.]\dbit|quantized|openvino)"
)


@dataclass(frozen=True)
class Release:
    date: date
    name: str
    level: int | None
    params_b: float | None = None
    source: str = ""
    flagship: bool = False
    licence: str | None = None

    @property
    def open_weight(self) -> bool:
        return is_open_weight(self.level)


def _lead_key(r: Release) -> tuple:
    size = r.params_b if r.params_b is not None else (math.inf if r.level == API_ONLY else -1.0)
    return (r.flagship, size, -1 if r.level is None else r.level)


@dataclass
class ReleaseEvent:
    start: date
    end: date
    releases: list[Release]

    @property
    def lead(self) -> Release:
        return max(self.releases, key=_lead_key)

    @property
    def level(self) -> int | None:
        return self.lead.level

    @property
    def open_weight(self) -> bool:
        return any(r.open_weight for r in self.releases)

    @property
    def names(self) -> list[str]:
        return sorted({r.name for r in self.releases})


def merge_events(releases: list[Release], merge_days: int = DEFAULT_MERGE_DAYS) -> list[ReleaseEvent]:
    """Chain releases into events: a release within ``merge_days`` of the previous one joins its event."""
    events: list[ReleaseEvent] = []
    for r in sorted(releases, key=lambda r: (r.date, r.name)):
        if events and (r.date - events[-1].end).days <= merge_days:
            events[-1].releases.append(r)
            events[-1].end = r.date
        else:
            events.append(ReleaseEvent(start=r.date, end=r.date, releases=[r]))
    return events


def gaps_days(events: list[ReleaseEvent]) -> list[int]:
    return [(b.start - a.start).days for a, b in zip(events, events[1:])]


@dataclass
class History:
    """Everything the retreat signals look at for one family, up to ``as_of``."""

    family: str
    name: str
    organisations: tuple[str, ...]
    country: str | None
    as_of: date
    releases: list[Release] = field(default_factory=list)
    activity: list[date] = field(default_factory=list)
    merge_days: int = DEFAULT_MERGE_DAYS

    @property
    def events(self) -> list[ReleaseEvent]:
        return merge_events([r for r in self.releases if r.date <= self.as_of], self.merge_days)

    @property
    def open_events(self) -> list[ReleaseEvent]:
        """Events that shipped weights; an API-only launch is not a release of weights."""
        return merge_events([r for r in self.releases if r.date <= self.as_of and r.open_weight], self.merge_days)


def _dedupe(releases: list[Release]) -> list[Release]:
    """One release per (name, date): the registry beats Epoch beats the Hub, since it was checked by hand."""
    rank = {"registry": 0}
    best: dict[tuple[str, date], Release] = {}
    for r in releases:
        k = (re.sub(r"[^a-z0-9.]", "", r.name.lower().split("/")[-1]), r.date)
        cur = best.get(k)
        if cur is None or rank.get(r.source.split(":")[0], 9) < rank.get(cur.source.split(":")[0], 9):
            best[k] = r
    return sorted(best.values(), key=lambda r: (r.date, r.name))


def registry_releases(fam: Family) -> list[Release]:
    return [Release(f.date, f.name, f.level, f.params_b, "registry", True, f.licence) for f in fam.flagships]


def epoch_releases(rel: pd.DataFrame, fam: Family) -> list[Release]:
    """Epoch rows of one family (``rel`` carries a ``family`` column, see :func:`assign_epoch_families`)."""
    out = []
    mine = (
        rel[rel["family"] == fam.key]
        if "family" in rel
        else rel[[fam.owns_epoch_row(n, o) for n, o in zip(rel["name"], rel["organization"])]]
    )
    for r in mine.itertuples(index=False):
        if pd.isna(r.published):
            continue
        lv = None if pd.isna(r.level) else int(r.level)
        params = None if pd.isna(r.params) else float(r.params) / 1e9
        out.append(Release(pd.Timestamp(r.published).date(), r.name, lv, params, f"epoch:{r.dataset}", False, r.accessibility))
    return out


def assign_epoch_families(rel: pd.DataFrame, registry: Registry) -> pd.DataFrame:
    """Each Epoch row's family, once (the first registry family that owns it)."""
    rel = rel.copy()
    cache: dict[tuple, str | None] = {}
    fams = []
    for n, o in zip(rel["name"], rel["organization"]):
        k = (n, o if isinstance(o, str) else "")
        if k not in cache:
            f = registry.family_of_epoch(*k)
            cache[k] = f.key if f else None
        fams.append(cache[k])
    rel["family"] = fams
    return rel


def hub_releases(
    models: pd.DataFrame,
    edges: pd.DataFrame,
    fam: Family,
    registry: Registry,
    tally: Tally,
    params: dict[str, float],
    corrections: dict[str, pd.Timestamp],
) -> tuple[list[Release], list[date]]:
    """New weights a family's organisations put on the Hub, and the dates of other repository activity."""
    mine = models[[fam.owns_repo(m) for m in models["model_id"]]] if len(models) else models
    packaged = set(edges.loc[edges["relation"].isin(["quantized", "adapter"]), "child"]) if len(edges) else set()
    releases, activity = [], []
    for r in mine.itertuples(index=False):
        if not pd.isna(r.last_modified):
            activity.append(pd.Timestamp(r.last_modified).date())
        created = corrections.get(r.model_id)
        if created is None and not pd.isna(r.created_at) and not r.created_floor:
            created = pd.Timestamp(r.created_at)
        if created is None:
            continue
        if r.model_id in packaged or PACKAGING.search(r.model_id.split("/")[-1]):
            activity.append(created.date())
            continue
        level = registry.openness.level(r.licence, hub_access(r.gated), tally, r.model_id)
        p = params.get(r.model_id)
        if p is None and not pd.isna(r.params):
            p = float(r.params) / 1e9
        releases.append(Release(created.date(), r.model_id, level, p, "hub", False, r.licence))
    return releases, activity


def activity_history(con: duckdb.DuckDBPyConnection, fam: Family) -> list[date]:
    """Distinct (repo, lastModified) pairs across all snapshots: updates seen by any fetch."""
    df = con.execute(
        "SELECT DISTINCT m.model_id, m.last_modified FROM eco_models m JOIN eco_snapshots s USING (snapshot_id) "
        "WHERE s.status = 'complete' AND m.last_modified IS NOT NULL"
    ).df()
    return [pd.Timestamp(t).date() for m, t in zip(df["model_id"], df["last_modified"]) if fam.owns_repo(m)]


def latest_evidence(con: duckdb.DuckDBPyConnection, registry: Registry, today: date | None = None) -> date:
    """The default "as of": the newest date anything in the store or registry speaks for.

    Using today's date would make every family look silent whenever the data is a year old."""
    today = today or datetime.utcnow().date()
    cands = [f.date for fam in registry for f in fam.flagships if f.date <= today]
    for sql in (
        "SELECT max(taken_at) FROM eco_snapshots WHERE status = 'complete'",
        "SELECT max(published) FROM eco_releases WHERE published <= current_date",
    ):
        try:
            v = scalar(con, sql)
        except duckdb.Error:
            v = None
        if v is not None:
            cands.append(pd.Timestamp(v).date())
    return min(max(cands), today) if cands else today


def build_histories(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    families: list[Family] | None = None,
    *,
    as_of: date | None = None,
    merge_days: int = DEFAULT_MERGE_DAYS,
    tally: Tally | None = None,
) -> list[History]:
    snapshots.ensure_schema(con)
    databases.ensure_schema(con)
    tally = tally if tally is not None else Tally()
    as_of = as_of or latest_evidence(con, registry)
    families = families if families is not None else list(registry)
    rel = assign_epoch_families(databases.releases(con), registry)
    models = snapshots.current_models(con)
    edges = snapshots.all_edges(con)
    params, corrections = databases.params_table(con), databases.date_corrections(con)
    out = []
    for fam in families:
        hub_rel, hub_act = hub_releases(models, edges, fam, registry, tally, params, corrections)
        releases = _dedupe(registry_releases(fam) + epoch_releases(rel, fam) + hub_rel)
        activity = sorted({d for d in hub_act + activity_history(con, fam) if d <= as_of})
        out.append(
            History(
                fam.key,
                fam.name,
                fam.organisations,
                fam.country,
                as_of,
                [r for r in releases if r.date <= as_of],
                activity,
                merge_days,
            )
        )
    return out


def cadence_table(histories: list[History]) -> pd.DataFrame:
    rows = []
    for h in histories:
        ev = h.open_events
        g = gaps_days(ev)
        rows.append(
            {
                "family": h.family,
                "name": h.name,
                "organisations": ", ".join(h.organisations),
                "country": h.country,
                "releases": len(h.releases),
                "events": len(h.events),
                "open_events": len(ev),
                "first": ev[0].start if ev else None,
                "last_open": ev[-1].start if ev else None,
                "median_gap_days": float(pd.Series(g).median()) if g else None,
                "mean_gap_days": float(sum(g) / len(g)) if g else None,
                "silence_days": (h.as_of - ev[-1].start).days if ev else None,
                "as_of": h.as_of,
            }
        )
    return pd.DataFrame(rows)


def as_date(v) -> date | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    return date.fromisoformat(str(v))


def shift(d: date, days: int) -> date:
    return d + timedelta(days=days)
