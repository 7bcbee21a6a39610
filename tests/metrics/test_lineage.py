import numpy as np
import pytest
from metrics_helpers import synthetic_study

from monoculture.metrics import index_cells
from monoculture.metrics.lineage import accent_retention, group_contrast, mantel_test
from monoculture.metrics.similarity import pair_similarity, prompt_means
from monoculture.metrics.stats import resample_counts


def family_C(rng, n_fam=3, per_fam=3, fam_scale=1.0, d=20):
    fam = rng.standard_normal((n_fam, d)) * fam_scale
    voices = np.repeat(fam, per_fam, axis=0) + 0.7 * rng.standard_normal((n_fam * per_fam, d))
    rs = synthetic_study(rng, n_models=n_fam * per_fam, n_prompts=15, k=2, d=d, voices=voices)
    idx = index_cells(rs.model, rs.prompt, n_fam * per_fam, 15, rs.sample)
    C, _ = prompt_means(pair_similarity(rs.X, idx))
    return C, np.repeat(np.arange(n_fam), per_fam)


def test_detects_planted_families(rng):
    C, labels = family_C(rng)
    res = group_contrast(C, labels, n_perm=999, seed=0)
    assert res["within"] > res["between"]
    assert res["p_value"] < 0.01
    same = (labels[:, None] == labels[None, :]).astype(float)
    m = mantel_test(C, same, n_perm=999, seed=0)
    assert m["r"] > 0.3 and m["p_value"] < 0.01


def test_no_false_alarm_on_random_structure(rng):
    ps, mps = [], []
    for _ in range(20):
        C, labels = family_C(rng, fam_scale=0.0)  # no family voice at all
        labels = rng.permutation(labels)
        ps.append(group_contrast(C, labels, n_perm=199, seed=1)["p_value"])
        same = (labels[:, None] == labels[None, :]).astype(float)
        mps.append(mantel_test(C, same, n_perm=199, seed=1)["p_value"])
    assert np.mean(np.array(ps) < 0.05) <= 0.2
    assert np.mean(np.array(mps) < 0.05) <= 0.2
    assert np.median(ps) > 0.2


def test_permutation_test_is_seeded_and_skips_unlabelled(rng):
    C, labels = family_C(rng)
    labels = labels.copy()
    labels[0] = -1
    a = group_contrast(C, labels, 199, seed=3)
    b = group_contrast(C, labels, 199, seed=3)
    assert a == b and a["models"] == len(labels) - 1


def test_accent_retention(rng):
    d, P = 24, 40
    voices = rng.standard_normal((6, d))
    voices[1] = voices[0]  # model 1: a fork that kept its base's voice
    # model 2: a fork of model 0 that took a voice of its own (unrelated)
    rs = synthetic_study(rng, n_models=6, n_prompts=P, k=3, d=d, voices=voices)
    idx = index_cells(rs.model, rs.prompt, 6, P, rs.sample)
    pair = pair_similarity(rs.X, idx)
    counts = resample_counts(P, 300)
    others = np.array([3, 4, 5])
    kept = accent_retention(pair, 1, 0, others, counts)
    lost = accent_retention(pair, 2, 0, others, counts)
    assert kept.value == pytest.approx(1.0, abs=0.15)
    assert kept.lo < 1.0 < kept.hi or abs(kept.value - 1) < 0.05
    assert lost.value == pytest.approx(0.0, abs=0.2)


def test_permutation_blocks_do_not_change_the_tests(rng, monkeypatch):
    """The permutations are evaluated in blocks (memory traffic at 280 models); any block size
    gives the same p-values as one block of all permutations."""
    import monoculture.metrics.lineage as lineage

    C, labels = family_C(rng)
    same = (labels[:, None] == labels[None, :]).astype(float)
    results = []
    for block in (10**9, 37, 1):  # one block, uneven blocks, one permutation per block
        monkeypatch.setattr(lineage, "_BLOCK", block)
        results.append((group_contrast(C, labels, 199, seed=2), mantel_test(C, same, 199, seed=2)))
    for contrast, mantel in results[1:]:
        assert contrast == results[0][0]
        assert mantel == results[0][1]
