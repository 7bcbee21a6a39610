"""Generic tables of outputs: JSONL, CSV and Parquet.

Columns (our names): ``prompt``, ``model``, ``text`` (required); ``prompt_id``, ``sample_index``,
``category``, ``language``, ``group`` (optional; prompts that share a group, such as translations
or paraphrases of one question, are one unit when measured: stored as the prompt's group_id);
``date`` and ``source`` for a dated corpus (web pages by year): ``source`` names the "model" where
there is no model column, ``date`` (YYYY-MM-DD, YYYY-MM or YYYY) becomes the model's ``date``
attribute, and a source with texts of several dates becomes one model per date, SOURCE@DATE. ``mapping`` renames: ``{"text": "output", "model":
"generator"}`` reads our ``text`` from their column ``output`` (the CLI's ``--map text=output``).
Without ``sample_index`` a row gets the running count of rows seen so far for its (model, prompt),
so a file with one answer per prompt gets 0 everywhere. Without ``prompt_id`` the id is derived
from the prompt text (prompts are matched by text anyway).

This module also holds the small parsing helpers that the other importers share: decoding that
reports the line of a bad byte, JSONL with line numbers, finding files in a folder, option checks,
and the duplicate check that names both places.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from monoculture.errors import UserError
from monoculture.files import read_utf8 as read_text
from monoculture.hashing import digest
from monoculture.importers import Imported, ensure_unique
from monoculture.trends.dates import normalise_corpus_date

FIELDS = ("prompt_id", "prompt", "model", "sample_index", "text", "category", "language", "group", "date", "source")
REQUIRED = ("prompt", "model", "text")


# -- shared helpers ------------------------------------------------------------------------------
def existing_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError("no such file or folder", where=str(p))
    return p


def check_options(options: dict[str, Any], allowed: Iterable[str], fmt: str, *, also: Iterable[str] = ()) -> None:
    """Reject options this reader does not know (None and empty values are ignored, so a caller
    may pass the same keywords, e.g. ``mapping={}``, to every reader). ``also`` names the
    options the reader takes as keyword arguments, so that the message lists them all;
    ``mapping`` is given as ``--map`` on the command line and listed so."""
    allowed = set(allowed) | set(also)
    unknown = sorted(
        k for k, v in options.items() if k not in allowed and not (v is None or isinstance(v, (dict, list, tuple)) and not v)
    )
    if unknown:
        takes = [f"{k}=..." for k in sorted(allowed - {"mapping"})] + (["--map FIELD=COLUMN"] if "mapping" in allowed else [])
        raise UserError(
            f"the {fmt} importer does not take option(s) {', '.join(unknown)}; it takes: {', '.join(takes) or 'none'}"
        )


def json_error(e: json.JSONDecodeError) -> str:
    """json's message with the column, worded once for every reader: its messages end in
    "at" ("Unterminated string starting at"), which must not become "at at column"."""
    msg = e.msg.removesuffix(" at")
    return f"not valid JSON ({msg} at column {e.colno})"


def find_files(path: Path, patterns: Iterable[str], what: str) -> list[Path]:
    """``path`` itself if it is a file; else the files in the folder matching ``patterns``
    (looking one level down, then anywhere below if none are at the top)."""
    if path.is_file():
        return [path]
    patterns = list(patterns)
    for recursive in (False, True):
        found = sorted({f for pat in patterns for f in (path.rglob(pat) if recursive else path.glob(pat)) if f.is_file()})
        if found:
            return found
    raise UserError(f"no {what} found (looked for {', '.join(patterns)})", where=str(path))


def jsonl_objects(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line; any line that is not a JSON object is a
    UserError naming the file and line."""
    text = read_text(path)
    out: list[tuple[int, dict]] = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{json_error(e)}; each line must be one JSON object", where=f"{path}:{n}") from None
        if not isinstance(obj, dict):
            raise UserError(f"expected a JSON object on each line, got {json_type(obj)}", where=f"{path}:{n}")
        out.append((n, obj))
    if not out:
        raise UserError("file is empty (no JSON lines)", where=str(path))
    return out


def json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(v), type(v).__name__
    )


def require(obj: dict, field: str, where: str, kind: type | tuple = str, *, what: str = "field") -> Any:
    """obj[field], which must be present and of ``kind``."""
    if field not in obj:
        have = ", ".join(map(repr, obj)) or "none"
        raise UserError(f"missing {what} {field!r} (present: {have})", where=where)
    v = obj[field]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise UserError(f"{what} {field!r} must be {names}, got {json_type(v)}", where=where)
    return v


