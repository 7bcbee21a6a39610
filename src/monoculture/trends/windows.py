"""Release dates as numbers, and the cohorts and rolling windows that group them.

A slope "per year" needs dates on a numeric axis: :func:`decimal_year` is days since year 1
divided by 365.25, so differences are in years and leap years do not bend the axis. A cohort
is a calendar period (quarter, half-year, year); a rolling window of width N is N consecutive
periods, stepping one period at a time, so a width of 1 is the plain cohorts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from monoculture.errors import UserError

#: months per period
PERIODS = {"quarter": 3, "half": 6, "year": 12}


def decimal_year(d: date) -> float:
    return d.toordinal() / 365.25


def _period_of(d: date, months: int) -> int:
    return (d.year * 12 + d.month - 1) // months


def _period_start(k: int, months: int) -> date:
    m = k * months
    return date(m // 12, m % 12 + 1, 1)


def _period_label(k: int, months: int) -> str:
    start = _period_start(k, months)
    if months == 12:
        return f"{start.year}"
    if months == 6:
        return f"{start.year}-H{(start.month - 1) // 6 + 1}"
    return f"{start.year}-Q{(start.month - 1) // 3 + 1}"


@dataclass(frozen=True)
class Window:
    """Models released in [start, end): their codes, and the window's label and midpoint."""

    label: str
    start: date
    end: date
    members: np.ndarray

    @property
    def mid(self) -> float:
        return (decimal_year(self.start) + decimal_year(self.end)) / 2


def make_windows(dates: Sequence[date], period: str = "year", width: int = 1) -> list[Window]:
    """Every window of ``width`` consecutive periods from the first dated model's period to the
    last one's, stepping one period; windows without a model are left out (the caller keeps
    those with enough models for each figure). ``members`` are indices into ``dates``."""
    if period not in PERIODS:
        raise UserError(f"--period {period!r}: use one of {', '.join(PERIODS)}")
    if width < 1:
        raise UserError(f"--window {width}: a window spans at least 1 period")
    if not dates:
        return []
    months = PERIODS[period]
    k = np.array([_period_of(d, months) for d in dates], dtype=np.int64)
    out = []
    last_first = max(int(k.min()), int(k.max()) - width + 1)  # a window wider than the span: one window
    for first in range(int(k.min()), last_first + 1):
        members = np.flatnonzero((k >= first) & (k < first + width))
        if members.size == 0:
            continue
        label = (
            _period_label(first, months)
            if width == 1
            else f"{_period_label(first, months)}..{_period_label(first + width - 1, months)}"
        )
        out.append(Window(label, _period_start(first, months), _period_start(first + width, months), members))
    return out
