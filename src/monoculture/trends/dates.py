"""Release dates: when each model came out, and where that date came from.

A trend over time is only as good as its dates, so every date carries its source and a model
without one is left out (and counted by the caller), never guessed. The sources, first match wins:

1. the model's ``released`` attribute (a study file's ``attributes:``, ``monoculture attributes
   --set M:released=2024-05`` or ``--file``): the user's own statement about their model; or,
   for a dated corpus, its ``date`` attribute (``monoculture import jsonl`` with a date column);
2. a ``--dates FILE`` (CSV: model, released, source): the user's correction of anything shipped;
3. the ecosystem registry, where a flagship's ``hub_id`` is the model's Hub id (the store's
   ``model_id``, or a ``hub_id`` attribute); an exact, case-insensitive match, so a fine-tune of a
   flagship never inherits the flagship's date;
4. the shipped table: ``data/release_dates.csv`` (the AlpacaEval models) and the ``release_date``
   of the demo's models in ``monoculture/demo/data/attributes.yaml`` (kept there, not copied).

A month (``YYYY-MM``) stands for its 15th, the middle of the month, so that a month-precise
date is off by at most about two weeks either way rather than always early. A bare year is
refused for models: a release ordered by year alone would be up to six months off, which is the
whole span of a cohort. A dated corpus (web pages by year) may give years: :func:`parse_corpus_date`
reads one as 1 July, the middle of the year.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from monoculture.errors import UserError

MODEL_EPOCH = date(2015, 1, 1)  # no model measured here is older: an earlier date is a typo
_FULL = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_YEAR = re.compile(r"(\d{4})")
DATES_COLUMNS = ("model", "released", "source")


def _parse(value: Any, *, allow_year: bool, earliest: date | None, where: str | None, what: str) -> tuple[date, str]:
    """(the date, its canonical text at the precision given: YYYY-MM-DD, YYYY-MM or YYYY)."""
    forms = "YYYY-MM-DD, YYYY-MM" + (" or YYYY" if allow_year else "")
    first: date | None = None
    if isinstance(value, datetime):
        first = value.date()
        day, text = first, first.isoformat()
    elif isinstance(value, date):
        first = value
        day, text = value, value.isoformat()
    else:
        s = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        try:
            if m := _FULL.fullmatch(s):
                first = day = date(int(m[1]), int(m[2]), int(m[3]))
                text = day.isoformat()
            elif m := _MONTH.fullmatch(s):
                first, day = date(int(m[1]), int(m[2]), 1), date(int(m[1]), int(m[2]), 15)
                text = f"{m[1]}-{m[2]}"
            elif allow_year and (m := _YEAR.fullmatch(s)):
                first, day = date(int(m[1]), 1, 1), date(int(m[1]), 7, 1)
                text = m[1]
            elif _FULL.match(s) and len(s) > 10:  # a timestamp (2024-05-13T10:22:00Z): its day
                first = day = datetime.fromisoformat(s.replace("Z", "+00:00")).date()
                text = day.isoformat()
        except ValueError:  # 2024-13, 2024-02-30
            first = None
        if first is None:
            hint = " (a bare year is too coarse for a release; give the month)" if _YEAR.fullmatch(s) else ""
            raise UserError(f"bad {what} {value!r}: use {forms}{hint}", where=where)
    today = date.today()
    if first > today + timedelta(days=1):
        raise UserError(f"{what} {value!r} is in the future", where=where)
    if earliest is not None and day < earliest:
        raise UserError(f"{what} {value!r} is before {earliest.isoformat()}: a typo?", where=where)
    return min(day, today), text  # the middle of the current month may not have come yet


def parse_release(value: Any, *, where: str | None = None) -> date:
    """A model's release date: a date, ``YYYY-MM-DD``, or ``YYYY-MM`` (read as the 15th)."""
    return _parse(value, allow_year=False, earliest=MODEL_EPOCH, where=where, what="release date")[0]


def normalise_release(value: Any, *, where: str | None = None) -> str:
    """The text a ``released`` attribute is stored as: validated, at the precision given (a month
    stays a month, so the store never claims a day nobody stated)."""
    return _parse(value, allow_year=False, earliest=MODEL_EPOCH, where=where, what="release date")[1]


def parse_corpus_date(value: Any, *, where: str | None = None) -> date:
    """A dated text's date (web pages by year and the like): also ``YYYY`` (read as 1 July), and
    any past date, since a corpus may be older than language models."""
    return _parse(value, allow_year=True, earliest=None, where=where, what="date")[0]


