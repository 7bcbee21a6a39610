"""`monoculture rm` and loop chains: a study takes the chains no other study uses, a model every
chain it takes part in (mixed ones too), and the stored summaries of what changed go with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from clihelp import mc, snapshot
from monoculture.loops.tables import Chain, register_chains, step_key, write_steps
from monoculture.store import Store

STEPS = 3


def chain(models: list[str], seed: str, replicate: int = 0) -> Chain:
    return Chain(
        kind="text",
        task="rephrase",
        instruction="Rephrase:",
        seed_id=seed,
        seed_text=f"the seed text {seed}",
        models=models,
        identities=models,
        order_kind="fixed" if len(models) > 1 else "single",
        replicate=replicate,
        steps=STEPS,
    )


def add(st: Store, study: str | None, chains: list[Chain]) -> None:
    register_chains(st, study, chains)
    rows = []
    for c in chains:
        prev, prev_key = c.seed_text, ""
        for t in range(1, STEPS + 1):
            model = c.models[(t - 1) % len(c.models)]
            key = step_key(c.chain_id, t, prev)
            text = f"{model} step {t} of {c.chain_id[:6]}"
            rows.append({"key": key, "chain_id": c.chain_id, "step": t, "model": model, "input_key": prev_key, "text": text})
            prev, prev_key = text, key
    write_steps(st, rows)


SHARED = chain(["m1"], "s0")  # in studies A and B
A_ONLY = [chain(["m1"], "s1"), chain(["m2"], "s0"), chain(["m1", "m2"], "s0")]
B_ONLY = [chain(["m2"], "s1")]
LOOSE = chain(["m1"], "s2")  # of no study
IMPORTED = chain(["ext"], "s0", replicate=1)  # study "tg": no studies row, model "ext" in no models row


@pytest.fixture
def store(tmp_path) -> Path:
    path = tmp_path / "l.duckdb"
    with Store(path) as st:
        st.con.execute("INSERT INTO models (name) VALUES ('m1'), ('m2')")
        st.register_study("A", None, {}, ["m1", "m2"], [])
        st.register_study("B", None, {}, ["m1", "m2"], [])
        add(st, "A", [SHARED, *A_ONLY])
        add(st, "B", [SHARED, *B_ONLY])
        add(st, None, [LOOSE])
        add(st, "tg", [IMPORTED])
        for study in ("A", "B", None, "tg"):
            st.con.execute("INSERT INTO loop_summaries VALUES (?, ?, '{}', '{}', 0)", [f"d-{study}", study])
    return path


def state(path: Path) -> dict:
    with Store(path, read_only=True) as st:
        q = st.con.execute
        return {
            "chains": {c for (c,) in q("SELECT chain_id FROM loop_chains").fetchall()},
            "links": set(q("SELECT study, chain_id FROM study_loop_chains").fetchall()),
            "step_chains": {c for (c,) in q("SELECT DISTINCT chain_id FROM loop_steps").fetchall()},
            "steps": q("SELECT count(*) FROM loop_steps").fetchone()[0],
            "summaries": {s for (s,) in q("SELECT study FROM loop_summaries").fetchall()},
            "models": {m for (m,) in q("SELECT name FROM models").fetchall()},
            "studies": {s for (s,) in q("SELECT name FROM studies").fetchall()},
        }


def ids(chains) -> set[str]:
    return {c.chain_id for c in chains}


def test_rm_study_takes_the_chains_only_it_uses(store):
    before = snapshot(store)
    code, out = mc("rm", "--study", "A", "--store", store, "--dry-run")
    assert code == 0 and "would remove 0 generations, 0 models, 0 prompts, 1 studies, 3 loop chains (9 steps)" in out, out
    assert snapshot(store) == before
    code, out = mc("rm", "--study", "A", "--store", store)
    assert code == 0 and "removed 0 generations, 0 models, 0 prompts, 1 studies, 3 loop chains (9 steps)" in out, out
    s = state(store)
    assert s["chains"] == s["step_chains"] == ids([SHARED, *B_ONLY, LOOSE, IMPORTED])  # the shared chain stays, in B
    assert ("A", SHARED.chain_id) not in s["links"] and ("B", SHARED.chain_id) in s["links"]
    assert s["summaries"] == {"B", "tg"}  # A's and the whole store's summaries held A's chains
    assert s["models"] == {"m1", "m2"} and s["studies"] == {"B"}

    code, out = mc("rm", "--study", "B", "--store", store)
    assert code == 0 and "1 models, 0 prompts, 1 studies, 2 loop chains (6 steps)" in out, out
    s = state(store)
    # m2 has nothing left; m1 still runs the chain of no study, so it stays
    assert s["models"] == {"m1"} and s["chains"] == ids([LOOSE, IMPORTED]) and s["studies"] == set()


def test_rm_model_takes_every_chain_it_takes_part_in(store):
    code, out = mc("rm", "--model", "m2", "--store", store)
    assert code == 0 and "removed 0 generations, 1 models, 0 prompts, 0 studies, 3 loop chains (9 steps)" in out, out
    s = state(store)
    assert s["chains"] == s["step_chains"] == ids([SHARED, A_ONLY[0], LOOSE, IMPORTED])  # the mixed chain went too
    assert all(c in s["chains"] for _, c in s["links"])
    assert s["summaries"] == {"tg"} and s["models"] == {"m1"} and s["studies"] == {"A", "B"}


def test_names_only_loop_chains_know(store):
    """An imported study (chains, no studies row) and its model (named in chains only) can be
    removed by name; an unknown name is still an error that changes nothing."""
    before = snapshot(store)
    code, out = mc("rm", "--model", "nobody", "--store", store)
    assert code == 2 and "nobody" in out and snapshot(store) == before
    code, out = mc("rm", "--study", "tg", "--store", store, "--dry-run")
    assert code == 0 and "0 studies, 1 loop chains (3 steps)" in out, out
    code, out = mc("rm", "--model", "ext", "--store", store)
    assert code == 0 and "1 loop chains (3 steps)" in out, out
    s = state(store)
    assert IMPORTED.chain_id not in s["chains"] and "tg" not in s["summaries"] and "A" in s["summaries"]
    code, out = mc("rm", "--study", "tg", "--store", store)
    assert code == 2 and "no study named 'tg'" in out


def test_rm_prompt_leaves_loop_chains_alone(tmp_path):
    from monoculture.importers import Imported, import_records

    path = tmp_path / "p.duckdb"
    with Store(path) as st:
        import_records(st, [Imported("m1", "p", "P", "an answer")], "jsonl")
        add(st, "A", [SHARED])
    code, out = mc("rm", "--prompt", "p", "--store", path)
    assert code == 0 and "removed 1 generations, 0 models, 1 prompts" in out and "loop chains" not in out, out
    assert state(path)["chains"] == {SHARED.chain_id} and state(path)["models"] == {"m1"}
