"""Bad input to ``ecosystem import``: implausible snapshot dates, numbers beyond any column,
undecodable, truncated or absurdly nested JSON, a BOM, and a folder with one bad file among
good ones (issue 16, items 7, 11 and 15). Each is either counted or refused with exit 2 and a
message naming the file (and line), and a refused import leaves the store as it was."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from eco_hub_fake import hub_model
from eco_snapshots import write_snapshot
from typer.testing import CliRunner

from monoculture.ecosystem.cli import app
from monoculture.ecosystem.quality import utcnow

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, env={"COLUMNS": "400"})


def out_of(r) -> str:
    return r.output + (r.stderr if r.stderr_bytes is not None and r.stderr not in r.output else "")


def tables(store) -> dict[str, list]:
    """Every ecosystem table's rows (sorted), to show a refused import changed nothing."""
    if not store.exists():
        return {}
    con = duckdb.connect(str(store), read_only=True)
    try:
        names = [
            t for (t,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'eco_%'").fetchall()
        ]
        return {t: sorted(map(repr, con.execute(f"SELECT * FROM {t}").fetchall())) for t in sorted(names)}
    finally:
        con.close()


def good_store(tmp_path):
    store = tmp_path / "eco.duckdb"
    snap = write_snapshot(tmp_path / "good.json", [hub_model("Qwen/Qwen2.5-7B", downloads=10)], snapshot_id="good")
    r = run("import", snap, "--store", store)
    assert r.exit_code == 0, out_of(r)
    return store


# -- 7: a snapshot's date must be plausible ---------------------------------------------------------
@pytest.mark.parametrize("taken_at", ["2999-01-01T00:00:00Z", "2010-06-01T00:00:00Z", "not a date"])
def test_implausible_snapshot_date_is_refused_naming_file_and_field(tmp_path, taken_at):
    store = good_store(tmp_path)
    before = tables(store)
    bad = write_snapshot(tmp_path / "future.json", [hub_model("Qwen/Qwen3-8B")], taken_at=taken_at)
    r = run("import", bad, "--store", store)
    out = out_of(r)
    assert r.exit_code == 2, out
    assert "future.json" in out and "taken_at" in out, out
    assert tables(store) == before


def test_clock_skew_of_hours_is_accepted(tmp_path):
    soon = (utcnow() + timedelta(hours=6)).isoformat() + "Z"
    snap = write_snapshot(tmp_path / "s.json", [hub_model("Qwen/Qwen3-8B")], taken_at=soon)
    r = run("import", snap, "--store", tmp_path / "e.duckdb")
    assert r.exit_code == 0, out_of(r)


def test_future_taken_at_option_is_refused(tmp_path):
    snap = tmp_path / "list.json"
    snap.write_text(json.dumps([hub_model("Qwen/Qwen3-8B")]))
    r = run("import", snap, "--store", tmp_path / "e.duckdb", "--taken-at", "2999-01-01")
    assert r.exit_code == 2 and "--taken-at" in out_of(r), out_of(r)


# -- 11: no traceback and nothing partial for numbers, encodings, truncation, nesting --------------
def test_huge_download_counts_are_counted_not_a_crash(tmp_path):
    models = [
        hub_model("Qwen/Qwen2.5-7B", downloads=10),
        {**hub_model("Qwen/Qwen3-8B"), "downloads": 1e30},
        {**hub_model("Qwen/Qwen3-32B"), "downloads": 2**70, "likes": 2**64},
    ]
    snap = write_snapshot(tmp_path / "big.json", models, snapshot_id="big")
    store = tmp_path / "e.duckdb"
    r = run("import", snap, "--store", store)
    assert r.exit_code == 0, out_of(r)
    assert "bad_number 3" in out_of(r)
    con = duckdb.connect(str(store), read_only=True)
    rows = dict(con.execute("SELECT model_id, downloads FROM eco_models").fetchall())
    status = con.execute("SELECT status FROM eco_snapshots").fetchall()
    con.close()
    assert rows == {"Qwen/Qwen2.5-7B": 10, "Qwen/Qwen3-8B": None, "Qwen/Qwen3-32B": None}
    assert status == [("complete",)]


def _latin1(tmp_path):
    p = tmp_path / "latin.json"
    p.write_bytes(
        json.dumps(
            {"format": "monoculture-ecosystem-snapshot", "taken_at": "2025-01-01", "models": [{"id": "a/Café"}]},
            ensure_ascii=False,
        ).encode("latin-1")
    )
    return p, "latin.json:1", "UTF-8"


def _truncated_jsonl(tmp_path):
    p = tmp_path / "models.jsonl"
    lines = [json.dumps(hub_model(f"Qwen/Qwen-{i}")) for i in range(3)]
    p.write_text("\n".join(lines[:2] + [lines[2][:25]]) + "\n", encoding="utf-8")
    return p, "models.jsonl:3", "not valid JSON"


def _truncated_json(tmp_path):
    p = tmp_path / "cut.json"
    p.write_text(
        json.dumps({"format": "monoculture-ecosystem-snapshot", "models": [hub_model("Qwen/Qwen3-8B")]})[:40], encoding="utf-8"
    )
    return p, "cut.json:1", "not valid JSON"


def _deep(tmp_path):
    p = tmp_path / "deep.json"
    p.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    return p, "deep.json", "nested"


@pytest.mark.parametrize("make", [_latin1, _truncated_jsonl, _truncated_json, _deep])
def test_unreadable_json_is_exit_2_naming_the_place_and_changes_nothing(tmp_path, make):
    store = good_store(tmp_path)
    before = tables(store)
    bad, where, what = make(tmp_path)
    for kind in ("auto", "snapshot"):
        r = run("import", bad, "--store", store, "--kind", kind)
        out = out_of(r)
        assert r.exit_code == 2, out
        assert where in out and what in out, out
        assert tables(store) == before


def test_a_bom_is_read_like_the_main_importers(tmp_path):
    p = tmp_path / "bom.json"
    doc = {"format": "monoculture-ecosystem-snapshot", "taken_at": "2025-01-01T00:00:00Z", "models": [hub_model("Qwen/Qwen3-8B")]}
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc).encode())
    q = tmp_path / "bom.jsonl"
    q.write_bytes(b"\xef\xbb\xbf" + json.dumps(hub_model("Qwen/Qwen3-32B")).encode() + b"\n")
    store = tmp_path / "e.duckdb"
    r = run("import", p, q, "--store", store)
    assert r.exit_code == 0 and "skipped" not in out_of(r), out_of(r)
    con = duckdb.connect(str(store), read_only=True)
    assert {m for (m,) in con.execute("SELECT model_id FROM eco_models").fetchall()} == {"Qwen/Qwen3-8B", "Qwen/Qwen3-32B"}
    con.close()


