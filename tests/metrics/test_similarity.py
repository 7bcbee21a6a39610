import numpy as np
import pytest
from metrics_helpers import synthetic_study, unit

from monoculture.metrics import ResponseSet, calibrate, index_cells
from monoculture.metrics.similarity import (
    homogeneity,
    homogeneity_estimate,
    off_prompt_floor,
    pair_similarity,
    prompt_means,
    reference_ratio,
)
from monoculture.metrics.stats import resample_counts


def brute_force(rs: ResponseSet):
    """W and C straight from METRICS.md: loops over prompts and pairs of responses."""
    M, P = len(rs.model_names), len(rs.prompt_ids)
    C_sum = np.zeros((M, M))
    C_n = np.zeros((M, M))
    for p in range(P):
        for a in range(M):
            for b in range(M):
                A = rs.X[(rs.prompt == p) & (rs.model == a)]
                B = rs.X[(rs.prompt == p) & (rs.model == b)]
                if a == b:
                    if len(A) < 2:
                        continue
                    S = A @ A.T
                    val = S[np.triu_indices(len(A), 1)].mean()
                else:
                    if len(A) == 0 or len(B) == 0:
                        continue
                    val = (A @ B.T).mean()
                C_sum[a, b] += val
                C_n[a, b] += 1
    return np.where(C_n > 0, C_sum / np.maximum(C_n, 1), np.nan), C_n


def ragged_study(rng):
    rs = synthetic_study(rng, n_models=4, n_prompts=9, k=4, d=10)
    keep = rng.random(rs.n) > 0.35  # uneven k, some cells empty, some k = 1
    return rs.subset(keep)


def test_matches_brute_force_on_ragged_data(rng):
    rs = ragged_study(rng)
    idx = index_cells(rs.model, rs.prompt, 4, 9, rs.sample)
    C, n = prompt_means(pair_similarity(rs.X, idx))
    C_ref, n_ref = brute_force(rs)
    np.testing.assert_allclose(C, C_ref, atol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(n, n_ref)
    np.testing.assert_allclose(C, C.T, atol=1e-12, equal_nan=True)
    off = ~np.eye(4, dtype=bool)
    assert homogeneity(C) == pytest.approx(np.nanmean(C_ref[off]))


def test_homogeneity_interval_contains_point_and_is_seeded(rng):
    rs = synthetic_study(rng, n_models=4, n_prompts=40, k=2)
    idx = index_cells(rs.model, rs.prompt, 4, 40, rs.sample)
    pair = pair_similarity(rs.X, idx)
    a = homogeneity_estimate(pair, resample_counts(40, 500, seed=3))
    b = homogeneity_estimate(pair, resample_counts(40, 500, seed=3))
    assert a == b
    assert a.lo < a.value < a.hi
    assert a.prompts == 40


def test_off_prompt_floor_of_calibrated_embeddings_is_near_zero(rng):
    # An anisotropic embedder: every vector shares a big common component.
    rs = synthetic_study(rng, n_models=3, n_prompts=50, k=2, d=32)
    raw = rs.X + 3.0 * unit(np.ones(32))
    idx = index_cells(rs.model, rs.prompt, 3, 50, rs.sample)
    raw_unit = unit(raw)
    assert off_prompt_floor(raw_unit, idx, 5000, seed=1)["value"] > 0.8
    X, mu, zero = calibrate(raw)
    assert not zero.any()
    assert abs(off_prompt_floor(X, idx, 5000, seed=1)["value"]) < 0.05


def test_calibrate_flags_rows_with_no_direction():
    raw = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [np.nan, 1.0]])
    X, mu, zero = calibrate(raw)
    np.testing.assert_allclose(mu, [0.5, 0.5])  # the NaN row is not in the mean
    assert zero.tolist() == [False, False, True, True]
    assert np.isfinite(X).all() and (X[zero] == 0).all()
    np.testing.assert_allclose(np.linalg.norm(X[~zero], axis=1), 1.0)
    X2, mu2, _ = calibrate(raw[:2], mu=np.array([0.0, 0.0]))  # another study's mu
    np.testing.assert_allclose(X2, raw[:2])


def test_reference_ratio(rng):
    # Models 0-2 share a voice; model 3 is a "human" source with diverse answers.
    voices = np.zeros((4, 16))
    voices[:3] = 2.0 * unit(rng.standard_normal(16))
    rs = synthetic_study(rng, n_models=4, n_prompts=30, k=4, d=16, voices=voices, noise=0.8)
    human = rs.model == 3
    X = rs.X.copy()
    X[human] = unit(X[human] + 0.5 * rng.standard_normal((human.sum(), 16)))  # people differ more
    rs = ResponseSet(X, rs.model, rs.prompt, rs.model_names, rs.prompt_ids, sample=rs.sample)
    idx = index_cells(rs.model, rs.prompt, 4, 30, rs.sample)
    pair = pair_similarity(rs.X, idx)
    counts = resample_counts(30, 300, seed=0)
    est = reference_ratio(pair, counts, np.array([0, 1, 2]), np.array([3]))
    C, _ = prompt_means(pair)
    assert est.value == pytest.approx(homogeneity(C, np.array([0, 1, 2])) / C[3, 3])
    assert est.value > 1.0 and est.lo > 1.0
