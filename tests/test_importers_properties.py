"""Property-based tests of every importer (issue 16, Must show 2): for any generated input,
``monoculture import`` either imports exactly what a reference parser (Python's json and csv
modules, pandas for Parquet, plus each format's documented naming rules) reads, or exits 2 with a
message naming the file; and after a failed command the store is exactly what it was.

Inputs are well-formed files of awkward text (quotes, delimiters, line breaks, non-Latin scripts,
control characters), optionally damaged: truncated, a quote dropped, a field of the wrong type, an
out-of-range sample index, a row that contradicts the store or reuses a prompt id. An undamaged
file must import (exit 0), so the property cannot pass by refusing everything. Deterministic
(``derandomize``) and small, so each test takes a few seconds.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clihelp import mc, snapshot
from monoculture.importers import Imported, import_records
from monoculture.store import Store

SETTINGS = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_INDEX = 2**31 - 1

# -- the store every example starts from -------------------------------------------------------------
SEED_ROW = ("m0", "P", 0, "seed text")


@pytest.fixture(scope="module")
def seed_store(tmp_path_factory) -> tuple[Path, dict, set]:
    """The seed store, its snapshot and its rows (taken once: every example starts from a copy)."""
    path = tmp_path_factory.mktemp("seed") / "seed.duckdb"
    with Store(path) as s:
        import_records(s, [Imported("m0", "seedq", "P", "seed text"), Imported("m0", "other", "Other prompt", "x")], "jsonl")
    return path, snapshot(path), rows_of(path)


def rows_of(store: Path) -> set[tuple]:
    with Store(store, read_only=True) as s:
        got = s.con.execute(
            "SELECT g.model, p.text, g.sample_index, g.text FROM generations g JOIN prompts p USING (prompt_key)"
        ).fetchall()
    return {(m, p.strip(), i, t) for m, p, i, t in got}


class Invalid(Exception):
    """The reference parser's verdict: this input is not importable."""


def check(
    seed_store: tuple[Path, dict, set], fmt: str, target: Path, reference, *, clean: bool, files: list[Path], args=()
) -> None:
    """Run the import on a copy of the seed store and check the property."""
    try:
        expected = reference()
    except (
        Invalid,
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        AttributeError,
        json.JSONDecodeError,
        csv.Error,
        UnicodeDecodeError,
    ):
        expected = None
    with tempfile.TemporaryDirectory() as d:
        store = Path(d) / "s.duckdb"
        seed, before, before_rows = seed_store
        shutil.copy(seed, store)
        code, out = mc("import", fmt, target, "--store", store, *args)
        assert code in (0, 2), out
        if code == 0:
            assert expected is not None, f"imported what the reference parser refuses: {out}"
            assert rows_of(store) == before_rows | expected, out
        else:
            assert not clean, f"an undamaged file was refused: {out}"
            assert out.startswith("error:") and "Traceback" not in out, out
            assert snapshot(store) == before, "a failed import changed the store"
            assert any(str(f) in out for f in files) or str(target) in out, f"the error names no file: {out}"
            for f in files:
                for n in re.findall(re.escape(str(f)) + r":(\d+)", out):
                    assert (
                        1 <= int(n) <= max(1, len(io.StringIO(f.read_bytes().decode("utf-8", "replace"), newline="").readlines()))
                    ), out


# -- strategies -----------------------------------------------------------------------------------------
AWKWARD = st.sampled_from(list("\",;\n\r\t \\'{}[]") + ["\r\n", "é", "中文", "ا", "\u2028", "\x1f", "NaN", "null"])
TEXT = st.lists(
    st.one_of(AWKWARD, st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=6)),
    max_size=5,
).map("".join)
PROMPT = TEXT.filter(lambda s: bool(s.strip()))
MODEL = st.sampled_from(["m1", "m2", 'model, "quoted"', "中文模型"])


DAMAGES = [None, "type", "index", "conflict", "reused-id", "blank-prompt", "duplicate"]


