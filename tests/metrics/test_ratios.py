"""Ratios whose denominators can vanish: the reference ratio and accent retention.

The reference ratio is taken above the off-prompt floor, (H - F) / (H_ref - F), with the
difference H - H_ref beside it; a ratio whose denominator's interval reaches 0 is withheld
(value None, ``unstable``) instead of printed as a wild number.
"""

import json

import numpy as np
import pytest
from metrics_helpers import synthetic_study, unit

from monoculture.metrics import ResponseSet, measure_all
from monoculture.metrics.lineage import accent_retention
from monoculture.metrics.responses import index_cells
from monoculture.metrics.similarity import (
    homogeneity,
    off_prompt_floor,
    pair_similarity,
    per_prompt_floor,
    prompt_means,
)
from monoculture.metrics.stats import guarded_ratio, resample_counts

FAST = dict(n_boot=300, n_perm=49, separability=False, lexical=False)


def with_reference(rng, human_spread: float):
    """Models 0-2 share a voice; model 3 is a reference population whose answers differ by
    ``human_spread`` of extra noise."""
    voices = np.zeros((4, 16))
    voices[:3] = 1.5 * unit(rng.standard_normal(16))
    rs = synthetic_study(rng, n_models=4, n_prompts=30, k=4, d=16, voices=voices, noise=0.8)
    X = rs.X.copy()
    human = rs.model == 3
    X[human] = unit(X[human] + human_spread * rng.standard_normal((human.sum(), 16)))
    return ResponseSet(X, rs.model, rs.prompt, rs.model_names, rs.prompt_ids, sample=rs.sample)


def test_reference_ratio_is_taken_above_the_floor(rng):
    rs = with_reference(rng, 0.5)
    res = measure_all(rs, reference="m3", **FAST)
    ref = res.headline["reference"]
    idx = index_cells(rs.model, rs.prompt, 4, 30, rs.sample)
    pair = pair_similarity(rs.X, idx)
    C, _ = prompt_means(pair)
    H, H_ref = homogeneity(C, np.array([0, 1, 2])), C[3, 3]
    F = float(np.nanmean(per_prompt_floor(rs.X, idx)))
    assert ref["ratio_definition"] == "(H - F) / (H_ref - F)"
    assert ref["ratio"]["value"] == pytest.approx((H - F) / (H_ref - F))
    assert ref["ratio"]["value"] != pytest.approx(H / H_ref, rel=0.02)  # the floor matters here
    assert ref["difference"]["value"] == pytest.approx(H - H_ref)
    assert ref["ratio"]["unstable"] is False and ref["ratio"]["ci"][0] < ref["ratio"]["value"] < ref["ratio"]["ci"][1]
    assert ref["floor"]["value"] == pytest.approx(F)
    # The headline H is over the models only: the reference is what it is compared with.
    assert res.headline["homogeneity"]["value"] == pytest.approx(H)
    assert res.headline["homogeneity"]["value"] != pytest.approx(homogeneity(C), rel=0.02)
    assert np.allclose(res.per_prompt["homogeneity"].mean(), H)


def test_exact_floor_agrees_with_the_sampled_one(rng):
    rs = synthetic_study(rng, n_models=3, n_prompts=25, k=3, d=12)
    idx = index_cells(rs.model, rs.prompt, 3, 25, rs.sample)
    sampled = off_prompt_floor(rs.X, idx, 200_000, seed=1)
    assert float(np.mean(per_prompt_floor(rs.X, idx))) == pytest.approx(sampled["value"], abs=4 * sampled["se"])


def test_reference_at_the_floor_is_withheld_not_wild(rng):
    # The reference's answers share nothing beyond what any two answers share: H_ref - F ~ 0.
    rs = with_reference(rng, 40.0)
    res = measure_all(rs, reference="m3", **FAST)
    ratio = res.to_json_dict()["reference"]["ratio"]
    json.dumps(ratio, allow_nan=False)
    assert ratio["unstable"] is True and ratio["value"] is None and ratio["ci"] == [None, None]
    assert "reaches 0" in ratio["reason"]
    assert ratio["denominator"]["ci"][0] <= 0  # the reason the ratio was withheld
    assert res.to_json_dict()["reference"]["difference"]["value"] is not None  # the difference is still reported


def test_guarded_ratio():
    r = np.random.default_rng(0)
    num = r.normal(0.3, 0.02, 1000)
    ok = guarded_ratio(0.3, num, 0.5, r.normal(0.5, 0.02, 1000), 30)
    assert not ok.unstable and ok.value == pytest.approx(0.6) and ok.lo < 0.6 < ok.hi
    near0 = guarded_ratio(0.3, num, 0.01, r.normal(0.01, 0.05, 1000), 30)
    assert near0.unstable and np.isnan(near0.value) and near0.denominator.lo < 0 < near0.denominator.hi
    assert near0.to_dict()["value"] is None and near0.to_dict()["numerator"]["value"] == pytest.approx(0.3)


def test_accent_retention_with_a_base_that_has_no_voice_is_withheld(rng):
    d, P = 24, 40
    voices = np.zeros((6, d))
    voices[1] = 2.0 * rng.standard_normal(d)  # the derivative has a voice; its base (0) and the others have none
    rs = synthetic_study(rng, n_models=6, n_prompts=P, k=3, d=d, voices=voices)
    idx = index_cells(rs.model, rs.prompt, 6, P, rs.sample)
    pair = pair_similarity(rs.X, idx)
    e = accent_retention(pair, 1, 0, np.array([2, 3, 4, 5]), resample_counts(P, 300))
    assert e.unstable and np.isnan(e.value) and e.denominator.lo <= 0
    res = measure_all(rs, derivatives={"m1": "m0"}, **FAST)
    row = res.accent.loc["m1"]
    assert bool(row["unstable"]) and np.isnan(row["value"]) and "reaches 0" in row["reason"]
    assert any("accent retention of m1 withheld" in n for n in res.notes)
