"""Must show 1 and 2 of issue 14 on synthetic studies with a known truth, and the pure pieces."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from trend_helpers import dated_study

from monoculture.errors import UserError
from monoculture.trends.analysis import analyse
from monoculture.trends.series import field_similarity
from monoculture.trends.slopes import permutation_p, weighted_slope
from monoculture.trends.windows import make_windows


def test_weighted_slope_is_least_squares_and_weights_are_multiplicities():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([1.0, 3.0, 2.0, 5.0])
    assert weighted_slope(x, y) == pytest.approx(np.polyfit(x, y, 1)[0])
    w = np.array([2.0, 1.0, 0.0, 1.0])
    xr, yr = np.array([0.0, 0.0, 1.0, 3.0]), np.array([1.0, 1.0, 3.0, 5.0])
    assert weighted_slope(x, y, w) == pytest.approx(np.polyfit(xr, yr, 1)[0])
    assert np.isnan(weighted_slope(np.array([1.0, 1.0]), np.array([0.0, 1.0])))


def test_permutation_p_is_two_sided_and_counts_the_observed():
    assert permutation_p(1.0, np.array([-2.0, 0.5, 0.1, -0.2])) == pytest.approx(2 / 5)
    assert permutation_p(-1.0, np.array([0.5, 0.1])) == pytest.approx(1 / 3)


def test_earlier_field_excludes_same_day_peers():
    C = np.array([[np.nan, 0.2, 0.4], [0.2, np.nan, 0.6], [0.4, 0.6, np.nan]])
    x = np.array([0.0, 0.0, 1.0])
    S, near = field_similarity(C, x[None, :] < x[:, None])
    assert np.isnan(S[0]) and np.isnan(S[1])
    assert S[2] == pytest.approx(0.5) and near[2] == pytest.approx(0.6)


def test_windows_by_period_and_rolling():
    d = [date(2023, 1, 5), date(2023, 5, 1), date(2023, 11, 1), date(2024, 2, 1)]
    assert [w.label for w in make_windows(d, "quarter")] == ["2023-Q1", "2023-Q2", "2023-Q4", "2024-Q1"]
    assert [list(w.members) for w in make_windows(d, "half")] == [[0, 1], [2], [3]]
    rolling = make_windows(d, "half", 2)
    assert [list(w.members) for w in rolling] == [[0, 1, 2], [2, 3]]
    with pytest.raises(UserError):
        make_windows(d, "month")


def test_planted_trend_is_found():
    """Must show 1: later models built closer to the earlier field."""
    rs, dates = dated_study(trend=0.5, seed=3)
    r = analyse(rs, dates, n_boot=300, n_perm=199, period="half", seed=0)
    for name in ("similarity_to_earlier", "homogeneity"):
        s = r.slope(name)
        assert s.value > 0 and s.lo > 0, (name, s)
        assert s.p < 0.01, (name, s)
    assert r.slope("voices_equal_n").hi < 0  # a narrowing field has fewer voices


def _null_counts(reps: int) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for s in range(reps):
        rs, dates = dated_study(trend=0.0, seed=1000 + s)
        r = analyse(rs, dates, n_boot=200, n_perm=199, period="half", seed=s)
        for sl in r.slopes:
            c = out.setdefault(sl.series, {"p": 0, "both": 0})
            c["p"] += sl.p > 0.05
            c["both"] += sl.p > 0.05 and sl.lo <= 0 <= sl.hi
    return out


@pytest.mark.slow
def test_no_trend_calibration_over_100_seeded_studies():
    """Must show 1, the calibration of the test: with exchangeable models the headline series
    has an interval containing 0 and p > 0.05 in at least 95 of 100 studies. Every series'
    permutation test is exact, so each should reject about 5 times in 100; at least 88 of 100
    (a binomial 0.3% tail) guards against a test that is anti-conservative."""
    counts = _null_counts(100)
    print(counts)
    assert counts["similarity_to_earlier"]["both"] >= 95, counts
    for name, c in counts.items():
        assert c["p"] >= 88, (name, counts)


def test_equal_n_voices_do_not_grow_with_the_window():
    """Must show 2: a window with twice the models and the same diversity has more raw voices
    but not more voices at equal n."""
    rs, _ = dated_study(n_models=12, trend=0.0, seed=5, n_prompts=40)
    dates = {f"m{i:02d}": date(2022, 3, 1) if i < 8 else date(2023, 3, 1) for i in range(12)}
    r = analyse(rs, dates, n_boot=200, n_perm=99, period="year", seed=0)
    raw = {p["label"]: p for p in r.series["voices"]}
    eq = {p["label"]: p for p in r.series["voices_equal_n"]}
    assert raw["2022"]["n_models"] == 8 and raw["2023"]["n_models"] == 4 and r.settings["n"] == 4
    assert raw["2022"]["value"] > raw["2023"]["value"] + 1.0
    big, small = eq["2022"], eq["2023"]
    assert abs(big["value"] - small["value"]) < 0.1 * small["value"]
    assert big["ci"][0] <= small["ci"][1] and small["ci"][0] <= big["ci"][1]


def test_undated_models_are_left_out_and_counted_and_too_few_refused():
    rs, dates = dated_study(n_models=6, seed=2)
    del dates["m05"]
    r = analyse(rs, dates, n_boot=50, n_perm=49, seed=0)
    assert r.undated == ["m05"] and "m05" not in r.models
    assert r.to_json_dict()["undated"] == {"count": 1, "models": ["m05"]}
    with pytest.raises(UserError, match="at least 3 models with a release date, got 2"):
        analyse(rs, {"m00": dates["m00"], "m01": dates["m01"]})


def test_seeded_results_repeat():
    rs, dates = dated_study(seed=4)
    a = analyse(rs, dates, n_boot=100, n_perm=99, seed=7).to_json_dict()
    b = analyse(rs, dates, n_boot=100, n_perm=99, seed=7).to_json_dict()
    assert a == b