@st.composite
def table(draw, damage: str | None) -> tuple[list[dict], str | None]:
    """Rows (prompt, model, text, and sometimes prompt_id and sample_index) with ``damage`` done
    to them (None: none). Each kind of damage is its own test case, so every kind is tried
    (drawn at random, the undamaged files crowd the rest out)."""
    prompts = draw(st.lists(PROMPT, min_size=1, max_size=4, unique_by=lambda s: s.strip()))
    n = draw(st.integers(1, 8))
    with_ids, with_index = draw(st.booleans()), draw(st.booleans())
    rows, counts = [], {}
    for _ in range(n):
        k = draw(st.integers(0, len(prompts) - 1))
        r = {"prompt": prompts[k], "model": draw(MODEL), "text": draw(TEXT)}
        if with_ids:
            r["prompt_id"] = f"gen-{k}"
        if with_index:
            key = (r["model"], r["prompt"].strip())
            r["sample_index"] = counts.get(key, 0) * 3  # gaps are allowed; duplicates are not
            counts[key] = counts.get(key, 0) + 1
        rows.append(r)
    i = draw(st.integers(0, n - 1))
    if damage == "type":
        rows[i][draw(st.sampled_from(["prompt", "model", "text"]))] = draw(
            st.sampled_from([None, 5, 1.5, True, float("nan"), ["x"]])
        )
    elif damage == "index":
        rows[i]["sample_index"] = draw(st.sampled_from([-1, 2**31, 2**40, 1.5, "x", MAX_INDEX]))
    elif damage == "conflict":
        rows[i].update({"prompt": SEED_ROW[1], "model": SEED_ROW[0], "text": draw(TEXT), "sample_index": 0})
        rows[i].pop("prompt_id", None)
    elif damage == "reused-id":
        rows[i]["prompt_id"] = draw(st.sampled_from(["seedq", "gen-0"]))
    elif damage == "blank-prompt":
        rows[i]["prompt"] = draw(st.sampled_from(["", " ", "\n"]))
    elif damage == "duplicate":
        rows.append(dict(rows[i]))
    return rows, damage


def tabular_reference(records: list[dict]) -> set[tuple]:
    """What the generic importers must read from these records (README / tabular docstring):
    running sample counts per (model, prompt) where there is no sample_index; ids checked."""
    out, counts, keys, ids = set(), {}, set(), {}
    for r in records:
        prompt, model, text = r["prompt"], r["model"], r["text"]
        if not all(isinstance(v, str) for v in (prompt, model, text)) or not prompt.strip() or not model.strip():
            raise Invalid
        key = (model, prompt.strip())
        si = r.get("sample_index")
        if si is None or (isinstance(si, float) and math.isnan(si)):
            si = counts.get(key, 0)
        elif (
            isinstance(si, bool)
            or not (isinstance(si, int) or isinstance(si, float) and si.is_integer())
            or not 0 <= si <= MAX_INDEX
        ):
            raise Invalid
        counts[key] = counts.get(key, 0) + 1
        pid = r.get("prompt_id")
        pid = None if pid is None or pid == "" else str(pid)
        if pid is not None and ids.setdefault(pid, prompt.strip()) != prompt.strip():
            raise Invalid
        if pid == "seedq" and prompt.strip() != "P":
            raise Invalid
        if (model, prompt.strip(), int(si)) in keys:
            raise Invalid
        keys.add((model, prompt.strip(), int(si)))
        out.add((model, prompt.strip(), int(si), text))
    for m, p, i, t in out:
        if (m, p, i) == SEED_ROW[:3] and t != SEED_ROW[3]:
            raise Invalid
    return out


