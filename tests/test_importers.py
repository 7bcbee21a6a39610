"""Importers: the real shared data (skipped when absent) and small files written here."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from monoculture.errors import UserError
from monoculture.importers import FORMATS, alpaca_eval, arena_hard, import_records, noveltybench, reader, tabular
from monoculture.store import Store


def counts(store: Store) -> tuple[int, int, int]:
    c = store.con
    return tuple(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("generations", "prompts", "models"))


def shared_by_all(store: Store) -> bool:
    """Every prompt answered by every model."""
    g = store.generations()
    per_prompt = g.groupby("prompt_key")["model"].nunique()
    return bool((per_prompt == g["model"].nunique()).all())


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_formats_resolve():
    for fmt in FORMATS:
        assert callable(reader(fmt))
    with pytest.raises(UserError, match="unknown import format"):
        reader("nope")


# -- real data ---------------------------------------------------------------------------------------
def test_alpaca_eval_real(shared_data, store_path):
    results = shared_data / "alpaca_eval" / "results"
    model_dirs = sorted(d for d in results.iterdir() if (d / "model_outputs.json").is_file())
    assert len(model_dirs) == 28
    n_prompts = len(json.loads((model_dirs[0] / "model_outputs.json").read_text(encoding="utf-8")))
    assert n_prompts == 805

    t0 = time.perf_counter()
    records = alpaca_eval.read(results)
    with Store(store_path) as store:
        stats = import_records(store, records, "alpaca_eval")
        elapsed = time.perf_counter() - t0
        assert elapsed < 10, f"importing AlpacaEval took {elapsed:.1f}s"
        assert stats == {"records": 805 * 28, "new": 805 * 28, "unchanged": 0, "replaced": 0, "models": 28, "prompts": 805}
        assert counts(store) == (22_540, 805, 28)
        assert shared_by_all(store)
        g = store.generations()
        assert set(g["model"]) == {d.name for d in model_dirs}
        assert (g.groupby("model").size() == 805).all()
        # text_davinci_003's two empty outputs are kept, as empty strings
        empty = g[g["text"] == ""]
        assert list(empty["model"]) == ["text_davinci_003", "text_davinci_003"]
        assert set(g["prompt_id"]) == {f"alpaca-{i}" for i in range(805)}
        assert Counter(store.prompts()["category"]) == {
            "selfinstruct": 252,
            "oasst": 188,
            "koala": 156,
            "helpful_base": 129,
            "vicuna": 80,
        }

        again = import_records(store, alpaca_eval.read(results), "alpaca_eval")
        assert (again["new"], again["unchanged"]) == (0, 22_540)
        assert counts(store) == (22_540, 805, 28)


def test_alpaca_eval_real_single_model(shared_data):
    folder = shared_data / "alpaca_eval" / "results" / "vicuna-7b-v1.5"
    by_folder = alpaca_eval.read(folder)
    by_file = alpaca_eval.read(folder / "model_outputs.json")
    assert len(by_folder) == len(by_file) == 805
    assert {r.model for r in by_folder} == {"vicuna-7b-v1.5"}
    assert [r.text for r in by_folder] == [r.text for r in by_file]


def test_arena_bench_real(shared_data, store_path):
    root = shared_data / "arena_bench_v1"
    answer_files = sorted((root / "model_answer").glob("*.jsonl"))
    n_questions = sum(1 for line in (root / "question.jsonl").read_text(encoding="utf-8").splitlines() if line.strip())
    assert n_questions == 300 and len(answer_files) == 13  # SOURCES.md: 4 of 17 answer files removed

    records = arena_hard.read(root)
    assert len(records) == n_questions * len(answer_files)
    assert {r.model for r in records} == {f.stem for f in answer_files}
    # SOURCES.md: Llama-2-70b-chat, gpt-3.5-turbo and vicuna-33b-v1.3 each have 6 answers with 2-3 turns
    multi = Counter(r.model for r in records if r.meta["n_turns"] > 1)
    assert multi == {"Llama-2-70b-chat": 6, "gpt-3.5-turbo": 6, "vicuna-33b-v1.3": 6}
    assert all(r.meta["n_turns"] in (2, 3) for r in records if r.meta["n_turns"] > 1)
    mixtral = {r.meta["model_id"] for r in records if r.model == "Mixtral-8x7B-Instruct-v0.1"}
    assert mixtral == {"mistralai/Mixtral-8x7B-Instruct-v0.1"}

    with Store(store_path) as store:
        import_records(store, records, "arena_bench_v1")
        assert counts(store) == (n_questions * len(answer_files), n_questions, len(answer_files))
        assert shared_by_all(store)
        import_records(store, arena_hard.read(root / "model_answer"), "arena_bench_v1")
        assert counts(store) == (n_questions * len(answer_files), n_questions, len(answer_files))


def test_noveltybench_real(shared_data, store_path):
    folder = shared_data / "noveltybench" / "sample_data"
    files = sorted(folder.glob("*.jsonl"))
    assert len(files) == 5
    records = noveltybench.read(folder)
    per_model = Counter(r.model for r in records)
    assert set(per_model) == {"humans", "gpt-4o", "gpt-4o-in-context", "gpt-4o-paraphrase", "gpt-4o-system-prompt"}
    assert per_model["humans"] == 100 * 8
    assert all(n == 100 * 10 for m, n in per_model.items() if m != "humans")
    assert len({r.prompt for r in records}) == 100
    assert all("partition_label" in r.meta for r in records)
    assert {r.meta["model_field"] for r in records if r.model.startswith("gpt-4o")} == {"gpt-4o-2024-11-20"}

    with Store(store_path) as store:
        import_records(store, records, "noveltybench")
        assert counts(store) == (4800, 100, 5)
        g = store.generations()
        spp = g.groupby(["model", "prompt_key"]).size()
        assert (spp.loc["humans"] == 8).all() and (spp.drop("humans") == 10).all()
        assert shared_by_all(store)

    with pytest.raises(UserError, match="model_from='file'"):
        noveltybench.read(folder, model_from="model")
    assert {r.model for r in noveltybench.read(folder, model_from="file")} == {f.stem for f in files}
    # a lone file gets the name it gets in the folder (the name depends on the file alone)
    assert {r.model for r in noveltybench.read(folder / "gpt-4o.jsonl")} == {"gpt-4o"}
    assert {r.model for r in noveltybench.read(folder / "gpt-4o.jsonl", model_from="model")} == {"gpt-4o-2024-11-20"}
    with pytest.raises(UserError, match=r"curated\.jsonl:1: no generations"):
        noveltybench.read(shared_data / "noveltybench" / "data" / "curated.jsonl")


# -- tabular -----------------------------------------------------------------------------------------
ROWS = [
    {"prompt_id": "q1", "prompt": "Name a colour.", "model": "m1", "text": "Blue."},
    {"prompt_id": "q1", "prompt": "Name a colour.", "model": "m1", "text": "Red."},
    {"prompt_id": "q1", "prompt": "Name a colour.", "model": "m2", "text": "Green."},
    {"prompt_id": "q2", "prompt": "Name a fruit,\nplease.", "model": "m1", "text": ""},
    {"prompt_id": "q2", "prompt": "Name a fruit,\nplease.", "model": "m2", "text": 'Pear, "ripe".'},
]
RENAMES = {"prompt_id": "qid", "prompt": "instruction", "model": "generator", "text": "output"}


def write_table(tmp_path: Path, fmt: str, rows: list[dict], name: str = "t") -> Path:
    df = pd.DataFrame(rows)
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, rows)
    elif fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("mapped", [False, True])
def test_tabular_roundtrip(tmp_path, store_path, fmt, mapped):
    rows = [{RENAMES.get(k, k): v for k, v in r.items()} for r in ROWS] if mapped else ROWS
    path = write_table(tmp_path, fmt, rows)
    mapping = [f"{k}={v}" for k, v in RENAMES.items()] if mapped and fmt == "csv" else (RENAMES if mapped else None)
    records = reader(fmt)(path, mapping=mapping)
    got = [(r.model, r.prompt_id, r.prompt, r.sample_index, r.text) for r in records]
    assert got == [
        ("m1", "q1", "Name a colour.", 0, "Blue."),
        ("m1", "q1", "Name a colour.", 1, "Red."),
        ("m2", "q1", "Name a colour.", 0, "Green."),
        ("m1", "q2", "Name a fruit,\nplease.", 0, ""),
        ("m2", "q2", "Name a fruit,\nplease.", 0, 'Pear, "ripe".'),
    ]
    with Store(store_path) as store:
        import_records(store, records, fmt)
        assert counts(store) == (5, 2, 2)
        import_records(store, records, fmt)
        assert counts(store) == (5, 2, 2)
    if mapped:  # without the mapping the renamed columns are not found, and the error lists them
        with pytest.raises(UserError, match=r"'prompt'.*instruction"):
            reader(fmt)(path)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_tabular_sample_index_and_optional_columns(tmp_path, fmt):
    rows = [
        {"prompt": "P", "model": "m", "text": "a", "sample_index": 3, "category": "c"},
        {"prompt": "P", "model": "m", "text": "b", "sample_index": 7, "category": "c"},
    ]
    records = reader(fmt)(write_table(tmp_path, fmt, rows))
    assert [r.sample_index for r in records] == [3, 7]
    assert {r.category for r in records} == {"c"}
    assert len({r.prompt_id for r in records}) == 1  # derived from the text when absent
    rows[1]["sample_index"] = 3
    with pytest.raises(UserError, match="two records for model 'm'"):
        reader(fmt)(write_table(tmp_path, fmt, rows, "dup"))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_tabular_missing_column(tmp_path, fmt):
    rows = [{"prompt": "P", "model": "m", "answer": "a"}]
    path = write_table(tmp_path, fmt, rows)
    with pytest.raises(UserError) as e:
        reader(fmt)(path)
    msg = str(e.value)
    assert str(path) in msg and "'text'" in msg and "'answer'" in msg
    assert len(reader(fmt)(path, mapping={"text": "answer"})) == 1


def test_tabular_non_string_text(tmp_path):
    path = write_table(
        tmp_path, "parquet", [{"prompt": "P", "model": "m", "text": "ok"}, {"prompt": "Q", "model": "m", "text": None}]
    )
    with pytest.raises(UserError, match=r"t\.parquet: row 2: 'text' must be a string"):
        tabular.read_parquet(path)
    path = write_jsonl(
        tmp_path / "n.jsonl", [{"prompt": "P", "model": "m", "text": "ok"}, {"prompt": "Q", "model": "m", "text": 5}]
    )
    with pytest.raises(UserError, match=r"n\.jsonl:2: 'text' must be a string, got a number"):
        tabular.read_jsonl(path)
    path = tmp_path / "n.csv"
    path.write_text('prompt,model,text\n"multi\nline",m,t\nQ,,t\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"n\.csv:4: row 2: 'model'"):
        tabular.read_csv(path)


def test_tabular_bad_mapping(tmp_path):
    path = write_table(tmp_path, "jsonl", ROWS)
    with pytest.raises(UserError, match="unknown field"):
        tabular.read_jsonl(path, mapping={"txt": "output"})
    with pytest.raises(UserError, match="not take option"):
        tabular.read_jsonl(path, bogus=1)


# -- the other formats on small files ------------------------------------------------------------------
def test_alpaca_eval_small(tmp_path):
    res = tmp_path / "results"

    def write(d, rows):
        (res / d).mkdir(parents=True, exist_ok=True)
        (res / d / "model_outputs.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")

    write(
        "a",
        [
            {"instruction": "X", "output": "1", "generator": "model-a", "dataset": "s"},
            {"instruction": "Y", "output": "", "generator": "model-a", "dataset": "s"},
        ],
    )
    # no generator: the folder names the model; a repeated instruction is a second sample
    write("b", [{"instruction": "X", "output": "2"}, {"instruction": "X ", "output": "3"}, {"instruction": "Y", "output": "4"}])
    records = alpaca_eval.read(res)
    got = sorted((r.model, r.prompt.strip(), r.sample_index, r.text) for r in records)
    assert got == [("b", "X", 0, "2"), ("b", "X", 1, "3"), ("b", "Y", 0, "4"), ("model-a", "X", 0, "1"), ("model-a", "Y", 0, "")]
    assert {r.prompt_id for r in records if r.model == "model-a"} == {"alpaca-0", "alpaca-1"}
    assert all(r.prompt_id.startswith("alpaca-") and len(r.prompt_id) > 10 for r in records if r.model == "b")
    write("c", [{"instruction": "X", "output": "9", "generator": "model-a"}])
    with pytest.raises(UserError, match="two records for model 'model-a'.*same model"):
        alpaca_eval.read(res)
    (res / "c" / "model_outputs.json").write_text(json.dumps({"instruction": "X"}), encoding="utf-8")
    with pytest.raises(UserError, match="expected a JSON array"):
        alpaca_eval.read(res / "c")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(UserError, match="no AlpacaEval"):
        alpaca_eval.read(tmp_path / "nothing")


def arena_v01(root: Path, *, extra_answer: dict | None = None) -> Path:
    write_jsonl(
        root / "question.jsonl",
        [
            {"question_id": "q1", "category": "arena-hard-v0.1", "cluster": "Coding", "turns": [{"content": "Write a loop."}]},
            {"question_id": "q2", "category": "arena-hard-v0.1", "cluster": "Maths", "turns": [{"content": "Prove it."}]},
        ],
    )

    def ans(qid, model_id, *turns):
        return {
            "question_id": qid,
            "answer_id": f"{model_id}-{qid}",
            "model_id": model_id,
            "tstamp": 1.0,
            "choices": [{"index": 0, "turns": [{"content": t, "token_len": len(t)} for t in turns]}],
        }

    write_jsonl(root / "model_answer" / "org-m1.jsonl", [ans("q1", "org/m1", "for ...", "and again"), ans("q2", "org/m1", "QED")])
    write_jsonl(
        root / "model_answer" / "m2.jsonl",
        [ans("q1", "m2", "while ..."), ans("q2", "m2", "")] + ([extra_answer] if extra_answer else []),
    )
    return root


def test_arena_hard_v01_layout(tmp_path):
    root = arena_v01(tmp_path / "bench")
    for path in (root, root / "model_answer"):
        records = arena_hard.read(path)
        assert sorted((r.model, r.prompt, r.text, r.category) for r in records) == [
            ("m2", "Prove it.", "", "Maths"),
            ("m2", "Write a loop.", "while ...", "Coding"),
            ("org-m1", "Prove it.", "QED", "Maths"),
            ("org-m1", "Write a loop.", "for ...", "Coding"),
        ]
        assert sum(r.meta["n_turns"] > 1 for r in records) == 1
        assert {r.meta["model_id"] for r in records if r.model == "org-m1"} == {"org/m1"}
    root = arena_v01(tmp_path / "bad", extra_answer={"question_id": "q9", "choices": [{"index": 0, "turns": ["?"]}]})
    with pytest.raises(UserError, match=r"m2\.jsonl:3: answer to unknown question_id 'q9'"):
        arena_hard.read(root)
    (root / "question.jsonl").unlink()
    with pytest.raises(UserError, match="question.jsonl not found"):
        arena_hard.read(root / "model_answer")


def test_noveltybench_small(tmp_path):
    def line(i, model, gens, **kw):
        return {"id": f"c-{i}", "prompt": f"Prompt {i}", "model": model, "generations": gens, **kw}

    write_jsonl(tmp_path / "nb" / "plain.jsonl", [line(1, "g", ["a", "b"], partition=[0, 0])])
    write_jsonl(tmp_path / "nb" / "fancy.jsonl", [line(1, "g", ["c", "d"], partition=[0, 1])])
    write_jsonl(tmp_path / "nb" / "people.jsonl", [line(1, "human", ["e"])])
    records = noveltybench.read(tmp_path / "nb")
    assert sorted((r.model, r.sample_index, r.text, r.meta.get("partition_label")) for r in records) == [
        ("fancy", 0, "c", 0),
        ("fancy", 1, "d", 1),
        ("people", 0, "e", None),
        ("plain", 0, "a", 0),
        ("plain", 1, "b", 0),
    ]
    # a file holding several models, and the evaluation layout's scores.jsonl, keep the model field
    write_jsonl(tmp_path / "mixed" / "both.jsonl", [line(1, "g", ["a"]), line(1, "h", ["b"])])
    write_jsonl(tmp_path / "mixed" / "run" / "scores.jsonl", [line(2, "gemini", ["c"])])
    assert {r.model for r in noveltybench.read(tmp_path / "mixed" / "both.jsonl")} == {"g", "h"}
    assert {r.model for r in noveltybench.read(tmp_path / "mixed" / "run")} == {"gemini"}
    write_jsonl(tmp_path / "bad" / "x.jsonl", [line(1, "g", ["a", "b"], partition=[0])])
    with pytest.raises(UserError, match=r"x\.jsonl:1: 'partition' must be a list"):
        noveltybench.read(tmp_path / "bad")
    with pytest.raises(UserError, match="model_from must be"):
        noveltybench.read(tmp_path / "nb", model_from="stem")


# -- bad input: the error names file and line, and the store is unchanged --------------------------------
GOOD = {
    "jsonl": {"prompt": "P", "model": "m", "text": "t"},
    "noveltybench": {"id": "c-1", "prompt": "P", "model": "m", "generations": ["t"]},
    "arena-hard": {"question_id": "q1", "answer_id": "a", "model_id": "m", "choices": [{"index": 0, "turns": ["t"]}]},
    "alpaca-eval": {"instruction": "P", "output": "t", "generator": "m"},
}
REQUIRED_FIELD = {"jsonl": "text", "noveltybench": "prompt", "arena-hard": "choices", "alpaca-eval": "output"}


def bad_file(tmp_path: Path, fmt: str, problem: str | None) -> tuple[Path, Path, int]:
    """Write one good record, then (unless ``problem`` is None) a bad one; ``problem="empty"``
    writes nothing. Returns (path to import, file written, line of the bad record)."""
    good = json.dumps(GOOD[fmt])
    other = good.replace('"P"', '"Q"').replace('"q1"', '"q2"')  # a second, distinct record
    second = {
        None: None,
        "non-json": "{not json",
        "missing-field": json.dumps({k: v for k, v in json.loads(other).items() if k != REQUIRED_FIELD[fmt]}),
        "non-utf8": other.replace('"t"', '"t\udcff"'),  # written as the byte 0xff
        "empty": None,
    }[problem]
    if fmt == "alpaca-eval":
        target, path, line = tmp_path / "results" / "m" / "model_outputs.json", tmp_path / "results", 3
        body = f"[\n{good}" + (f",\n{second}" if second else "") + "\n]\n"
    else:
        if fmt == "arena-hard":
            write_jsonl(
                tmp_path / "question.jsonl", [{"question_id": "q1", "turns": ["P"]}, {"question_id": "q2", "turns": ["Q"]}]
            )
            target, path = tmp_path / "model_answer" / "m.jsonl", tmp_path
        else:
            target = path = tmp_path / "in" / "data.jsonl"
        line = 2
        body = f"{good}\n" + (f"{second}\n" if second else "")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"" if problem == "empty" else body.encode("utf-8", "surrogateescape"))
    return path, target, line


@pytest.mark.parametrize("fmt", ["jsonl", "noveltybench", "arena-hard", "alpaca-eval"])
@pytest.mark.parametrize("problem", ["non-json", "missing-field", "non-utf8", "empty"])
def test_bad_input_names_file_and_line_and_leaves_store_unchanged(tmp_path, store_path, fmt, problem):
    with Store(store_path) as store:
        import_records(store, tabular.read_jsonl(write_table(tmp_path, "jsonl", ROWS, "seed")), "seed")
        before = counts(store)
        assert before == (5, 2, 2)
        # the good record alone reads fine, so the failure below is the bad record's
        assert len(reader(fmt)(bad_file(tmp_path / "ok", fmt, None)[0])) == 1
        path, target, line = bad_file(tmp_path / "case", fmt, problem)
        with pytest.raises(UserError) as e:
            import_records(store, reader(fmt)(path), fmt)
        msg = str(e.value)
        assert str(target) in msg
        if problem == "empty":
            assert "empty" in msg
        else:
            assert f"{target}:{line}:" in msg
            expect = {
                "non-json": "not valid JSON",
                "missing-field": f"missing field '{REQUIRED_FIELD[fmt]}'",
                "non-utf8": "not valid UTF-8",
            }[problem]
            assert expect in msg
        assert counts(store) == before