def text_id(prefix: str, text: str) -> str:
    return f"{prefix}-{digest(text.strip(), 12)}"


# -- the tabular readers ---------------------------------------------------------------------------
def _columns(mapping: Any) -> dict[str, str]:
    """Our field -> their column. Accepts a dict or ["text=output", ...]."""
    if mapping is None:
        mapping = {}
    if isinstance(mapping, (list, tuple)):
        pairs = {}
        for m in mapping:
            ours, sep, theirs = str(m).partition("=")
            if not sep or not ours.strip() or not theirs.strip():
                raise UserError(f"bad --map {m!r}: write OUR_FIELD=THEIR_COLUMN, e.g. text=output")
            pairs[ours.strip()] = theirs.strip()
        mapping = pairs
    if not isinstance(mapping, dict):
        raise UserError(f"mapping must be field -> column pairs, got {type(mapping).__name__}")
    bad = sorted(set(mapping) - set(FIELDS))
    if bad:
        raise UserError(f"cannot map unknown field(s) {', '.join(bad)}; fields are: {', '.join(FIELDS)}")
    return {f: mapping.get(f, f) for f in FIELDS}


def _missing(v: Any) -> bool:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return True
    try:
        import pandas as pd

        return v is pd.NA or v is pd.NaT
    except ImportError:  # pragma: no cover
        return False


def _what_missing(v: Any) -> str:
    """How a missing value reads in an error: JSON null and NaN are different mistakes."""
    if v is None:
        return "null"
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return "a missing value"


def _label(field: str, cols: dict[str, str]) -> str:
    return repr(cols[field]) if cols[field] == field else f"{cols[field]!r} (for {field})"