def damage_bytes(data: bytes, how: str | None, pos: int) -> bytes:
    if how == "truncate":
        return data[: pos % max(1, len(data))]
    if how == "drop-quote":
        q = [i for i, b in enumerate(data) if b == ord('"')]
        return data if not q else data[: q[pos % len(q)]] + data[q[pos % len(q)] + 1 :]
    if how == "bad-byte":
        p = pos % max(1, len(data))
        return data[:p] + b"\xff" + data[p:]
    return data


BYTE_DAMAGE = st.sampled_from([None, None, None, "truncate", "drop-quote", "bad-byte"])


# -- jsonl, csv, parquet ----------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", DAMAGES)
@SETTINGS
@given(data=st.data(), ascii_only=st.booleans(), how=BYTE_DAMAGE, pos=st.integers(0, 10_000))
def test_jsonl_property(seed_store, damage, data, ascii_only, how, pos):
    rows, damage = data.draw(table(damage))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "in.jsonl"
        data = "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in rows).encode()
        path.write_bytes(damage_bytes(data, how, pos))

        def reference():
            text = path.read_bytes().decode("utf-8")
            return tabular_reference([json.loads(line) for line in text.split("\n") if line.strip()])

        clean = damage is None and how is None
        check(seed_store, "jsonl", path, reference, clean=clean, files=[path])


@pytest.mark.parametrize("damage", DAMAGES)
@SETTINGS
@given(data=st.data(), delim=st.sampled_from([",", ";", "\t"]), crlf=st.booleans(), how=BYTE_DAMAGE, pos=st.integers(0, 10_000))
def test_csv_property(seed_store, damage, data, delim, crlf, how, pos):
    rows, damage = data.draw(table(damage))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "in.csv"
        cols = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        # csv.writer quotes a field holding a character of its line terminator only: with "\n" a
        # lone "\r" would go out bare (and read back as a line end), so quote everything then
        w = csv.writer(
            buf, delimiter=delim, lineterminator="\r\n" if crlf else "\n", quoting=csv.QUOTE_MINIMAL if crlf else csv.QUOTE_ALL
        )
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
        path.write_bytes(damage_bytes(buf.getvalue().encode(), how, pos))

        def reference():
            text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")
            rd = list(csv.reader(io.StringIO(text, newline=""), delimiter=delim, strict=True))
            header = [h.strip() for h in rd[0]]
            recs = []
            for cells in rd[1:]:
                if not cells or not any(x.strip() for x in cells):
                    continue
                if len(cells) > len(header):
                    raise Invalid
                r = dict(zip(header, cells))
                r = {k: (None if v == "" and k != "text" else v) for k, v in r.items()}
                if r.get("sample_index") is not None:
                    s = r["sample_index"].strip()
                    if not s.lstrip("-").isdigit():
                        raise Invalid
                    r["sample_index"] = int(s)
                recs.append(r)
            if not recs:
                raise Invalid
            return tabular_reference(recs)

        # a text cell "nan" or a model named "NaN" is text in a CSV, not a missing value
        clean = damage is None and how is None
        check(seed_store, "csv", path, reference, clean=clean, files=[path], args=("-o", f"delimiter={delim}"))


@pytest.mark.parametrize("damage", DAMAGES)
@SETTINGS
@given(data=st.data())
def test_parquet_property(seed_store, damage, data):
    rows, damage = data.draw(table(damage))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "in.parquet"
        try:
            pd.DataFrame(rows).to_parquet(path, index=False)
        except Exception:  # noqa: BLE001 - pyarrow raises several types for a column of mixed types, which no real file has
            return

        def reference():
            df = pd.read_parquet(path)
            recs = [
                {
                    k: (None if v is None or isinstance(v, float) and math.isnan(v) and k in ("prompt_id", "sample_index") else v)
                    for k, v in r.items()
                }
                for r in df.to_dict("records")
            ]
            for r in recs:
                if isinstance(r.get("sample_index"), float):
                    if not r["sample_index"].is_integer():
                        raise Invalid
                    r["sample_index"] = int(r["sample_index"])
                if isinstance(r.get("prompt_id"), float):
                    r["prompt_id"] = str(int(r["prompt_id"])) if r["prompt_id"].is_integer() else None
            return tabular_reference(recs)

        check(seed_store, "parquet", path, reference, clean=damage is None, files=[path])


