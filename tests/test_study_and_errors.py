"""Bad input gives one line naming the place, exit status 2, and leaves the store unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from monoculture.errors import UserError
from monoculture.importers import Imported, import_records
from monoculture.store import Store
from monoculture.study import load_study
from monoculture.suites import load_suite

GOOD = """
name: s
models:
  - name: a
    backend: openai
    model: gpt-x
    params: {base_url: "http://127.0.0.1:9/v1", api_key_env: none}
suites:
  - name: open-ended
    limit: 2
samples: 2
sampling: {temperature: 0.5, max_tokens: 16}
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "monoculture.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else textwrap.dedent(content).encode())
    return p


def seeded_store(path: Path) -> int:
    with Store(path) as st:
        import_records(st, [Imported("m1", "p1", "hello?", "hi"), Imported("m2", "p1", "hello?", "hey")], "jsonl")
        return st.con.execute("SELECT count(*) FROM generations").fetchone()[0]


def test_good_study_parses(tmp_path):
    s = load_study(write(tmp_path, "s.yaml", GOOD))
    assert s.models[0].name == "a" and s.samples == 2 and s.sampling.max_tokens == 16
    assert s.store_path() == tmp_path / "s.duckdb"
    assert len(s.load_prompts()) == 2


BAD_STUDIES = {
    "malformed.yaml": ("name: x\nmodels: [\n  - oops: {\n", r"malformed.yaml:\d+: malformed YAML"),
    "unknown_backend.yaml": (GOOD.replace("backend: openai", "backend: nosuch"), r"models\.0\.backend.*unknown backend 'nosuch'"),
    "unknown_suite.yaml": (GOOD.replace("name: open-ended", "name: nosuch-suite"), r"unknown suite 'nosuch-suite'"),
    "missing_key.yaml": (
        GOOD.replace("api_key_env: none", "api_key_env: MONOCULTURE_TEST_MISSING_KEY"),
        r"MONOCULTURE_TEST_MISSING_KEY",
    ),
    "secret.yaml": (GOOD.replace("api_key_env: none", "api_key: sk-123"), r"params\.api_key.*never put a secret"),
    "dupe.yaml": (GOOD.replace("suites:", "  - {name: a, backend: openai, model: y}\nsuites:"), r"model name 'a' is used twice"),
    "empty.yaml": ("", r"empty.yaml: file is empty"),
    "latin1.yaml": (b"name: caf\xe9\n", r"latin1.yaml:1: not valid UTF-8"),
}


