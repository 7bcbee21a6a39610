"""Human reference distributions: how people in each country answered the same questions.

Two layouts are read.

* **GlobalOpinionQA** (Durmus et al. 2023; the user downloads it, it is not redistributable
  here): a CSV with ``question`` (text), ``options`` (a Python list literal) and ``selections``
  (``defaultdict(<class 'list'>, {'Nigeria': [0.6, 0.3, 0.1], ...})``). Both literals are read
  with :func:`ast.literal_eval` on the literal alone, never evaluated as code. Questions are
  matched to suite items by a mapping file when one is given, else by their text (exact after
  normalising case, spaces, punctuation and accents) in any of the suite's languages. Options
  are matched by text; options the suite does not have (``DK/Refused``) are dropped and the rest
  renormalised; a question where a suite option finds no match is skipped, with the reason.
* **Long**: one row per (question id, country, option) with the share of respondents: columns
  ``question_id`` (or ``item``, ``id``, ``group``: the suite's question group like ``val-01``,
  or an item id like ``val-01-en``), ``country``, ``option`` (1-based number, letter, or the
  option's text in any suite language) and ``share`` (or ``proportion``, ``weight``; any scale,
  normalised per question and country). CSV, TSV, JSONL or Parquet. Each (question, country,
  option) appears once and no cell is empty: a repeat or a null is an error naming the line.

A mapping file for GlobalOpinionQA lies beside the data: ``question_map.csv`` (or ``.json``,
``.jsonl``) in a directory passed as ``--countries``, or ``<stem>.map.csv`` beside a single
file. Columns: ``question`` (the file's text), ``item`` (suite group or item id) and optional
``options``: for each of the file's options in order, the 1-based suite option it counts as, or
``-`` to drop it (``1,2,3,4,-``). Several of the file's options may count as one suite option.
"""

from __future__ import annotations

import ast
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from monoculture.errors import UserError
from monoculture.files import read_utf8
from monoculture.probes.items import LETTERS, Item
from monoculture.probes.parser import _fold, _strip_punct

DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
ID_COLUMNS = ("question_id", "item", "id", "group", "qid")
SHARE_COLUMNS = ("share", "proportion", "weight")


