"""A mixed-model loop on two tiny local transformers models (real weights, real tokenizers)."""

from __future__ import annotations

import textwrap

import pytest

from monoculture.loops.runner import prepare_loops, run_loops, step_model
from monoculture.loops.tables import read_steps
from monoculture.store import Store
from monoculture.study import load_study


@pytest.fixture(scope="module")
def tiny_pair():
    from tiny_models import cached_tiny_model

    # the shared cache (keyed by the builder's source): other tests' builds of the same models are reused
    return cached_tiny_model("qwen2", seed=1), cached_tiny_model("llama", seed=2)


@pytest.mark.slow
def test_mixed_loop_on_two_tiny_models(tmp_path, tiny_pair):
    qwen, llama = tiny_pair
    path = tmp_path / "tiny.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            name: tiny-loops
            models:
              - {{name: tiny-qwen, backend: transformers, model: "{qwen}", params: {{batch_size: 4}}}}
              - {{name: tiny-llama, backend: transformers, model: "{llama}", params: {{batch_size: 4}}}}
            sampling: {{temperature: 0.9, max_tokens: 8, seed: 5, system_prompt: "Be brief."}}
            loops:
              tasks: [rephrase]
              seed_ids: [story-short]
              steps: 3
              chains: 2
              mix: both
            """
        )
    )
    study = load_study(path)
    chains = {c.chain_id: c for c in prepare_loops(study).chains}
    assert len(chains) == 2 * 4  # 2 replicates of tiny-qwen, tiny-llama, fixed and random mixes
    with Store(study.store_path()) as st:
        res = run_loops(study, st, show_progress=False)
        frame = read_steps(st, "tiny-loops")
    assert (res.generated, res.failed, res.finished) == (24, 0, 8)
    assert set(frame["label"]) == {"tiny-qwen", "tiny-llama", "mix:fixed:tiny-qwen+tiny-llama", "mix:random:tiny-qwen+tiny-llama"}
    for cid, g in frame.groupby("chain_id"):
        c = chains[cid]
        assert list(g["step"]) == [0, 1, 2, 3]
        assert list(g["model"].iloc[1:]) == [c.models[step_model(c, t)] for t in (1, 2, 3)]
        assert all(isinstance(t, str) for t in g["text"])
    fixed = frame[frame["order_kind"] == "fixed"]
    assert set(fixed[fixed["step"] == 2]["model"]) == {"tiny-llama"}
    # replicates differ (their seeds do); a random weights model writes something at every step
    finals = frame[frame["step"] == 3].groupby("label")["text"].apply(lambda s: len(set(s)))
    assert (finals == 2).all(), finals

    # a regenerated step is the same text: delete the last step of the mixed chains (both models
    # write some of them; deleting only these keeps the rerun to one load of each model) and rerun
    mixed = [cid for cid, c in chains.items() if c.order_kind != "single"]
    with Store(study.store_path()) as st:
        before = dict(st.con.execute("SELECT key, text FROM loop_steps").fetchall())
        st.con.execute("DELETE FROM loop_steps WHERE step = 3 AND chain_id IN (SELECT unnest(?))", [mixed])
        assert st.con.execute("SELECT count(*) FROM loop_steps").fetchone()[0] == 20
        again = run_loops(study, st, show_progress=False)
        after = dict(st.con.execute("SELECT key, text FROM loop_steps").fetchall())
        assert (again.generated, again.skipped) == (4, 20)
        assert after == before
        assert run_loops(study, st, show_progress=False).generated == 0
