import numpy as np
import pytest
from metrics_helpers import synthetic_study, unit

from monoculture.metrics import ResponseSet, index_cells, vendi_score
from monoculture.metrics.voices import own_range, random_groups, voices_analysis


def direct_pool_vendi(rs, p, models, q=1.0):
    """METRICS.md weights: w = 1 / (|M| k_{m,p}) for the models given that answered p."""
    rows, w = [], []
    present = [m for m in models if ((rs.prompt == p) & (rs.model == m)).any()]
    for m in present:
        sel = np.flatnonzero((rs.prompt == p) & (rs.model == m))
        rows.extend(sel)
        w.extend([1.0 / (len(present) * len(sel))] * len(sel))
    return vendi_score(rs.X[rows], np.array(w), q)


def assert_matches_direct(rs, vr, n_models, n_prompts, grp, q):
    """Every per-prompt figure against pools built and scored one at a time."""
    M = n_models
    inside = set(np.flatnonzero(grp))
    for p in range(n_prompts):
        present = [m for m in range(M) if ((rs.prompt == p) & (rs.model == m)).any()]
        if len(present) < 2:
            assert np.isnan(vr.voices[p])
            continue
        V = direct_pool_vendi(rs, p, range(M), q)
        assert vr.voices[p] == pytest.approx(V, abs=1e-9)
        for m in range(M):
            if m in present:
                rest = direct_pool_vendi(rs, p, [o for o in range(M) if o != m], q)
                assert vr.loo[p, m] == pytest.approx(V - rest, abs=1e-9)
            else:
                assert np.isnan(vr.loo[p, m])
        if inside & set(present) and set(present) - inside:
            rest = direct_pool_vendi(rs, p, [o for o in range(M) if o not in inside], q)
            assert vr.group_loss["g"][p] == pytest.approx(V - rest, abs=1e-9)
        diffs = []
        for draw in random_groups(M, len(inside), 100):
            members = set(np.flatnonzero(draw))
            if members & set(present) and set(present) - members:
                diffs.append(V - direct_pool_vendi(rs, p, [o for o in range(M) if o not in members], q))
        assert vr.group_baseline["g"][p] == pytest.approx(np.mean(diffs), abs=1e-9)


@pytest.mark.parametrize("d,ragged,k", [(12, True, 3), (12, False, 3), (5, True, 3), (12, True, 1), (3, False, 1)])
def test_voices_loo_and_groups_match_direct_computation(rng, d, ragged, k):
    # d = 12 >= pool size: Gram path (ragged and complete layouts); d = 5: the d x d path.
    # k = 1: every model's leave-one-out takes vendi_loo (d = 3: pools wider than d).
    rs = synthetic_study(rng, n_models=4, n_prompts=6, k=k, d=d)
    if ragged:
        rs = rs.subset(rng.random(rs.n) > 0.3)
    idx = index_cells(rs.model, rs.prompt, 4, 6, rs.sample)
    grp = np.array([True, True, False, False])
    vr = voices_analysis(rs.X, idx, {"g": grp}, q=2.0, n_random=100)
    assert_matches_direct(rs, vr, 4, 6, grp, 2.0)
    assert vr.baseline_draws[2] == 6  # all 6 pairs of 4 models (exact, since 6 <= 100 draws)


def test_prompts_sharing_a_layout_and_stragglers_agree_with_direct_computation(rng):
    # 20 complete prompts, 20 without model 1 (two shared layouts, fast path) and 8 ragged
    # stragglers (gathered one by one), all in one study.
    rs = synthetic_study(rng, n_models=5, n_prompts=48, k=2, d=16)
    drop = ((rs.prompt >= 20) & (rs.prompt < 40) & (rs.model == 1)) | ((rs.prompt >= 40) & (rng.random(rs.n) < 0.4))
    rs = rs.subset(~drop)
    idx = index_cells(rs.model, rs.prompt, 5, 48, rs.sample)
    grp = np.array([True, False, True, False, False])
    vr = voices_analysis(rs.X, idx, {"g": grp}, n_random=100)
    assert_matches_direct(rs, vr, 5, 48, grp, 1.0)


def test_own_range(rng):
    rs = synthetic_study(rng, n_models=2, n_prompts=3, k=4, d=8)
    rs = rs.subset(~((rs.model == 1) & (rs.prompt == 2) & (rs.sample > 0)))  # k = 1 there
    idx = index_cells(rs.model, rs.prompt, 2, 3, rs.sample)
    V = own_range(rs.X, idx)
    assert np.isnan(V[2, 1])
    sel = (rs.model == 0) & (rs.prompt == 1)
    assert V[1, 0] == pytest.approx(vendi_score(rs.X[sel]), abs=1e-12)


def test_loo_of_duplicate_is_negative_and_of_distinct_positive(rng):
    n_prompts, d = 25, 32
    topic = rng.standard_normal((n_prompts, d))
    base = [topic + 1.5 * rng.standard_normal((n_prompts, d)) for _ in range(3)]
    dup = base[0].copy()  # model 3 answers exactly as model 0
    X = unit(np.concatenate(base + [dup]))
    rs = ResponseSet(
        X=X,
        model=np.repeat(np.arange(4), n_prompts),
        prompt=np.tile(np.arange(n_prompts), 4),
        model_names=["a", "b", "c", "copy_of_a"],
        prompt_ids=[str(i) for i in range(n_prompts)],
    )
    idx = index_cells(rs.model, rs.prompt, 4, n_prompts)
    vr = voices_analysis(rs.X, idx)
    L = np.nanmean(vr.loo, axis=0)
    assert L[3] < 0 and L[0] < 0  # removing either twin raises what is left
    assert L[1] > 0 and L[2] > 0  # the distinct models bring a voice nobody else has
    assert (vr.loo[:, 3] < 0).all()


def test_random_groups_are_seeded_and_sized():
    a = random_groups(10, 3, 20, seed=5)
    b = random_groups(10, 3, 20, seed=5)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (20, 10) and (a.sum(axis=1) == 3).all()
    assert random_groups(4, 2, 20).shape == (6, 4)  # enumerated exactly
