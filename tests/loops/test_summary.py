"""The loop summary end to end: chains written to a real store, read back, scored, measured;
and ``monoculture loop summary`` (--json shape, the table, bad input)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clihelp import RUNNER, mc
from monoculture.loops.scorers import Scorer
from monoculture.loops.summary import loop_summary
from monoculture.loops.tables import Chain, register_chains, step_key, write_steps
from monoculture.store import Store

WORDS = "sun river stone light dream city night garden window story road field".split()
STEPS = 12
DYNAMICS = {"slowpoke": (60.0, 0.9), "quick": (200.0, 0.5)}  # length_{t+1} = a + b length_t + noise


def _text(n: int, rng, tag: bool) -> str:
    """A text of exactly ``n`` characters once its hashtag (if any) is removed."""
    words = " ".join(rng.choice(WORDS, size=n // 3 + 2))
    body = (words + " " * n)[:n]
    return body + " #loop" if tag else body


def write_chains(path, *, seeds=(80, 200, 400, 700, 1000), reps=4, short=(), study="s", rng_seed=0):
    """Chains whose lengths follow known dynamics, written as a runner would write them."""
    rng = np.random.default_rng(rng_seed)
    chains, rows = [], []
    for model, (a, b) in DYNAMICS.items():
        for si, x0 in enumerate(seeds):
            for r in range(reps):
                seed_text = _text(x0, np.random.default_rng(si), tag=False)
                c = Chain(
                    kind="text",
                    task="rephrase",
                    instruction="Rephrase:",
                    seed_id=f"seed{si}",
                    seed_text=seed_text,
                    models=[model],
                    identities=[model],
                    replicate=r,
                    steps=STEPS,
                )
                chains.append(c)
                prev, prev_key, n = seed_text, "", float(x0)
                last = 5 if (model, si, r) in short else STEPS
                for t in range(1, last + 1):
                    n = max(3.0, a + b * n + rng.normal(0, 8))
                    txt = _text(int(round(n)), rng, tag=t % 3 == 0)
                    key = step_key(c.chain_id, t, prev)
                    rows.append(
                        {"key": key, "chain_id": c.chain_id, "step": t, "model": model, "input_key": prev_key, "text": txt}
                    )
                    prev, prev_key = txt, key
    with Store(path) as st:
        register_chains(st, study, chains)
        write_steps(st, rows)
    return chains


class Counting(Scorer):
    name = "counting"
    bounds = (0.0, float("inf"))
    version = "test"

    def __init__(self):
        self.seen: list[str] = []

    def score(self, texts):
        self.seen.extend(texts)
        return np.array([float(len(t)) for t in texts])


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("loops") / "s.duckdb"
    write_chains(path, short={("quick", 0, 0)})
    return path


@pytest.fixture(scope="module")
def summary(store_path):
    counting = Counting()
    with Store(store_path) as st:
        s = loop_summary(st, "s", scorers=["length", "positivity", "difficulty", counting], bootstrap=300, permutations=199)
    s["_seen"] = counting.seen
    return s


def test_summary_has_every_key_and_is_json_safe(summary):
    seen = summary.pop("_seen")
    json.dumps(summary, allow_nan=False)  # no NaN, no numpy types
    summary["_seen"] = seen
    for key in ("chains", "labels", "scorers", "x_from", "attractors", "paired", "trajectories", "drift", "convergence"):
        assert key in summary
    for key in ("diversity", "lexical", "motifs", "images", "notes", "methods"):
        assert key in summary
    assert summary["chains"] == 40 and summary["x_from"] == "seed"
    labels = {(r["label"], r["task"]): r for r in summary["labels"]}
    assert labels[("quick", "rephrase")] == {"label": "quick", "task": "rephrase", "chains": 20, "steps_min": 5, "steps_max": 12}
    assert {s["name"] for s in summary["scorers"]} == {"length", "positivity", "difficulty", "counting"}
    assert next(s for s in summary["scorers"] if s["name"] == "difficulty")["version"].startswith("textstat 0.7.3")
    assert "f(x_0), the seed text" in summary["methods"]


def test_each_text_is_scored_once(summary):
    seen = summary["_seen"]
    assert len(seen) == len(set(seen))  # 40 chains x 13 texts, seeds shared by replicates: each distinct text once
    assert len(seen) == 5 + 40 * STEPS - 7


def test_length_attractors_recover_the_dynamics(summary):
    rows = [r for r in summary["attractors"] if r["property"] == "length"]
    assert {(r["model"], r["at"]) for r in rows} == {(m, at) for m in DYNAMICS for at in ("final", "step 10")}
    for r in rows:
        a, b = DYNAMICS[r["model"]]
        assert set(r) >= {"model", "task", "property", "step", "strength", "position", "ci", "position_ci", "slope", "intercept"}
        # (coverage of the intervals over many simulations is test_attractors' job; one store here)
        assert r["slope"] == pytest.approx(b ** r["step"], abs=0.06), r
        assert r["strength"] == pytest.approx(1 - abs(r["slope"])) and r["ci"][0] <= r["strength"] <= r["ci"][1]
        assert r["position"] == pytest.approx(a / (1 - b), rel=0.04), r
        assert r["position_ci"][0] <= r["position"] <= r["position_ci"][1] and r["p"] < 0.001
    quick_final = next(r for r in rows if r["model"] == "quick" and r["at"] == "final")
    assert quick_final["chains"] == 19 and quick_final["excluded_short"] == 1
    assert any("quick / rephrase / length at step 12: 1 chain(s) shorter" in n for n in summary["notes"])
    counting = next(r for r in summary["attractors"] if r["property"] == "counting" and r["model"] == "slowpoke")
    length = next(r for r in rows if r["model"] == "slowpoke" and r["at"] == "final")
    # step 12 ends in " #loop": the length scorer removes the hashtag (5 characters), a plain count does not
    assert counting["slope"] == pytest.approx(length["slope"])
    assert counting["intercept"] - length["intercept"] == pytest.approx(5.0)


def test_paired_trajectories_and_embedding_measures(summary):
    pair = next(r for r in summary["paired"] if r["property"] == "length")
    assert (pair["model_a"], pair["model_b"]) == ("quick", "slowpoke")
    truth = (1 - 0.5**12) - (1 - 0.9**12)
    assert pair["ci"][0] <= truth <= pair["ci"][1] and pair["p"] < 0.05 and pair["shuffled"] == "within seed"
    traj = [r for r in summary["trajectories"] if r["property"] == "length" and r["model"] == "slowpoke"]
    assert [r["step"] for r in traj] == list(range(STEPS + 1))
    assert traj[0]["mean"] == pytest.approx(np.mean([80, 200, 400, 700, 1000]))
    assert traj[-1]["ci"][0] <= 600 <= traj[-1]["ci"][1] or abs(traj[-1]["mean"] - 600) < 100
    assert summary["embedder"].startswith("tfidf")
    assert summary["drift"] and set(summary["drift"][0]) >= {"label", "task", "step", "value", "ci"}
    assert summary["convergence"] and summary["diversity"] and summary["lexical"]
    assert summary["motifs"] is not None and summary["motifs"]["shares"]


@pytest.mark.slow  # embeds and scores the whole store again
def test_read_only_store_gives_the_same_figures(store_path, summary):
    with Store(store_path, read_only=True) as st:
        again = loop_summary(st, "s", bootstrap=300, permutations=199)
    length = [r for r in summary["attractors"] if r["property"] == "length"]
    assert [r for r in again["attractors"] if r["property"] == "length"] == length
    assert again["drift"] == summary["drift"]  # the vectors cached by the first call are read back
    assert not any("not cached" in n for n in again["notes"])


def test_x_from_first_and_empty_store(tmp_path, store_path):
    with Store(store_path, read_only=True) as st:
        first = loop_summary(st, "s", scorers=["length"], x_from="first", embedder=None, bootstrap=0, permutations=0)
    assert first["x_from"] == "first" and "f(x_1), the first generation" in first["methods"]
    assert first["drift"] == [] and first["embedder"] is None
    r = first["attractors"][0]
    assert r["ci"] == [None, None] and r["strength"] is not None
    with Store(tmp_path / "empty.duckdb") as st:
        empty = loop_summary(st, scorers=["length"], bootstrap=10)
    assert empty["chains"] == 0 and empty["attractors"] == [] and "no text chains" in empty["notes"][-1]


def test_cli_json_shape(store_path):
    from monoculture.cli import app as cli_app

    r = RUNNER.invoke(
        cli_app,
        ["loop", "summary", str(store_path), "--json", "-B", "100", "--permutations", "99", "--embedder", "none"],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert next(iter(d)) == "attractors"
    row = d["attractors"][0]
    assert set(row) >= {"model", "task", "property", "strength", "position", "ci", "p", "chains"}
    assert isinstance(row["ci"], list) and len(row["ci"]) == 2 and isinstance(row["chains"], int)


def test_cli_table_keeps_hostile_names_as_text(tmp_path):
    path = tmp_path / "h.duckdb"
    hostile = "evil[/bold]\x1b[2Jmodel"
    DYNAMICS[hostile] = (10.0, 0.5)
    try:
        write_chains(path, seeds=(50, 100, 300), reps=2)
    finally:
        del DYNAMICS[hostile]
    code, out = mc("loop", "summary", path, "-B", "50", "--permutations", "19", "--embedder", "none", "--scorers", "length")
    assert code == 0, out
    assert "evil[/bold]\\x1b[2Jmodel" in out and "\x1b[2J" not in out
    assert "strength" in out and "slowpoke" in out


def test_cli_bad_input_exits_2(tmp_path, store_path):
    code, out = mc("loop", "summary", store_path, "--x-from", "middle", "--embedder", "none")
    assert code == 2 and "x-from" in out
    code, out = mc("loop", "summary", tmp_path / "missing.duckdb")
    assert code == 2 and "no store" in out
    code, out = mc("loop", "summary", store_path, "--scorers", "length,nope")
    assert code == 2 and "unknown scorer 'nope'" in out
