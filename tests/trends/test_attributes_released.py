"""`monoculture attributes --set M:released=...` and a study's `released`: validated, one
transaction, the store unchanged on any error."""

from __future__ import annotations

from datetime import date

import pytest
import yaml

from clihelp import mc, snapshot
from monoculture.importers import Imported, import_records
from monoculture.store import Store
from monoculture.study import ModelAttributes
from monoculture.trends.dates import release_dates


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "a.duckdb"
    with Store(path) as st:
        import_records(st, [Imported("m1", "p1", "hello?", "hi"), Imported("m2", "p1", "hello?", "hey")], "jsonl")
    return path


def test_set_released(store):
    code, out = mc("attributes", store, "--set", "m1:released=2024-05", "--set", "m2:released=2023-11-06", "--set", "m2:family=x")
    assert code == 0, out
    with Store(store, read_only=True) as st:
        attrs = st.model_attributes()
        dates, sources = release_dates(st, ["m1", "m2"])
    assert attrs["m1"] == {"released": "2024-05"}  # a month stays a month in the store
    assert attrs["m2"] == {"released": "2023-11-06", "family": "x"}
    assert dates == {"m1": date(2024, 5, 15), "m2": date(2023, 11, 6)} and sources["m1"] == "attribute released"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2024", "too coarse"),
        ("2024/05", "bad release date '2024/05'"),
        ("2999-01", "in the future"),
        ("yes", "bad release date"),
    ],
)
def test_bad_released_exits_2_and_changes_nothing(store, value, message):
    mc("attributes", store, "--set", "m2:family=before")
    before = snapshot(store)
    # a good assignment first: nothing of it may be written when a later one is refused
    code, out = mc("attributes", store, "--set", "m2:family=after", "--set", f"m1:released={value}")
    assert code == 2 and "--set m1: field 'released'" in out and message in out, out
    assert len(out.strip().splitlines()) == 1
    assert snapshot(store) == before


def test_released_in_an_attributes_file(store, tmp_path):
    f = tmp_path / "attrs.yaml"
    f.write_text("m1: {released: 2024-05-13}\nm2: {released: 2024-05}\n", encoding="utf-8")  # an unquoted date too
    code, out = mc("attributes", store, "--file", f)
    assert code == 0, out
    with Store(store, read_only=True) as st:
        assert st.model_attributes() == {"m1": {"released": "2024-05-13"}, "m2": {"released": "2024-05"}}
    before = snapshot(store)
    f.write_text("m1: {released: 2013-01}\n", encoding="utf-8")
    code, out = mc("attributes", store, "--file", f)
    assert code == 2 and "model 'm1': field 'released': release date '2013-01' is before 2015-01-01" in out, out
    assert snapshot(store) == before


def test_study_attributes_validate_released():
    assert ModelAttributes(released=date(2024, 1, 2)).released == "2024-01-02"
    with pytest.raises(ValueError, match="bad release date"):
        ModelAttributes(released="January")
    assert yaml.safe_load("released: 2024-01-02")["released"] == date(2024, 1, 2)  # why a date object must be accepted
