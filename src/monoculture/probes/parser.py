"""A strict parser from a sampled answer to one option.

Strict on purpose: a lenient parser that fishes a letter out of a paragraph turns hedges and
refusals into opinions, which is exactly the error a values probe must not make. An answer is
an option only when it *is* the option: a letter (``B``, ``(B)``, ``B.``, ``B. Rather
important``), its number (``2``, ``٢``, ``二``) or the option's text, in any of the suite's
languages, optionally after an answer lead-in (``Answer:``, ``答案：``) or a closed
``<think>`` block. Everything else is counted as a refusal, as ambiguous (two options, or a
letter that contradicts the text after it), as empty, or as unparseable, and reported.

Letters: the prompt shows Latin letters, so Cyrillic and Greek look-alikes (``В`` for ``B``) are
read as the Latin letter they resemble, and the Arabic (أ ب ج د هـ) and Hindi (क ख ग घ ङ)
conventions for lettering options are accepted as well. Other scripts' letters are not guessed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from monoculture.probes.items import LETTERS, templates

#: Stored with every parsed answer; a new version makes the runner re-parse stored texts.
PARSER_VERSION = 1

OUTCOMES = ("ok", "refusal", "ambiguous", "unparseable", "empty", "error")

_LETTER_MAP: dict[str, int] = {c: i for i, c in enumerate(LETTERS)}
_LETTER_MAP.update({"А": 0, "В": 1, "С": 2, "Е": 4, "Α": 0, "Β": 1, "Ε": 4})  # Cyrillic, Greek look-alikes
_LETTER_MAP.update({"أ": 0, "ا": 0, "ب": 1, "ج": 2, "د": 3, "ه": 4, "هـ": 4})  # Arabic abjad order
_LETTER_MAP.update({"क": 0, "ख": 1, "ग": 2, "घ": 3, "ङ": 4})  # Devanagari order
_CN_NUM = {c: i for i, c in enumerate("一二三四五六七八九十", 1)}

_UPPER = "|".join(sorted((re.escape(k) for k in _LETTER_MAP), key=len, reverse=True))
_LETTER_RE = f"(?:{_UPPER})"
_ANY_CASE_LETTER_RE = f"(?:{_UPPER}|[a-j])"
_OPEN, _CLOSE = r"[\(\[（【]", r"[\)\]）】]"


@dataclass(frozen=True)
class Parse:
    outcome: str
    option: int | None = None
    via: str | None = None  # "letter", "number" or "text" when outcome == "ok"

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def _fold(s: str) -> str:
    """For comparing texts: compatibility forms, no combining marks (Arabic short vowels, Spanish
    accents, Hindi nukta are often dropped by writers), case-folded, spaces collapsed."""
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if unicodedata.category(c) != "Mn")
    s = s.replace("’", "'").replace("‘", "'").casefold()
    s = re.sub(r"[ \t\u00a0\u200b-\u200f\u2060]+", " ", s)
    return unicodedata.normalize("NFC", s).strip()


def _is_punct(c: str) -> bool:
    return unicodedata.category(c).startswith(("P", "S"))


def _strip_punct(s: str) -> str:
    i, j = 0, len(s)
    while i < j and (_is_punct(s[i]) or s[i].isspace()):
        i += 1
    while j > i and (_is_punct(s[j - 1]) or s[j - 1].isspace()):
        j -= 1
    return s[i:j]


def _ascii_digits(s: str) -> str:
    return "".join(
        str(unicodedata.decimal(c)) if c.isdigit() and not c.isascii() and unicodedata.decimal(c, None) is not None else c
        for c in s
    )


@lru_cache(maxsize=1)
def _language_data() -> tuple[re.Pattern, tuple[str, ...], str]:
    t = templates()

    def nfkc(x: str) -> str:
        return unicodedata.normalize("NFKC", x).casefold()

    leads = sorted({nfkc(x) for v in t.values() for x in v.get("answer_lead_ins", [])}, key=len, reverse=True)
    refusals = tuple(sorted({_fold(x) for v in t.values() for x in v.get("refusals", [])}))
    conj = sorted({nfkc(x) for v in t.values() for x in v.get("conjunctions", [])}, key=len, reverse=True)
    # A lead-in must end at a word boundary, except in scripts written without spaces ("我选B").
    lead_re = re.compile(
        r"^(?:" + "|".join(re.escape(x) for x in leads) + r")"
        r"(?:(?=[\s:：\-—–,，]|$)|(?<=[\u3000-\u9fff\uff00-\uffef]))\s*(?:is\b|是|ni\b)?\s*[:：\-—–,，]?\s*"
    )
    conj_re = "|".join(re.escape(x) for x in conj)
    return lead_re, refusals, conj_re


def _clean(text: str) -> str | None:
    """None for an answer cut off inside its reasoning: it said something, but chose nothing."""
    s = unicodedata.normalize("NFKC", text)
    s = re.sub(r"<think>.*?</think>", " ", s, flags=re.S | re.I)
    if re.search(r"<think>", s, flags=re.I):
        return None
    s = _ascii_digits(s)
    s = s.replace("**", "").replace("__", "").replace("`", "")
    s = re.sub(r"^[\s#>*\-•]+", "", s)
    s = s.strip().strip("\"'“”„«»「」『』").strip()
    return s


class AnswerParser:
    """Parses answers to one question. ``option_sets`` holds the options in every language the
    question exists in, all in the same order (index i is the same option everywhere)."""

    def __init__(self, option_sets: Sequence[Sequence[str]]):
        if not option_sets:
            raise ValueError("no options")
        self.n = len(option_sets[0])
        if any(len(o) != self.n for o in option_sets):
            raise ValueError("translations of a question must have the same number of options")
        folded: dict[str, set[int]] = {}
        for opts in option_sets:
            for i, o in enumerate(opts):
                f = _strip_punct(_fold(o))
                if f:
                    folded.setdefault(f, set()).add(i)
        self._texts = sorted(folded.items(), key=lambda kv: -len(kv[0]))

    # -- pieces ---------------------------------------------------------------------------------
    def _letter(self, tok: str) -> int | None:
        i = _LETTER_MAP.get(tok, _LETTER_MAP.get(tok.upper()) if tok.isascii() else None)
        return i if i is not None and i < self.n else None

    def _number(self, tok: str) -> int | None:
        if tok.isdigit():
            v = int(tok)
        else:
            m = re.fullmatch(r"第?([一二三四五六七八九十])(?:项|個|个|个选项|項)?", tok)
            if not m:
                return None
            v = _CN_NUM[m.group(1)]
        return v - 1 if 1 <= v <= self.n else None

    def _text(self, s: str) -> Parse | None:
        """The option whose text the answer is, or starts with up to punctuation."""
        f = _fold(s)
        core = _strip_punct(f)
        if not core:
            return None
        exact = {i for t, idx in self._texts if t == core for i in idx}
        if len(exact) == 1:
            return Parse("ok", exact.pop(), "text")
        if len(exact) > 1:
            return Parse("ambiguous")
        best_len, best = 0, set()
        for t, idx in self._texts:
            if len(t) < best_len:
                break
            if f.startswith(t) and len(f) > len(t) and (_is_punct(f[len(t)]) or f[len(t)] == "\n"):
                best_len = len(t)
                best |= idx
        if len(best) == 1:
            return Parse("ok", best.pop(), "text")
        if len(best) > 1:
            return Parse("ambiguous")
        return None

    def _core(self, s: str) -> Parse | None:
        s = s.strip()
        if not s:
            return None
        # a bare letter or number, maybe bracketed or followed by a full stop
        m = re.fullmatch(
            rf"{_OPEN}?({_ANY_CASE_LETTER_RE}|\d{{1,2}}|第?[一二三四五六七八九十](?:项|個|个|个选项|項)?){_CLOSE}?[.:。．]?", s
        )
        if m:
            tok = m.group(1)
            is_number = tok.isdigit() or tok[-1] in "一二三四五六七八九十项個个項"
            i = self._number(tok) if is_number else self._letter(tok)
            if i is not None:
                return Parse("ok", i, "number" if is_number else "letter")
            return Parse("unparseable")  # a letter or number that names no option
        # several letters: "A or B", "A, C", "A/B"
        _, _, conj = _language_data()
        one = rf"{_OPEN}?{_LETTER_RE}{_CLOSE}?\.?"
        if re.fullmatch(rf"{one}(?:\s*(?:[,/&;、，]|{conj})\s*{one})+[.。]?", s, flags=re.I):
            found = {self._letter(x) for x in re.findall(_LETTER_RE, s)}
            found.discard(None)
            return Parse("ok", found.pop(), "letter") if len(found) == 1 else Parse("ambiguous")
        # a letter or number, a separator, then more text
        m = re.match(
            rf"{_OPEN}?({_LETTER_RE}|[a-j](?={_CLOSE})|\d{{1,2}})(?:{_CLOSE}\s*|[.:：。．、](?:\s+|$)|\s*[-—–]\s+|\s*\n)(.*)$",
            s,
            flags=re.S,
        )
        if m:
            tok, rest = m.group(1), m.group(2)
            i = self._number(tok) if tok.isdigit() else self._letter(tok)
            if i is None:
                return Parse("unparseable")
            via = "number" if tok.isdigit() else "letter"
            if rest.strip():
                said = self._text(rest.strip())
                if said is not None and said.ok and said.option != i:
                    return Parse("ambiguous")  # "B. Very important" when B is something else
            return Parse("ok", i, via)
        return self._text(s)

    def _attempt(self, s: str) -> Parse | None:
        lead_re, _, _ = _language_data()
        for _ in range(3):
            got = self._core(s)
            if got is not None:
                return got
            stripped = lead_re.sub("", _fold_prefix_only(s), count=1)
            if stripped == _fold_prefix_only(s):
                return None
            s = _restore_tail(s, stripped)
            if not s.strip():
                return None
        return self._core(s)

    # -- public ---------------------------------------------------------------------------------
    def parse(self, text: str | None) -> Parse:
        if text is None:
            return Parse("error")
        s = _clean(text)
        if s is None:
            return Parse("unparseable")
        if not s:
            return Parse("empty")
        got = self._attempt(s)
        if got is None and "\n" in s:
            first = next(line for line in s.splitlines() if line.strip())
            got = self._attempt(first.strip())
            if got is not None and not got.ok:
                got = None
        if got is not None and got.outcome != "unparseable":
            return got
        _, refusals, _ = _language_data()
        folded = _fold(s)
        if any(r in folded for r in refusals):
            return Parse("refusal")
        return Parse("unparseable")


def _fold_prefix_only(s: str) -> str:
    """Case-folded for matching lead-ins, but the same length as ``s`` so that the unmatched tail
    keeps its original case (letters are case-sensitive: "a" may be an article)."""
    return "".join(c.casefold() if len(c.casefold()) == 1 else c for c in s)


def _restore_tail(original: str, stripped_folded: str) -> str:
    return original[len(original) - len(stripped_folded) :]


def parse_answer(text: str | None, option_sets: Sequence[Sequence[str]]) -> Parse:
    return AnswerParser(option_sets).parse(text)
