"""Importers: outputs that already exist, brought into the store without running a model.

Each module parses one external format into :class:`Imported` records. Parsing finishes (and
fails, naming the file and line) before anything is written, so bad input never leaves a half
import behind. Prompts are matched across models by their text, so files that number the same
question differently still share it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from monoculture.errors import UserError
from monoculture.hashing import digest
from monoculture.suites import Prompt

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
    """One existing output: who said what to which prompt."""

    model: str
    prompt_id: str
    prompt: str
    text: str
    sample_index: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    category: str | None = None
    language: str | None = None


def reader(fmt: str):
    target = FORMATS.get(fmt)
    if target is None:
        raise UserError(f"unknown import format {fmt!r}; known: {', '.join(FORMATS)}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def import_records(store, records: Iterable[Imported], source: str, *, suite: str | None = None) -> dict[str, int]:
    """Write parsed records in one transaction; re-importing the same file changes nothing.

    The key of an imported generation is (model, prompt text, sample index): the same answer
    imported twice is one row."""
    records = list(records)
    if not records:
        raise UserError(f"{source}: no records found")
    suite = suite or source
    prompts: dict[str, Prompt] = {}
    rows = []
    models: dict[str, dict] = {}
    for r in records:
        p = Prompt(id=r.prompt_id, messages=(("user", r.prompt),), suite=suite, language=r.language, category=r.category)
        prompts.setdefault(p.key, p)
        models.setdefault(r.model, {"name": r.model, "backend": "import", "model_id": r.model, "source": source, "identity": {"import": source, "model": r.model}})
        rows.append(
            {
                "key": digest({"imported": True, "model": r.model, "prompt_key": p.key, "sample_index": r.sample_index}),
                "model": r.model,
                "prompt_key": p.key,
                "sample_index": int(r.sample_index),
                "text": r.text,
                "n_mode": "imported",
                "params": r.meta or None,
                "source": source,
                "attempts": 0,
            }
        )
    keys = [row["key"] for row in rows]
    if len(set(keys)) != len(keys):
        seen: set[str] = set()
        dup = next(r for r, k in zip(records, keys) if k in seen or seen.add(k))
        raise UserError(f"{source}: two records for model {dup.model!r}, prompt {dup.prompt_id!r}, sample {dup.sample_index}; give sample_index to tell them apart")
    with store.transaction():
        existing = {n for (n,) in store.con.execute("SELECT name FROM models").fetchall()}
        store.upsert_models([m for n, m in models.items() if n not in existing])
        store.upsert_prompts(list(prompts.values()))
        store.insert_generations(rows)
    return {"records": len(rows), "models": len(models), "prompts": len(prompts)}
