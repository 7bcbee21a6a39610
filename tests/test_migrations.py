"""A store written by release 0.1.0 (tests/data/store_v0_1_0.duckdb.gz, made by
tests/data/make_store_v0_1_0.sh) opens, reports and measures again with today's code."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from monoculture import migrations
from monoculture.errors import UserError
from monoculture.results import legacy_frame, list_runs, load_results
from monoculture.store import Store

FIXTURE = Path(__file__).parent / "data" / "store_v0_1_0.duckdb.gz"
OLD_LABELS = {"*|tfidf:char3:svd256:seed0:corpus-5e2be45f1f39|calibrated", "*|tfidf:char3:svd256:seed0:corpus-5e2be45f1f39|raw"}


@pytest.fixture
def old_store(tmp_path) -> Path:
    path = tmp_path / "v0.duckdb"
    with gzip.open(FIXTURE) as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


def _legacy_rows(path: Path) -> dict[str, tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            r[0]: r[1:]
            for r in con.execute("SELECT label, summary, tables, settings, mu, created_at FROM measure_runs").fetchall()
        }
    finally:
        con.close()


def test_the_fixture_is_a_0_1_0_store(old_store):
    con = duckdb.connect(str(old_store), read_only=True)
    cols = [r[0] for r in con.execute("DESCRIBE measure_runs").fetchall()]
    assert "tables" in cols and set(_legacy_rows(old_store)) == OLD_LABELS
    assert not con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = '_monoculture_migrations'").fetchone()
    con.close()


def test_old_store_migrates_keeping_every_measurement(old_store):
    legacy = _legacy_rows(old_store)
    with Store(old_store, read_only=True) as st:  # a reader (report, ls) upgrades it once
        assert migrations.applied(st.con) == [fn.__name__ for fn in migrations.MIGRATIONS] and not migrations.pending(st.con)
        assert migrations.schema_version(st.con) == len(migrations.MIGRATIONS)
        assert "tables" not in [r[0] for r in st.con.execute("DESCRIBE measure_runs").fetchall()]
        runs = list_runs(st)
        assert len(runs) == 2
        for lab in runs["label"]:
            old = lab.rsplit("|", 1)[0]
            assert old in OLD_LABELS
            summary, tables, settings, mu, created_at = legacy[old]
            m = load_results(st, lab)
            assert m.summary == json.loads(summary) and m.settings == json.loads(settings)
            row = st.con.execute("SELECT mu, created_at FROM measure_runs WHERE label = ?", [lab]).fetchone()
            assert row == (mu, created_at)
            old_tables = json.loads(tables)
            assert list(m.tables) == list(old_tables)
            for name, text in old_tables.items():
                expect = legacy_frame(name, text)
                assert m.tables[name].equals(expect) and list(m.tables[name].dtypes) == list(expect.dtypes), name
            assert m.tables["per_model"].index.name == "model" and m.tables["per_model"]["W"].dtype == "float64"
    with Store(old_store) as st:  # opening again applies nothing
        assert migrations.migrate(st.con) == []


def test_old_store_reports_and_measures_again(old_store, tmp_path):
    from typer.testing import CliRunner

    from monoculture.cli import app

    run = CliRunner().invoke
    r = run(app, ["report", str(old_store), "-o", str(tmp_path / "old.html")])
    assert r.exit_code == 0, r.output
    with Store(old_store, read_only=True) as st:
        old_labels = list(list_runs(st)["label"])
    assert f"measurement <code><bdi>{old_labels[0]}</bdi></code>" in (tmp_path / "old.html").read_text(encoding="utf-8")
    r = run(app, ["measure", str(old_store), "--embedder", "tfidf", "-B", "50", "--tau", "0.7", "--json"])
    assert r.exit_code == 0, r.output
    r = run(app, ["ls", str(old_store)], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    with Store(old_store, read_only=True) as st:
        labels = list(list_runs(st)["label"])
    assert len(labels) == 3 and set(old_labels) < set(labels) and all(lab in r.output for lab in labels)
    for lab in labels:
        res = run(app, ["report", str(old_store), "-o", str(tmp_path / "r.html"), "--label", lab])
        assert res.exit_code == 0, res.output


def test_a_failing_migration_leaves_the_old_store_as_it_was(old_store, monkeypatch):
    import monoculture.results as R

    before = _legacy_rows(old_store)
    calls = {"n": 0}
    real = R.write_frame

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # in the middle of the first measurement's tables
            raise RuntimeError("disk full")
        return real(*a, **k)

    monkeypatch.setattr(R, "write_frame", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        Store(old_store)
    assert _legacy_rows(old_store) == before  # the JSON rows are still there, untouched
    con = duckdb.connect(str(old_store), read_only=True)
    assert not con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'result_%' OR table_name = 'measure_tables'"
    ).fetchone()[0]
    con.close()
    monkeypatch.setattr(R, "write_frame", real)
    with Store(old_store) as st:
        assert len(list_runs(st)) == 2


def test_a_store_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "new.duckdb"
    with Store(path) as st:
        st.con.execute("INSERT INTO _monoculture_migrations VALUES ('m999_from_the_future', 0)")
    for ro in (True, False):
        with pytest.raises(UserError, match="newer monoculture.*m999_from_the_future"):
            Store(path, read_only=ro)
