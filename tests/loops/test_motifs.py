"""Motifs of final texts: planted clusters found with their shares, names and representatives,
and the overlap test's direction.

The overlap test's null is that labels are exchangeable (every model's chains end in motifs
drawn from one distribution). So labels that share their motifs read a high overlap with a
large p (nothing tells them apart), and labels that end in disjoint motifs read overlap 0 with a
small p.
"""

import json

import numpy as np
import pandas as pd
import pytest

from monoculture.loops.motifs import find_motifs

D = 24
WORDS = {0: "lighthouse storm waves", 1: "cathedral gothic spire", 2: "meadow pastoral sheep"}


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _finals(plan, *, seed=0, noise=0.15, tasks=("rephrase",)):
    """``plan``: label -> list of planted motif numbers, one per chain (per task)."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(len(WORDS), D)))
    rows, X = [], []
    for task in tasks:
        for label, motifs in plan.items():
            for i, m in enumerate(motifs):
                rows.append(
                    {
                        "chain_id": f"{label}-{task}-{i}",
                        "label": label,
                        "task": task,
                        "step": 10,
                        "seed_id": f"s{i % 5}",
                        "text": f"a {WORDS[m]} text {i % 4}",
                        "planted": m,
                    }
                )
                X.append(_unit(centres[m] + noise * rng.normal(size=D)))
    return pd.DataFrame(rows), np.array(X)


def _same_partition(found, planted):
    table = pd.crosstab(found, planted)
    return ((table > 0).sum(axis=0) == 1).all() and ((table > 0).sum(axis=1) == 1).all()


def test_planted_motifs_found_with_their_shares_names_and_representatives():
    plan = {"a": [0] * 20 + [1] * 10, "b": [0] * 20 + [1] * 10, "c": [2] * 30}
    frame, X = _finals(plan)
    res = find_motifs(frame, X, seed=0, permutations=499)
    assert res.k == 3 and res.chosen_by == "silhouette" and max(res.silhouette, key=res.silhouette.get) == 3
    merged = res.assignments.merge(frame[["chain_id", "planted"]], on="chain_id")
    assert _same_partition(merged["motif"], merged["planted"])
    assert list(res.motifs["size"]) == [40, 30, 20]  # numbered by size
    assert list(res.motifs["labels"]) == [2, 1, 2] and list(res.motifs["seeds"]) == [5, 5, 5]
    assert (res.motifs["cohesion"] > 0.8).all()
    assert not {"a", "text"} & set(sum(res.motifs["words"], []))  # in every text: not distinctive
    motif_of = merged.groupby("planted")["motif"].first()
    for planted, words in WORDS.items():
        m = int(motif_of[planted])
        assert set(res.motifs.loc[m, "words"][:3]) == set(words.split())
        assert all(words in text for text in res.representatives[m]) and len(res.representatives[m]) == 3
    shares = res.shares.set_index(["label", "motif"])["share"]
    assert shares[("a", motif_of[0])] == pytest.approx(2 / 3) and shares[("a", motif_of[1])] == pytest.approx(1 / 3)
    assert shares[("c", motif_of[2])] == 1.0 and shares[("c", motif_of[0])] == 0.0
    assert res.shares.groupby("label")["share"].sum().tolist() == pytest.approx([1, 1, 1])
    pairs = {(p["a"], p["b"]): p for p in res.overlap["pairs"]}
    assert pairs[("a", "b")]["value"] == pytest.approx(1.0) and pairs[("a", "b")]["p"] > 0.5
    assert pairs[("a", "c")]["value"] == pytest.approx(0.0) and pairs[("a", "c")]["p"] <= 0.01
    assert res.overlap["value"] == pytest.approx(1 / 3) and res.overlap["p"] <= 0.01
    json.dumps(res.to_dict(), allow_nan=False)


def test_shared_motifs_read_high_overlap_and_large_p_disjoint_ones_zero_and_small_p():
    rng = np.random.default_rng(7)
    shared = {"a": list(rng.integers(0, 2, 40)), "b": list(rng.integers(0, 2, 40))}
    frame, X = _finals(shared, seed=1)
    res = find_motifs(frame, X, seed=0, permutations=999)
    assert res.k == 2
    assert res.overlap["value"] > 0.75 and res.overlap["p"] > 0.05
    assert res.overlap["null_ci"][0] <= res.overlap["value"] <= 1.0

    disjoint = {"a": [0] * 40, "b": [1] * 40}
    frame, X = _finals(disjoint, seed=1)
    res = find_motifs(frame, X, seed=0, permutations=999)
    assert res.overlap["value"] == pytest.approx(0.0) and res.overlap["p"] == pytest.approx(1 / 1000)
    assert res.overlap["null_mean"] > 0.8


def test_permutation_p_is_calibrated_under_exchangeable_labels():
    # 40 studies in which labels are assigned at random: p < 0.1 in about 4 of them, and p
    # spread over (0, 1] (a test that always read 1 would pass the first check).
    ps = []
    for s in range(40):
        rng = np.random.default_rng(100 + s)
        frame, X = _finals(
            {"a": list(rng.integers(0, 3, 15)), "b": list(rng.integers(0, 3, 15)), "c": list(rng.integers(0, 3, 15))}, seed=s
        )
        ps.append(find_motifs(frame, X, k=3, seed=s, permutations=199).overlap["p"])
    assert np.sum(np.array(ps) < 0.1) <= 10 and 0.3 < np.median(ps) < 0.7


def test_shuffles_stay_within_tasks():
    # Task decides the motif and label b ran only one task: shuffling labels across tasks would
    # call a and b different; within tasks their profiles are what the tasks make them.
    plan_a = [0] * 10
    frame1, X1 = _finals({"a": plan_a, "b": [0] * 10}, tasks=("rephrase",), seed=2)
    frame2, X2 = _finals({"a": [1] * 10}, tasks=("continue",), seed=2)
    frame, X = pd.concat([frame1, frame2], ignore_index=True), np.vstack([X1, X2])
    res = find_motifs(frame, X, seed=0, permutations=199)
    assert res.overlap["p"] == pytest.approx(1.0)  # every within-task shuffle reproduces the observed profiles
    by_task = {(r["label"], r["task"]): r for r in res.to_dict()["shares_by_task"]}
    assert by_task[("a", "continue")]["share"] == 1.0 and by_task[("a", "continue")]["total"] == 10
    assert by_task[("a", "rephrase")]["motif"] != by_task[("a", "continue")]["motif"] and len(by_task) == 3


def test_deterministic_and_edge_cases():
    frame, X = _finals({"a": [0] * 10 + [1] * 10, "b": [0] * 5 + [1] * 15})
    one = find_motifs(frame, X, seed=3, permutations=99)
    two = find_motifs(frame, X, seed=3, permutations=99)
    assert one.to_dict() == two.to_dict()
    # k given.
    assert find_motifs(frame, X, k=2, seed=0, permutations=0).chosen_by == "given"
    assert find_motifs(frame, X, k=2, seed=0, permutations=0).overlap["p"] is None
    # One label: no overlap between models, shares still there.
    solo = find_motifs(frame[frame["label"] == "a"], X[(frame["label"] == "a").to_numpy()], seed=0)
    assert solo.overlap["value"] is None and solo.shares["share"].sum() == pytest.approx(1.0)
    # Several rows per chain: the last step counts.
    early = frame.assign(step=0, text="seed text")
    both = find_motifs(pd.concat([early, frame], ignore_index=True), np.vstack([X[::-1], X]), k=2, seed=0, permutations=0)
    assert int(both.motifs["size"].sum()) == len(frame) and "seed text" not in sum(both.representatives.values(), [])
    # Fewer than three distinct vectors: one motif.
    few = find_motifs(frame.head(2), X[:2], seed=0, permutations=10)
    assert few.k == 1 and few.chosen_by.startswith("too few")
    empty = find_motifs(frame.head(0), X[:0], seed=0)
    assert empty.k == 0 and empty.to_dict()["motifs"] == []
    with pytest.raises(ValueError, match="one row per frame row"):
        find_motifs(frame, X[:-1], seed=0)
