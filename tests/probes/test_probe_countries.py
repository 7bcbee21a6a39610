"""Human reference data: GlobalOpinionQA's layout and the plain long format, in files the team
wrote (the real GlobalOpinionQA file is not redistributable)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from monoculture.errors import UserError
from monoculture.probes.countries import load_countries
from monoculture.probes.items import load_items


@pytest.fixture(scope="module")
def items():
    return load_items("values")


def write_goqa(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["question", "selections", "options", "source"])
        for q, sel, opts in rows:
            w.writerow([q, sel, opts, "WVS"])
    return path


def sel(d: dict) -> str:
    return f"defaultdict(<class 'list'>, {d!r})"


def test_globalopinionqa_layout_matched_by_question_text(tmp_path, items):
    f = write_goqa(
        tmp_path / "goqa.csv",
        [
            # exact text, with a DK/Refused option the suite does not have: dropped and renormalised
            (
                "How important is religion in your life?",
                sel({"Nigeria": [0.8, 0.1, 0.05, 0.0, 0.05], "Germany": [0.1, 0.2, 0.3, 0.3, 0.1]}),
                "['Very important', 'Rather important', 'Not very important', 'Not at all important', 'DK/Refused']",
            ),
            # normalised text match (case, spacing, punctuation), options in another order
            (
                "  how IMPORTANT is work in your life ",
                sel({"Nigeria": [0.1, 0.2, 0.3, 0.4]}),
                "['Not at all important', 'Not very important', 'Rather important', 'Very important']",
            ),
            # a question the suite does not ask: counted, not an error
            ("Do you like cheese?", sel({"France": [1.0, 0.0]}), "['Yes', 'No']"),
        ],
    )
    data = load_countries(f, items)
    assert set(data.countries) == {"Nigeria", "Germany"}
    assert data.unmatched == 1
    np.testing.assert_allclose(data.dists[("val-01", "Nigeria")], np.array([0.8, 0.1, 0.05, 0.0]) / 0.95)
    assert data.dropped[("val-01", "Nigeria")] == pytest.approx(0.05)
    np.testing.assert_allclose(data.dists[("val-31", "Nigeria")], [0.4, 0.3, 0.2, 0.1])


def test_globalopinionqa_question_text_in_another_suite_language(tmp_path, items):
    f = write_goqa(
        tmp_path / "goqa.csv",
        [
            (
                "宗教在您的生活中有多重要？",
                sel({"China": [0.05, 0.1, 0.35, 0.5]}),
                "['非常重要', '比较重要', '不太重要', '一点也不重要']",
            )
        ],
    )
    assert load_countries(f, items).dists[("val-01", "China")][3] == pytest.approx(0.5)


def test_globalopinionqa_with_a_mapping_file(tmp_path, items):
    d = tmp_path / "human"
    d.mkdir()
    write_goqa(
        d / "goqa.csv",
        [
            (
                "How important is God in your life? (1-4 scale)",
                sel({"Kenya": [0.7, 0.2, 0.06, 0.04, 0.0], "Japan": [0.1, 0.1, 0.3, 0.4, 0.1]}),
                "['1', '2', '3', '4', \"Don't know\"]",
            ),
            ("Religion is important", sel({"Kenya": [0.9, 0.1]}), "['Agree', 'Disagree']"),
        ],
    )
    (d / "question_map.csv").write_text(
        "question,item,options\n"
        'How important is God in your life? (1-4 scale),val-01,"1,2,3,4,-"\n'
        'Religion is important,val-24-en,"1,4"\n',
        encoding="utf-8",
    )
    data = load_countries(d, items)
    np.testing.assert_allclose(data.dists[("val-01", "Kenya")], [0.7, 0.2, 0.06, 0.04])
    np.testing.assert_allclose(data.dists[("val-24", "Kenya")], [0.9, 0, 0, 0.1])
    assert data.dropped[("val-01", "Japan")] == pytest.approx(0.1)


def test_globalopinionqa_unmatched_options_skip_the_question_with_a_reason(tmp_path, items):
    f = write_goqa(
        tmp_path / "goqa.csv",
        [
            ("How important is religion in your life?", sel({"Chile": [0.5, 0.5]}), "['Important', 'Not important']"),
            (
                "How important is work in your life?",
                sel({"Chile": [0.4, 0.3, 0.2, 0.1]}),
                "['Very important', 'Rather important', 'Not very important', 'Not at all important']",
            ),
        ],
    )
    data = load_countries(f, items)
    assert list(data.dists) == [("val-31", "Chile")]
    assert len(data.skipped) == 1 and "val-01" in data.skipped[0] and "mapping file" in data.skipped[0]


def test_selections_are_never_evaluated_as_code(tmp_path, items):
    marker = tmp_path / "PWNED"
    f = write_goqa(
        tmp_path / "evil.csv",
        [
            (
                "How important is religion in your life?",
                f"defaultdict(<class 'list'>, {{'X': __import__('os').system('touch {marker}')}})",
                "['Very important', 'Rather important', 'Not very important', 'Not at all important']",
            ),
        ],
    )
    with pytest.raises(UserError, match=r"evil.csv:2: selections: not a plain Python literal"):
        load_countries(f, items)
    assert not marker.exists()
    f2 = write_goqa(
        tmp_path / "evil2.csv",
        [("How important is religion in your life?", sel({"X": [0.5, 0.5, 0, 0]}), "__import__('os').getcwd()")],
    )
    with pytest.raises(UserError, match="options: not a plain Python literal"):
        load_countries(f2, items)


def test_long_format_with_numbers_letters_and_texts(tmp_path, items):
    f = tmp_path / "long.csv"
    f.write_text(
        "question_id,country,option,share\n"
        "val-01,Egypt,1,60\n"
        "val-01,Egypt,B,30\n"
        "val-01,Egypt,Not very important,10\n"
        "val-06-en,Egypt,A good thing,0.2\n"  # an item id stands for its question group
        "val-06-en,Egypt,3,0.8\n"
        "not-in-suite,Egypt,1,1\n",
        encoding="utf-8",
    )
    data = load_countries(f, items)
    np.testing.assert_allclose(data.dists[("val-01", "Egypt")], [0.6, 0.3, 0.1, 0.0])
    np.testing.assert_allclose(data.dists[("val-06", "Egypt")], [0.2, 0.0, 0.8])
    assert data.unmatched == 1


def test_long_format_jsonl_and_option_text_in_other_languages(tmp_path, items):
    f = tmp_path / "long.jsonl"
    rows = [
        {"item": "val-01", "country": "Russia", "option": "Очень важно", "proportion": 1},
        {"item": "val-01", "country": "Russia", "option": "一点也不重要", "proportion": 3},
    ]
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    np.testing.assert_allclose(load_countries(f, items).dists[("val-01", "Russia")], [0.25, 0, 0, 0.75])


@pytest.mark.parametrize(
    "body, match",
    [
        ("question_id,country,option,share\nval-01,Egypt,7,1\n", r"long.csv:2: option '7' is not one of"),
        ("question_id,country,option,share\nval-01,Egypt,1,-3\n", r"long.csv:2: share '-3' is not a non-negative"),
        ("question_id,country,option,share\nval-01,Egypt,1,lots\n", r"long.csv:2: share 'lots' is not a number"),
        ("q,nation,answer\nval-01,Egypt,1\n", r"unrecognised columns"),
        ("question_id,country,option,share\nnope,Egypt,1,1\n", r"no question in the countries data matches the suite"),
    ],
)
def test_long_format_errors_name_the_line(tmp_path, items, body, match):
    f = tmp_path / "long.csv"
    f.write_text(body, encoding="utf-8")
    with pytest.raises(UserError, match=match):
        load_countries(f, items)


def test_missing_path_and_empty_directory(tmp_path, items):
    with pytest.raises(UserError, match="not found"):
        load_countries(tmp_path / "nope.csv", items)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no data files"):
        load_countries(tmp_path / "empty", items)


def test_a_question_repeated_in_the_file_keeps_the_first(tmp_path, items):
    opts = "['Very important', 'Rather important', 'Not very important', 'Not at all important']"
    f = write_goqa(
        tmp_path / "goqa.csv",
        [
            ("How important is religion in your life?", sel({"Peru": [1, 0, 0, 0]}), opts),
            ("How important is religion in your life?", sel({"Peru": [0, 0, 0, 1]}), opts),
        ],
    )
    data = load_countries(f, items)
    np.testing.assert_allclose(data.dists[("val-01", "Peru")], [1, 0, 0, 0])
    assert "first is kept" in data.skipped[0]


# -- issue 16 item 8: a repeated or null row in the long format is an error, never summed or "nan" --
def test_long_format_duplicate_row_names_both_lines(tmp_path, items):
    f = tmp_path / "long.csv"
    f.write_text(
        "question_id,country,option,share\nval-01,Egypt,1,0.5\nval-01,Egypt,2,0.5\nval-01,Egypt,1,0.5\n", encoding="utf-8"
    )
    with pytest.raises(UserError, match=r"long.csv:4: .*Egypt.*again.*line 2"):
        load_countries(f, items)


def test_long_format_duplicate_through_an_item_id_is_an_error(tmp_path, items):
    f = tmp_path / "long.csv"
    f.write_text("question_id,country,option,share\nval-01,Peru,A,1\nval-01-en,Peru,A,1\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"long.csv:3: .*line 2"):
        load_countries(f, items)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
@pytest.mark.parametrize("column", ["country", "option", "question_id", "share"])
def test_long_format_null_cell_is_an_error_naming_the_line(tmp_path, items, suffix, column):
    rows = [
        {"question_id": "val-01", "country": "Egypt", "option": "1", "share": 0.5},
        {"question_id": "val-01", "country": "Egypt", "option": "2", "share": 0.5},
    ]
    rows[1][column] = None
    f = tmp_path / f"long{suffix}"
    if suffix == ".jsonl":
        f.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    elif suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(rows).to_parquet(f)
    else:
        f.write_text(
            "question_id,country,option,share\n"
            + "\n".join(",".join("" if r[c] is None else str(r[c]) for c in rows[0]) for r in rows)
            + "\n",
            encoding="utf-8",
        )
    where = {".jsonl": "long.jsonl:2", ".parquet": "long.parquet row 2", ".csv": "long.csv:3"}[suffix]
    with pytest.raises(UserError, match=rf"{where}: .*{column}") as e:
        load_countries(f, items)
    assert "nan" not in str(e.value).lower() and "None" not in str(e.value)


def test_countries_files_are_decoded_like_every_import(tmp_path, items):
    """A BOM is dropped (a BOM-prefixed .jsonl used to be "cannot read file") and a latin-1 byte
    is an error naming the line."""
    f = tmp_path / "long.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + json.dumps({"item": "val-01", "country": "Peru", "option": 1, "share": 1}).encode() + b"\n")
    np.testing.assert_allclose(load_countries(f, items).dists[("val-01", "Peru")], [1, 0, 0, 0])
    g = tmp_path / "long.csv"
    g.write_bytes("question_id,country,option,share\nval-01,Peru,1,1\nval-01,Per\u00fa,1,1\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"long.csv:3: not valid UTF-8"):
        load_countries(g, items)
    h = tmp_path / "cut.jsonl"
    h.write_text('{"item": "val-01", "country": "Peru", "option": 1, "share": 1}\n{"item": "val-01", "coun\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"cut.jsonl:2: not valid JSON"):
        load_countries(h, items)


# -- property: the long format loads exactly what a reference reading gives, or names the line ----
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_cell = st.one_of(
    st.sampled_from(["", " ", "nan", "inf", "[/x]", "1", "a", "A", "9", "0"]), st.text(alphabet='abcd,"\n -', max_size=4)
)
_row = st.tuples(
    st.one_of(st.sampled_from(["val-01", "val-02", "nope"]), _cell),
    st.one_of(st.sampled_from(["Peru", "Chad"]), _cell),
    st.one_of(st.sampled_from(["1", "2", "3", "B"]), _cell),
    st.one_of(st.sampled_from(["0", "1", "2.5", "-1"]), _cell),
)


def _reference(rows, items):
    """What the file says, read by hand: None when some line must be refused."""
    n = {it.group: len(it.options) for it in items}
    acc, seen = {}, set()
    for q, c, o, s in rows:
        if not q.strip():
            return None
        if q.strip() not in n:  # rows of questions the suite lacks are ignored whole
            continue
        if not c.strip() or not o.strip() or not s.strip():
            return None
        o = o.strip()
        opt = (
            int(o) - 1 if o.isdigit() else "ABCD".index(o.upper()) if o.upper() in ("A", "B", "C", "D") and len(o) == 1 else None
        )
        if opt is None or not 0 <= opt < n[q.strip()]:
            return None
        try:
            share = float(s)
        except ValueError:
            return None
        if not np.isfinite(share) or share < 0 or (q.strip(), c.strip(), opt) in seen:
            return None
        seen.add((q.strip(), c.strip(), opt))
        acc.setdefault((q.strip(), c.strip()), np.zeros(n[q.strip()]))[opt] += share
    return {k: v / v.sum() for k, v in acc.items() if v.sum() > 0}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_row, min_size=1, max_size=6))
def test_long_format_property(tmp_path_factory, items, rows):
    rows = [
        r for r in rows if not any(ch in x for x in r for ch in ',"\n')
    ]  # keep the CSV plain: quoting is the CSV reader's job
    if not rows:
        return
    f = tmp_path_factory.mktemp("long") / "long.csv"
    f.write_text("question_id,country,option,share\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    want = _reference(rows, items)
    try:
        got = load_countries(f, items)
    except UserError as e:
        assert "long.csv" in str(e)
        assert want is None or not want, (rows, str(e))
        return
    assert want is not None and set(got.dists) == set(want), rows
    for k, v in want.items():
        np.testing.assert_allclose(got.dists[k], v)
