import json

import numpy as np
import pytest
from metrics_helpers import synthetic_study, unit

from monoculture.metrics import MetricsInputError, ResponseSet, measure_all


def study(rng, **kw):
    rs = synthetic_study(rng, **kw)
    texts = [
        f"model {m} answers prompt {p} with sample {s} and some shared words" for m, p, s in zip(rs.model, rs.prompt, rs.sample)
    ]
    return ResponseSet(rs.X, rs.model, rs.prompt, rs.model_names, rs.prompt_ids, texts, rs.sample)


FAST = dict(n_boot=200, n_perm=99, separability=False)


def test_json_has_the_documented_keys_and_is_strict_json(rng):
    rs = study(rng, n_models=4, n_prompts=12, k=2, d=16)
    groups = {"family": {"m0": "x", "m1": "x", "m2": "y", "m3": "y"}, "open": {"m0": "yes", "m2": "yes"}}
    res = measure_all(
        rs, groups=groups, what_if_removed=["x", "m3"], reference="m3", derivatives={"m1": "m0"}, tau=0.9, n_boot=200, n_perm=99
    )
    j = res.to_json_dict()
    json.dumps(j, allow_nan=False)
    for key in (
        "models",
        "similarity_matrix",
        "within_model_similarity",
        "off_prompt_floor",
        "voices",
        "leave_one_out",
        "groups",
        "skipped",
        "distinct_k",
        "separability",
        "lineage",
        "accent_retention",
        "reference",
        "lexical",
        "what_if_removed",
    ):
        assert key in j, key
    assert j["models"] == ["m0", "m1", "m2", "m3"]
    C = np.array(j["similarity_matrix"], dtype=float)
    assert C.shape == (4, 4) and np.allclose(C, C.T)
    assert set(j["voices"]) >= {"value", "ci", "prompts"} and j["voices"]["prompts"] == 12
    lo, hi = j["voices"]["ci"]
    assert lo <= j["voices"]["value"] <= hi
    assert set(j["leave_one_out"]) == set(j["models"])
    assert set(j["groups"]) == {"x", "y", "yes"}
    g = j["groups"]["x"]
    assert g["members"] == ["m0", "m1"] and g["highlighted"] and g["baseline"] is not None
    assert j["what_if_removed"]["m3"]["kind"] == "model"
    assert set(j["lineage"]) == {"family", "open"}


def test_deterministic_for_a_seed(rng):
    rs = study(rng, n_models=3, n_prompts=10, k=2, d=8)
    a = measure_all(rs, groups={"f": {"m0": "a", "m1": "a"}}, seed=7, **FAST).to_json_dict()
    b = measure_all(rs, groups={"f": {"m0": "a", "m1": "a"}}, seed=7, **FAST).to_json_dict()
    assert json.dumps(a) == json.dumps(b)


def test_single_model_is_a_clear_error(rng):
    rs = study(rng, n_models=1, n_prompts=5, k=2, d=8)
    with pytest.raises(ValueError, match="at least 2 models"):
        measure_all(rs, **FAST)
    # Two models, but every row of one is unusable.
    rs2 = study(rng, n_models=2, n_prompts=5, k=2, d=8)
    X = rs2.X.copy()
    X[rs2.model == 1] = np.nan
    bad = ResponseSet(X, rs2.model, rs2.prompt, rs2.model_names, rs2.prompt_ids, rs2.texts, rs2.sample)
    with pytest.raises(MetricsInputError, match=r"at least 2 models.*\(m0\).*dropping 10"):
        measure_all(bad, **FAST)


def test_bad_rows_are_dropped_and_counted(rng):
    rs = study(rng, n_models=3, n_prompts=8, k=3, d=8)
    X = rs.X.copy()
    texts = list(rs.texts)
    model = rs.model.copy()
    X[0] = np.nan
    X[1] = 0.0
    texts[2] = "   "
    model[3] = 17
    bad = ResponseSet(X, model, rs.prompt, rs.model_names, rs.prompt_ids, texts, rs.sample)
    res = measure_all(bad, **FAST)
    s = res.skipped
    assert (s["nonfinite_embedding"], s["zero_embedding"], s["empty_text"], s["invalid_code"]) == (1, 1, 1, 1)
    assert res.per_model["responses"].sum() == rs.n - 4
    assert np.isfinite(res.per_model["W"]).all()


def test_prompts_with_one_model_are_skipped_and_counted(rng):
    rs = study(rng, n_models=3, n_prompts=10, k=2, d=8)
    keep = ~((rs.prompt < 3) & (rs.model > 0))  # prompts 0-2 answered by m0 only
    res = measure_all(rs.subset(keep), **FAST)
    assert res.skipped["prompts_single_model"] == 3
    assert res.headline["voices"]["prompts"] == 7
    assert (res.per_model["loo_prompts"] == 7).all()
    assert res.per_model.loc["m0", "W_prompts"] == 10  # W only needs k >= 2
    assert np.isnan(res.per_prompt["voices"].iloc[:3]).all()


def test_only_one_model_per_prompt_everywhere_is_an_error(rng):
    rs = study(rng, n_models=2, n_prompts=6, k=2, d=8)
    keep = (rs.prompt % 2) == rs.model
    with pytest.raises(ValueError, match="no prompt was answered by at least 2 models"):
        measure_all(rs.subset(keep), **FAST)


def test_unknown_what_if_name_is_an_error(rng):
    rs = study(rng, n_models=3, n_prompts=5, k=2, d=8)
    with pytest.raises(ValueError, match="neither a group nor a model"):
        measure_all(rs, what_if_removed=["nobody"], **FAST)


def test_groups_against_random_baseline(rng):
    # Three near-copies of one voice and three distinct voices.
    d = 32
    voices = rng.standard_normal((6, d)) * 1.5
    voices[1] = voices[0]
    voices[2] = voices[0]
    rs = study(rng, n_models=6, n_prompts=20, k=1, d=d, voices=voices, noise=0.3)
    groups = {
        "family": {"m0": "clones", "m1": "clones", "m2": "clones", "m3": "a", "m4": "b", "m5": "c"},
        "lab": {"m3": "L", "m4": "L", "m5": "L"},
    }
    res = measure_all(rs, groups=groups, **FAST)
    g = res.groups
    # Losing the clone family costs less than losing 3 random models; losing the 3 distinct ones, more.
    assert g.loc["clones", "excess"] < 0 and g.loc["clones", "excess_hi"] < 0
    assert g.loc["L", "excess"] > 0 and g.loc["L", "excess_lo"] > 0
    assert g.loc["clones", "baseline_draws"] == 20
    assert (res.per_model.loc[["m0", "m1", "m2"], "loo"] < 0).all()
    diff = res.compare("m3", "m0")
    assert diff.estimate.value > 0 and diff.p_value < 0.05


def test_center_calibrates_and_stores_mu(rng):
    rs = study(rng, n_models=3, n_prompts=15, k=2, d=16)
    shifted = ResponseSet(unit(rs.X + 4.0 / np.sqrt(16)), rs.model, rs.prompt, rs.model_names, rs.prompt_ids, rs.texts, rs.sample)
    raw = measure_all(shifted, **FAST)
    cal = measure_all(shifted, center=True, **FAST)
    assert raw.headline["off_prompt_floor"]["value"] > 0.5
    assert abs(cal.headline["off_prompt_floor"]["value"]) < 0.1
    assert cal.mu is not None and cal.mu.shape == (16,) and raw.mu is None
    assert cal.to_json_dict()["settings"]["embeddings"] == "centred here"
