"""The four retreat signals, each a test with its evidence and a strength.

None of them proves a retreat; each says that one observable pattern is unusual for *this*
family given its own past, and how unusual. They are deliberately simple, exact tests on small
counts, because release histories are short (a family has a dozen launches, not thousands).

1. silence: is the time since the last open-weight event improbably long given the past gaps?
   If gaps are exponential with an unknown rate, for n past gaps summing to S and a current
   silence s, P(a new gap is at least s) = (S / (S + s))^n exactly (the ratio of one exponential
   to a sum of n + 1 is Beta(1, n)), so the rate need not be known.
2. rate-drop: is the event rate in the latest window lower than before? Conditional on the total
   count, the count in the window is Binomial(k, window / observed time) under equal rates
   (the exact conditional Poisson test); one-sided.
3. licence-tightening: do the lead releases of successive events move up the openness scale?
   Kendall's tau-b between event order and openness level, one-sided, plus the steps themselves.
4. ceremonial-open: repositories keep changing while no open-weight event has come for well
   over the family's typical (median) gap (weak over 1.5x, moderate over 2.5x, strong over 4x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd
from scipy import stats

from monoculture.ecosystem.cadence import History, gaps_days
from monoculture.ecosystem.openness import level_name

STRENGTHS = ("n/a", "none", "weak", "moderate", "strong")
#: Silence / typical gap above which ceremonial-open is weak, moderate, strong.
CEREMONIAL_RATIOS = (1.5, 2.5, 4.0)
SIGNALS = ("silence", "rate-drop", "licence-tightening", "ceremonial-open")


@dataclass
class Signal:
    family: str
    name: str
    organisations: str
    signal: str
    strength: str
    p_value: float | None
    evidence: str
    details: dict = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return STRENGTHS.index(self.strength)

    def row(self) -> dict:
        return {
            "family": self.family,
            "name": self.name,
            "organisations": self.organisations,
            "signal": self.signal,
            "strength": self.strength,
            "p_value": self.p_value,
            "evidence": self.evidence,
        }


def strength_from_p(p: float | None, strong: float = 0.01, moderate: float = 0.05, weak: float = 0.10) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return "strong" if p < strong else "moderate" if p < moderate else "weak" if p < weak else "none"


def _sig(h: History, kind: str, strength: str, p: float | None, evidence: str, **details) -> Signal:
    return Signal(h.family, h.name, ", ".join(h.organisations), kind, strength, p, evidence, details)


def silence_signal(h: History, *, min_gaps: int = 3) -> Signal:
    ev = h.open_events
    gaps = gaps_days(ev)
    if len(gaps) < min_gaps:
        return _sig(h, "silence", "n/a", None, f"only {len(ev)} open-weight release events; need {min_gaps + 1}")
    s = (h.as_of - ev[-1].start).days
    total = sum(gaps)
    if total <= 0:
        return _sig(h, "silence", "n/a", None, "all past events on one day")
    p = (total / (total + s)) ** len(gaps) if s > 0 else 1.0
    mean = total / len(gaps)
    return _sig(
        h,
        "silence",
        strength_from_p(p),
        p,
        f"{s} days since {ev[-1].lead.name} ({ev[-1].start}); past mean gap {mean:.0f} days over {len(gaps)} gaps",
        silence_days=s,
        mean_gap_days=mean,
        n_gaps=len(gaps),
        last_event=str(ev[-1].start),
    )


def rate_drop_signal(h: History, *, window_days: int = 365, min_events: int = 3) -> Signal:
    ev = h.open_events
    if len(ev) < 2:
        return _sig(h, "rate-drop", "n/a", None, f"only {len(ev)} open-weight release events")
    t0 = ev[0].start
    cut = h.as_of - timedelta(days=window_days)
    t1 = (cut - t0).days
    if t1 < window_days / 2:
        return _sig(h, "rate-drop", "n/a", None, f"history before the {window_days}-day window is too short ({max(t1, 0)} days)")
    k1 = sum(1 for e in ev[1:] if e.start <= cut)  # the first event starts the clock, it is not counted
    k2 = sum(1 for e in ev if e.start > cut)
    n = k1 + k2
    if n < min_events:
        return _sig(h, "rate-drop", "n/a", None, f"{n} events after the first; need {min_events}")
    share = window_days / (t1 + window_days)
    p = float(stats.binomtest(k2, n, share, alternative="less").pvalue)
    before = k1 / t1 * 365.25
    after = k2 / window_days * 365.25
    return _sig(
        h,
        "rate-drop",
        strength_from_p(p),
        p,
        f"{k2} events in the last {window_days} days vs {before:.1f}/year before ({k1} in {t1} days); expected {n * share:.1f}",
        k_window=k2,
        k_before=k1,
        days_before=t1,
        window_days=window_days,
        rate_before=before,
        rate_window=after,
    )


def licence_signal(h: History, *, min_events: int = 3) -> Signal:
    ev = [e for e in h.events if e.level is not None]
    if len(ev) < min_events:
        return _sig(h, "licence-tightening", "n/a", None, f"only {len(ev)} release events with a known openness level")
    levels = [e.level for e in ev if e.level is not None]  # all of them: ev has known levels only
    steps = [
        (ev[i].lead.name, level_name(levels[i]), ev[i + 1].lead.name, level_name(levels[i + 1]), str(ev[i + 1].start))
        for i in range(len(ev) - 1)
        if levels[i + 1] > levels[i]
    ]
    if not steps:
        return _sig(
            h,
            "licence-tightening",
            "none",
            None,
            f"no tightening across {len(ev)} events (latest: {level_name(levels[-1])})",
            levels=levels,
        )
    if len(set(levels)) == 1:
        p = 1.0
    else:
        p = float(stats.kendalltau(range(len(levels)), levels, alternative="greater").pvalue)
    strength = strength_from_p(p)
    latest, earlier = levels[-1], levels[:-1]
    if latest > max(earlier):
        strength = max(strength, "moderate", key=STRENGTHS.index)
    elif latest > levels[-2]:
        strength = max(strength, "weak", key=STRENGTHS.index)
    if latest < max(earlier) and strength in ("moderate", "strong") and latest <= min(levels[-3:]):
        strength = "weak"  # tightened earlier, but the latest release is as open as any recent one
    last = steps[-1]
    return _sig(
        h,
        "licence-tightening",
        strength,
        p,
        f"{len(steps)} tightening step(s); last: {last[0]} ({last[1]}) -> {last[2]} ({last[3]}) on {last[4]}; "
        f"latest release {ev[-1].lead.name} is {level_name(latest)}",
        levels=levels,
        steps=steps,
        tau_p=p,
    )


def ceremonial_signal(h: History, *, min_activity: int = 3) -> Signal:
    """Busy repositories, no new weights: the silence exceeds the typical gap while updates continue.

    The typical gap is the median gap between open-weight events. A silence of up to 1.5 typical
    gaps is ordinary (a third of exponential gaps are longer), so strength starts above that:
    weak over 1.5x, moderate over 2.5x, strong over 4x, and only with ``min_activity`` days of
    repository updates after the last event."""
    ev = h.open_events
    gaps = gaps_days(ev)
    if len(gaps) < 2:
        return _sig(h, "ceremonial-open", "n/a", None, f"only {len(ev)} open-weight release events; need 3")
    if not h.activity:
        return _sig(h, "ceremonial-open", "n/a", None, "no repository activity on record (fetch or import a Hub snapshot)")
    typical = float(pd.Series(gaps).median())
    last = ev[-1].end
    silence = (h.as_of - ev[-1].start).days
    busy = [d for d in h.activity if last + timedelta(days=h.merge_days) < d <= h.as_of]
    ratio = silence / typical if typical > 0 else math.inf
    ev_text = (
        f"{len(busy)} days with repository updates since {ev[-1].lead.name} ({ev[-1].start}), "
        f"{silence} days without new open weights vs a typical gap of {typical:.0f} ({ratio:.1f}x)"
    )
    details = dict(active_days=len(busy), silence_days=silence, typical_gap_days=typical, ratio=ratio)
    if ratio <= CEREMONIAL_RATIOS[0] or len(busy) < min_activity:
        return _sig(h, "ceremonial-open", "none", None, ev_text, **details)
    strength = "strong" if ratio > CEREMONIAL_RATIOS[2] else "moderate" if ratio > CEREMONIAL_RATIOS[1] else "weak"
    return _sig(h, "ceremonial-open", strength, None, ev_text + (f"; last update {busy[-1]}" if busy else ""), **details)


def all_signals(h: History, *, window_days: int = 365) -> list[Signal]:
    return [silence_signal(h), rate_drop_signal(h, window_days=window_days), licence_signal(h), ceremonial_signal(h)]


def alerts_table(histories: list[History], *, window_days: int = 365, min_strength: str = "none") -> pd.DataFrame:
    """One row per (family, signal) at or above ``min_strength``, strongest first."""
    floor = STRENGTHS.index(min_strength)
    sigs = [s for h in histories for s in all_signals(h, window_days=window_days) if s.rank >= floor]
    df = pd.DataFrame(
        [s.row() for s in sigs], columns=["family", "name", "organisations", "signal", "strength", "p_value", "evidence"]
    )
    if len(df):
        df["_r"] = df["strength"].map(STRENGTHS.index)
        df["_p"] = df["p_value"].fillna(1.0)
        df = (
            df.sort_values(["_r", "_p", "family", "signal"], ascending=[False, True, True, True])
            .drop(columns=["_r", "_p"])
            .reset_index(drop=True)
        )
    return df


def as_of_date(v) -> date:
    return v if isinstance(v, date) else date.fromisoformat(str(v))
