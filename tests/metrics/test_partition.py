import numpy as np
import pytest

from monoculture.metrics import ResponseSet, calibrate_tau, index_cells, partition_responses
from monoculture.metrics.partition import labelled_pairs, normalise_words


def one_cell(X, texts=None):
    n = len(X)
    rs = ResponseSet(np.asarray(X, float), np.zeros(n, int), np.zeros(n, int), ["m"], ["p"], texts, np.arange(n))
    return rs, index_cells(rs.model, rs.prompt, 1, 1, rs.sample)


def test_first_member_rule_is_sequential():
    # a ~ b (cos .8), b ~ c (cos .8), a !~ c (cos .28): c must not join a's class through b.
    a = np.array([1.0, 0.0])
    b = np.array([0.8, 0.6])
    c = np.array([0.28, 0.96])
    rs, idx = one_cell([a, b, c, a])
    part = partition_responses(rs.X, idx, tau=0.75)
    assert part.labels.tolist() == [0, 0, 1, 0]
    assert part.distinct[0, 0] == 2
    rs, idx = one_cell([b, a, c])  # order matters: b leads and takes both a and c
    assert partition_responses(rs.X, idx, tau=0.75).labels.tolist() == [0, 0, 0]


def test_short_answer_rule_overrides_embeddings():
    X = np.eye(4)  # embeddings all different
    texts = ["Paris.", "  paris ", "PARIS!", "Lyon"]
    rs, idx = one_cell(X, texts)
    part = partition_responses(rs.X, idx, tau=0.99, texts=texts)
    assert part.labels.tolist() == [0, 0, 0, 1]
    # identical embeddings, different short words -> different answers
    rs, idx = one_cell(np.ones((2, 3)) / np.sqrt(3), ["Paris", "Lyon"])
    assert partition_responses(rs.X, idx, tau=0.5, texts=rs.texts).distinct[0, 0] == 2
    # a long answer is compared by embedding even if its words differ
    long = ["the capital of France is Paris, of course", "Paris is the capital city of France, certainly"]
    rs, idx = one_cell(np.ones((2, 3)) / np.sqrt(3), long)
    assert partition_responses(rs.X, idx, tau=0.5, texts=long).distinct[0, 0] == 1
    assert normalise_words(" Hello,  World! ") == ("hello", "world")


def test_many_cells_and_callable_equivalence():
    rng = np.random.default_rng(0)
    texts, models, prompts, samples = [], [], [], []
    expected = {}
    for m in range(3):
        for p in range(4):
            answers = rng.integers(0, 3, size=5)
            for s, a in enumerate(answers):
                texts.append(f"answer number {a} written out in many words here")
                models.append(m)
                prompts.append(p)
                samples.append(s)
            expected[(p, m)] = len(set(answers.tolist()))
    n = len(texts)
    X = rng.standard_normal((n, 6))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    rs = ResponseSet(X, np.array(models), np.array(prompts), ["a", "b", "c"], list("wxyz"), texts, np.array(samples))
    idx = index_cells(rs.model, rs.prompt, 3, 4, rs.sample)
    calls = []

    def same_number(x, y):
        calls.append((x, y))
        return x.split()[2] == y.split()[2]

    part = partition_responses(rs.X, idx, texts=texts, equivalent=same_number)
    for (p, m), k in expected.items():
        assert part.distinct[p, m] == k
    assert len(calls) < 12 * 10  # only leaders are compared, never all pairs
    # Cosine route on embeddings that encode the answer exactly.
    codes = np.array([int(t.split()[2]) for t in texts])
    rs2 = ResponseSet(np.eye(3)[codes], rs.model, rs.prompt, rs.model_names, rs.prompt_ids, texts, rs.sample)
    part2 = partition_responses(rs2.X, idx, tau=0.9)
    np.testing.assert_array_equal(part2.distinct, part.distinct)


def test_calibrate_tau_finds_the_separating_threshold():
    sims = np.array([0.95, 0.9, 0.85, 0.7, 0.6, 0.5, 0.2])
    same = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    cal = calibrate_tau(sims, same)
    assert 0.7 < cal.tau < 0.85
    assert cal.balanced_accuracy == 1.0 and cal.f1 == 1.0
    noisy = calibrate_tau(np.array([0.9, 0.8, 0.8, 0.3]), np.array([1, 0, 1, 0], bool), criterion="f1")
    assert noisy.tau < 0.8  # ties at 0.8 go together: both predicted same
    with pytest.raises(ValueError):
        calibrate_tau(sims, np.ones(7, bool))


def test_labelled_pairs_stay_within_cells():
    X = np.eye(3)[[0, 0, 1, 2, 2]]
    rs = ResponseSet(X, np.array([0, 0, 0, 1, 1]), np.zeros(5, int), ["a", "b"], ["p"])
    idx = index_cells(rs.model, rs.prompt, 2, 1)
    sims, same = labelled_pairs(rs.X, idx, np.array([0, 0, 1, 0, 0]))
    assert sorted(zip(sims.tolist(), same.tolist())) == [(0.0, False), (0.0, False), (1.0, True), (1.0, True)]
