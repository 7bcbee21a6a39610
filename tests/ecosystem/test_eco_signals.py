"""The four retreat signals on synthetic release histories where the answer is known."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from monoculture.ecosystem.cadence import History, Release, gaps_days, merge_events
from monoculture.ecosystem.openness import LEVELS
from monoculture.ecosystem.signals import (
    STRENGTHS,
    alerts_table,
    all_signals,
    ceremonial_signal,
    licence_signal,
    rate_drop_signal,
    silence_signal,
)

START = date(2020, 1, 1)
PERMISSIVE, RESTRICTED, NONCOMMERCIAL, GATED, API = range(5)


def history(
    seed: int,
    *,
    n: int = 20,
    mean_gap: float = 60,
    tail_days: float | None = None,
    levels=None,
    activity_every: int | None = None,
    activity_until_tail: bool = True,
) -> History:
    """Releases with exponential gaps (seeded); ``tail_days`` after the last one is "as of"."""
    rng = np.random.default_rng(seed)
    gaps = np.maximum(rng.exponential(mean_gap, n - 1), 9).round()  # > merge window, so each release is one event
    days = np.concatenate([[0], np.cumsum(gaps)])
    levels = levels if levels is not None else [PERMISSIVE] * n
    rel = [Release(START + timedelta(days=int(d)), f"model-{i}", levels[i], 7.0, "registry", True) for i, d in enumerate(days)]
    last = rel[-1].date
    tail = tail_days if tail_days is not None else float(rng.uniform(0, mean_gap))
    as_of = last + timedelta(days=int(tail))
    activity = []
    if activity_every:
        end = as_of if activity_until_tail else last
        activity = [START + timedelta(days=d) for d in range(0, (end - START).days + 1, activity_every)]
    return History("synthetic", f"synthetic-{seed}", ("org",), "Nowhere", as_of, rel, activity)


def strengths(h: History) -> dict[str, str]:
    return {s.signal: s.strength for s in all_signals(h)}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_steady_releaser_raises_nothing(seed):
    h = history(seed, activity_every=5)
    got = strengths(h)
    assert got["silence"] == "none" and got["rate-drop"] == "none"
    assert got["licence-tightening"] == "none" and got["ceremonial-open"] == "none"


def test_steady_releasers_rarely_alarm():
    """Across 40 seeded steady histories the silence test fires (moderate or stronger) about as often as its level says."""
    fired = sum(silence_signal(history(seed, tail_days=None)).rank >= STRENGTHS.index("moderate") for seed in range(40))
    assert fired <= 4


def test_a_family_that_stops_is_flagged():
    h = history(7, tail_days=600)
    s = silence_signal(h)
    assert s.strength == "strong" and s.p_value < 0.01
    total, n = sum(gaps_days(h.open_events)), len(gaps_days(h.open_events))
    assert s.p_value == pytest.approx((total / (total + 600)) ** n)  # the closed form, exactly
    r = rate_drop_signal(h, window_days=365)
    assert r.details["k_window"] == 0 and r.strength in ("moderate", "strong")
    assert licence_signal(h).strength == "none"


def at_days(days: list[int], silence: int, *, merge_days: int = 7) -> History:
    """A history with open-weight releases on exactly these days (from START), as of ``silence``
    days after the last one."""
    rel = [Release(START + timedelta(days=d), f"model-{i}", PERMISSIVE, 7.0, "registry", True) for i, d in enumerate(days)]
    return History("synthetic", "synthetic", ("org",), "Nowhere", rel[-1].date + timedelta(days=silence), rel, [], merge_days)


@pytest.mark.parametrize(
    "days, silence, p, strength",
    [
        ([0, 100, 200, 300], 300, (300 / 600) ** 3, "none"),  # S = 300 over n = 3 gaps: (1/2)^3 = 0.125
        ([0, 100, 200, 300], 900, (300 / 1200) ** 3, "moderate"),  # (1/4)^3 = 0.015625
        ([0, 50, 150, 300, 400], 100, (400 / 500) ** 4, "none"),  # uneven gaps: only their sum counts
        ([0, 10, 20, 30, 40, 50], 200, (50 / 250) ** 5, "strong"),  # (1/5)^5 = 0.00032
        ([0, 100, 200, 300], 0, 1.0, "none"),  # released today
    ],
)
def test_silence_signal_known_answers(days, silence, p, strength):
    s = silence_signal(at_days(days, silence))
    assert s.signal == "silence" and s.p_value == pytest.approx(p, rel=1e-12) and s.strength == strength
    assert s.details["silence_days"] == silence and s.details["n_gaps"] == len(days) - 1
    assert s.details["mean_gap_days"] == pytest.approx(days[-1] / (len(days) - 1))


def test_silence_signal_counts_events_not_releases():
    """Checkpoints a few days apart are one launch: two releases 3 days apart are one event, so
    the gap and the silence run from the event's start."""
    s = silence_signal(at_days([0, 100, 103, 200, 300], 300))
    assert s.details["n_gaps"] == 3 and s.p_value == pytest.approx((300 / 600) ** 3)
    last = silence_signal(at_days([0, 100, 200, 300, 303], 297))  # the last launch's second checkpoint came on day 303
    assert last.details["silence_days"] == 300 and last.p_value == pytest.approx((300 / 600) ** 3)
    assert silence_signal(at_days([0, 100, 200], 500)).strength == "n/a"  # two gaps: too few to judge