# -- the benchmark formats -------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", DAMAGES)
@SETTINGS
@given(data=st.data(), how=BYTE_DAMAGE, pos=st.integers(0, 10_000))
def test_alpaca_eval_property(seed_store, damage, data, how, pos):
    rows, damage = data.draw(table(damage))
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "results"
        files = []
        by_model: dict = {}
        for r in rows:
            by_model.setdefault(r["model"] if isinstance(r["model"], str) else "m1", []).append(
                {"instruction": r["prompt"], "output": r["text"], "generator": r["model"], "dataset": "set"}
            )
        for k, outs in enumerate(by_model.values()):
            f = root / f"folder{k}" / "model_outputs.json"
            f.parent.mkdir(parents=True)
            f.write_bytes(damage_bytes(json.dumps(outs, indent=1, ensure_ascii=False).encode(), how if k == 0 else None, pos))
            files.append(f)

        def reference():
            out = set()
            texts_by_id: dict = {}
            for f in files:
                items = json.loads(f.read_bytes().decode("utf-8"))
                if not isinstance(items, list) or not items:
                    raise Invalid
                stripped = [
                    o["instruction"].strip() if isinstance(o, dict) and isinstance(o.get("instruction"), str) else None
                    for o in items
                ]
                unique = len(set(stripped)) == len(stripped)
                counts: dict = {}
                for pos_, o in enumerate(items):
                    ins, outp, gen = o["instruction"], o["output"], o.get("generator")
                    if (
                        not isinstance(ins, str)
                        or not isinstance(outp, str)
                        or not ins.strip()
                        or (gen is not None and not isinstance(gen, str))
                    ):
                        raise Invalid
                    model = gen or f.parent.name
                    if unique and texts_by_id.setdefault(f"alpaca-{pos_}", ins.strip()) != ins.strip():
                        raise Invalid  # two prompt sets numbered alike
                    si = counts.get(ins.strip(), 0)
                    counts[ins.strip()] = si + 1
                    if any(o[:3] == (model, ins.strip(), si) for o in out):
                        raise Invalid  # two files give one model the same prompt
                    out.add((model, ins.strip(), si, outp))
            return out

        check(
            seed_store,
            "alpaca-eval",
            root,
            reference,
            clean=damage in (None, "duplicate") and how is None and len(by_model) == 1,
            files=files,
        )


