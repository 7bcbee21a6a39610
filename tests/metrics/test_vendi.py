import numpy as np
import pytest
from metrics_helpers import unit

from monoculture.metrics.vendi import kernel_eigenvalues, vendi_from_eigenvalues, vendi_pools, vendi_score


def reference_vendi(X, w=None, q=1.0):
    """Direct definition: eigenvalues of the n x n weighted kernel."""
    n = len(X)
    w = np.full(n, 1.0 / n) if w is None else np.asarray(w) / np.sum(w)
    s = np.sqrt(w)
    lam = np.linalg.eigvalsh(s[:, None] * (X @ X.T) * s[None, :])
    lam = lam[lam > 1e-14]
    if q == 1:
        return float(np.exp(-np.sum(lam * np.log(lam))))
    if np.isinf(q):
        return float(1.0 / lam.max())
    return float(np.exp(np.log(np.sum(lam**q)) / (1 - q)))


@pytest.mark.parametrize("n,d", [(40, 8), (8, 40), (25, 25), (200, 16)])
@pytest.mark.parametrize("q", [0.5, 1.0, 2.0, np.inf])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_direct_kernel(n, d, q, weighted, rng):
    X = unit(rng.standard_normal((n, d)))
    w = rng.random(n) + 0.05 if weighted else None
    assert vendi_score(X, w, q) == pytest.approx(reference_vendi(X, w, q), abs=1e-9, rel=0)


def test_identical_rows_score_one(rng):
    X = np.repeat(unit(rng.standard_normal((1, 16))), 12, axis=0)
    for q in (0.5, 1.0, 2.0, np.inf):
        assert vendi_score(X, q=q) == pytest.approx(1.0, abs=1e-9)


def test_orthogonal_rows_score_n():
    X = np.eye(7, 20)
    for q in (0.0, 0.5, 1.0, 2.0, np.inf):
        assert vendi_score(X, q=q) == pytest.approx(7.0, abs=1e-9)


def test_dxd_and_nxn_forms_agree(rng):
    X = unit(rng.standard_normal((300, 12)))
    w = rng.random(300)
    lam_small = np.sort(kernel_eigenvalues(X, w))  # d < n: the 12 x 12 form
    ws = w / w.sum()
    s = np.sqrt(ws)
    lam_big = np.sort(np.linalg.eigvalsh(s[:, None] * (X @ X.T) * s[None, :]))[-12:]
    np.testing.assert_allclose(lam_small, lam_big, atol=1e-12)
    for q in (1.0, 2.0, np.inf):
        assert vendi_from_eigenvalues(lam_small, q) == pytest.approx(vendi_from_eigenvalues(lam_big, q), abs=1e-9)


def test_tiny_negative_eigenvalues_are_zero():
    lam = np.array([-1e-17, 0.5, 0.5])
    assert vendi_from_eigenvalues(lam, 1.0) == pytest.approx(2.0)
    assert vendi_from_eigenvalues(lam, 0.0) == pytest.approx(2.0)


def test_rejects_unnormalised_rows_and_bad_weights(rng):
    X = rng.standard_normal((10, 5)) * 3
    with pytest.raises(ValueError, match="L2-normalised"):
        vendi_score(X)
    with pytest.raises(ValueError):
        vendi_score(unit(X), w=-np.ones(10))
    with pytest.raises(ValueError):
        vendi_score(unit(X), q=-1)


@pytest.mark.parametrize("q", [1.0, 2.0, np.inf])
def test_batched_pools_match_single(q, rng):
    X = unit(rng.standard_normal((400, 20)))
    sizes = [1, 2, 5, 19, 20, 21, 40, 90]  # both sides of d = 20
    rows = np.full((len(sizes), max(sizes)), -1)
    for i, s in enumerate(sizes):
        rows[i, :s] = rng.choice(400, s, replace=False)
    rows[3] = np.roll(rows[3], 3)  # padding need not be at the end
    W = rng.random((3,) + rows.shape)
    got = vendi_pools(X, rows, W, q)
    for r in range(3):
        for i in range(len(sizes)):
            ok = rows[i] >= 0
            assert got[r, i] == pytest.approx(vendi_score(X[rows[i][ok]], W[r, i][ok], q), abs=1e-9)
    uniform = vendi_pools(X, rows, None, q)
    for i in range(len(sizes)):
        assert uniform[i] == pytest.approx(vendi_score(X[rows[i][rows[i] >= 0]], q=q), abs=1e-9)


def test_pool_without_weight_is_nan(rng):
    X = unit(rng.standard_normal((5, 3)))
    rows = np.array([[0, 1, 2], [3, 4, -1]])
    w = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    out = vendi_pools(X, rows, w)
    assert np.isnan(out[0]) and np.isfinite(out[1])