# -- 15: a folder import is all-or-nothing, and says what was dropped ------------------------------
def test_folder_with_one_bad_file_imports_nothing_and_names_every_bad_file(tmp_path):
    store = good_store(tmp_path)
    before = tables(store)
    d = tmp_path / "data"
    d.mkdir()
    write_snapshot(d / "a.json", [hub_model("Qwen/Qwen3-8B")], snapshot_id="a")
    (d / "b.json").write_text('{"format": "monoculture-ecosystem-snapshot", "models": [', encoding="utf-8")
    write_snapshot(d / "c.json", [hub_model("Qwen/Qwen3-32B")], snapshot_id="c")
    (d / "d.jsonl").write_text('{"id": "x/y"}\n{"id": \n', encoding="utf-8")
    r = run("import", d, "--store", store)
    out = out_of(r)
    assert r.exit_code == 2, out
    assert "b.json:1" in out and "d.jsonl:2" in out and "nothing was imported" in out, out
    assert tables(store) == before


def test_dropped_params_and_correction_dates_are_counted(tmp_path):
    p = tmp_path / "model_parameters.csv"
    p.write_text(
        "model_id,total_params_b,active_params_b,is_moe\na/b,7,7,false\na/c,lots,,false\na/d,3,x,true\n", encoding="utf-8"
    )
    c = tmp_path / "release_date_corrections.csv"
    c.write_text(
        "model_id,hf_created_at,actual_release_date,notes\na/b,2024-01-01,2023-12-01,ok\na/c,2024-01-01,soon,bad\na/d,yesterday,2023-05-01,\n",
        encoding="utf-8",
    )
    store = tmp_path / "e.duckdb"
    r = run("import", p, c, "--store", store)
    out = out_of(r)
    assert r.exit_code == 0, out
    assert "bad_number 2" in out and "bad_date 2" in out, out
    con = duckdb.connect(str(store), read_only=True)
    assert con.execute("SELECT count(*) FROM eco_params").fetchone()[0] == 3
    assert con.execute("SELECT count(*) FROM eco_date_corrections").fetchone()[0] == 2  # a/c has no usable release date
    issues = dict(con.execute("SELECT kind, sum(count) FROM eco_issues GROUP BY kind").fetchall())
    con.close()
    assert issues == {"bad_number": 2, "bad_date": 2}