class _Builder:
    """Turns rows (dicts keyed by their column names) into records with running sample counts."""

    def __init__(self, cols: dict[str, str], model: str | None):
        self.cols = cols
        self.model = model
        self.records: list[Imported] = []
        self.counts: dict[tuple[str, str], int] = {}
        self.gave_index = False  # some row had a sample_index: the duplicate hint says so

    def check_header(self, header: list[str], where: str) -> None:
        for f in REQUIRED:
            if f == "model" and (self.model is not None or self.cols["source"] in header) and self.cols["model"] not in header:
                continue
            if self.cols[f] not in header:
                raise UserError(
                    f"no column {_label(f, self.cols)}; columns are: {', '.join(map(repr, header)) or 'none'} (rename with --map {f}=COLUMN)",
                    where=where,
                )

    def add(self, row: dict[str, Any], where: str, rowname: str, *, strings: bool = False) -> None:
        c = self.cols
        pre = f"{rowname}: " if rowname else ""

        def get(field: str, required: bool) -> Any:
            col = c[field]
            if col not in row:
                if field == "model" and self.model is not None:
                    return self.model
                if field == "model" and c["source"] in row:  # a dated corpus: its sources stand for models
                    return get("source", True)
                if required:
                    unit = "column" if rowname else "field"
                    raise UserError(
                        f"{pre}missing {unit} {_label(field, c)}; present: {', '.join(map(repr, row)) or 'none'} (rename with --map {field}={unit.upper()})",
                        where=where,
                    )
                return None
            v = row[col]
            if _missing(v) or (strings and v == "" and field != "text"):
                absent[field] = "an empty cell" if strings else _what_missing(v)
                return None
            return v

        absent: dict[str, str] = {}
        vals = {}
        for f in ("prompt", "model", "text"):
            v = get(f, True)
            if not isinstance(v, str):
                got = absent.get(f) or json_type(v)
                raise UserError(f"{pre}{_label(f, c)} must be a string, got {got}", where=where)
            if f != "text" and not v.strip():
                raise UserError(f"{pre}{_label(f, c)} is empty", where=where)
            vals[f] = v
        pid = get("prompt_id", False)
        if isinstance(pid, float) and pid.is_integer():
            pid = int(pid)
        if pid is not None and (not isinstance(pid, (str, int)) or isinstance(pid, bool)):
            raise UserError(f"{pre}{_label('prompt_id', c)} must be a string or an integer, got {json_type(pid)}", where=where)
        pid = text_id("p", vals["prompt"]) if pid is None or str(pid).strip() == "" else str(pid)
        key = (vals["model"], vals["prompt"].strip())
        si = get("sample_index", False)
        if si is None:
            si = self.counts.get(key, 0)
        else:
            si = self._int(si, pre + _label("sample_index", c), where)
            self.gave_index = True
        self.counts[key] = self.counts.get(key, 0) + 1
        extra: dict[str, str | None] = {}
        for f in ("category", "language", "group"):
            v = get(f, False)
            if f == "group" and isinstance(v, float) and v.is_integer():
                v = int(v)
            if f == "group" and isinstance(v, int) and not isinstance(v, bool):
                v = str(v)
            if v is not None and not isinstance(v, str):
                raise UserError(f"{pre}{_label(f, c)} must be a string, got {json_type(v)}", where=where)
            extra[f] = v if v and v.strip() else None
        day = get("date", False)
        if isinstance(day, float) and day.is_integer():
            day = int(day)
        if day is not None:
            try:
                day = normalise_corpus_date(day)
            except UserError as e:
                raise UserError(f"{pre}{_label('date', c)}: {e}", where=where) from None
        place = f"{where}" + (f" {rowname}" if rowname else "")
        self.records.append(
            Imported(
                model=vals["model"],
                prompt_id=pid,
                prompt=vals["prompt"],
                text=vals["text"],
                sample_index=si,
                where=place,
                category=extra["category"],
                language=extra["language"],
                group=extra["group"],
                date=day,
            )
        )

    def _split_by_date(self) -> None:
        """A source whose texts have several dates (a site's pages year by year) becomes one
        model per date, SOURCE@DATE: the trend analysis gives each model one date. Without a
        sample_index column the samples are counted again within each new model."""
        dates: dict[str, set] = {}
        for r in self.records:
            dates.setdefault(r.model, set()).add(r.date)
        split = {m for m, ds in dates.items() if len(ds) > 1 and None not in ds}  # with and without: refused later
        if not split:
            return
        counts: dict[tuple[str, str], int] = {}
        for r in self.records:
            if r.model in split:
                r.model = f"{r.model}@{r.date}"
                if not self.gave_index:
                    key = (r.model, r.prompt.strip())
                    r.sample_index = counts.get(key, 0)
                    counts[key] = r.sample_index + 1

    @staticmethod
    def _int(v: Any, label: str, where: str) -> int:
        if isinstance(v, bool):
            ok = False
        elif isinstance(v, int):
            ok, v = True, int(v)
        elif isinstance(v, float) and v.is_integer():
            ok, v = True, int(v)
        elif isinstance(v, str) and v.strip().lstrip("-").isdigit():
            ok, v = True, int(v.strip())
        else:
            ok = False
        if not ok or v < 0:
            raise UserError(f"{label} must be a whole number >= 0, got {v!r}", where=where)
        return v

    def finish(self, files: list[Path]) -> list[Imported]:
        if not self.records:
            raise UserError("no rows found", where=", ".join(map(str, files)))
        self._split_by_date()
        ensure_unique(
            self.records,
            "the file gives both the same sample_index" if self.gave_index else "add a sample_index column to tell them apart",
        )
        return self.records


_TAB_OPTIONS = ("mapping", "model")


def read_jsonl(path: str | Path, mapping: dict[str, str] | None = None, **options) -> list[Imported]:
    """One JSON object per line. ``model=NAME`` names the model when there is no model column."""
    check_options(options, _TAB_OPTIONS, "jsonl")
    b = _Builder(_columns(mapping), options.get("model"))
    files = find_files(existing_path(path), ["*.jsonl", "*.ndjson"], "JSONL files")
    for f in files:
        for n, obj in jsonl_objects(f):
            b.add(obj, f"{f}:{n}", "")
    return b.finish(files)


