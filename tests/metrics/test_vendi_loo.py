"""Leave-one-out Vendi from one eigendecomposition per prompt (metrics/vendi_loo.py) against
decomposing every leave-one-out kernel, on the spectra that make secular equations hard."""

import numpy as np
import pytest
from metrics_helpers import synthetic_study, unit

from monoculture.metrics import index_cells
from monoculture.metrics import vendi_loo as vendi_loo_mod
from monoculture.metrics.vendi import vendi_from_eigenvalues
from monoculture.metrics.vendi_loo import loo_vendi, loo_vendi_pools, principal_roots, single_answer_models
from monoculture.metrics.voices import scenario_vendi, voices_analysis


def roots_of(K: np.ndarray, j: int) -> np.ndarray:
    lam, U = np.linalg.eigh(K)
    n = len(lam)
    out, scratch = np.empty(n), [np.empty(n), np.empty(n), np.empty((4, n)), np.empty(n, dtype=bool), np.zeros(2, dtype=np.int64)]
    u = U[j] ** 2
    k = principal_roots(lam, u / u.sum(), out, *scratch)
    assert k == n - 1
    return np.sort(out[:k])


def kernels(rng, case: str, n: int) -> np.ndarray:
    if case == "random":
        X = rng.standard_normal((n, 64))
    elif case == "low rank":  # a pool larger than the embedding dimension: a zero cluster
        X = rng.standard_normal((n, 3))
    elif case == "duplicates":  # identical answers: repeated eigenvalues, zero eigenvalues
        X = rng.standard_normal((n, 64))
        X[1] = X[0]
        X[4 % n] = X[0]
        X[6 % n] = X[2 % n]
    elif case == "near duplicates":
        X = rng.standard_normal((n, 64))
        X[1] = X[0] + 1e-9 * rng.standard_normal(64)
    elif case == "alike":  # one dominant eigenvalue, the rest tiny (a monoculture)
        X = 5.0 + 0.01 * rng.standard_normal((n, 64))
    elif case == "orthogonal":  # every eigenvalue equal: all poles merge
        X = np.eye(n, 64)
    else:
        raise AssertionError(case)
    X = unit(X)
    return X @ X.T / n