@pytest.mark.parametrize("damage", DAMAGES)
@SETTINGS
@given(data=st.data(), how=BYTE_DAMAGE, pos=st.integers(0, 10_000), v01=st.booleans())
def test_arena_hard_property(seed_store, damage, data, how, pos, v01):
    rows, damage = data.draw(table(damage))
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "bench"
        (root / "model_answer").mkdir(parents=True)
        prompts: list = []  # in order of first use; a damaged prompt may be a list, so no dict.fromkeys
        for r in rows:
            p = r["prompt"].strip() if isinstance(r["prompt"], str) else r["prompt"]
            if p not in prompts:
                prompts.append(p)
        qf = root / "question.jsonl"
        qlines = []
        for k, p in enumerate(prompts):
            turn = {"content": p} if v01 else p
            qlines.append(json.dumps({"question_id": f"q{k}", "category": "c", "turns": [turn]}, ensure_ascii=False))
        qf.write_text("\n".join(qlines) + "\n", encoding="utf-8")
        files = [qf]
        by_model: dict = {}
        for r in rows:
            m = r["model"] if isinstance(r["model"], str) else "m1"
            q = f"q{prompts.index(r['prompt'].strip() if isinstance(r['prompt'], str) else r['prompt'])}"
            idx = r.get("sample_index", len([1 for a in by_model.get(m, []) if a["question_id"] == q]))
            turn = {"content": r["text"], "token_len": 1} if v01 else r["text"]
            by_model.setdefault(m, []).append({"question_id": q, "model_id": m, "choices": [{"index": idx, "turns": [turn]}]})
        for k, answers in enumerate(by_model.values()):
            f = root / "model_answer" / f"model{k}.jsonl"
            data = "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers).encode()
            f.write_bytes(damage_bytes(data, how if k == 0 else None, pos))
            files.append(f)

        def reference():
            qs = {}
            for line in qf.read_text(encoding="utf-8").split("\n"):
                if line.strip():
                    q = json.loads(line)
                    turn = q["turns"][0]
                    text = turn["content"] if isinstance(turn, dict) else turn
                    if not isinstance(text, str) or not text.strip():
                        raise Invalid
                    qs[q["question_id"]] = text
            out = set()
            for f in files[1:]:
                for line in f.read_bytes().decode("utf-8").split("\n"):
                    if not line.strip():
                        continue
                    a = json.loads(line)
                    for ch in a["choices"]:
                        turn = ch["turns"][0]
                        text = turn["content"] if isinstance(turn, dict) else turn
                        idx = ch["index"]
                        if (
                            not isinstance(text, str)
                            or isinstance(idx, bool)
                            or not isinstance(idx, int)
                            or not 0 <= idx <= MAX_INDEX
                        ):
                            raise Invalid
                        row = (f.stem, qs[a["question_id"]].strip(), idx, text)
                        if any(o[:3] == row[:3] for o in out):
                            raise Invalid
                        out.add(row)
            return out

        check(
            seed_store,
            "arena-hard",
            root,
            reference,
            clean=damage in (None, "conflict", "reused-id") and how is None,
            files=files,
        )


@pytest.mark.parametrize("damage", DAMAGES)
@SETTINGS
@given(
    data=st.data(), how=BYTE_DAMAGE, pos=st.integers(0, 10_000), stem=st.sampled_from(["gpt-4o", "gpt-4o-paraphrase", "scores"])
)
def test_noveltybench_property(seed_store, damage, data, how, pos, stem):
    rows, damage = data.draw(table(damage))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{stem}.jsonl"
        lines: dict = {}
        for r in rows:
            key = (
                r["prompt"] if isinstance(r["prompt"], str) else str(r["prompt"]),
                r["model"] if isinstance(r["model"], str) else "m1",
            )
            lines.setdefault(key, {"id": r.get("prompt_id"), "prompt": r["prompt"], "model": r["model"], "generations": []})[
                "generations"
            ].append(r["text"])
        data = "".join(
            json.dumps({k: v for k, v in obj.items() if v is not None or k != "id"}, ensure_ascii=False) + "\n"
            for obj in lines.values()
        ).encode()
        path.write_bytes(damage_bytes(data, how, pos))

        def reference():
            objs = [json.loads(line) for line in path.read_bytes().decode("utf-8").split("\n") if line.strip()]
            by_stem = len({o["model"] for o in objs}) == 1 and stem != "scores"
            out, ids = set(), {}
            for o in objs:
                p, m, gens = o["prompt"], o["model"], o["generations"]
                if (
                    not isinstance(p, str)
                    or not isinstance(m, str)
                    or not p.strip()
                    or not m.strip()
                    or not all(isinstance(g, str) for g in gens)
                ):
                    raise Invalid
                pid = o.get("id")
                if pid is not None and ids.setdefault(str(pid), p.strip()) != p.strip():
                    raise Invalid
                for i, g in enumerate(gens):
                    row = (stem if by_stem else m, p.strip(), i, g)
                    if any(x[:3] == row[:3] for x in out):
                        raise Invalid
                    out.add(row)
            if not out:
                raise Invalid
            return out

        clean = damage in (None, "index", "duplicate") and how is None
        check(seed_store, "noveltybench", path, reference, clean=clean, files=[path])
