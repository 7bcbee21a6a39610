"""Stored measurements: every one kept, typed tables that round-trip, labels, and `ls`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from monoculture.errors import UserError
from monoculture.importers import Imported, import_records
from monoculture.measure import measure
from monoculture.results import (
    list_runs,
    load_results,
    read_frame,
    resolve_label,
    write_frame,
)
from monoculture.store import Store

TOPICS = ["the sea", "a mountain", "bread", "winter", "a library", "trains", "music", "gardens"]
STYLES = {
    "poet-a": "O {t}, you shine and sing; verse {i} of my little song about {t}.",
    "poet-b": "O {t}, you shine and sing; stanza {i} of my small song on {t}.",
    "lister": "1. {t} facts\n2. more about {t}\n3. item {i}",
    "pundit": "In my view, {t} matters because people need it (take {i}).",
    "human": "Honestly I just like {t}, number {i} on my list.",
}
ATTRS = {
    "poet-a": {"family": "poets"},
    "poet-b": {"family": "poets", "base_model": "poet-a"},
    "lister": {"family": "listers"},
    "pundit": {"family": "pundits"},
    "human": {"family": "people"},
}


def make_store(path) -> Store:
    st = Store(path)
    recs = [
        Imported(m, f"{p}", f"Tell me about {t}.", fmt.format(t=t, i=i), sample_index=i)  # ids "0".."7": numbers-as-text
        for m, fmt in STYLES.items()
        for p, t in enumerate(TOPICS)
        for i in range(2)
    ]
    import_records(st, recs, "jsonl")
    st.upsert_models(
        [{"name": m, "backend": "import", "model_id": m, "source": "jsonl", "attributes": a} for m, a in ATTRS.items()]
    )
    return st


@pytest.fixture
def store(tmp_path):
    with make_store(tmp_path / "r.duckdb") as st:
        yield st


def _same(a: pd.DataFrame, b: pd.DataFrame, name: str) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
    assert [str(t) for t in a.dtypes] == [str(t) for t in b.dtypes], name
    assert a.index.names == b.index.names and str(a.index.dtype) == str(b.index.dtype), name
    assert a.columns.name == b.columns.name and str(a.columns.dtype) == str(b.columns.dtype), name


def test_every_table_of_a_real_measurement_round_trips(store):
    m = measure(
        store, embedder="tfidf", n_boot=30, groups=["family"], what_if_removed=["poets"], reference="human", show_progress=False
    )
    assert {
        "per_model",
        "similarity",
        "similarity_prompts",
        "per_prompt",
        "loo_per_prompt",
        "groups",
        "lexical",
        "pairwise_auc",
        "lineage",
        "accent",
    } <= set(m.tables)
    back = load_results(store, m.label)
    assert list(back.tables) == list(m.tables)
    for name, df in m.tables.items():
        _same(back.tables[name], df, name)
    assert back.tables["per_prompt"].index[0] == "0"  # an id that looks like a number stays text
    assert back.summary == json.loads(json.dumps(back.summary)) and back.summary["voices"] == pytest.approx(m.summary["voices"])
    # real typed tables, readable with SQL
    (sql_table,) = store.con.execute(
        "SELECT sql_table FROM measure_tables WHERE label = ? AND name = 'per_model'", [m.label]
    ).fetchone()
    types = dict(
        store.con.execute(
            f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{sql_table}'"
        ).fetchall()
    )
    assert (
        types["model"] == "VARCHAR"
        and types["responses"] == "BIGINT"
        and types["W"] == "DOUBLE"
        and types["indistinguishable"] == "BOOLEAN"
    )


def test_awkward_frames_round_trip(tmp_path):
    """Mixed columns, names DuckDB would fold together, lists, nullable ints, empty tables, MultiIndex."""
    with Store(tmp_path / "a.duckdb") as st:
        frames = {
            "mixed": pd.DataFrame(
                {
                    "a": [1, 2],
                    "A": [1.5, np.nan],
                    "members": [["x", "y"], []],
                    "s": pd.Series(["u", None], dtype="str"),
                    "o": pd.Series(["u", None], dtype=object),
                    "b": [True, False],
                    "mix": [1, "two"],
                    "n": pd.array([1, None], dtype="Int64"),
                    "f32": np.array([1, 2], dtype=np.float32),
                    "_row": [9, 8],
                },
                index=pd.Index(["12", "p<b>"], name="model"),
            ),
            "square": pd.DataFrame(np.eye(2), index=["GPT", "gpt"], columns=pd.Index(["GPT", "gpt"], name="to")),
            "empty": pd.DataFrame(columns=["attribute", "members", "size"], index=pd.Index([], name="group_key")),
            "plain": pd.DataFrame({"v": [3, 1, 2]}),
            "multi": pd.DataFrame({"index": [3, 4]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", None])),
        }
        for i, (name, df) in enumerate(frames.items()):
            write_frame(st.con, "L", name, f"t_{name}", i, df)
        for name, df in frames.items():
            t, spec = st.con.execute("SELECT sql_table, spec FROM measure_tables WHERE name = ?", [name]).fetchone()
            _same(read_frame(st.con, t, json.loads(spec)), df, name)


def test_other_settings_add_a_measurement_same_settings_replace_it(store):
    a = measure(store, embedder="tfidf", n_boot=30, show_progress=False)
    b = measure(store, embedder="tfidf", n_boot=30, tau=0.5, show_progress=False)
    c = measure(store, embedder="tfidf", n_boot=40, show_progress=False)
    d = measure(store, embedder="tfidf", n_boot=30, what_if_removed=["poets"], show_progress=False)
    e = measure(store, embedder="tfidf", n_boot=30, reference="human", show_progress=False)
    labels = [a.label, b.label, c.label, d.label, e.label]
    assert len(set(labels)) == 5 and all(x.startswith("*|tfidf") and x.count("|") == 3 for x in labels)
    # the settings that count are the ones in effect: --groups family is the default here
    assert measure(store, embedder="tfidf", n_boot=30, groups=["family"], show_progress=False).label == a.label
    again = measure(store, embedder="tfidf", n_boot=30, tau=0.5, show_progress=False)
    assert again.label == b.label
    runs = list_runs(store)
    assert sorted(runs["label"]) == sorted(labels) and runs["label"].iloc[0] == b.label  # replaced, and now the latest
    n_tables = store.con.execute("SELECT count(*) FROM measure_tables WHERE label = ?", [b.label]).fetchone()[0]
    assert n_tables == len(again.tables)  # the replaced measurement's tables went with it
    assert load_results(store).label == b.label
    assert load_results(store, a.label).settings["tau"] is None and load_results(store, b.label).settings["tau"] == 0.5
    assert load_results(store, a.label.rsplit("|", 1)[1][:6]).label == a.label  # a prefix of the tag
    with pytest.raises(UserError, match="matches 5 measurements"):
        resolve_label(store, "*|tfidf")
    with pytest.raises(
        UserError, match=r"no measurement labelled 'nope'; labels: .*" + b.label.replace("|", r"\|").replace("*", r"\*")
    ):
        load_results(store, "nope")


def test_nothing_measured_is_a_clear_error(tmp_path):
    with Store(tmp_path / "e.duckdb") as st, pytest.raises(UserError, match="nothing measured yet"):
        load_results(st)


def test_cli_two_taus_both_survive_listed_and_rendered(store, tmp_path):
    """Must show 4: two measurements with different --tau both survive and both render."""
    from typer.testing import CliRunner

    from monoculture.cli import app

    path = str(store.path)
    store.close()
    run = CliRunner().invoke
    for tau in ("0.3", "0.9"):
        r = run(app, ["measure", path, "--embedder", "tfidf", "-B", "30", "--tau", tau, "--json"])
        assert r.exit_code == 0, r.output
    r = run(app, ["ls", path], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    with Store(path, read_only=True) as st:
        runs = list_runs(st)
    assert len(runs) == 2 and sorted(s["tau"] for s in runs["settings"]) == [0.3, 0.9]
    for lab in runs["label"]:
        assert lab in r.output
    assert "tau=0.3" in r.output and "tau=0.9" in r.output
    for lab, s in zip(runs["label"], runs["settings"]):
        out = tmp_path / f"{s['tau']}.html"
        res = run(app, ["report", path, "-o", str(out), "--label", lab.rsplit("|", 1)[1]])  # the tag alone picks it
        assert res.exit_code == 0, res.output
        html = out.read_text(encoding="utf-8")
        assert f"measurement <code><bdi>{lab}</bdi></code>" in html
    res = run(app, ["report", path, "-o", str(tmp_path / "latest.html")])
    assert res.exit_code == 0 and f"<code><bdi>{runs['label'].iloc[0]}</bdi></code>" in (tmp_path / "latest.html").read_text(
        encoding="utf-8"
    )
    res = run(app, ["report", path, "-o", str(tmp_path / "x.html"), "--label", "nope"])
    assert res.exit_code == 2 and "no measurement labelled 'nope'" in res.output and runs["label"].iloc[1] in res.output
