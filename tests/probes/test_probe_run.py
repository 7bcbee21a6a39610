"""Probing real backends: a tiny local transformers model on both methods, and the local
OpenAI-compatible server returning logprobs; resumability and failure handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from probe_helpers import write_study

from monoculture.errors import UserError
from monoculture.probes import store as pstore
from monoculture.probes.items import answer_prefix, load_items, render_messages
from monoculture.probes.parser import OUTCOMES
from monoculture.probes.runner import logprobs_to_distribution, run_probe
from monoculture.store import Store
from monoculture.study import load_study


def openai_model(server, name="fake", **params):
    return {
        "name": name,
        "backend": "openai",
        "model": "fake",
        "params": {"base_url": server.base_url, "api_key_env": None, "max_retries": 0, **params},
    }


def test_openai_server_logprobs_become_distributions(tmp_path, fake_server, small_suite):
    server = fake_server(top_logprobs={"A": 0.6, "B": 0.3, "C": 0.1})
    study = load_study(write_study(tmp_path / "s.yaml", [openai_model(server)]))
    with Store(tmp_path / "s.duckdb") as st:
        stats = run_probe(study, st, suite=str(small_suite), method="logprobs", steer=["Kenya"], show_progress=False)
        assert stats.per_model["fake"].new == 12 and stats.errors == 0  # 3 questions x 2 languages x (plain + Kenya)
        df = pstore.read_distributions(st)
    assert len(df) == 12 and set(df["status"]) == {"ok"}
    for r in df.itertuples():
        want = np.zeros(r.n_options)
        want[:3] = [0.6, 0.3, 0.1]
        np.testing.assert_allclose(r.probs, want, atol=1e-9)
        assert r.option_mass == pytest.approx(1.0)
    assert sorted(df["steer"].map(lambda s: s if isinstance(s, str) else "-").unique()) == ["-", "Kenya"]

    # what went over the wire: the rendered item, the answer prefix as an assistant turn to continue
    bodies = server.requests
    assert all(b["max_tokens"] == 1 and b["logprobs"] is True and b["temperature"] == 0 for b in bodies)
    assert all(b.get("continue_final_message") is True for b in bodies)
    prefixes = {b["messages"][-1]["content"] for b in bodies}
    assert prefixes == {"Answer:", "答案："}
    users = [b["messages"][-2]["content"] for b in bodies]
    assert sum("Kenya" in u for u in users) == 6
    assert all(
        "\nA. " in u and u.rstrip().endswith(("Answer with the letter of one option.", "请只用一个选项的字母作答。"))
        for u in users
    )


def test_a_rerun_asks_only_for_what_is_missing(tmp_path, fake_server, small_suite):
    server = fake_server()
    study = load_study(write_study(tmp_path / "s.yaml", [openai_model(server)]))
    with Store(tmp_path / "s.duckdb") as st:
        run_probe(study, st, suite=str(small_suite), show_progress=False)
        server.reset_counts()
        again = run_probe(study, st, suite=str(small_suite), show_progress=False)
        assert again.per_model["fake"].new == 0 and again.per_model["fake"].already == 6
        assert server.counts["requests"] == 0
        st.con.execute("DELETE FROM probe_distributions WHERE item_id = 'val-01-zh'")
        third = run_probe(study, st, suite=str(small_suite), show_progress=False)
        assert third.per_model["fake"].new == 1 and server.counts["requests"] == 1


def test_failed_requests_are_stored_and_retried(tmp_path, fake_server, small_suite):
    bad = fake_server(fail_rate=1.0, failure_kinds=("500",))
    study = load_study(write_study(tmp_path / "s.yaml", [openai_model(bad)]))
    with Store(tmp_path / "s.duckdb") as st:
        with pytest.raises(UserError, match="first 5 log-probability requests all failed"):
            run_probe(study, st, suite=str(small_suite), show_progress=False)
        errs = st.con.execute("SELECT count(*) FROM probe_distributions WHERE status = 'error' AND error IS NOT NULL").fetchone()[
            0
        ]
        assert errs == 5
        good = fake_server()
        study = load_study(write_study(tmp_path / "s.yaml", [openai_model(good)]))  # same identity: base_url is transport
        stats = run_probe(study, st, suite=str(small_suite), show_progress=False)
        assert stats.per_model["fake"].new == 6 and stats.errors == 0
        assert set(pstore.read_distributions(st)["status"]) == {"ok"}


def test_sampled_answers_are_all_counted_even_when_none_parses(tmp_path, fake_server, small_suite):
    server = fake_server()  # answers "answer to <hash> seed <n>": never an option
    study = load_study(write_study(tmp_path / "s.yaml", [openai_model(server)]))
    with Store(tmp_path / "s.duckdb") as st:
        stats = run_probe(study, st, suite=str(small_suite), method="sample", samples=3, show_progress=False)
        ms = stats.per_model["fake"]
        assert ms.new == 18 and ms.outcomes == {"unparseable": 18}
        answers = st.con.execute("SELECT outcome, text, parser_version FROM probe_answers").df()
        assert (
            len(answers) == 18
            and set(answers["outcome"]) == {"unparseable"}
            and answers["text"].str.startswith("answer to").all()
        )
        df = pstore.read_distributions(st)
        assert set(df["status"]) == {"no_answers"} and (df["n_total"] == 3).all() and (df["n_answers"] == 0).all()
        # answers parsed by an older parser are parsed again from the stored text
        st.con.execute("UPDATE probe_answers SET parser_version = 0, outcome = 'ok', option_index = 0")
        server.reset_counts()
        run_probe(study, st, suite=str(small_suite), method="sample", samples=3, show_progress=False)
        assert server.counts["requests"] == 0
        assert st.con.execute("SELECT DISTINCT outcome, parser_version FROM probe_answers").fetchall() == [("unparseable", 1)]


def test_unknown_method_and_bad_samples_fail_before_writing(tmp_path, fake_server, small_suite):
    server = fake_server()
    study = load_study(write_study(tmp_path / "s.yaml", [openai_model(server)]))
    with Store(tmp_path / "s.duckdb") as st:
        with pytest.raises(UserError, match="unknown method"):
            run_probe(study, st, suite=str(small_suite), method="vibes", show_progress=False)
        with pytest.raises(UserError, match="at least 1"):
            run_probe(study, st, suite=str(small_suite), method="sample", samples=0, show_progress=False)
        with pytest.raises(UserError, match="no options"):
            run_probe(study, st, suite="open-ended", show_progress=False)
    assert server.counts["requests"] == 0


@pytest.mark.slow
def test_tiny_transformers_model_on_both_methods(tmp_path, tiny_qwen, small_suite):
    model = {"name": "tiny", "backend": "transformers", "model": str(tiny_qwen), "params": {"device": "cpu", "n_threads": 1}}
    study = load_study(write_study(tmp_path / "s.yaml", [model], max_tokens=6))
    with Store(tmp_path / "s.duckdb") as st:
        lp = run_probe(study, st, suite=str(small_suite), method="logprobs", show_progress=False)
        assert lp.per_model["tiny"].new == 6 and lp.errors == 0
        sm = run_probe(study, st, suite=str(small_suite), method="sample", samples=3, show_progress=False)
        ms = sm.per_model["tiny"]
        assert ms.new == 18 and ms.errors == 0
        assert sum(ms.outcomes.values()) == 18 and set(ms.outcomes) <= set(OUTCOMES)  # nothing dropped
        df = pstore.read_distributions(st)
        answers = st.con.execute("SELECT * FROM probe_answers").df()
        again = run_probe(study, st, suite=str(small_suite), method="sample", samples=3, show_progress=False)
        assert again.per_model["tiny"].new == 0

    lpd = df[df["method"] == "logprobs"]
    assert len(lpd) == 6 and set(lpd["status"]) == {"ok"}
    for r in lpd.itertuples():
        assert r.probs.sum() == pytest.approx(1.0) and (r.probs > 0).all()  # a real model gives every letter some mass
        assert 0 < r.option_mass <= 1

    # the stored distribution is the backend's own first-token distribution, renormalised
    from monoculture.backends import create_backend

    item = next(i for i in load_items(str(small_suite)) if i.id == "val-06-zh")
    with create_backend(study.models[0]) as backend:
        raw = backend.first_token_logprobs(
            render_messages(item, study.sampling), item.letters, assistant_prefix=answer_prefix(item)
        )
    want, mass = logprobs_to_distribution(raw, item.letters)
    row = lpd[lpd["item_id"] == "val-06-zh"].iloc[0]
    np.testing.assert_allclose(row["probs"], want, rtol=1e-5)
    assert row["option_mass"] == pytest.approx(mass, rel=1e-5)

    sd = df[df["method"] == "sample"]
    assert len(sd) == 6 and (sd["n_total"] == 3).all()
    for r in sd.itertuples():
        assert sum(r.outcomes.values()) == 3
        if r.n_answers:
            assert r.probs.sum() == pytest.approx(1.0)
    assert len(answers) == 18 and answers["text"].notna().all() and answers["outcome"].notna().all()
    assert not math.isnan(float(answers["parser_version"].iloc[0]))
