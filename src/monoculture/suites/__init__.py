"""Prompt suites: shipped as JSONL data, loaded and validated here.

A suite line is one prompt: ``id`` (stable), ``text`` or ``messages``, ``language``,
``category``, ``tags`` and an optional ``group`` that links translations of one prompt. Values
suites (multiple choice) add ``question``, ``options`` and ``ordered``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from monoculture.errors import UserError
from monoculture.files import jsonl_objects, read_utf8
from monoculture.hashing import digest

SHIPPED = ("open-ended", "multilingual", "values")


@dataclass(frozen=True)
class Prompt:
    """One prompt of a suite. ``key`` depends only on the messages, so that the same question
    asked by two studies (or found in two imported files) is one prompt in the store."""

    id: str
    messages: tuple[tuple[str, str], ...]
    suite: str
    language: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()
    group: str | None = None
    options: tuple[str, ...] = ()
    ordered: bool = False
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def text(self) -> str:
        """The user-visible prompt: the last user message."""
        users = [c for r, c in self.messages if r == "user"]
        return users[-1] if users else self.messages[-1][1]

    @property
    def key(self) -> str:
        return prompt_key(self.messages)

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


def prompt_key(messages: tuple[tuple[str, str], ...] | list) -> str:
    """Key of a prompt: hash of its messages, whitespace at the ends folded so that prompts
    imported from different files match when only their ids differ."""
    norm = [(r, c.strip()) for r, c in (_pair(m) for m in messages)]
    return digest(norm, 24)


def _pair(m) -> tuple[str, str]:
    if isinstance(m, dict):
        return (m["role"], m["content"])
    return (m[0], m[1])


def suite_path(name: str) -> Path:
    """Path of a shipped suite by name, or of a user file."""
    if name in SHIPPED:
        return Path(str(resources.files("monoculture.suites") / "data" / f"{name}.jsonl"))
    p = Path(name)
    if p.suffix == ".jsonl" or p.exists():
        if not p.exists():
            raise UserError(f"suite file not found: {p}")
        return p
    raise UserError(f"unknown suite {name!r}; shipped suites are {', '.join(SHIPPED)}, or give a path to a .jsonl file")


def load_suite(name: str, limit: int | None = None, languages: list[str] | None = None) -> list[Prompt]:
    """Load and validate a suite; a bad record raises a UserError naming file and line."""
    path = suite_path(name)
    suite_name = name if name in SHIPPED else path.stem
    prompts: list[Prompt] = []
    seen: dict[str, int] = {}
    text = read_utf8(path)
    for where, lineno, rec in jsonl_objects(text, str(path)):
        p = _parse_record(rec, suite_name, where)
        if p.id in seen:
            raise UserError(f"duplicate id {p.id!r} (first on line {seen[p.id]})", where=where)
        seen[p.id] = lineno
        if languages and p.language not in languages:
            continue
        prompts.append(p)
    if limit is not None:
        prompts = prompts[:limit]
    return prompts


def _parse_record(rec: dict, suite: str, where: str) -> Prompt:
    pid = rec.get("id")
    if not isinstance(pid, str) or not pid:
        raise UserError("missing field 'id' (a non-empty string)", where=where)
    if "messages" in rec:
        msgs = rec["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise UserError("field 'messages' must be a non-empty list", where=where)
        pairs = []
        for i, m in enumerate(msgs):
            if (
                not isinstance(m, dict)
                or not isinstance(m.get("content"), str)
                or m.get("role") not in ("system", "user", "assistant")
            ):
                raise UserError(f"messages[{i}] needs role (system|user|assistant) and content (string)", where=where)
            pairs.append((m["role"], m["content"]))
        messages = tuple(pairs)
    else:
        body = rec.get("text", rec.get("question"))
        if not isinstance(body, str) or not body.strip():
            raise UserError("missing field 'text' (or 'messages')", where=where)
        options = rec.get("options")
        if options is not None:
            if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) and o for o in options):
                raise UserError("field 'options' must be a list of at least two strings", where=where)
        messages = (("user", body),)
    tags = rec.get("tags") or []
    if not isinstance(tags, list):
        raise UserError("field 'tags' must be a list", where=where)
    known = {"id", "text", "question", "messages", "language", "category", "tags", "group", "options", "ordered"}
    return Prompt(
        id=pid,
        messages=messages,
        suite=suite,
        language=rec.get("language"),
        category=rec.get("category"),
        tags=tuple(str(t) for t in tags),
        group=rec.get("group"),
        options=tuple(rec.get("options") or ()),
        ordered=bool(rec.get("ordered", False)),
        extra={k: v for k, v in rec.items() if k not in known},
    )
