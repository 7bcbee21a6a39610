"""Where chains start: the shipped seed texts and task instructions, or a user's seed file.

The three instructions are Perez et al. (2024)'s rephrase, inspiration and continue tasks, in
the wording their runs used (``data/instructions.json`` cites the source). The seed texts in
``data/seeds.jsonl`` were written for this project, not taken from any corpus: stories,
opinions, descriptions, news-like reports and instructions, some picked to sit at the ends of
the properties the attractors are measured on (a 30-word and an 800-word text, a furious and a
delighted one, a children's-book one and two dense ones), so that a fitted line has a spread of
starting values to regress on.

A user seed file is JSONL with the same fields, ``{id, kind, text}`` (``kind`` optional); a bad
line is a UserError naming the file and the line, raised before anything is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from monoculture.errors import UserError
from monoculture.files import jsonl_objects, read_utf8

#: The name of the shipped seed set in a study file (``seeds: shipped``).
SHIPPED = "shipped"


@dataclass(frozen=True)
class Seed:
    id: str
    kind: str
    text: str


def _data(name: str) -> str:
    return resources.files("monoculture.loops").joinpath("data").joinpath(name).read_text(encoding="utf-8")


@cache
def shipped_instructions() -> dict[str, str]:
    """Task name -> instruction, for the shipped tasks (rephrase, inspiration, continue)."""
    return {t["name"]: t["instruction"] for t in json.loads(_data("instructions.json"))["tasks"]}


def instruction_source() -> str:
    """Where the shipped instructions come from (for the methods text)."""
    return str(json.loads(_data("instructions.json"))["source"])


def parse_seeds(text: str, where: str) -> list[Seed]:
    """Seeds from JSONL text; ``where`` names the file in errors (``file:line``)."""
    seeds: list[Seed] = []
    seen: dict[str, int] = {}
    for at, n, rec in jsonl_objects(text, where, "each line must be a JSON object with id and text"):
        sid, body, kind = rec.get("id"), rec.get("text"), rec.get("kind", "text")
        if not isinstance(sid, (str, int)) or isinstance(sid, bool) or not str(sid).strip():
            raise UserError("field 'id': a non-empty string is required", where=at)
        if not isinstance(body, str) or not body.strip():
            raise UserError("field 'text': a non-empty string is required", where=at)
        if not isinstance(kind, str):
            raise UserError("field 'kind': must be a string", where=at)
        sid = str(sid).strip()
        if sid in seen:
            raise UserError(f"field 'id': {sid!r} is used twice (first on line {seen[sid]})", where=at)
        seen[sid] = n
        seeds.append(Seed(sid, kind, body))
    if not seeds:
        raise UserError("no seed texts in the file", where=where)
    return seeds


@cache
def shipped_seeds() -> tuple[Seed, ...]:
    return tuple(parse_seeds(_data("seeds.jsonl"), "monoculture/loops/data/seeds.jsonl"))


def load_seeds(source: str | Path = SHIPPED, ids: list[str] | None = None) -> list[Seed]:
    """The shipped seeds (``source == "shipped"``) or a JSONL file's, optionally only ``ids``
    (in the file's order; an id that is not there is an error naming it)."""
    if str(source) == SHIPPED:
        seeds, where = list(shipped_seeds()), "the shipped seeds"
    else:
        path = Path(source)
        if not path.is_file():
            raise UserError("seed file not found", where=str(path))
        seeds, where = parse_seeds(read_utf8(path), str(path)), str(path)
    if ids:
        have = {s.id for s in seeds}
        missing = [i for i in ids if i not in have]
        if missing:
            sample = ", ".join(sorted(have)[:8]) + (", ..." if len(have) > 8 else "")
            raise UserError(f"no seed with id {', '.join(map(repr, missing))} in {where} (ids: {sample})")
        wanted = set(ids)
        seeds = [s for s in seeds if s.id in wanted]
    return seeds