@pytest.mark.parametrize("name", sorted(BAD_STUDIES))
def test_bad_study_one_line_exit_2_store_unchanged(tmp_path, name):
    content, pattern = BAD_STUDIES[name]
    study = write(tmp_path, name, content)
    store = tmp_path / "keep.duckdb"
    before = seeded_store(store)
    r = cli("run", str(study), "--store", str(store), "-q", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    import re

    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in r.stderr
    with Store(store, read_only=True) as st:
        assert st.con.execute("SELECT count(*) FROM generations").fetchone()[0] == before
        assert st.study_names() == []


BAD_SUITES = {
    "notjson.jsonl": (b'{"id": "a", "text": "x"}\n{not json\n', r"notjson.jsonl:2: not valid JSON"),
    "nofield.jsonl": (b'{"id": "a", "text": "x"}\n{"id": "b"}\n', r"nofield.jsonl:2: missing field 'text'"),
    "noid.jsonl": (b'{"text": "x"}\n', r"noid.jsonl:1: missing field 'id'"),
    "dupid.jsonl": (b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', r"dupid.jsonl:2: duplicate id 'a'"),
    "bytes.jsonl": (b'{"id": "a", "text": "x"}\n{"id": "b", "text": "\xff\xfe"}\n', r"bytes.jsonl:2: not valid UTF-8"),
    "empty.jsonl": (b"", r"empty.jsonl: file is empty"),
}


@pytest.mark.parametrize("name", sorted(BAD_SUITES))
def test_bad_suite_names_the_line(tmp_path, name):
    content, pattern = BAD_SUITES[name]
    path = write(tmp_path, name, content)
    with pytest.raises(UserError, match=pattern):
        load_suite(str(path))


def test_bad_suite_through_cli(tmp_path):
    write(tmp_path, "bad.jsonl", b'{"id": "a", "text": "x"}\n{"id": "b"}\n')
    study = write(tmp_path, "s.yaml", GOOD.replace("name: open-ended\n    limit: 2", f"name: {tmp_path / 'bad.jsonl'}"))
    r = cli("run", str(study), "-q", cwd=tmp_path)
    assert r.returncode == 2 and "bad.jsonl:2: missing field 'text'" in r.stderr


def test_shipped_suites_load():
    oe = load_suite("open-ended")
    assert len(oe) == 100 and len({p.id for p in oe}) == 100
    ml = load_suite("multilingual")
    langs = {p.language for p in ml}
    assert {"en", "zh", "ar", "hi", "es", "ru", "sw"} <= langs
    groups = {p.group for p in ml}
    assert len(groups) == 20
    english = {p.id: p.text for p in oe}
    for p in ml:
        if p.language == "en":
            assert english[p.group] == p.text  # the English version is the open-ended prompt itself
    vals = load_suite("values")
    assert len({p.group for p in vals}) >= 40 and all(len(p.options) >= 2 for p in vals)


def test_import_bad_file_keeps_store(tmp_path):
    store = tmp_path / "keep.duckdb"
    before = seeded_store(store)
    bad = write(tmp_path, "bad.jsonl", b'{"prompt_id": "p", "prompt": "q", "model": "m", "text": "t"}\n{oops\n')
    r = cli("import", "jsonl", str(bad), "--store", str(store), cwd=tmp_path)
    assert r.returncode == 2 and "bad.jsonl:2" in r.stderr, r.stderr
    with Store(store, read_only=True) as st:
        assert st.con.execute("SELECT count(*) FROM generations").fetchone()[0] == before


def test_ls_and_export(tmp_path):
    store = tmp_path / "s.duckdb"
    seeded_store(store)
    r = cli("ls", str(store), cwd=tmp_path)
    assert r.returncode == 0 and "m1" in r.stdout and "2 generations" in r.stdout
    r = cli("export", str(tmp_path / "out"), "--format", "jsonl", "--store", str(store), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import json

    rows = [json.loads(line) for line in (tmp_path / "out" / "generations.jsonl").read_text().splitlines()]
    assert {(r["model"], r["prompt_id"], r["prompt"], r["sample_index"], r["text"]) for r in rows} == {
        ("m1", "p1", "hello?", 0, "hi"),
        ("m2", "p1", "hello?", 0, "hey"),
    }
    r = cli("export", str(tmp_path / "out"), "--store", str(store), cwd=tmp_path)
    import pandas as pd

    df = pd.read_parquet(tmp_path / "out" / "generations.parquet")
    assert len(df) == 2 and set(df.columns) >= {"model", "prompt_id", "prompt", "sample_index", "text"}
    r = cli("ls", str(tmp_path / "nothing.duckdb"), cwd=tmp_path)
    assert r.returncode == 2 and "no store at" in r.stderr


def test_shipped_examples_are_valid(tmp_path):
    root = Path(__file__).resolve().parent.parent
    study = load_study(root / "examples" / "quickstart.yaml")
    assert {m.attributes.family for m in study.models} >= {"qwen", "llama", "jais", "phi"}
    assert len(study.load_prompts()) == 20
    from monoculture.attributes import read_attributes_file

    attrs = read_attributes_file(root / "examples" / "alpaca_eval_attributes.yaml")
    assert len(attrs) == 28 and attrs["vicuna-7b-v1.5"]["family"] == "vicuna"


def test_attributes_command(tmp_path):
    store = tmp_path / "a.duckdb"
    seeded_store(store)
    r = cli("attributes", str(store), "--set", "m1:family=alpha", "--set", "m2:open_weights=false", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with Store(store, read_only=True) as st:
        attrs = st.model_attributes()
    assert attrs["m1"]["family"] == "alpha" and attrs["m2"]["open_weights"] is False
    r = cli("attributes", str(store), "--set", "nosuch:family=x", cwd=tmp_path)
    assert r.returncode == 2 and "no model named nosuch" in r.stderr
    r = cli("attributes", str(store), "--family-from-name", cwd=tmp_path)
    with Store(store, read_only=True) as st:
        attrs = st.model_attributes()
    assert attrs["m1"]["family"] == "alpha" and attrs["m2"]["family"] == "m"