def test_silence_signal_is_calibrated():
    """Under the null (the silence is one more exponential gap at the same rate) the p-values
    silence_signal returns are uniform: P(p < 0.05) ~ 0.05 and P(p < 0.5) ~ 0.5."""
    rng = np.random.default_rng(11)
    ps = []
    for _ in range(3000):
        gaps = np.maximum(rng.exponential(2000.0, 9).round(), 1).astype(int)  # days; a long mean keeps rounding negligible
        silence = round(rng.exponential(2000.0))
        ps.append(silence_signal(at_days([0, *np.cumsum(gaps).tolist()], silence, merge_days=0)).p_value)
    ps = np.array(ps)
    assert abs(np.mean(ps < 0.05) - 0.05) < 0.013
    assert abs(np.mean(ps < 0.5) - 0.5) < 0.035


def test_licences_that_tighten_are_flagged():
    levels = [PERMISSIVE] * 3 + [RESTRICTED] * 3 + [NONCOMMERCIAL] * 2 + [GATED] * 2 + [API] * 2
    h = history(5, n=len(levels), levels=levels, tail_days=10)
    s = licence_signal(h)
    assert s.strength == "strong" and s.p_value < 0.01
    assert len(s.details["steps"]) == 4 and s.details["levels"][-1] == API
    assert "api-only" in s.evidence
    # API-only releases do not count as shipping weights: the open-weight cadence is measured without them
    assert len(h.open_events) == len(levels) - 2


def test_one_recent_tightening_is_at_least_moderate():
    levels = [PERMISSIVE] * 8 + [NONCOMMERCIAL]
    s = licence_signal(history(9, n=len(levels), levels=levels, tail_days=5))
    assert s.strength in ("moderate", "strong")


def test_a_tightening_that_was_reversed_is_weak():
    levels = [PERMISSIVE] * 4 + [API] + [PERMISSIVE] * 4
    s = licence_signal(history(9, n=len(levels), levels=levels, tail_days=5))
    assert s.strength in ("none", "weak")


def test_ceremonial_open_commits_without_weights():
    busy = history(13, tail_days=420, activity_every=4)
    s = ceremonial_signal(busy)
    assert s.strength == "strong" and s.details["active_days"] > 50
    quiet = history(13, tail_days=420, activity_every=4, activity_until_tail=False)
    assert ceremonial_signal(quiet).strength == "none"  # silent repos: a stop, not a ceremony
    steady = history(13, tail_days=10, activity_every=4)
    assert ceremonial_signal(steady).strength == "none"


def test_too_little_history_is_not_assessed():
    h = history(3, n=3, tail_days=400)
    got = strengths(h)
    assert got["silence"] == "n/a" and got["licence-tightening"] in ("n/a", "none")
    assert ceremonial_signal(history(3, n=5, tail_days=400)).strength == "n/a"  # no activity on record


def test_merge_events_joins_checkpoints_of_one_launch():
    d = date(2024, 9, 16)
    rel = [
        Release(d, "a-7b", 0, 7),
        Release(d + timedelta(days=2), "a-72b", 1, 72),
        Release(d + timedelta(days=30), "b", 0, 7),
        Release(d + timedelta(days=31), "b-max", API, None),
    ]
    ev = merge_events(rel, merge_days=7)
    assert [len(e.releases) for e in ev] == [2, 2]
    assert ev[0].lead.name == "a-72b"  # the largest model leads
    assert ev[1].lead.name == "b-max" and ev[1].level == API  # an API-only model of unknown size leads its launch
    assert ev[1].open_weight


def test_alerts_table_one_line_per_signal():
    hs = [history(7, tail_days=600), history(1)]
    df = alerts_table(hs, min_strength="n/a")
    assert len(df) == 8 and list(df.columns)[:4] == ["family", "name", "organisations", "signal"]
    top = alerts_table(hs, min_strength="weak")
    assert set(top["name"]) == {"synthetic-7"} and top.iloc[0]["strength"] == "strong"
    assert LEVELS[API] == "api-only"