CASES = ["random", "low rank", "duplicates", "near duplicates", "alike", "orthogonal"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("n", [2, 3, 9, 40])
def test_principal_roots_are_the_submatrix_eigenvalues(rng, case, n):
    K = kernels(rng, case, n)
    scale = np.abs(np.linalg.eigvalsh(K)).max()
    for j in range(n):
        keep = np.arange(n) != j
        expect = np.linalg.eigvalsh(K[np.ix_(keep, keep)])
        # 450 eps * lambda_max: the stopping thresholds leave up to ~100 (module docstring);
        # a cubic threshold of 1e-3 instead of 1e-5 gives up to 1e-11 on these kernels.
        assert np.abs(roots_of(K, j) - expect).max() <= 1e-13 * scale, (case, n, j)


@pytest.mark.parametrize("q", [0.0, 0.5, 1.0, 2.0, np.inf])
@pytest.mark.parametrize("case", CASES)
def test_leave_one_out_scores_equal_decomposing_each_pool(rng, case, q):
    n = 12
    K = np.stack([kernels(rng, case, n) for _ in range(4)])
    slot = np.tile(np.arange(n), (4, 1))
    slot[1, 3] = -1
    scale = np.full(4, n / (n - 1))
    full, loo = loo_vendi_pools(K, slot, scale, q, workers=2)
    assert full == pytest.approx(vendi_from_eigenvalues(np.linalg.eigvalsh(K), q), abs=1e-10)
    for b in range(4):
        for s, j in enumerate(slot[b]):
            if j < 0:
                assert np.isnan(loo[b, s])
                continue
            keep = np.arange(n) != j
            want = vendi_from_eigenvalues(np.linalg.eigvalsh(K[b][np.ix_(keep, keep)] * scale[b]), q)
            # q = 0 counts eigenvalues above rounding: an eigenvalue at the threshold may fall
            # either side of it, in either computation.
            assert loo[b, s] == pytest.approx(want, abs=1e-9 if q else 1.0), (case, q, b, j)


def test_loo_vendi_equals_the_scenario_path_on_a_ragged_study(rng):
    # k = 1 for models 0-3 (ragged: missing answers, prompts with one model left), k = 2 for
    # model 4 (not single-answer: it keeps the scenario path, but its rows weigh in the pools).
    rs = synthetic_study(rng, n_models=5, n_prompts=30, k=2, d=10)
    keep = ((rs.model == 4) | (rs.sample == 0)) & (rng.random(rs.n) > 0.25)
    keep &= ~((rs.prompt == 7) & (rs.model > 0))  # prompt 7: model 0 alone
    rs = rs.subset(keep)
    idx = index_cells(rs.model, rs.prompt, 5, 30, rs.sample)
    fast = single_answer_models(idx)
    assert fast.tolist() == [True, True, True, True, False]
    V, loo = loo_vendi(rs.X, idx, fast, q=1.0, workers=2)
    want = scenario_vendi(rs.X, idx, ~np.eye(5, dtype=bool), q=1.0)
    full = scenario_vendi(rs.X, idx, np.ones((1, 5), dtype=bool), q=1.0)[0]
    np.testing.assert_allclose(V, full, atol=1e-10)
    assert np.isnan(loo[4]).all()
    np.testing.assert_allclose(loo[:4], want[:4], atol=1e-10)  # absent: V(p); alone: NaN in both
    assert np.isnan(loo[0, 7]) and np.isnan(want[0, 7])


def test_loo_vendi_refuses_models_with_several_answers_and_accepts_float32(rng):
    # Model 4 has two answers per prompt: leaving it out is a rank-2 deletion, which the
    # secular equation of one row would get wrong without a word.
    rs = synthetic_study(rng, n_models=5, n_prompts=6, k=2, d=10)
    rs = rs.subset((rs.model == 4) | (rs.sample == 0))
    idx = index_cells(rs.model, rs.prompt, 5, 6, rs.sample)
    with pytest.raises(ValueError, match="several answers"):
        loo_vendi(rs.X, idx, np.ones(5, dtype=bool))
    with pytest.raises(ValueError, match="mask"):
        loo_vendi(rs.X, idx, np.ones(4, dtype=bool))
    # float32 embeddings: the kernels are built in float64 from the gathered rows, exactly as
    # from the same values widened up front.
    fast = single_answer_models(idx)
    X32 = rs.X.astype(np.float32)
    V32, loo32 = loo_vendi(X32, idx, fast)
    V, loo = loo_vendi(X32.astype(np.float64), idx, fast)
    assert np.array_equal(V32, V) and np.array_equal(loo32, loo, equal_nan=True)
    assert np.isfinite(loo32[:4]).any()


@pytest.mark.parametrize("d", [4, 32])
def test_voices_analysis_is_the_same_with_and_without_the_fast_path(rng, monkeypatch, d):
    rs = synthetic_study(rng, n_models=8, n_prompts=40, k=1, d=d)
    rs = rs.subset(rng.random(rs.n) > 0.1)
    idx = index_cells(rs.model, rs.prompt, 8, 40, rs.sample)
    groups = {"a": np.arange(8) < 3, "b": np.arange(8) % 2 == 0}
    fast = voices_analysis(rs.X, idx, groups, n_random=10)
    monkeypatch.setattr(vendi_loo_mod, "single_answer_models", lambda index: np.zeros(index.n_models, dtype=bool))
    slow = voices_analysis(rs.X, idx, groups, n_random=10)
    np.testing.assert_allclose(fast.voices, slow.voices, atol=1e-10)
    np.testing.assert_allclose(fast.loo, slow.loo, atol=1e-10)
    for g in groups:
        np.testing.assert_allclose(fast.group_loss[g], slow.group_loss[g], atol=1e-10)
        np.testing.assert_allclose(fast.group_baseline[g], slow.group_baseline[g], atol=1e-10)
    assert np.isfinite(fast.loo).sum() > 250


def test_roots_take_a_few_evaluations_each(rng):
    # The cost of the path is evaluations of h (one division per pole each): from the middle
    # of each gap, cubic steps finish in 2-3 (2.5 on AlpacaEval's pools). Bisection alone
    # would take about 50.
    n = 28
    X = unit(rng.standard_normal((60, n, 64)) + 0.5 * rng.standard_normal((60, 1, 64)))
    K = X @ X.transpose(0, 2, 1) / n
    count = np.zeros(2, dtype=np.int64)
    loo_vendi_pools(K, np.tile(np.arange(n), (60, 1)), np.full(60, n / (n - 1)), count=count)
    assert count[0] == 60 * n * (n - 1)
    assert 1.0 <= count[1] / count[0] < 3.5
