"""Validation on real data: NoveltyBench sample generations and the benchmark's own partitions.

Each file holds, for 100 prompts, 10 generations (8 for humans) and the benchmark's classes
(from a fine-tuned DeBERTa judge). Our partition uses a cheap embedder computed here
(TF-IDF character n-grams + truncated SVD, calibrated), with tau calibrated on the benchmark's
pairs. The check is that it ranks the five sources as the benchmark does; the per-prompt
Spearman correlation is printed for the report. Texts are cut to 600 characters: the
benchmark's judge reads 128 tokens of each text, and the cut keeps this test fast.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from monoculture.metrics import ResponseSet, calibrate, calibrate_tau, index_cells, measure_all, partition_responses
from monoculture.metrics.partition import labelled_pairs

SOURCES = ["gpt-4o", "gpt-4o-in-context", "gpt-4o-paraphrase", "gpt-4o-system-prompt", "humans"]


@functools.lru_cache(maxsize=1)
def _embed(samples: str):
    """Load and embed once per session; both tests read the same embedding."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts, src, pid, samp, lab = [], [], [], [], []
    for s in SOURCES:
        for line in (Path(samples) / f"{s}.jsonl").read_text().splitlines():
            r = json.loads(line)
            assert len(r["generations"]) == len(r["partition"])
            for i, (g, c) in enumerate(zip(r["generations"], r["partition"])):
                texts.append(g)
                src.append(s)
                pid.append(r["id"])
                samp.append(i)
                lab.append(c)
    tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=2, dtype=np.float32)
    Z = TruncatedSVD(128, n_iter=2, random_state=0).fit_transform(tfidf.fit_transform([t[:600] for t in texts]))
    X, mu, zero = calibrate(Z)
    assert not zero.any()
    rs = ResponseSet.from_labels(X, src, pid, texts, samp)
    assert rs.model_names == SOURCES
    idx = index_cells(rs.model, rs.prompt, len(SOURCES), len(rs.prompt_ids), rs.sample)
    labels = np.asarray(lab)
    theirs = np.zeros(idx.counts.shape)
    np.maximum.at(theirs, (rs.prompt, rs.model), labels + 1)  # classes = max(partition) + 1
    return rs, idx, labels, theirs


@pytest.fixture
def novelty(shared_data):
    """shared_data (tests/conftest.py) skips, saying why, when ../shared/data is absent."""
    samples = shared_data / "noveltybench" / "sample_data"
    missing = [s for s in SOURCES if not (samples / f"{s}.jsonl").is_file()]
    if missing:
        pytest.skip(f"NoveltyBench sample_data incomplete under {samples}: missing {missing}")
    return _embed(str(samples))


def test_partition_ranks_sources_like_the_benchmark(novelty):
    from scipy.stats import spearmanr

    rs, idx, labels, theirs = novelty
    sims, same = labelled_pairs(rs.X, idx, labels)
    cal = calibrate_tau(sims, same)
    part = partition_responses(rs.X, idx, tau=cal.tau, texts=rs.texts)
    ours_ratio = np.nanmean(part.distinct / idx.counts, axis=0)
    theirs_ratio = np.mean(theirs / idx.counts, axis=0)
    rho = spearmanr(part.distinct.ravel(), theirs.ravel()).statistic
    per_source = [spearmanr(part.distinct[:, m], theirs[:, m]).statistic for m in range(len(SOURCES))]
    report = (
        f"tau={cal.tau:.3f} balanced_acc={cal.balanced_accuracy:.3f} f1={cal.f1:.3f} pairs={cal.pairs} "
        f"same={cal.same_pairs}; distinct/k ours={np.round(ours_ratio, 3).tolist()} "
        f"theirs={np.round(theirs_ratio, 3).tolist()}; spearman all cells={rho:.3f} "
        f"per source={np.round(per_source, 3).tolist()}"
    )
    print("\nNoveltyBench:", report)
    assert list(np.argsort(ours_ratio)) == list(np.argsort(theirs_ratio)), report
    assert rho > 0.45, report
    assert cal.balanced_accuracy > 0.7, report
    # The benchmark's own reference figures: distinct = classes - 1 (mean 1.89 for gpt-4o).
    assert np.mean(theirs[:, 0] - 1) == pytest.approx(1.89, abs=0.01)


def test_pipeline_on_real_data(novelty):
    rs, idx, labels, theirs = novelty
    res = measure_all(rs, reference="humans", n_boot=200, n_perm=99, pairwise=None, lexical=False)
    pm = res.per_model
    # Humans range widest on their own, plain sampling of one model the narrowest.
    assert pm["own_range"].idxmax() == "humans" and pm["own_range"].idxmin() == "gpt-4o"
    assert pm["W"].idxmax() == "gpt-4o"
    assert abs(res.headline["off_prompt_floor"]["value"]) < 0.1
    assert res.separability.balanced_accuracy.value > res.separability.chance
    print(
        "\nNoveltyBench own range:",
        pm["own_range"].round(2).to_dict(),
        "W:",
        pm["W"].round(3).to_dict(),
        "H ratio vs humans:",
        res.headline["reference"]["ratio"],
    )