@dataclass
class CountryData:
    """Distributions keyed by (question group, country), in the suite's option order."""

    dists: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    dropped: dict[tuple[str, str], float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # questions matched but unusable, with why
    unmatched: int = 0  # questions in the files that match no suite item
    sources: list[str] = field(default_factory=list)

    @property
    def countries(self) -> list[str]:
        return sorted({c for _, c in self.dists})

    @property
    def groups(self) -> list[str]:
        return sorted({g for g, _ in self.dists})


def _norm_q(text: str) -> str:
    return re.sub(r"\s+", " ", _strip_punct(_fold(str(text))))


class _Suite:
    """Lookups from the suite: ids, question texts, option texts, in every language."""

    def __init__(self, items: list[Item]):
        self.n_options: dict[str, int] = {}
        self.group_of: dict[str, str] = {}
        self.by_text: dict[str, str] = {}
        self.option_index: dict[str, dict[str, int]] = {}
        for it in items:
            self.n_options[it.group] = len(it.options)
            self.group_of[it.group] = it.group
            self.group_of[it.id] = it.group
            self.by_text.setdefault(_norm_q(it.question), it.group)
            idx = self.option_index.setdefault(it.group, {})
            for i, o in enumerate(it.options):
                idx.setdefault(_norm_q(o), i)

    def option(self, group: str, value) -> int | None:
        """A long-format option value: 1-based number, letter, or text."""
        n = self.n_options[group]
        s = str(value).strip()
        if re.fullmatch(r"\d+(\.0+)?", s):
            v = int(float(s))
            return v - 1 if 1 <= v <= n else None
        if len(s) == 1 and s.upper() in LETTERS[:n]:
            return LETTERS.index(s.upper())
        return self.option_index[group].get(_norm_q(s))


def data_files(path: Path) -> tuple[list[Path], Path | None]:
    """The data files and the mapping file a --countries path stands for."""
    path = Path(path)
    if not path.exists():
        raise UserError("countries file or directory not found", where=str(path))
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix.lower() in DATA_SUFFIXES and not p.stem.startswith("question_map")
        )
        maps = [p for p in path.iterdir() if p.is_file() and p.stem == "question_map" and p.suffix.lower() in DATA_SUFFIXES]
        if not files:
            raise UserError(f"no data files ({', '.join(DATA_SUFFIXES)}) in the directory", where=str(path))
        return files, (maps[0] if maps else None)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    maps = [path.with_name(f"{stem}.map{s}") for s in (".csv", ".json", ".jsonl")]
    return [path], next((m for m in maps if m.exists()), None)


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    # text is decoded like every other import: a BOM dropped, a bad byte an error naming the line
    text = read_utf8(path) if suffix in (".csv", ".tsv", ".jsonl", ".json") else ""  # parquet: pandas reads the file itself
    try:
        if suffix in (".csv", ".tsv"):
            df = pd.read_csv(io.StringIO(text), sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        elif suffix == ".jsonl":
            rows = []
            for i, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise UserError(f"not valid JSON ({e.msg}, column {e.colno})", where=f"{path}:{i}") from None
            if any(not isinstance(r, dict) for r in rows):
                raise UserError("each line must be a JSON object", where=str(path))
            df = pd.DataFrame(rows)
        elif suffix == ".json":
            data = json.loads(text)
            df = pd.DataFrame(data if isinstance(data, list) else data.get("rows", data))
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            raise UserError(f"unsupported file type {suffix!r}; use {', '.join(DATA_SUFFIXES)}", where=str(path))
    except UserError:
        raise
    except UnicodeDecodeError as e:
        raise UserError(f"not valid UTF-8 (byte {e.start})", where=str(path)) from None
    except Exception as e:  # pandas raises many kinds for a malformed file
        raise UserError(f"cannot read file: {str(e).splitlines()[0] if str(e) else type(e).__name__}", where=str(path)) from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    return df


def _literal(text: str, what: str, where: str):
    """A Python literal from a GlobalOpinionQA cell, without running anything: only the
    bracketed literal is taken (``defaultdict(<class 'list'>, {...})`` -> ``{...}``), and
    :func:`ast.literal_eval` accepts literals only."""
    s = str(text).strip()
    if what == "selections":
        start, end = s.find("{"), s.rfind("}")
        if start < 0 or end < start:
            raise UserError("selections: no {country: [shares]} mapping found", where=where)
        s = s[start : end + 1]
    try:
        return ast.literal_eval(s)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        raise UserError(f"{what}: not a plain Python literal", where=where) from None


def _read_mapping(path: Path | None) -> dict[str, tuple[str, list[int | None] | None]]:
    if path is None:
        return {}
    df = _read_table(path)
    for col in ("question", "item"):
        if col not in df.columns:
            raise UserError(
                f"mapping file needs columns question, item (and optionally options); missing {col!r}", where=str(path)
            )
    out = {}
    for i, row in enumerate(df.to_dict("records"), start=2):
        opts = row.get("options")
        mapped: list[int | None] | None = None
        if opts is not None and str(opts).strip():
            mapped = []
            for tok in str(opts).split(","):
                tok = tok.strip()
                if tok in ("-", ""):
                    mapped.append(None)
                elif tok.isdigit() and int(tok) >= 1:
                    mapped.append(int(tok) - 1)
                else:
                    raise UserError(f"options: {tok!r} is neither a 1-based option number nor '-'", where=f"{path}:{i}")
        out[_norm_q(row["question"])] = (str(row["item"]).strip(), mapped)
    return out


def load_countries(path: str | Path, items: list[Item]) -> CountryData:
    """Read every data file under ``path`` into distributions over the suite's options."""
    suite = _Suite(items)
    files, mapping_file = data_files(Path(path))
    mapping = _read_mapping(mapping_file)
    out = CountryData()
    for f in files:
        df = _read_table(f)
        cols = set(df.columns)
        if {"question", "selections", "options"} <= cols:
            _load_goqa(df, f, suite, mapping, out)
        elif "country" in cols and "option" in cols and cols & set(ID_COLUMNS) and cols & set(SHARE_COLUMNS):
            _load_long(df, f, suite, out)
        else:
            raise UserError(
                "unrecognised columns; expected GlobalOpinionQA (question, options, selections) or long format "
                f"(question_id, country, option, share); found: {', '.join(sorted(cols)) or 'none'}",
                where=str(f),
            )
        out.sources.append(str(f))
    if not out.dists:
        detail = f"; skipped: {out.skipped[0]}" if out.skipped else ""
        raise UserError(
            f"no question in the countries data matches the suite ({out.unmatched} unmatched){detail}", where=str(path)
        )
    return out


def _load_goqa(df: pd.DataFrame, path: Path, suite: _Suite, mapping: dict, out: CountryData) -> None:
    for i, row in enumerate(df.to_dict("records"), start=2):
        where = f"{path}:{i}"
        qtext = str(row["question"])
        key = _norm_q(qtext)
        mapped_opts = None
        if key in mapping:
            ref, mapped_opts = mapping[key]
            group = suite.group_of.get(ref)
            if group is None:
                raise UserError(f"mapping names item {ref!r}, which the suite does not have", where=str(path))
        else:
            group = suite.by_text.get(key)
        if group is None:
            out.unmatched += 1
            continue
        options = _literal(row["options"], "options", where)
        selections = _literal(row["selections"], "selections", where)
        if not isinstance(options, (list, tuple)) or not all(isinstance(o, str) for o in options):
            raise UserError("options: expected a list of strings", where=where)
        if not isinstance(selections, dict):
            raise UserError("selections: expected a mapping from country to shares", where=where)
        n = suite.n_options[group]
        if mapped_opts is not None:
            if len(mapped_opts) != len(options):
                raise UserError(
                    f"mapping for {group!r} lists {len(mapped_opts)} options; the file's question has {len(options)}", where=where
                )
            if any(m is not None and m >= n for m in mapped_opts):
                raise UserError(f"mapping for {group!r} names an option beyond the suite's {n}", where=where)
            target = mapped_opts
        else:
            target = [suite.option_index[group].get(_norm_q(o)) for o in options]
            missing = sorted(set(range(n)) - {t for t in target if t is not None})
            dup = len([t for t in target if t is not None]) != len({t for t in target if t is not None})
            if missing or dup:
                why = (
                    f"suite options {', '.join(LETTERS[m] for m in missing)} not found among {options!r}"
                    if missing
                    else "two options match the same suite option"
                )
                out.skipped.append(f"{group} ({qtext[:60]}): {why}; add it to a mapping file with an options column")
                continue
        for country, shares in selections.items():
            if (
                not isinstance(country, str)
                or not isinstance(shares, (list, tuple))
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in shares)
            ):
                raise UserError("selections: expected {country: [numbers]}", where=where)
            if len(shares) != len(options):
                out.skipped.append(f"{group} / {country}: {len(shares)} shares for {len(options)} options")
                continue
            vec = np.zeros(n)
            total = float(np.sum(shares))
            for t, s in zip(target, shares):
                if not np.isfinite(s) or s < 0:
                    raise UserError(f"selections: share {s!r} for {country!r} is not a non-negative number", where=where)
                if t is not None:
                    vec[t] += float(s)
            _put(out, group, country.strip(), vec, total, where)


