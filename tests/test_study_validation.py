"""The study is checked in full before anything is written, and what is written is right.

Model identity includes the server (two servers can serve different weights under one id), a
study in which two models would share generation keys is refused, credentials in a base URL
never reach the store, unknown backend params and absurd sizes are errors naming the field,
and a rejected study or suite leaves the store (or its absence) exactly as it was."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from monoculture import collect
from monoculture.collect import run_study
from monoculture.errors import UserError
from monoculture.store import Store
from monoculture.study import ModelSpec, load_study


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "monoculture.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def write_suite(path: Path, n: int) -> Path:
    import json

    path.write_text("".join(json.dumps({"id": f"q{i}", "text": f"Question {i}?"}) + "\n" for i in range(n)))
    return path


def study_yaml(
    tmp_path: Path,
    models: list[dict],
    *,
    name: str = "s",
    samples: int = 2,
    suite: Path | None = None,
    file: str = "s.yaml",
    **extra,
) -> Path:
    suite = suite or write_suite(tmp_path / "suite.jsonl", 3)
    data = {
        "name": name,
        "models": models,
        "suites": [str(suite)],
        "samples": samples,
        "sampling": {"temperature": 0.7, "max_tokens": 8},
        **extra,
    }
    p = tmp_path / file
    p.write_text(yaml.safe_dump(data))
    return p


def model(name: str, base_url: str | None, **params) -> dict:
    p = {"api_key_env": None, "max_retries": 0, **params}
    if base_url is not None:
        p["base_url"] = base_url
    return {"name": name, "backend": "openai", "model": "llama3.2:3b", "params": p}


def snapshot(path: Path) -> dict:
    """Every row of every table: what "the store is unchanged" compares."""
    with Store(path, read_only=True) as st:
        tables = [r[0] for r in st.con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        return {t: sorted(map(repr, st.con.execute(f'SELECT * FROM "{t}"').fetchall())) for t in tables}


# ---- 1. the server is part of the identity -------------------------------------------------


def test_one_model_id_on_two_servers_keeps_both_models_answers(tmp_path, fake_server):
    a, b = fake_server(), fake_server()
    study = load_study(study_yaml(tmp_path, [model("on-ollama", a.base_url), model("on-llamacpp", b.base_url)]))
    with Store(tmp_path / "s.duckdb") as st:
        stats = run_study(study, st, show_progress=False)
        per_model = dict(st.con.execute("SELECT model, count(*) FROM generations WHERE error IS NULL GROUP BY model").fetchall())
        again = run_study(study, st, show_progress=False)
    assert stats.generated == 12 and stats.failed == 0
    assert per_model == {"on-ollama": 6, "on-llamacpp": 6}
    assert a.counts["requests"] > 0 and b.counts["requests"] > 0  # each server answered its own model
    assert again.generated == 0 and again.skipped == 12


def test_two_models_with_one_identity_are_refused_naming_both(tmp_path, fake_server):
    s = fake_server()
    # two spellings of one server: the same identity after normalisation
    path = study_yaml(tmp_path, [model("first", s.base_url), model("second", s.base_url.replace("http:", "HTTP:") + "/")])
    with pytest.raises(UserError, match=r"models 'first' .* and 'second' .*same identity"):
        load_study(path)
    r = cli("run", str(path), "-q", cwd=tmp_path)
    assert r.returncode == 2 and "'first'" in r.stderr and "'second'" in r.stderr, r.stderr
    assert not (tmp_path / "s.duckdb").exists()


def test_same_identity_with_other_sampling_is_a_different_model(tmp_path, fake_server):
    s = fake_server()
    hot = {**model("hot", s.base_url), "sampling": {"temperature": 1.2}}
    study = load_study(study_yaml(tmp_path, [model("warm", s.base_url), hot]))
    with Store(tmp_path / "s.duckdb") as st:
        assert run_study(study, st, show_progress=False).generated == 12


def test_identity_without_base_url_is_unchanged():
    """Stores made before servers were counted keep their keys where no base_url was set."""
    spec = ModelSpec(name="m", backend="openai", model="gpt-4o", params={"concurrency": 4, "api_key_env": "K"})
    assert spec.identity() == {"backend": "openai", "model": "gpt-4o", "revision": None, "params": {}}


def test_server_is_normalised_and_never_carries_credentials():
    specs = [
        ModelSpec(name="m", backend="openai", model="x", params={"base_url": u})
        for u in ("http://Host.Example:80/v1/", "http://host.example/v1", "http://bob:pw@host.example/v1?api-key=abc")
    ]
    assert {s.identity()["server"] for s in specs} == {"http://host.example/v1"}


def test_server_label_lets_a_model_move_between_servers(tmp_path, fake_server):
    a, b = fake_server(), fake_server()
    first = load_study(study_yaml(tmp_path, [model("m", a.base_url, server="my-weights")]))
    with Store(tmp_path / "s.duckdb") as st:
        assert run_study(first, st, show_progress=False).generated == 6
        moved = load_study(study_yaml(tmp_path, [model("m", b.base_url, server="my-weights")]))
        again = run_study(moved, st, show_progress=False)
    assert again.generated == 0 and again.skipped == 6 and b.counts["requests"] == 0


# ---- 2. credentials never reach the store --------------------------------------------------

PASSWORD = "PW-hunter2-zq81"
QUERY_SECRET = "QS-topsecret-77x"


def _secret_in_store(path: Path) -> list[str]:
    with Store(path) as st:
        st.con.execute("CHECKPOINT")
    data = path.read_bytes()
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        data += wal.read_bytes()
    return [s for s in (PASSWORD, QUERY_SECRET, "alice") if s.encode() in data]


def test_credentials_in_base_url_never_reach_the_store(tmp_path, fake_server):
    s = fake_server()
    good = f"http://alice:{PASSWORD}@127.0.0.1:{s.port}/v1?api-key={QUERY_SECRET}&deployment=d1"
    dead = f"http://alice:{PASSWORD}@127.0.0.1:9/v1?api-key={QUERY_SECRET}"  # connection refused: errors are stored too
    path = study_yaml(tmp_path, [model("good", good), model("dead", dead)])
    r = cli("run", str(path), cwd=tmp_path)
    assert r.returncode == 3, r.stderr  # the dead server's samples failed
    assert PASSWORD not in r.stdout + r.stderr and QUERY_SECRET not in r.stdout + r.stderr
    store = tmp_path / "s.duckdb"
    with Store(store, read_only=True) as st:
        ok = st.con.execute("SELECT count(*) FROM generations WHERE model = 'good' AND error IS NULL").fetchone()[0]
        errors = [e for (e,) in st.con.execute("SELECT error FROM generations WHERE model = 'dead'").fetchall()]
        spec = st.con.execute("SELECT * FROM studies").fetchall()
    assert ok == 6, "the gateway's query (api-key) must still reach the server"
    assert len(errors) == 6 and all(errors)
    assert "***" in repr(spec) and "deployment=d1" in repr(spec)  # the URL is kept, masked
    assert _secret_in_store(store) == []


def test_the_byte_search_would_find_a_secret(tmp_path):
    """Control for the test above: the same search finds a secret that was written."""
    store = tmp_path / "control.duckdb"
    with Store(store) as st:
        st.register_study("c", None, {"base_url": f"http://alice:{PASSWORD}@h/v1?api-key={QUERY_SECRET}"}, [], [])
    assert set(_secret_in_store(store)) == {PASSWORD, QUERY_SECRET, "alice"}


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({"concurency": 4}, r"params\.concurency: backend 'openai' has no such param \(did you mean 'concurrency'\?"),
        ({"temprature": 0.5}, r"params\.temprature"),
        ({"concurrency": 0}, r"params\.concurrency must be an integer from 1 to 1024, got 0"),
        ({"concurrency": 10**9}, r"params\.concurrency must be an integer from 1 to 1024"),
        ({"timeout": "soon"}, r"params\.timeout must be a number"),
        ({"base_url": "localhost"}, r"params\.base_url must be a URL"),
    ],
)
def test_bad_backend_params_are_errors_naming_the_field(tmp_path, params, pattern):
    path = study_yaml(tmp_path, [model("m", params.pop("base_url", "http://127.0.0.1:9/v1"), **params)])
    with pytest.raises(UserError, match=pattern) as e:
        load_study(path)
    assert str(path) in str(e.value) and "models.0" in str(e.value)


def test_local_backends_declare_their_params(tmp_path):
    bad = {"name": "m", "backend": "transformers", "model": "x/y", "params": {"batchsize": 4}}
    with pytest.raises(UserError, match=r"params\.batchsize.*did you mean 'batch_size'"):
        load_study(study_yaml(tmp_path, [bad]))
    ok = {"name": "m", "backend": "llamacpp", "model": "x.gguf", "params": {"n_ctx": 512, "n_gpu_layers": -1}}
    load_study(study_yaml(tmp_path, [ok]))


# ---- 3. a rejected study writes nothing ----------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"sampling": {"temperature": "hot"}},
        {"params": {"api_key_env": None, "concurrency": 0}},
        {"params": {"api_key_env": None, "concurency": 2}},
    ],
    ids=["temperature-hot", "concurrency-0", "typo"],
)
def test_rejected_study_leaves_the_stored_study_unchanged(tmp_path, fake_server, change):
    s, s2 = fake_server(), fake_server()
    good = study_yaml(
        tmp_path,
        [model("a", s.base_url), model("b", s2.base_url, concurrency=2, timeout=5)],
        file="good.yaml",
        store="shared.duckdb",
    )
    assert cli("run", str(good), "-q", cwd=tmp_path).returncode == 0
    store = tmp_path / "shared.duckdb"
    before = snapshot(store)
    other_suite = write_suite(tmp_path / "other.jsonl", 5)  # new prompts that must not be written either
    bad_model = {**model("a", s.base_url), **change}
    if "params" in change:
        bad_model["params"] = {**change["params"], "base_url": s.base_url}
    bad = study_yaml(tmp_path, [bad_model], file="bad.yaml", store="shared.duckdb", suite=other_suite)
    r = cli("run", str(bad), "-q", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "bad.yaml" in r.stderr and "models.0" in r.stderr
    assert snapshot(store) == before


def test_rejected_suite_leaves_no_store_file(tmp_path):
    bad_suite = tmp_path / "bad.jsonl"
    bad_suite.write_text('{"id": "a", "text": "x"}\n{"id": "b"}\n')
    path = study_yaml(tmp_path, [model("m", "http://127.0.0.1:9/v1")], suite=bad_suite)
    r = cli("run", str(path), "-q", cwd=tmp_path)
    assert r.returncode == 2 and "bad.jsonl:2" in r.stderr, r.stderr
    assert not (tmp_path / "s.duckdb").exists()
    (tmp_path / "dir.jsonl").mkdir()
    path = study_yaml(tmp_path, [model("m", "http://127.0.0.1:9/v1")], suite=tmp_path / "dir.jsonl")
    r = cli("run", str(path), "-q", cwd=tmp_path)
    assert r.returncode == 2 and "dir.jsonl" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "s.duckdb").exists()


# ---- 4. sizes are bounded, jobs are made lazily --------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("samples", 1_000_000_000_000, r"field 'samples': Input should be less than or equal to 10000"),
        ("batch_size", 10**12, r"field 'batch_size'"),
        ("sampling", {"max_tokens": 10**12}, r"field 'sampling\.max_tokens'"),
        ("sampling", {"seed": 2**70}, r"field 'sampling\.seed'"),
    ],
)
def test_absurd_sizes_are_refused_at_once(tmp_path, field, value, pattern):
    path = study_yaml(tmp_path, [model("m", "http://127.0.0.1:9/v1")], **{field: value})
    t0 = time.monotonic()
    r = cli("run", str(path), "-q", cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and re.search(pattern, r.stderr), r.stderr
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "s.duckdb").exists()


def test_jobs_are_made_a_chunk_at_a_time(tmp_path, fake_server, monkeypatch):
    s = fake_server()
    monkeypatch.setattr(collect, "CHUNK_SAMPLES", 8)
    lookups: list[int] = []
    handed: list[int] = []
    real_done = Store.done_keys
    monkeypatch.setattr(Store, "done_keys", lambda self, keys: (lookups.append(len(keys)), real_done(self, keys))[1])
    from monoculture.backends.openai_compat import OpenAIBackend

    real_generate = OpenAIBackend.generate
    monkeypatch.setattr(
        OpenAIBackend,
        "generate",
        lambda self, jobs: (handed.append(sum(len(j.keys) for j in jobs)), real_generate(self, jobs))[1],
    )
    suite = write_suite(tmp_path / "many.jsonl", 50)
    study = load_study(study_yaml(tmp_path, [model("m", s.base_url)], samples=4, suite=suite))
    with Store(tmp_path / "s.duckdb") as st:
        stats = run_study(study, st, show_progress=False)
        assert st.con.execute("SELECT count(*) FROM generations WHERE error IS NULL").fetchone()[0] == 200
    assert stats.generated == 200
    assert max(lookups) <= 8 and max(handed) <= 8 and sum(handed) == 200


def test_the_fast_key_maker_makes_exactly_the_generation_keys():
    from monoculture.collect import generation_key, key_maker
    from monoculture.study import Sampling

    spec = ModelSpec(name="m", backend="openai", model="x", params={"base_url": "http://h/v1"}, revision="r1")
    for messages, sampling in [
        ([{"role": "user", "content": 'héllo "quoted" 中文'}], Sampling()),
        (
            [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}],
            Sampling(temperature=0.0, stop=["\n", "é"], seed=-3, max_tokens=7),
        ),
    ]:
        key = key_maker(spec, messages, sampling)
        assert [key(i) for i in (0, 1, 17, 9999)] == [generation_key(spec, messages, sampling, i) for i in (0, 1, 17, 9999)]
