"""Importers: outputs that already exist, brought into the store without running a model.

Each module parses one external format into :class:`Imported` records. Parsing finishes (and
fails, naming the file and line) before anything is written, so bad input never leaves a half
import behind. Prompts are matched across models by their text, so files that number the same
question differently still share it.

Nothing stored is silently replaced: :func:`import_records` checks the records against the
store inside the transaction that writes them. A generation already stored with the same text
is skipped (and counted), one with another text is refused unless ``replace``; a prompt id that
already names another prompt text is refused (``monoculture rm --prompt`` removes the old one).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from monoculture.errors import UserError
from monoculture.hashing import digest
from monoculture.suites import Prompt, prompt_key

FORMATS: dict[str, str] = {
    "alpaca-eval": "monoculture.importers.alpaca_eval:read",
    "arena-hard": "monoculture.importers.arena_hard:read",
    "noveltybench": "monoculture.importers.noveltybench:read",
    "jsonl": "monoculture.importers.tabular:read_jsonl",
    "csv": "monoculture.importers.tabular:read_csv",
    "parquet": "monoculture.importers.tabular:read_parquet",
}


@dataclass
class Imported:
    """One existing output: who said what to which prompt, and where in the input it was
    (``where``, e.g. ``file.jsonl:12``), so that any later check can name the place."""

    model: str
    prompt_id: str
    prompt: str
    text: str
    sample_index: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    category: str | None = None
    language: str | None = None
    where: str | None = None
    group: str | None = None
    #: a dated corpus: the text's date (canonical YYYY-MM-DD, YYYY-MM or YYYY), stored as its
    #: model's ``date`` attribute, so the trend analysis reads sources as it reads released models
    date: str | None = None


# The store's sample_index is a 32-bit integer; a larger index is a mistake in the file (no
# study draws two billion samples), so it is refused with the row rather than widened.
MAX_SAMPLE_INDEX = 2**31 - 1


def reader(fmt: str):
    target = FORMATS.get(fmt)
    if target is None:
        raise UserError(f"unknown import format {fmt!r}; known: {', '.join(FORMATS)}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def short(text: str | None, n: int = 60) -> str:
    """A text for an error message: quoted, and cut to ``n`` characters."""
    if text is None:
        return "nothing"
    t = text if len(text) <= n else text[: n - 1] + "\u2026"
    return repr(t)


class _Keys(dict):
    """prompt text -> prompt key, each text hashed once (an import has many records per prompt)."""

    def __missing__(self, text: str) -> str:
        k = self[text] = prompt_key((("user", text),))
        return k


def _at(r: Imported) -> str:
    return f"{r.where}: " if r.where else ""


def ensure_unique(records: list[Imported], hint: str = "", keys: _Keys | None = None) -> None:
    """Two records with the same (model, prompt text, sample index) would be one row in the
    store; say where both came from instead of letting the second silently win."""
    keys = _Keys() if keys is None else keys
    seen: dict[tuple, Imported] = {}
    for r in records:
        k = (r.model, keys[r.prompt], int(r.sample_index))
        first = seen.setdefault(k, r)
        if first is not r:
            places = " and ".join(w for w in (first.where, r.where) if w) or "in the input"
            raise UserError(
                f"two records for model {r.model!r}, prompt {r.prompt_id!r}, sample {r.sample_index}: "
                f"{places}" + (f"; {hint}" if hint else "")
            )


def _check_records(records: list[Imported], suite: str, keys: _Keys) -> dict[str, Prompt]:
    """Checks that need no store: sample indices in range, one text per prompt id, one group
    per prompt. Returns the prompts by key (the first record of each names it)."""
    prompts: dict[str, Prompt] = {}
    first: dict[str, Imported] = {}
    by_id: dict[str, tuple[str, Imported]] = {}
    for r in records:
        si = r.sample_index
        if isinstance(si, bool) or not isinstance(si, int) or not 0 <= si <= MAX_SAMPLE_INDEX:
            raise UserError(
                f"{_at(r)}sample_index {si!r} is out of range: a sample index is a whole number from 0 to {MAX_SAMPLE_INDEX}"
            )
        key = keys[r.prompt]
        if key not in prompts:
            prompts[key] = Prompt(
                id=r.prompt_id,
                messages=(("user", r.prompt),),
                suite=suite,
                language=r.language,
                category=r.category,
                group=r.group,
            )
            first[key] = r
        elif r.group is not None and prompts[key].group != r.group:
            f = first[key]
            raise UserError(
                f"{_at(r)}prompt {r.prompt_id!r} is in group {r.group!r} here but in group "
                f"{prompts[key].group!r} at {f.where or 'an earlier record'}; a prompt has one group"
            )
        seen = by_id.setdefault(r.prompt_id, (key, r))
        if seen[0] != key:
            o = seen[1]
            raise UserError(
                f"{_at(r)}prompt id {r.prompt_id!r} names two different prompts: {short(o.prompt)} "
                f"({o.where or 'an earlier record'}) and {short(r.prompt)} (here); give them distinct ids"
            )
    return prompts


def import_records(
    store, records: Iterable[Imported], source: str, *, suite: str | None = None, replace: bool = False
) -> dict[str, int]:
    """Check everything, then write in one transaction; a failed check writes nothing.

    The key of an imported generation is (model, prompt text, sample index). A record whose
    key is in the store with the same text adds nothing (re-importing a file changes nothing);
    with another text it is refused, naming the first such record, unless ``replace``. A prompt
    id that the store (or this import) already gives to another prompt text is refused: it
    would make two prompts indistinguishable by id for ever after (``monoculture rm`` removes
    the old one). Returns counts: records, new, unchanged, replaced, models, prompts."""
    records = list(records)
    if not records:
        raise UserError(f"{source}: no records found")
    suite = suite or source
    keys = _Keys()
    prompts = _check_records(records, suite, keys)
    ensure_unique(records, keys=keys)
    dates = _model_dates(records)
    rows = []
    models: dict[str, dict] = {}
    for r in records:
        pk = keys[r.prompt]
        models.setdefault(
            r.model,
            {
                "name": r.model,
                "backend": "import",
                "model_id": r.model,
                "source": source,
                "identity": {"import": source, "model": r.model},
                "attributes": {"date": dates[r.model]} if r.model in dates else {},
            },
        )
        rows.append(
            {
                "key": digest({"imported": True, "model": r.model, "prompt_key": pk, "sample_index": r.sample_index}),
                "model": r.model,
                "prompt_key": pk,
                "sample_index": int(r.sample_index),
                "text": r.text,
                "n_mode": "imported",
                "params": r.meta or None,
                "source": source,
                "attempts": 0,
            }
        )
    with store.transaction():
        _check_against_store(store, records, prompts, keys, replace=replace)
        _check_dates_against_store(store, records, dates)
        stored = store.generation_texts([row["key"] for row in rows])
        fresh, changed = [], []
        for r, row in zip(records, rows):
            if row["key"] not in stored:
                fresh.append(row)
            elif stored[row["key"]] != row["text"]:
                changed.append((r, row))
        if changed and not replace:
            r, row = changed[0]
            raise UserError(
                f"{_at(r)}the store already holds a different text for model {r.model!r}, prompt {r.prompt_id!r}, "
                f"sample {r.sample_index}: stored {short(stored[row['key']])}, here {short(r.text)} "
                f"({len(changed)} such record{'s' if len(changed) != 1 else ''} in all); nothing was imported. "
                "Pass --replace to replace the stored texts, or import under another model name"
            )
        existing = store.model_names()
        store.upsert_models([m for n, m in models.items() if n not in existing])
        store.upsert_prompts(list(prompts.values()))
        if replace:
            store.set_prompt_groups({k: p.group for k, p in prompts.items() if p.group is not None})
        store.insert_generations(fresh + [row for _, row in changed])
    return {
        "records": len(rows),
        "new": len(fresh),
        "unchanged": len(rows) - len(fresh) - len(changed),
        "replaced": len(changed),
        "models": len(models),
        "prompts": len(prompts),
    }


def _model_dates(records: list[Imported]) -> dict[str, str]:
    """model -> the date its texts share (a dated corpus). A model is one point in time: texts of
    one model with two dates, or with and without a date, are refused, naming both places (the
    tabular readers have already split a source with several dates into SOURCE@DATE)."""
    first: dict[str, Imported] = {}
    for r in records:
        f = first.setdefault(r.model, r)
        if f.date != r.date:
            raise UserError(
                f"{_at(r)}model {r.model!r} has the date {r.date or 'none'} here but {f.date or 'none'} at "
                f"{f.where or 'an earlier record'}; a model (or source) has one date"
            )
    return {m: r.date for m, r in first.items() if r.date is not None}


def _check_dates_against_store(store, records: list[Imported], dates: dict[str, str]) -> None:
    """A stored model keeps its date: another date for it is refused, a first one is recorded."""
    stored = store.model_attributes()
    for m, d in dates.items():
        if m in stored and stored[m].get("date") not in (None, d):
            r = next(x for x in records if x.model == m)
            raise UserError(f"{_at(r)}model {m!r} is stored with the date {stored[m]['date']}, here {d}; nothing was imported")
    for m, d in dates.items():
        if m in stored and "date" not in stored[m]:
            merged = {**stored[m], "date": d}
            store.con.execute("UPDATE models SET attributes = ? WHERE name = ?", [json.dumps(merged, sort_keys=True), m])


def _check_against_store(store, records: list[Imported], prompts: dict[str, Prompt], keys: _Keys, *, replace: bool) -> None:
    """Prompt ids and groups that contradict what the store holds."""
    first: dict[str, Imported] = {}
    for r in records:
        first.setdefault(r.prompt_id, r)
    for pid, key, text in store.prompts_with_ids(list(first)):
        r = first[pid]
        if key != keys[r.prompt]:
            raise UserError(
                f"{_at(r)}prompt id {pid!r} already names another prompt in the store: stored {short(text)}, "
                f"here {short(r.prompt)}; give these prompts other ids, or remove the stored one first "
                f"(monoculture rm --prompt {pid})"
            )
    if replace:
        return
    stored_groups = store.prompt_groups(list(prompts))
    for key, p in prompts.items():
        if p.group is not None and key in stored_groups and stored_groups[key] != p.group:
            r = next(x for x in records if keys[x.prompt] == key)
            raise UserError(
                f"{_at(r)}prompt {r.prompt_id!r} is stored in group {stored_groups[key]!r}, here in group {p.group!r}; "
                "pass --replace to regroup it"
            )
