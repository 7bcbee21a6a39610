"""Release dates: parsing, and the order of their sources (attribute, --dates, registry, shipped)."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta

import pytest

from monoculture.errors import UserError
from monoculture.store import Store
from monoculture.trends.dates import (
    normalise_release,
    parse_corpus_date,
    parse_release,
    read_dates_file,
    release_dates,
    shipped_dates,
)


def test_parse_release_forms():
    assert parse_release("2024-05-13") == date(2024, 5, 13)
    assert parse_release("2024-05") == date(2024, 5, 15)  # a month is its middle
    assert parse_release(date(2023, 1, 2)) == date(2023, 1, 2)
    assert parse_release(" 2023-07 ") == date(2023, 7, 15)
    assert normalise_release("2024-05") == "2024-05"
    assert normalise_release(date(2024, 5, 3)) == "2024-05-03"


@pytest.mark.parametrize("bad", ["2024", "2024/05", "May 2024", "2024-13", "2024-02-30", "", None, True, "2014-12-31"])
def test_parse_release_refuses_and_names_the_value(bad):
    with pytest.raises(UserError) as e:
        parse_release(bad, where="here")
    assert repr(bad) in str(e.value) and str(e.value).startswith("here: ")


def test_future_refused_but_this_month_allowed():
    with pytest.raises(UserError, match="future"):
        parse_release((date.today() + timedelta(days=3)).isoformat())
    this_month = date.today().strftime("%Y-%m")
    assert parse_release(this_month) <= date.today()  # the 15th, or today where the 15th is still to come


def test_corpus_dates_allow_years_and_old_dates():
    assert parse_corpus_date("2009") == date(2009, 7, 1)
    assert parse_corpus_date(2012) == date(2012, 7, 1)
    assert parse_corpus_date("1998-03") == date(1998, 3, 15)
    with pytest.raises(UserError, match="'20x9'"):
        parse_corpus_date("20x9")


def test_shipped_table_covers_the_alpaca_eval_models_but_one():
    shipped = shipped_dates()
    alpaca = {
        "airoboros-33b", "alpaca-7b", "baize-v2-13b", "claude-instant-1.2", "gpt-3.5-turbo-0613", "gpt-3.5-turbo-1106",
        "gpt-4o-2024-05-13", "gpt-4o-mini-2024-07-18", "guanaco-13b", "guanaco-33b", "guanaco-65b", "guanaco-7b",
        "openchat-13b", "openchat-v3.1-13b", "text_davinci_003", "tulu-2-dpo-13b", "tulu-2-dpo-70b", "tulu-2-dpo-7b",
        "ultralm-13b", "vicuna-13b-v1.5", "vicuna-33b-v1.3", "vicuna-7b-v1.5", "wizardlm-13b-v1.2", "wizardlm-70b",
        "xwinlm-13b-v0.1", "xwinlm-70b-v0.1", "zephyr-7b-alpha", "zephyr-7b-beta",
    }  # fmt: skip
    assert alpaca - set(shipped) == {"airoboros-33b"}  # left out on purpose: the csv says why
    assert all(src for _, src in shipped.values())  # every row names its source
    assert shipped["vicuna-7b-v1.5"] == (date(2023, 8, 15), "monoculture/demo/data/attributes.yaml")
    assert shipped["alpaca-7b"][0] == date(2023, 3, 13)
    if os.path.isdir("/work/shared/data/alpaca_eval/results"):  # the list above is the shared data's
        assert set(os.listdir("/work/shared/data/alpaca_eval/results")) == alpaca


def _store(path, models):
    st = Store(path)
    st.upsert_models(
        [{"name": n, "backend": "import", "model_id": mid, "attributes": attrs, "source": "test"} for n, mid, attrs in models]
    )
    return st


def test_sources_in_order(tmp_path):
    dates_file = tmp_path / "dates.csv"
    dates_file.write_text(
        "# my corrections\nmodel,released,source\nalpaca-7b,2023-04,my notes\nmine,2024-01-02,\n", encoding="utf-8"
    )
    with _store(
        tmp_path / "s.duckdb",
        [
            ("zephyr-7b-beta", None, {"released": "2025-01"}),  # the attribute beats the shipped table
            ("alpaca-7b", None, {}),  # --dates beats the shipped table
            ("qwen", "Qwen/Qwen2-72B", {}),  # registry, by the Hub id in the models table
            ("qwen-attr", None, {"hub_id": "qwen/qwen2-72b"}),  # registry, by a hub_id attribute, any case
            ("qwen-ft", "someone/Qwen2-72B-finetune", {}),  # a fine-tune does not inherit the date
            ("gpt-3.5-turbo-1106", None, {}),  # the demo's attributes.yaml
            ("mine", None, {}),
            ("undated", None, {}),
        ],
    ) as st:
        models = [r[0] for r in st.con.execute("SELECT name FROM models").fetchall()]
        dates, sources = release_dates(st, models, dates_file=dates_file)
        without_file, _ = release_dates(st, models)
    assert dates == {
        "zephyr-7b-beta": date(2025, 1, 15),
        "alpaca-7b": date(2023, 4, 15),
        "qwen": date(2024, 6, 7),
        "qwen-attr": date(2024, 6, 7),
        "gpt-3.5-turbo-1106": date(2023, 11, 6),
        "mine": date(2024, 1, 2),
    }
    assert set(sources) == set(dates)
    assert sources["zephyr-7b-beta"] == "attribute released"
    assert sources["alpaca-7b"] == f"{dates_file}: my notes"
    assert sources["qwen"].startswith("ecosystem registry: qwen")
    assert sources["gpt-3.5-turbo-1106"] == "shipped table: monoculture/demo/data/attributes.yaml"
    assert without_file["alpaca-7b"] == date(2023, 3, 13) and "mine" not in without_file


def test_bad_dates_file_names_the_line(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("model,released,source\na,2024-01,x\nb,2024,y\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"d\.csv:3: bad release date '2024'"):
        read_dates_file(f)
    f.write_text("model,date\na,2024-01\n", encoding="utf-8")
    with pytest.raises(UserError, match="missing released"):
        read_dates_file(f)
    f.write_text("model,released\na,2024-01\na,2024-02\n", encoding="utf-8")
    with pytest.raises(UserError, match="d.csv:3: model 'a' is listed twice"):
        read_dates_file(f)
    with pytest.raises(UserError, match="not found|no such"):
        read_dates_file(tmp_path / "missing.csv")


def test_bad_stored_attribute_is_a_user_error(tmp_path):
    with _store(tmp_path / "s.duckdb", [("m", None, {})]) as st:
        st.con.execute("UPDATE models SET attributes = ? WHERE name = 'm'", [json.dumps({"released": "soon"})])
        with pytest.raises(UserError, match="model 'm': attribute released: bad release date 'soon'"):
            release_dates(st, ["m"])
