"""The loop tables: chain identity, step keys, resume prefix, the long frame."""

from monoculture.loops.tables import Chain, chain_progress, read_chains, read_steps, register_chains, step_key, write_steps
from monoculture.store import Store


def _chain(**kw):
    base = dict(
        kind="text",
        task="rephrase",
        instruction="Rephrase:",
        seed_id="s1",
        seed_text="Once upon a time.",
        models=["a"],
        identities=[{"m": "a"}],
    )
    base.update(kw)
    return Chain(**base)


def test_identity_ignores_length_and_study(tmp_path):
    assert _chain(steps=10).chain_id == _chain(steps=50).chain_id
    assert _chain().chain_id != _chain(replicate=1).chain_id
    assert _chain(models=["a", "b"], identities=[1, 2], order_kind="fixed").label == "mix:fixed:a+b"
    with Store(tmp_path / "s.duckdb") as st:
        register_chains(st, "one", [_chain(steps=10)])
        register_chains(st, "two", [_chain(steps=50)])
        df = read_chains(st)
        assert sorted(df["study"]) == ["one", "two"] and set(df["steps"]) == {50}
        assert df["models"].iloc[0] == ["a"]


def test_prefix_stops_at_failure_and_stale_steps(tmp_path):
    c = _chain()
    cid = c.chain_id
    k1 = step_key(cid, 1, c.seed_text)
    k2 = step_key(cid, 2, "t1")
    k3 = step_key(cid, 3, "t2")
    stale = step_key(cid, 2, "old t1")
    with Store(tmp_path / "s.duckdb") as st:
        register_chains(st, "one", [c])
        write_steps(
            st,
            [
                {"key": k1, "chain_id": cid, "step": 1, "model": "a", "input_key": "", "text": "t1"},
                {"key": stale, "chain_id": cid, "step": 2, "model": "a", "input_key": "gone", "text": "stale"},
                {"key": k2, "chain_id": cid, "step": 2, "model": "a", "input_key": k1, "text": "t2"},
                {"key": k3, "chain_id": cid, "step": 3, "model": "a", "input_key": k2, "text": None, "error": "boom"},
            ],
        )
        assert [s["text"] for s in chain_progress(st, [cid])[cid]] == ["t1", "t2"]
        frame = read_steps(st, "one")
        assert list(frame["step"]) == [0, 1, 2] and list(frame["text"]) == ["Once upon a time.", "t1", "t2"]
        assert list(frame["key"]) == ["", k1, k2]  # the step rows' keys; the seed has none
        write_steps(st, [{"key": k3, "chain_id": cid, "step": 3, "model": "a", "input_key": k2, "text": "t3"}])
        assert read_steps(st)["text"].iloc[-1] == "t3"
        assert st.con.execute("SELECT attempts FROM loop_steps WHERE key = ?", [k3]).fetchone()[0] == 2
        other = _chain(seed_id="s2", seed_text="Elsewhere.")
        register_chains(st, "one", [other])
        assert list(read_steps(st, "one", chain_ids=[cid])["text"]) == ["Once upon a time.", "t1", "t2", "t3"]
        assert list(read_steps(st, "one", chain_ids=[other.chain_id])["key"]) == [""]
        assert read_steps(st, "one", chain_ids=[]).empty
