"""`monoculture rm`: what goes with a model, a study or a prompt, and a dry run that changes
nothing (issue 16, item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clihelp import mc, snapshot
from monoculture.importers import Imported, import_records
from monoculture.store import Store
from monoculture.suites import Prompt, prompt_key


def key(text: str) -> str:
    return prompt_key((("user", text),))


@pytest.fixture
def store(tmp_path) -> Path:
    """m1 answers P, Q, R; m2 answers P, R; study s1 = {m1, m2} x {P, Q}; s2 = {m1} x {P}."""
    path = tmp_path / "s.duckdb"
    recs = [
        Imported("m1", "p", "P", "m1 on P"),
        Imported("m1", "q", "Q", "m1 on Q"),
        Imported("m1", "r", "R", "m1 on R"),
        Imported("m2", "p", "P", "m2 on P"),
        Imported("m2", "r", "R", "m2 on R"),
    ]
    with Store(path) as st:
        import_records(st, recs, "jsonl")
        st.register_study("s1", None, {}, ["m1", "m2"], [key("P"), key("Q")])
        st.register_study("s2", None, {}, ["m1"], [key("P")])
    return path


def contents(path: Path) -> tuple[set, set, set, set]:
    with Store(path, read_only=True) as st:
        c = st.con
        gens = {(m, t) for m, t in c.execute("SELECT model, text FROM generations").fetchall()}
        models = {n for (n,) in c.execute("SELECT name FROM models").fetchall()}
        prompts = {t for (t,) in c.execute("SELECT text FROM prompts").fetchall()}
        studies = {n for (n,) in c.execute("SELECT name FROM studies").fetchall()}
    return gens, models, prompts, studies


def test_dry_run_changes_nothing_and_reports_what_would_go(store):
    before = snapshot(store)
    code, out = mc("rm", "--model", "m2", "--dry-run", "--store", store)
    assert code == 0 and "would remove 2 generations, 1 models, 0 prompts, 0 studies" in out and "dry run" in out, out
    assert snapshot(store) == before
    code, out = mc("rm", "--model", "m2", "--store", store)
    assert code == 0 and "removed 2 generations, 1 models" in out, out
    gens, models, prompts, studies = contents(store)
    assert models == {"m1"} and gens == {("m1", "m1 on P"), ("m1", "m1 on Q"), ("m1", "m1 on R")}
    assert prompts == {"P", "Q", "R"} and studies == {"s1", "s2"}
    with Store(store, read_only=True) as st:
        assert st.con.execute("SELECT model FROM study_models WHERE study = 's1'").fetchall() == [("m1",)]


def test_rm_study_keeps_what_another_study_or_import_needs(store):
    for dry in (True, False):
        code, out = mc("rm", "--study", "s1", "--store", store, *(["--dry-run"] if dry else []))
        # s1's own cells: m1 on Q, m2 on P (m1 on P is s2's too); m2 still answers R, so it stays
        assert code == 0 and "2 generations, 0 models, 1 prompts, 1 studies" in out, out
    gens, models, prompts, studies = contents(store)
    assert gens == {("m1", "m1 on P"), ("m1", "m1 on R"), ("m2", "m2 on R")}
    assert studies == {"s2"} and models == {"m1", "m2"}
    assert prompts == {"P", "R"}  # Q: in no study now, and no generation uses it
    code, out = mc("rm", "--study", "s2", "--store", store)
    assert code == 0 and "1 generations" in out
    assert contents(store)[0] == {("m1", "m1 on R"), ("m2", "m2 on R")}


def test_rm_prompt_removes_every_prompt_with_that_id(store):
    with Store(store) as st:  # the state issue 16.4 left stores in: one id, two prompts
        st.upsert_prompts([Prompt(id="p", messages=(("user", "P, reworded"),), suite="x")])
    code, out = mc("rm", "--prompt", "p", "--store", store)
    assert code == 0 and "removed 2 generations, 0 models, 2 prompts" in out, out
    gens, _, prompts, _ = contents(store)
    assert prompts == {"Q", "R"} and ("m1", "m1 on P") not in gens
    with Store(store, read_only=True) as st:
        assert st.con.execute("SELECT count(*) FROM study_prompts WHERE prompt_key = ?", [key("P")]).fetchone()[0] == 0


def test_rm_orphaned_import_model_goes_with_its_last_prompt(tmp_path):
    path = tmp_path / "s.duckdb"
    with Store(path) as st:
        import_records(st, [Imported("solo", "z", "Z", "only answer"), Imported("m", "y", "Y", "a")], "jsonl")
    code, out = mc("rm", "--prompt", "z", "--store", path)
    assert code == 0 and "1 generations, 1 models, 1 prompts" in out and "solo" in out, out


@pytest.mark.parametrize("args", [["--model", "nope"], ["--study", "nope"], ["--prompt", "nope"], []])
def test_rm_bad_names_are_errors_and_change_nothing(store, args):
    before = snapshot(store)
    code, out = mc("rm", *args, "--store", store)
    assert code == 2 and ("nope" in out or "name what to remove" in out), out
    assert snapshot(store) == before


def test_rm_then_reimport_with_the_fixed_ids(tmp_path):
    """The way out of issue 16.4: remove the clashing prompt, import the corrected file."""
    path = tmp_path / "s.duckdb"
    a = tmp_path / "a.jsonl"
    a.write_text(json.dumps({"prompt_id": "alpaca-0", "prompt": "Old set", "model": "m", "text": "t"}) + "\n")
    b = tmp_path / "b.jsonl"
    b.write_text(json.dumps({"prompt_id": "alpaca-0", "prompt": "New set", "model": "n", "text": "t"}) + "\n")
    assert mc("import", "jsonl", a, "--store", path)[0] == 0
    assert mc("import", "jsonl", b, "--store", path)[0] == 2
    assert mc("rm", "--prompt", "alpaca-0", "--store", path)[0] == 0
    code, out = mc("import", "jsonl", b, "--store", path)
    assert code == 0 and "1 new" in out, out
    assert contents(path)[1] == {"n"}
