"""`monoculture import jsonl` with a date and a source per text: a dated corpus in the store."""

from __future__ import annotations

import json
from datetime import date

from clihelp import mc, snapshot
from monoculture.store import Store
from monoculture.trends.dates import release_dates


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_round_trip_sources_and_dates(tmp_path):
    f = write_jsonl(
        tmp_path / "web.jsonl",
        [
            {"site": "a.example", "year": 2009, "prompt": "home page", "page": "Welcome to A"},
            {"site": "b.example", "year": "2009", "prompt": "home page", "page": "B's home"},
            {"site": "a.example", "year": "2015-06", "prompt": "home page", "page": "A, redesigned"},
            {"site": "a.example", "year": "2015-06", "prompt": "home page", "page": "A, second page"},
            {"site": "c.example", "year": "2016-03-01T12:00:00Z", "prompt": "home page", "page": "C"},
        ],
    )
    store = tmp_path / "s.duckdb"
    args = ("import", "jsonl", f, "--store", store, "--map", "source=site", "--map", "date=year", "--map", "text=page")
    code, out = mc(*args)
    assert code == 0, out
    with Store(store, read_only=True) as st:
        attrs = st.model_attributes()
        gens = st.generations()
        dates, sources = release_dates(st, sorted(attrs))
    # a source with several dates is one model per date; one with a single date keeps its name
    assert attrs == {
        "a.example@2009": {"date": "2009"},
        "a.example@2015-06": {"date": "2015-06"},
        "b.example": {"date": "2009"},
        "c.example": {"date": "2016-03-01"},
    }
    assert sorted(gens[gens.model == "a.example@2015-06"].sample_index) == [0, 1]  # counted within the new model
    assert dates["a.example@2009"] == date(2009, 7, 1) and dates["a.example@2015-06"] == date(2015, 6, 15)
    assert sources["b.example"] == "attribute date (imported)"
    before = snapshot(store)
    assert mc(*args)[0] == 0 and snapshot(store) == before  # re-importing changes nothing


def test_bad_date_names_the_line_and_writes_nothing(tmp_path):
    f = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"source": "s1", "date": "2010", "prompt": "p", "text": "x"},
            {"source": "s2", "date": "2010/05", "prompt": "p", "text": "y"},
        ],
    )
    store = tmp_path / "s.duckdb"
    code, out = mc("import", "jsonl", f, "--store", store)
    assert code == 2, out
    assert f"{f}:2: 'date': bad date '2010/05'" in out and len(out.strip().splitlines()) == 1
    assert not store.exists()  # a refused import into a new store leaves none behind


def test_stored_source_keeps_its_date(tmp_path):
    store = tmp_path / "s.duckdb"
    f = write_jsonl(tmp_path / "a.jsonl", [{"source": "s1", "date": "2010", "prompt": "p", "text": "x"}])
    assert mc("import", "jsonl", f, "--store", store)[0] == 0
    before = snapshot(store)
    g = write_jsonl(tmp_path / "b.jsonl", [{"source": "s1", "date": "2011", "prompt": "q", "text": "y"}])
    code, out = mc("import", "jsonl", g, "--store", store)
    assert code == 2 and "model 's1' is stored with the date 2010, here 2011" in out, out
    assert snapshot(store) == before


def test_texts_with_and_without_a_date_are_refused(tmp_path):
    f = write_jsonl(
        tmp_path / "m.jsonl",
        [{"source": "s1", "date": "2010", "prompt": "p", "text": "x"}, {"source": "s1", "prompt": "q", "text": "y"}],
    )
    code, out = mc("import", "jsonl", f, "--store", tmp_path / "s.duckdb")
    assert code == 2 and "model 's1' has the date none here but 2010" in out and f"{f}:2" in out, out


def test_model_outputs_without_dates_are_unchanged(tmp_path):
    f = write_jsonl(tmp_path / "o.jsonl", [{"model": "m", "prompt": "p", "text": "x", "source": "ignored: a model column wins"}])
    store = tmp_path / "s.duckdb"
    assert mc("import", "jsonl", f, "--store", store)[0] == 0
    with Store(store, read_only=True) as st:
        assert st.model_attributes() == {"m": {}}