def _given(row: dict, col: str, where: str):
    """A cell's value; an empty or null cell (a CSV's empty field, JSON null, a Parquet NA) is an
    error naming the line, never the text "nan" or "None" taken for a country or question."""
    v = row.get(col)
    if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)) or (isinstance(v, str) and not v.strip()):
        raise UserError(f"{col} is empty", where=where)
    return v


def _load_long(df: pd.DataFrame, path: Path, suite: _Suite, out: CountryData) -> None:
    """One row per (question, country, option). A row given twice is an error naming both lines
    (summing them would turn a country's 1/2, 1/2 into 2/3, 1/3 without a word)."""
    id_col = next(c for c in ID_COLUMNS if c in df.columns)
    share_col = next(c for c in SHARE_COLUMNS if c in df.columns)
    acc: dict[tuple[str, str], np.ndarray] = {}
    first: dict[tuple[str, str, int], str] = {}
    unmatched: set[str] = set()
    suffix = path.suffix.lower()
    for i, row in enumerate(df.to_dict("records")):
        # the place a user would look: the line of a text file (after a CSV's header), else the row
        place = f"line {i + 2}" if suffix in (".csv", ".tsv") else f"line {i + 1}" if suffix == ".jsonl" else f"row {i + 1}"
        where = f"{path}:{place[5:]}" if place.startswith("line") else f"{path} {place}"
        ref = str(_given(row, id_col, where)).strip()
        group = suite.group_of.get(ref)
        if group is None:
            unmatched.add(ref)
            continue
        country = str(_given(row, "country", where)).strip()
        raw_opt = _given(row, "option", where)
        opt = suite.option(group, raw_opt)
        if opt is None:
            raise UserError(
                f"option {raw_opt!r} is not one of question {group!r}'s options (1-{suite.n_options[group]}, a letter, or the option's text)",
                where=where,
            )
        raw_share = _given(row, share_col, where)
        try:
            share = float(raw_share)
        except (TypeError, ValueError):
            raise UserError(f"{share_col} {raw_share!r} is not a number", where=where) from None
        if not np.isfinite(share) or share < 0:
            raise UserError(f"{share_col} {raw_share!r} is not a non-negative number", where=where)
        key = (group, country, opt)
        if key in first:
            raise UserError(
                f"question {group!r}, country {country!r}, option {LETTERS[opt]} appears again (first on {first[key]}); "
                "give each (question, country, option) once",
                where=where,
            )
        first[key] = place
        acc.setdefault((group, country), np.zeros(suite.n_options[group]))[opt] += share
    out.unmatched += len(unmatched)
    for (group, country), vec in acc.items():
        _put(out, group, country, vec, float(vec.sum()), str(path))


def _put(out: CountryData, group: str, country: str, vec: np.ndarray, total: float, where: str) -> None:
    s = float(vec.sum())
    if s <= 0:
        out.skipped.append(f"{group} / {country}: no share on any suite option")
        return
    if (group, country) in out.dists:
        # GlobalOpinionQA repeats some questions across surveys; the first one read is kept
        out.skipped.append(f"{group} / {country}: appears again ({where}); the first is kept")
        return
    out.dists[(group, country)] = vec / s
    out.dropped[(group, country)] = max(0.0, 1.0 - s / total) if total > 0 else 0.0
