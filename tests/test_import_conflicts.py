"""Importing never silently replaces or loses data: conflicting re-imports, reused prompt ids,
broken CSV quoting, out-of-range sample indices, directories where files belong, and the
wording of the errors (issue 16, items 2, 3, 4, 9, 10, 14, 17)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from clihelp import mc, snapshot
from monoculture.store import Store


def jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def n_gens(store: Path) -> int:
    with Store(store, read_only=True) as st:
        return st.con.execute("SELECT count(*) FROM generations").fetchone()[0]


# -- 2: a conflicting re-import is an error; an identical one adds nothing and says so --------------
def test_conflicting_reimport_is_refused_naming_the_row(tmp_path):
    store = tmp_path / "s.duckdb"
    a = jsonl(tmp_path / "a.jsonl", [{"prompt": "P", "model": "m", "text": "one"}, {"prompt": "Q", "model": "m", "text": "two"}])
    assert mc("import", "jsonl", a, "--store", store)[0] == 0
    code, out = mc("import", "jsonl", a, "--store", store)
    assert code == 0 and "0 new" in out and "2 already in the store" in out, out
    before = snapshot(store)
    b = jsonl(tmp_path / "b.jsonl", [{"prompt": "Q", "model": "m", "text": "two"}, {"prompt": "P", "model": "m", "text": "ONE"}])
    code, out = mc("import", "jsonl", b, "--store", store)
    assert code == 2, out
    assert f"{b}:2" in out and "--replace" in out and "'one'" in out and "'ONE'" in out, out
    assert snapshot(store) == before
    code, out = mc("import", "jsonl", b, "--store", store, "--replace")
    assert code == 0 and "1 replaced" in out, out
    with Store(store, read_only=True) as st:
        assert sorted(st.generations()["text"]) == ["ONE", "two"]


def test_noveltybench_schemes_imported_one_at_a_time_stay_distinct(shared_data, tmp_path):
    store = tmp_path / "s.duckdb"
    folder = shared_data / "noveltybench" / "sample_data"
    for f in ("gpt-4o.jsonl", "gpt-4o-paraphrase.jsonl"):
        code, out = mc("import", "noveltybench", folder / f, "--store", store)
        assert code == 0 and "1000 new" in out, out
    with Store(store, read_only=True) as st:
        g = st.generations()
    assert len(g) == 2000
    assert set(g["model"]) == {"gpt-4o", "gpt-4o-paraphrase"}
    # the same files together give the same names
    code, out = mc("import", "noveltybench", folder, "--store", store)
    assert code == 0 and "2000 already in the store" in out, out


def test_noveltybench_model_from_model_one_at_a_time_conflicts(shared_data, tmp_path):
    store = tmp_path / "s.duckdb"
    folder = shared_data / "noveltybench" / "sample_data"
    assert mc("import", "noveltybench", folder / "gpt-4o.jsonl", "-o", "model_from=model", "--store", store)[0] == 0
    before = snapshot(store)
    code, out = mc("import", "noveltybench", folder / "gpt-4o-paraphrase.jsonl", "-o", "model_from=model", "--store", store)
    assert code == 2 and "gpt-4o-paraphrase.jsonl:1" in out and "already holds a different text" in out, out
    assert snapshot(store) == before


# -- 3: an unbalanced quote in a CSV ------------------------------------------------------------------
def test_csv_unbalanced_quote_names_the_line_it_opened(tmp_path):
    store = tmp_path / "s.duckdb"
    lines = ["prompt_id,prompt,text"] + [f"q{i},x{i},answer {i}" for i in range(99)]
    lines[2] = 'q1,x1,"he said hi'
    path = tmp_path / "broken.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out = mc("import", "csv", path, "-o", "model=m", "--store", store)
    assert code == 2 and f"{path}:3" in out and "quote" in out, out
    assert not store.exists() or n_gens(store) == 0
    # a second unbalanced quote further down closes the first: still refused, at the first
    lines[40] = 'q39,x39,"she said'
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out = mc("import", "csv", path, "-o", "model=m", "--store", store)
    assert code == 2 and f"{path}:3" in out and "quote" in out, out


def test_csv_multiline_fields_still_import(tmp_path):
    path = tmp_path / "ok.csv"
    pd.DataFrame(
        [{"prompt": "P", "model": "m", "text": 'line one\nline two\n\nline four, with "quotes"'}] * 1
        + [{"prompt": "Q", "model": "m", "text": "short"}]
    ).to_csv(path, index=False)
    code, out = mc("import", "csv", path, "--store", tmp_path / "s.duckdb")
    assert code == 0 and "2 new" in out, out


# -- 4: one prompt id for two texts; and rm ---------------------------------------------------------
def test_prompt_id_reused_within_a_file_is_refused(tmp_path):
    path = jsonl(
        tmp_path / "a.jsonl",
        [
            {"prompt_id": "q1", "prompt": "Name a colour.", "model": "m", "text": "a"},
            {"prompt_id": "q1", "prompt": "Name a fruit.", "model": "m", "text": "b"},
        ],
    )
    code, out = mc("import", "jsonl", path, "--store", tmp_path / "s.duckdb")
    assert code == 2 and "'q1'" in out and "Name a colour." in out and "Name a fruit." in out and f"{path}:2" in out, out


def test_prompt_id_reused_across_imports_is_refused(tmp_path):
    store = tmp_path / "s.duckdb"
    res = tmp_path / "set1" / "m1"
    res.mkdir(parents=True)
    (res / "model_outputs.json").write_text(json.dumps([{"instruction": "Write a poem.", "output": "o", "generator": "m1"}]))
    res2 = tmp_path / "set2" / "m2"
    res2.mkdir(parents=True)
    (res2 / "model_outputs.json").write_text(
        json.dumps([{"instruction": "Write a song " + "x" * 200, "output": "o", "generator": "m2"}])
    )
    assert mc("import", "alpaca-eval", res.parent, "--store", store)[0] == 0
    before = snapshot(store)
    code, out = mc("import", "alpaca-eval", res2.parent, "--store", store)
    assert code == 2 and "'alpaca-0'" in out and "Write a poem." in out and "Write a song" in out, out
    assert "monoculture rm" in out and len(out) < 600, out  # the long text is shortened
    assert snapshot(store) == before


# -- 9: sample indices beyond any sane range ----------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_huge_sample_index_is_a_clear_error(tmp_path, fmt):
    rows = [
        {"prompt": "P", "model": "m", "text": "a", "sample_index": 0},
        {"prompt": "P", "model": "m", "text": "b", "sample_index": 2**31},
    ]
    path = tmp_path / f"t.{fmt}"
    jsonl(path, rows) if fmt == "jsonl" else pd.DataFrame(rows).to_parquet(path)
    code, out = mc("import", fmt, path, "--store", tmp_path / "s.duckdb")
    where = f"{path}:2" if fmt == "jsonl" else f"{path} row 2"
    assert code == 2 and where in out and "sample_index" in out and "2147483648" in out, out


def test_huge_arena_hard_choice_index_is_a_clear_error(tmp_path):
    jsonl(tmp_path / "question.jsonl", [{"question_id": "q1", "turns": ["P"]}])
    ans = jsonl(tmp_path / "model_answer" / "m.jsonl", [{"question_id": "q1", "choices": [{"index": 2**40, "turns": ["t"]}]}])
    code, out = mc("import", "arena-hard", tmp_path, "--store", tmp_path / "s.duckdb")
    assert code == 2 and f"{ans}:1" in out and "index" in out, out


# -- 10 and 14: directories where files belong, a path under a file ------------------------------------
def test_directories_where_files_are_expected(tmp_path):
    store = tmp_path / "s.duckdb"
    d = tmp_path / "adir.yaml"
    d.mkdir()
    jsonl(tmp_path / "bench" / "model_answer" / "m.jsonl", [{"question_id": "q1", "choices": [{"index": 0, "turns": ["t"]}]}])
    jsonl(tmp_path / "seed.jsonl", [{"prompt": "P", "model": "m", "text": "t"}])
    assert mc("import", "jsonl", tmp_path / "seed.jsonl", "--store", store)[0] == 0
    before = snapshot(store)
    suite_dir = tmp_path / "suite.jsonl"
    suite_dir.mkdir()
    study = tmp_path / "study.yaml"
    study.write_text(
        f"name: s\nstore: {tmp_path / 'other.duckdb'}\nmodels:\n  - {{name: m, backend: openai, model: x, params: {{base_url: 'http://127.0.0.1:9/v1', api_key_env: none}}}}\nsuites:\n  - name: {suite_dir}\n"
    )
    cases = [
        ("import", "arena-hard", tmp_path / "bench", "-o", f"questions={d}", "--store", store),
        ("run", d),
        ("ls", d),
        ("attributes", "--store", store, "--file", d),
        ("ecosystem", "alerts", "--registry", d, "--store", store),
        ("run", study),
    ]
    for args in cases:
        code, out = mc(*args)
        named = suite_dir if args == ("run", study) else d
        assert code == 2 and "is a directory" in out and str(named) in out, (args, out)
    assert snapshot(store) == before
    assert not (tmp_path / "other.duckdb").exists()  # the rejected suite left no store behind


def test_export_under_a_file_is_a_clear_error(tmp_path):
    store = tmp_path / "s.duckdb"
    jsonl(tmp_path / "seed.jsonl", [{"prompt": "P", "model": "m", "text": "t"}])
    assert mc("import", "jsonl", tmp_path / "seed.jsonl", "--store", store)[0] == 0
    afile = tmp_path / "afile"
    afile.write_text("x")
    for fmt in ("parquet", "jsonl"):
        code, out = mc("export", afile / f"x.{fmt}", "-f", fmt, "--store", store)
        assert code == 2 and str(afile) in out and "not a folder" in out, out


# -- 17: wording -------------------------------------------------------------------------------------
def test_error_wordings(tmp_path):
    rows = [
        {"prompt": "P", "model": "m", "text": "a", "sample_index": 1},
        {"prompt": "P", "model": "m", "text": "b", "sample_index": 1},
    ]
    code, out = mc("import", "jsonl", jsonl(tmp_path / "d.jsonl", rows))
    assert code == 2 and "add a sample_index column" not in out and "sample_index" in out, out
    rows = [{"prompt": "P", "model": "m", "text": "a"}] * 2
    with Store(tmp_path / "s.duckdb"):
        pass
    bad = tmp_path / "u.jsonl"
    bad.write_text('{"prompt": "P", "model": "m", "text": "unterminated}\n')
    code, out = mc("import", "jsonl", bad, "--store", tmp_path / "s.duckdb")
    assert code == 2 and "at at" not in out and "Unterminated string starting at column" in out, out
    nan = tmp_path / "n.jsonl"
    nan.write_text('{"prompt": "P", "model": "m", "text": NaN}\n')
    code, out = mc("import", "jsonl", nan, "--store", tmp_path / "s.duckdb")
    assert code == 2 and "got NaN" in out and "null" not in out, out
    csvf = tmp_path / "c.csv"
    csvf.write_text("prompt,model,text\nP,m,t\n")
    code, out = mc("import", "csv", csvf, "-o", "bogus=1", "--store", tmp_path / "s.duckdb")
    assert code == 2 and "delimiter" in out, out
    code, out = mc("import", "--help")
    assert "delimiter" in out


# -- issue 10 section 1: a group column for the generic importers ------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_group_column_is_stored_as_the_prompts_group(tmp_path, fmt):
    store = tmp_path / "s.duckdb"
    rows = [
        {"prompt": "Hello?", "model": "m", "text": "a", "topic": "greet"},
        {"prompt": "Bonjour ?", "model": "m", "text": "b", "topic": "greet"},
        {"prompt": "Why?", "model": "m", "text": "c", "topic": ""},
    ]
    path = tmp_path / f"g.{fmt}"
    if fmt == "jsonl":
        jsonl(path, rows)
    elif fmt == "csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_parquet(path)
    code, out = mc("import", fmt, path, "--map", "group=topic", "--store", store)
    assert code == 0, out
    with Store(store, read_only=True) as st:
        got = dict(st.con.execute("SELECT text, group_id FROM prompts").fetchall())
    assert got == {"Hello?": "greet", "Bonjour ?": "greet", "Why?": None}


def test_group_conflicts_are_refused_and_replace_regroups(tmp_path):
    store = tmp_path / "s.duckdb"
    two = jsonl(
        tmp_path / "two.jsonl",
        [{"prompt": "P", "model": "m", "text": "a", "group": "g1"}, {"prompt": "P", "model": "n", "text": "b", "group": "g2"}],
    )
    code, out = mc("import", "jsonl", two, "--store", store)
    assert code == 2 and f"{two}:2" in out and "'g1'" in out and "'g2'" in out, out
    one = jsonl(tmp_path / "one.jsonl", [{"prompt": "P", "model": "m", "text": "a", "group": "g1"}])
    assert mc("import", "jsonl", one, "--store", store)[0] == 0
    other = jsonl(tmp_path / "other.jsonl", [{"prompt": "P", "model": "n", "text": "b", "group": "g2"}])
    before = snapshot(store)
    code, out = mc("import", "jsonl", other, "--store", store)
    assert code == 2 and "'g1'" in out and "--replace" in out, out
    assert snapshot(store) == before
    assert mc("import", "jsonl", other, "--store", store, "--replace")[0] == 0
    with Store(store, read_only=True) as st:
        assert st.con.execute("SELECT group_id FROM prompts").fetchall() == [("g2",)]
