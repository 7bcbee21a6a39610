"""Counting malformed metadata instead of crashing on it.

Hub metadata is written by thousands of people and several crawlers: fields go missing, dates
sit on the Hub's 2022-03-02 floor (the day it began storing creation dates), licences are free
text, and base-model links can form cycles. One bad record must never stop a run, but silently
dropping it would bias every share, so each problem is counted by kind with a few examples and
shown next to the results it could affect.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pandas as pd

from monoculture.errors import UserError

#: The Hub stores no creation date before this day; older repos all report it.
HUB_FLOOR_DATE = date(2022, 3, 2)
#: Anything earlier than this is not a plausible release date for a neural language model repo.
EARLIEST_PLAUSIBLE = date(2015, 1, 1)
#: No snapshot of the Hugging Face Hub can be older than the Hub itself (it began holding models
#: in 2016-2019; the earlier bound leaves room for mirrors of older crawls).
HUB_FIRST = date(2016, 1, 1)
#: How far a snapshot's date may lie ahead of this machine's clock (time zones, a skewed clock).
CLOCK_SKEW = timedelta(days=1)
#: The largest count a store column (BIGINT) holds; a larger "count" is corrupt, not a count.
INT64_MAX = 2**63 - 1

KIND_HELP = {
    "missing_field": "a field the analysis needs is absent or empty",
    "missing_metadata": "a row carries no metadata at all",
    "bad_json": "a metadata cell is not valid JSON",
    "bad_date": "a date that cannot be parsed",
    "floor_date": "createdAt is the Hub's 2022-03-02 floor: the real date is unknown (on or before it)",
    "implausible_date": "a date before 2015 or after the snapshot was taken",
    "bad_number": "a count or size that is not a number, is negative, or is too large to be one (kept as unknown)",
    "unknown_licence": "a licence that is not on the openness scale (counted, level left unknown)",
    "cycle": "base-model links that form a cycle (the closing link is ignored)",
    "self_loop": "a model that names itself as its base (ignored)",
    "bad_model_id": "a model id that is empty or malformed",
    "duplicate": "the same model twice in one snapshot (the last one is kept)",
    "bad_type": "a field of the wrong type (for example tags that are not a list)",
    "skipped_file": "an input file that is not a known ecosystem format",
}


@dataclass
class Tally:
    """Problems by kind, with up to ``keep`` examples each."""

    keep: int = 5
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, item: Any = "", detail: Any = "") -> None:
        self.counts[kind] += 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < self.keep:
            text = str(item)
            if detail not in ("", None):
                text += f" ({detail})"
            ex.append(text[:300])

    def merge(self, other: Tally) -> None:
        for kind, n in other.counts.items():
            self.counts[kind] += n
            ex = self.examples.setdefault(kind, [])
            for e in other.examples.get(kind, []):
                if len(ex) < self.keep:
                    ex.append(e)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def rows(self) -> list[dict]:
        return [
            {"kind": k, "count": n, "meaning": KIND_HELP.get(k, ""), "examples": self.examples.get(k, [])}
            for k, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def summary(self) -> str:
        return ", ".join(f"{k} {n}" for k, n in sorted(self.counts.items())) or "none"


def is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    if isinstance(v, str) and not v.strip():
        return True
    return v is pd.NaT


_EPOCH_MS = re.compile(r"^\d{12,13}$")


def parse_timestamp(
    v: Any,
    tally: Tally | None = None,
    item: str = "",
    field_name: str = "date",
    *,
    not_after: datetime | None = None,
    earliest: date | None = EARLIEST_PLAUSIBLE,
) -> datetime | None:
    """A naive-UTC datetime, or None when the value is missing or unusable (counted)."""
    if is_missing(v):
        return None
    try:
        if isinstance(v, (int, float)) or (isinstance(v, str) and _EPOCH_MS.match(v.strip())):
            ts = pd.Timestamp(int(v), unit="ms", tz="UTC")
        elif isinstance(v, datetime):
            ts = pd.Timestamp(v)
        elif isinstance(v, date):
            ts = pd.Timestamp(datetime(v.year, v.month, v.day))
        else:
            ts = pd.Timestamp(str(v).strip())
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        out = ts.to_pydatetime()
    except (ValueError, TypeError, OverflowError):
        if tally is not None:
            tally.add("bad_date", item, f"{field_name}={v!r}")
        return None
    if (earliest is not None and out.date() < earliest) or (not_after is not None and out > not_after):
        if tally is not None:
            tally.add("implausible_date", item, f"{field_name}={v!r}")
        return None
    return out


def is_floor_date(ts: datetime | None) -> bool:
    return ts is not None and ts.date() == HUB_FLOOR_DATE


def parse_int(v: Any, tally: Tally | None = None, item: str = "", field_name: str = "number") -> int | None:
    """A non-negative count, or None (counted as ``bad_number``) when it is not a number, is
    negative, or exceeds what a BIGINT column holds (1e30 downloads is corruption, and would
    otherwise stop the whole import with an OverflowError)."""
    if is_missing(v):
        return None
    if isinstance(v, bool):
        return int(v)
    try:
        if isinstance(v, int):
            n = v
        else:
            f = float(v)
            if math.isnan(f) or math.isinf(f):
                raise ValueError
            n = int(f)
        if n < 0 or n > INT64_MAX:
            raise ValueError
        return n
    except (TypeError, ValueError, OverflowError):
        if tally is not None:
            tally.add("bad_number", item, f"{field_name}={v!r}")
        return None


def snapshot_time(v: Any, *, field_name: str, where: str | None = None) -> datetime | None:
    """When a snapshot was taken, from a file's field, a file name or ``--taken-at``; None when
    absent. Unlike a model's own dates (counted when implausible), this one dates every
    observation in the snapshot and moves every alert's "as of", so a date that cannot be read,
    lies in the future (beyond a day of clock skew) or precedes the Hub is refused, naming the
    file and field."""
    if is_missing(v):
        return None
    shown = repr(v.isoformat() if isinstance(v, (date, datetime)) else v)
    ts = parse_timestamp(v, earliest=None)
    if ts is None:
        raise UserError(f"{field_name} {shown} is not a date (use ISO 8601, e.g. 2025-06-30T12:00:00Z)", where=where)
    now = utcnow()
    if ts > now + CLOCK_SKEW:
        raise UserError(
            f"{field_name} {shown} lies in the future (today is {now.date()}); a snapshot is dated when it was taken", where=where
        )
    if ts.date() < HUB_FIRST:
        raise UserError(
            f"{field_name} {shown} is before {HUB_FIRST.year}, when the Hugging Face Hub did not yet exist", where=where
        )
    return ts


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
