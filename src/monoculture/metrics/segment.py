"""Word units of a text, for every script the suites ship: the one tokeniser of the metrics.

The lexical metrics count n-grams of these units, and the short-answer rule of the partition
counts them and compares them (METRICS.md, "Lexical diversity" and "Distinct answers").

- Scripts written with spaces (Latin, Cyrillic, Arabic, Devanagari, Hangul...): a unit is a
  lowercased word of letters, digits and combining marks, inner apostrophes kept. The marks
  matter: Python's ``\\w`` does not match them, so ``\\w+`` cut Hindi words at every vowel
  sign and virama ("प्रकाश" became "प", "रक", "श") and Arabic words at every haraka.
- Scripts written without spaces (Han, Hiragana, Katakana, Bopomofo, Thai, Lao, Khmer,
  Myanmar, Tai scripts, Javanese, Balinese, Yi): a unit is one character with the marks
  that follow it, so a 200-character Chinese answer is about 200 units, not one "word".

Character units rather than a segmenter (DEVIATIONS.md says why at more length): one rule for
every such script (jieba knows only Chinese; Japanese and Thai would need two more, with
dictionaries), no dependency, figures that do not change with a dictionary's version, and the
convention of machine-translation scoring for these scripts (SacreBLEU's zh tokeniser splits
Han characters).

Which characters are which comes from the Unicode database of the running Python (names and
categories), so no table is copied here; it is built once, on first use.

The lexical metrics do not call :func:`tokenize` on ASCII texts: :mod:`.lexical_fast` cuts
them from their bytes with the plain pattern's rule (``\\w`` is ``[A-Za-z0-9_]`` there, and
the only apostrophe is ``'``), which is most of the time the lexical step spent here. A change
to the rule for ASCII text must be made in both places; the tests compare the two word for
word.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# Leading words of the Unicode names of the letters of scripts written without word spaces.
_UNSPACED_NAMES = (
    "CJK ",
    "IDEOGRAPHIC ",
    "HANGZHOU ",
    "HIRAGANA ",
    "KATAKANA ",
    "KATAKANA-HIRAGANA ",
    "HALFWIDTH KATAKANA ",
    "BOPOMOFO ",
    "THAI ",
    "LAO ",
    "KHMER ",
    "MYANMAR ",
    "TAI LE ",
    "NEW TAI LUE ",
    "TAI THAM ",
    "TAI VIET ",
    "JAVANESE ",
    "BALINESE ",
    "YI ",
)
_JOINERS = (0x200C, 0x200D)  # zero-width (non-)joiner: inside Hindi, Persian, Malayalam words


def _ranges(codes: list[int]) -> str:
    """A regex character-class body for sorted code points, as ranges."""
    out, i = [], 0
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        a, b = re.escape(chr(codes[i])), re.escape(chr(codes[j]))
        out.append(a if i == j else f"{a}-{b}")
        i = j + 1
    return "".join(out)


@functools.cache
def _patterns() -> tuple[re.Pattern, re.Pattern, tuple[re.Pattern, re.Pattern]]:
    """(any special character, the pattern for texts in the Basic Multilingual Plane, the one
    for texts with astral characters).

    Only the BMP is scanned (about 50 ms, on first use); the ideographic planes 2 and 3 are Han
    throughout, and astral marks (historic scripts) are listed from plane 1. A text with no
    special character takes the plain ``\\w`` pattern, which is every English text. Character
    classes that reach beyond the BMP are tested range by range for every character that
    misses the BMP bitmap, which made the general pattern seven times slower than ``\\w``;
    the BMP pattern keeps to the bitmap, and texts with astral characters (emoji, rare Han)
    take a slower path where the unspaced units are first set apart by spaces.
    """
    unspaced, marks, word = [], [], []
    for c in range(0x10000):
        ch = chr(c)
        cat = unicodedata.category(ch)
        if cat[0] == "M" or c in _JOINERS:
            marks.append(c)
            word.append(c)
        elif (cat[0] == "L" or cat == "Nl") and unicodedata.name(ch, "").startswith(_UNSPACED_NAMES):
            unspaced.append(c)
        elif ch.isalnum() or ch == "_":
            word.append(c)
    U, M, W = _ranges(unspaced), _ranges(marks), _ranges(word)
    astral_marks = [c for c in range(0x10000, 0x20000) if unicodedata.category(chr(c))[0] == "M"]
    U_all = U + r"\U00020000-\U0003ffff"
    M_all = M + _ranges(astral_marks) + r"\U000e0100-\U000e01ef"
    special = re.compile(f"[{U}{M}\\U00010000-\\U0010ffff]")
    bmp = re.compile(f"[{U}][{M}]*|[{W}]+(?:['’][{W}]+)*")
    wide_word = f"[\\w{M_all}]+"
    astral = (re.compile(f"[{U_all}][{M_all}]*"), re.compile(f"{wide_word}(?:['’]{wide_word})*"))
    return special, bmp, astral


_PLAIN = re.compile(r"\w+(?:['’]\w+)*")
_ASTRAL = re.compile("[\\U00010000-\\U0010ffff]")


def tokenize(text: str) -> list[str]:
    """Lowercased word units (see the module docstring)."""
    special, bmp, (unit, word) = _patterns()
    text = text.lower()
    if text.isascii() or special.search(text) is None:
        return _PLAIN.findall(text)
    if _ASTRAL.search(text) is None:
        return bmp.findall(text)
    # Spaces around each unspaced unit make it a word of its own for the word pattern.
    return word.findall(unit.sub(r" \g<0> ", text))
