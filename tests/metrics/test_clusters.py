"""Prompt clusters (METRICS.md, "Uncertainty"): translations of one prompt are one unit.

The bootstrap resamples whole clusters and separability folds never split one; without
that, seven translations count as seven independent prompts (intervals too narrow) and a
classifier can learn a model's answer to a topic in one language and recognise it in another.
"""

import numpy as np
import pytest
from metrics_helpers import synthetic_study, unit

from monoculture.metrics import MetricsInputError, ResponseSet, measure_all

FAST = dict(n_perm=49, lexical=False)


def translated(rs: ResponseSet, copies: int, clustered: bool) -> ResponseSet:
    """Each prompt of ``rs`` present ``copies`` times with the very same answers."""
    P = len(rs.prompt_ids)
    X = np.concatenate([rs.X] * copies)
    model = np.concatenate([rs.model] * copies)
    prompt = np.concatenate([rs.prompt * copies + j for j in range(copies)])
    sample = np.concatenate([rs.sample] * copies)
    ids = [f"{rs.prompt_ids[p]}-{j}" for p in range(P) for j in range(copies)]
    clusters = [rs.prompt_ids[p] for p in range(P) for j in range(copies)] if clustered else None
    return ResponseSet(X, model, prompt, rs.model_names, ids, sample=sample, clusters=clusters)


def v_width(rs: ResponseSet) -> float:
    v = measure_all(rs, n_boot=400, separability=False, **FAST).headline["voices"]
    return v["ci"][1] - v["ci"][0]


def test_identical_translations_do_not_narrow_the_interval(rng):
    rs = synthetic_study(rng, n_models=4, n_prompts=20, k=2, d=16, voice_scale=0.6, noise=0.8)
    alone = v_width(rs)
    clustered = v_width(translated(rs, 7, clustered=True))
    ungrouped = v_width(translated(rs, 7, clustered=False))
    assert clustered == pytest.approx(alone, rel=0.15)
    # The control: resampling the 140 prompts as if independent narrows it by about sqrt(7).
    assert ungrouped < 0.6 * alone


def multilingual_study(rng, n_models=3, n_topics=16, n_langs=5, k=2, d=64):
    """Embedding = topic + language + a voice that each model has for each topic (the same in
    every language) + noise: no style carries over from one topic to another."""
    topic = 2.0 * rng.standard_normal((n_topics, d))
    lang = 2.0 * rng.standard_normal((n_langs, d))
    voice = 1.5 * rng.standard_normal((n_models, n_topics, d))
    rows, model, prompt, sample = [], [], [], []
    for t in range(n_topics):
        for lg in range(n_langs):
            p = t * n_langs + lg
            for m in range(n_models):
                for s in range(k):
                    rows.append(topic[t] + lang[lg] + voice[m, t] + 0.3 * rng.standard_normal(d))
                    model.append(m), prompt.append(p), sample.append(s)
    ids = [f"t{t}-{lg}" for t in range(n_topics) for lg in range(n_langs)]
    groups = [f"t{t}" for t in range(n_topics) for lg in range(n_langs)]
    common = (unit(np.array(rows)), np.array(model), np.array(prompt), [f"m{i}" for i in range(n_models)], ids)
    return (ResponseSet(*common, sample=np.array(sample), clusters=groups), ResponseSet(*common, sample=np.array(sample)))


def test_separability_folded_by_cluster_cannot_win_by_topic(rng):
    grouped, ungrouped = multilingual_study(rng)
    by_cluster = measure_all(grouped, n_boot=100, **FAST)
    by_prompt = measure_all(ungrouped, n_boot=100, **FAST)
    chance = by_cluster.separability.chance
    assert abs(by_cluster.separability.balanced_accuracy.value - chance) < 0.12
    # The ungrouped control: the same answers, folded by prompt, are "separable" because the
    # topic's other translations are in training.
    assert by_prompt.separability.balanced_accuracy.value > chance + 0.4
    assert by_cluster.settings["resampling_unit"] == "cluster (prompt group)"
    assert by_cluster.settings["clusters"] == 16
    assert by_prompt.settings["resampling_unit"] == "prompt" and by_prompt.settings["clusters"] == 80


def test_clusters_are_checked(rng):
    rs = synthetic_study(rng, n_models=2, n_prompts=4, k=2, d=8)
    with pytest.raises(MetricsInputError, match="clusters has 3 entries for 4 prompts"):
        ResponseSet(rs.X, rs.model, rs.prompt, rs.model_names, rs.prompt_ids, clusters=["a", "a", "b"])
    with pytest.raises(MetricsInputError, match="in two clusters"):
        ResponseSet.from_labels(np.eye(3), ["a", "b", "a"], ["p", "p", "q"], clusters=["x", "y", "z"])
    one = ResponseSet.from_labels(np.eye(3), ["a", "b", "a"], ["p", "p", "q"], clusters=["x", "x", "z"])
    assert one.clusters == ["x", "z"]