def read_csv(
    path: str | Path, mapping: dict[str, str] | None = None, *, delimiter: str | None = None, **options
) -> list[Imported]:
    """A CSV file with a header row (``delimiter`` defaults to ``,``; ``.tsv`` files use tabs).
    Errors name the data row (1 = first row under the header) and its line in the file."""
    check_options(options, _TAB_OPTIONS, "csv", also=("delimiter",))
    b = _Builder(_columns(mapping), options.get("model"))
    files = find_files(existing_path(path), ["*.csv", "*.tsv"], "CSV files")
    csv.field_size_limit(2**31 - 1)
    for f in files:
        text = read_text(f)
        delim = delimiter or ("\t" if f.suffix.lower() == ".tsv" else ",")
        if len(delim) != 1:
            raise UserError(f"delimiter must be one character, got {delim!r}")
        # strict: a quote that is never closed, or closed in the middle of a field, is an error
        # (the lenient default reads the rest of the file into one field and exits 0)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, strict=True)
        start = 1  # the line the record being read starts on
        try:
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise UserError("no header row", where=f"{f}:1")
            header = [h.strip() for h in header]
            b.check_header(header, f"{f}:1")
            rowno = 0
            start = reader.line_num + 1
            for cells in reader:
                where = f"{f}:{start}"
                start = reader.line_num + 1
                if not cells or not any(x.strip() for x in cells):
                    continue
                rowno += 1
                if len(cells) > len(header):
                    raise UserError(f"row {rowno}: {len(cells)} fields but the header has {len(header)}", where=where)
                row = dict(zip(header, cells))
                b.add(row, where, f"row {rowno}", strings=True)
        except csv.Error as e:
            opened = _quote_opened(text, start, delim)
            if opened is not None:
                line, closed = opened
                how = (
                    "is never closed (the rest of the file would be one field)"
                    if closed is None
                    else (f"closes on line {closed} and is followed by more text in the same field")
                )
                raise UserError(
                    f"not valid CSV: the quoted field that opens on this line {how}; "
                    'close the quote, or write a quote inside a field as ""',
                    where=f"{f}:{line}",
                ) from None
            raise UserError(f"not valid CSV: {e}", where=f"{f}:{reader.line_num}") from None
        if rowno == 0:
            raise UserError("no data rows under the header", where=str(f))
    return b.finish(files)


def _quote_opened(text: str, start: int, delim: str) -> tuple[int, int | None] | None:
    """Where the bad quote of the record starting on line ``start`` opened: (line it opened,
    line it closed or None). Follows the csv module's strict dialect: a quote opens a field
    only at its start, ``""`` inside is a quote, and after the closing quote comes a delimiter
    or the end of the line. Lines are counted as the csv module counts them (``\n``, ``\r\n``
    and a lone ``\r`` each end one), so the numbers agree with its ``line_num``."""
    lines = io.StringIO(text, newline="").readlines()
    if start > len(lines):
        return None
    pos = sum(len(x) for x in lines[: start - 1])
    line, at_start, i, n = start, True, pos, len(text)

    def newline_at(j: int) -> int:
        """Length of the line break at j (0 if none)."""
        if text[j] == "\n":
            return 1
        if text[j] == "\r":
            return 2 if j + 1 < n and text[j + 1] == "\n" else 1
        return 0

    while i < n:
        ch = text[i]
        if at_start and ch == '"':
            opened, i = line, i + 1
            while True:
                if i >= n:
                    return opened, None
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        i += 2
                        continue
                    after = text[i + 1] if i + 1 < n else ""
                    if after not in (delim, "\n", "\r", ""):
                        return opened, line
                    break
                nl = newline_at(i)
                if nl:
                    line, i = line + 1, i + nl
                else:
                    i += 1
            i += 1
            at_start = False
            continue
        if newline_at(i):
            return None  # the record ended without a quoting problem
        at_start = ch == delim
        i += 1
    return None


def read_parquet(path: str | Path, mapping: dict[str, str] | None = None, **options) -> list[Imported]:
    """A Parquet file (or a folder of them). Errors name the row (1 = first row)."""
    import pandas as pd

    check_options(options, _TAB_OPTIONS, "parquet")
    b = _Builder(_columns(mapping), options.get("model"))
    files = find_files(existing_path(path), ["*.parquet", "*.pq"], "Parquet files")
    for f in files:
        if f.stat().st_size == 0:
            raise UserError("file is empty", where=str(f))
        try:
            df = pd.read_parquet(f)
        except Exception as e:  # pyarrow raises several types for a file that is not Parquet
            raise UserError(
                f"not a readable Parquet file: {str(e).splitlines()[0] if str(e) else type(e).__name__}", where=str(f)
            ) from None
        header = [str(c) for c in df.columns]
        b.check_header(header, str(f))
        if len(df) == 0:
            raise UserError("no rows", where=str(f))
        cols = {str(c): df[c].tolist() for c in df.columns}
        for i in range(len(df)):
            b.add({k: v[i] for k, v in cols.items()}, str(f), f"row {i + 1}")
    return b.finish(files)
