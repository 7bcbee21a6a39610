import numpy as np
from metrics_helpers import synthetic_study

from monoculture.metrics.separability import nearest_peers, style_separability
from monoculture.metrics.stats import resample_counts


def test_near_chance_when_labels_carry_no_style(rng):
    rs = synthetic_study(rng, n_models=3, n_prompts=40, k=3, d=16, voice_scale=1.0)
    labels = rng.permutation(rs.model)  # who "wrote" what is now unrelated to the text
    sep = style_separability(rs.X, labels, rs.prompt, 3, 40, counts=resample_counts(40, 200), seed=0)
    assert sep.chance == 1 / 3
    assert abs(sep.balanced_accuracy.value - 1 / 3) < 0.1
    off = ~np.eye(3, dtype=bool)
    assert np.all(np.abs(sep.pairwise_auc[off] - 0.5) < 0.12)


def test_high_for_clearly_different_sources(rng):
    rs = synthetic_study(rng, n_models=2, n_prompts=30, k=3, d=16, voice_scale=0.6, noise=0.5)
    sep = style_separability(rs.X, rs.model, rs.prompt, 2, 30, counts=resample_counts(30, 200), seed=0)
    assert sep.balanced_accuracy.value > 0.9
    assert sep.balanced_accuracy.lo > 0.8
    assert sep.pairwise_auc[0, 1] > 0.95 and sep.pairwise_auc[0, 1] == sep.pairwise_auc[1, 0]
    fit = style_separability(rs.X, rs.model, rs.prompt, 2, 30, pairwise="fit", seed=0)
    assert fit.pairwise_auc[0, 1] > 0.95


def test_grouped_folds_do_not_reward_topic(rng):
    # Each model answers a disjoint half of the prompts with no style at all: only topic
    # tells them apart, and prompt-grouped folds must not let the classifier use it.
    rs = synthetic_study(rng, n_models=1, n_prompts=40, k=4, d=16, voice_scale=0.0)
    labels = (rs.prompt % 2).astype(int)
    sep = style_separability(rs.X, labels, rs.prompt, 2, 40, seed=0)
    assert sep.balanced_accuracy.value < 0.75


def test_nearest_peer():
    C = np.array([[0.9, 0.5, 0.2], [0.5, 0.4, 0.3], [0.2, 0.3, np.nan]])
    W = np.diag(C)
    peer, sim, indist = nearest_peers(C, W)
    assert peer.tolist() == [1, 0, 1]
    assert sim.tolist() == [0.5, 0.5, 0.3]
    assert indist.tolist() == [False, True, False]  # model 1's peer is as close as itself