def normalise_corpus_date(value: Any, *, where: str | None = None) -> str:
    return _parse(value, allow_year=True, earliest=None, where=where, what="date")[1]


def _read_table(text: str, where: str) -> dict[str, tuple[date, str]]:
    """model -> (date, source) from CSV text; ``#`` lines are comments (a model left out, and why)."""
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return {}
    reader = csv.reader(io.StringIO("\n".join(line for _, line in lines)))
    header = [h.strip().lower() for h in next(reader)]
    missing = [c for c in ("model", "released") if c not in header]
    if missing:
        raise UserError(
            f"needs the columns {', '.join(DATES_COLUMNS)}; missing {', '.join(missing)}", where=f"{where}:{lines[0][0]}"
        )
    out: dict[str, tuple[date, str]] = {}
    for (lineno, _), row in zip(lines[1:], reader):
        at = f"{where}:{lineno}"
        cells = dict(zip(header, (c.strip() for c in row)))
        model = cells.get("model", "")
        if not model:
            raise UserError("empty model name", where=at)
        if model in out:
            raise UserError(f"model {model!r} is listed twice", where=at)
        out[model] = (parse_release(cells.get("released", ""), where=at), cells.get("source", ""))
    return out


def read_dates_file(path: str | Path) -> dict[str, tuple[date, str]]:
    """A user's dates table (CSV with the columns model, released, source)."""
    from monoculture.files import read_utf8

    return _read_table(read_utf8(path, "dates file"), str(path))


def shipped_dates() -> dict[str, tuple[date, str]]:
    """The shipped table: the AlpacaEval models' CSV and the demo models' ``release_date``."""
    import yaml

    csv_text = resources.files("monoculture.trends").joinpath("data/release_dates.csv").read_text(encoding="utf-8")
    out = _read_table(csv_text, "monoculture/trends/data/release_dates.csv")
    where = "monoculture/demo/data/attributes.yaml"
    demo = yaml.safe_load(resources.files("monoculture.demo").joinpath("data/attributes.yaml").read_text(encoding="utf-8"))
    for model, attrs in (demo or {}).items():
        if isinstance(attrs, dict) and attrs.get("release_date"):
            if model in out:  # one home per fact: a second copy would drift
                raise RuntimeError(f"{model} is dated both in release_dates.csv and in {where}")
            out[str(model)] = (parse_release(attrs["release_date"], where=f"{where}: {model}"), where)
    return out


def release_dates(
    store, models: list[str], *, dates_file: str | Path | None = None, registry_file: str | Path | None = None
) -> tuple[dict[str, date], dict[str, str]]:
    """Each model's release date and where it came from (see the module's docstring for the
    order). Models without a date are absent from both dicts; the caller counts them."""
    from monoculture.ecosystem.registry import load_registry

    attrs = store.model_attributes()
    hub_ids = {str(n): mid for n, mid in store.con.execute("SELECT name, model_id FROM models").fetchall()}
    user = read_dates_file(dates_file) if dates_file else {}
    flagships = {
        fs.hub_id.lower(): (fs.date, f"ecosystem registry: {fam.key} {fs.name}")
        for fam in load_registry(registry_file)
        for fs in fam.flagships
        if fs.hub_id
    }
    shipped = shipped_dates()
    dates: dict[str, date] = {}
    sources: dict[str, str] = {}
    for m in models:
        a = attrs.get(m, {})
        found: tuple[date, str] | None = None
        if a.get("released") not in (None, ""):
            found = (parse_release(a["released"], where=f"model {m!r}: attribute released"), "attribute released")
        elif a.get("date") not in (None, ""):  # a dated corpus's source, from import's date column
            found = (parse_corpus_date(a["date"], where=f"model {m!r}: attribute date"), "attribute date (imported)")
        elif m in user:
            found = (user[m][0], f"{dates_file}: {user[m][1]}" if user[m][1] else str(dates_file))
        else:
            for hub in (a.get("hub_id"), hub_ids.get(m)):
                if isinstance(hub, str) and hub.lower() in flagships:
                    found = flagships[hub.lower()]
                    break
            if found is None and m in shipped:
                found = (shipped[m][0], f"shipped table: {shipped[m][1]}")
        if found is not None:
            dates[m], sources[m] = found
    return dates, sources
