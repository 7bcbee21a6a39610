"""Number formatting shared by the terminal summary and the report, so both say the same."""

from __future__ import annotations

import math


def num(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def ci(t) -> str:
    """(point, lo, hi) as "0.42 [0.38, 0.47]"."""
    return "–" if t is None else f"{num(t[0])} [{num(t[1])}, {num(t[2])}]"


def moved_most(s, n: int = 2) -> str:
    """With two languages each is as far from the other as the other is from it: a ranking of
    languages needs three."""
    if s is None:
        return "–"
    if len(s.per_language) < 3:
        return "needs 3+ languages"
    top = [(k, v) for k, v in list(s.per_language.items())[:n] if v > 1e-9]
    return ", ".join(f"{k} ({num(v)})" for k, v in top) or "none"
