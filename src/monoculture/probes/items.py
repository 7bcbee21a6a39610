"""Multiple-choice items as a model sees them.

The suite stores only the question and its options; the letters, the instruction line and the
answer prefix are added here from ``data/templates.json`` so that every language gets the same
form of question, and so that changing the wording is a data change that re-keys every answer
(the rendered messages enter the keys) rather than a silent change of what was asked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from monoculture.errors import UserError
from monoculture.study import Sampling

LETTERS = "ABCDEFGHIJ"
FALLBACK_LANGUAGE = "en"


@dataclass(frozen=True)
class Item:
    """One question in one language. ``group`` links the translations of a question, and is
    the question id that human reference data is matched on."""

    id: str
    group: str
    language: str
    question: str
    options: tuple[str, ...]
    ordered: bool
    suite: str = ""

    @property
    def letters(self) -> list[str]:
        return list(LETTERS[: len(self.options)])


@lru_cache(maxsize=1)
def templates() -> dict[str, dict]:
    path = resources.files("monoculture.probes") / "data" / "templates.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def template_for(language: str | None) -> dict:
    """A language without its own template is asked with the English one: the question and
    options stay in their language, only the instruction line is English."""
    t = templates()
    return t.get(language or FALLBACK_LANGUAGE) or t[FALLBACK_LANGUAGE]


def load_items(suite: str = "values", languages: list[str] | None = None) -> list[Item]:
    """The suite's multiple-choice items; a suite with open questions is a user error, since a
    probe has nothing to read a distribution over."""
    from monoculture.suites import load_suite

    prompts = load_suite(suite, languages=languages)
    if not prompts:
        wanted = f" in languages {', '.join(languages)}" if languages else ""
        raise UserError(f"suite {suite!r} has no items{wanted}")
    items = []
    for p in prompts:
        if len(p.options) < 2:
            raise UserError(
                f"item {p.id!r} has no options: perspective probes need a multiple-choice suite such as 'values'",
                where=f"suite {suite}",
            )
        if len(p.options) > len(LETTERS):
            raise UserError(
                f"item {p.id!r} has {len(p.options)} options; at most {len(LETTERS)} can be lettered", where=f"suite {suite}"
            )
        items.append(
            Item(
                id=p.id,
                group=p.group or p.id,
                language=p.language or FALLBACK_LANGUAGE,
                question=p.text,
                options=tuple(p.options),
                ordered=bool(p.ordered),
                suite=p.suite,
            )
        )
    sizes: dict[str, set[int]] = {}
    for it in items:
        sizes.setdefault(it.group, set()).add(len(it.options))
    bad = sorted(g for g, s in sizes.items() if len(s) > 1)
    if bad:
        raise UserError(
            f"translations of question {bad[0]!r} have different numbers of options; they must list the same options in the same order",
            where=f"suite {suite}",
        )
    return items


def option_sets(items: list[Item]) -> dict[str, list[tuple[str, ...]]]:
    """Every translation of each question's options, so that an answer given in another
    language than the question's (a model answering in English) still parses."""
    out: dict[str, list[tuple[str, ...]]] = {}
    for it in items:
        out.setdefault(it.group, [])
        if it.options not in out[it.group]:
            out[it.group].append(it.options)
    return out


def render_user(item: Item, steer: str | None = None) -> str:
    t = template_for(item.language)
    lines = []
    if steer:
        lines += [t["steer"].format(country=steer), ""]
    lines += [item.question.strip(), ""]
    lines += [f"{letter}. {opt}" for letter, opt in zip(LETTERS, item.options)]
    lines += ["", t["instruction"]]
    return "\n".join(lines)


def render_messages(item: Item, sampling: Sampling, steer: str | None = None) -> list[dict[str, str]]:
    """The study's system prompt stays: it is part of how the study configured the model, and
    a probe should describe the same model the study's other numbers describe."""
    msgs = []
    if sampling.system_prompt:
        msgs.append({"role": "system", "content": sampling.system_prompt})
    msgs.append({"role": "user", "content": render_user(item, steer)})
    return msgs


def answer_prefix(item: Item) -> str:
    return template_for(item.language)["answer_prefix"]