def test_csv_and_registry_are_decoded_like_every_import(tmp_path):
    """A BOM is dropped and a latin-1 byte is an error naming the line, for CSV tables and a
    registry file alike (a latin-1 CSV used to be "skipped" with exit 0)."""
    ok = tmp_path / "organization_regions.csv"
    ok.write_bytes(b"\xef\xbb\xbfhf_org,region,notes\nQwen,china,\n")
    store = tmp_path / "e.duckdb"
    r = run("import", ok, "--store", store)
    assert r.exit_code == 0 and "org-regions" in out_of(r), out_of(r)
    bad = tmp_path / "bad" / "organisations.csv"
    bad.parent.mkdir()
    bad.write_bytes("Organization,Country\nAlibaba,China\nSoci\u00e9t\u00e9,France\n".encode("latin-1"))
    r = run("import", bad, "--store", store)
    assert r.exit_code == 2 and "organisations.csv:3" in out_of(r) and "UTF-8" in out_of(r), out_of(r)
    reg = tmp_path / "reg.yaml"
    reg.write_bytes(b"\xef\xbb\xbffamilies: {}\n")
    assert run("families", "--registry", reg).exit_code == 0
    reg.write_bytes("families: {x: {name: Caf\u00e9}}\n".encode("latin-1"))
    r = run("families", "--registry", reg)
    assert r.exit_code == 2 and "reg.yaml:1" in out_of(r), out_of(r)


def test_a_refused_import_into_a_new_store_leaves_no_store(tmp_path):
    bad = write_snapshot(tmp_path / "future.json", [hub_model("Qwen/Qwen3-8B")], taken_at="2999-01-01T00:00:00Z")
    store = tmp_path / "new.duckdb"
    r = run("import", bad, "--store", store)
    assert r.exit_code == 2, out_of(r)
    assert not store.exists() and not (tmp_path / "new.duckdb.wal").exists()


# -- property: any snapshot file either imports or is refused with exit 2, store untouched ----------
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["2024-01-01T00:00:00Z", "2999-01-01", "1970-01-01", "1712345678901", "[/x]", "\x1b[2J"]),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)
_KEYS = [
    "id",
    "modelId",
    "author",
    "createdAt",
    "lastModified",
    "downloads",
    "downloadsAllTime",
    "likes",
    "gated",
    "tags",
    "cardData",
    "safetensors",
    "baseModels",
    "childrenModelCount",
    "library_name",
    "pipeline_tag",
    "sha",
]
_record = st.one_of(
    _value, st.fixed_dictionaries({"id": st.one_of(st.text(max_size=20), _scalar)}, optional={k: _value for k in _KEYS[1:]})
)
_doc = st.one_of(
    st.lists(_record, max_size=6),
    st.fixed_dictionaries(
        {"format": st.just("monoculture-ecosystem-snapshot"), "models": st.lists(_record, max_size=6)},
        optional={
            "taken_at": st.one_of(st.sampled_from(["2025-01-01T00:00:00Z", "2999-01-01", "2010-01-01", "soon"]), _scalar),
            "snapshot_id": _scalar,
            "note": _value,
        },
    ),
)


@pytest.fixture(scope="module")
def base_store(tmp_path_factory):
    store = good_store(tmp_path_factory.mktemp("base"))
    return store, tables(store)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=_doc)
def test_any_snapshot_file_imports_or_is_refused_cleanly(tmp_path_factory, base_store, doc):
    import shutil

    d = tmp_path_factory.mktemp("prop")
    store = Path(shutil.copy(base_store[0], d / "eco.duckdb"))
    before = base_store[1]
    f = d / "gen.json"
    f.write_text(json.dumps(doc), encoding="utf-8")
    r = run("import", f, "--store", store)  # a traceback fails the test (catch_exceptions=False)
    out = out_of(r)
    assert r.exit_code in (0, 2), out
    event(f"exit {r.exit_code}")
    if r.exit_code == 2:
        assert "gen.json" in out and tables(store) == before, out
    else:
        assert "\x1b" not in out
