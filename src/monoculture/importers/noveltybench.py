"""NoveltyBench generations (``novelty-bench/novelty-bench``: ``sample_data/*.jsonl``,
``evaluation/<run>/<set>/scores.jsonl``).

Each line is ``{id, prompt, model, generations: [...], partition?, generation_scores?, ...}``;
``path`` is one such file or a folder of them. Generation *i* is sample *i*; ``partition[i]`` (the
benchmark's equivalence class of that sample) is kept in ``meta`` as ``partition_label`` and
``generation_scores[i]`` as ``generation_score``.

Model names: the sample files of different prompting schemes all say ``gpt-4o-2024-11-20``;
NoveltyBench names the source (the model *and* its sampling scheme) by the file. ``model_from``
chooses: ``"model"`` uses the ``model`` field; ``"file"`` uses the file's stem; ``"auto"``
(default) uses the stem for a file that holds one model (``gpt-4o``, ``gpt-4o-paraphrase``,
``humans``), and the ``model`` field for a file that holds several, or for the evaluation
layout's ``scores.jsonl`` (there the folder names the run, and the stem says nothing). The name
depends on the file alone, never on what else is imported with it, so files imported one at a
time land under the same distinct names as when imported together.

Prompt-only files (``data/curated.jsonl``, ``data/wildchat-1k.jsonl``) have no generations and
are refused.
"""

from __future__ import annotations

from pathlib import Path

from monoculture.errors import UserError
from monoculture.importers import Imported, ensure_unique
from monoculture.importers.tabular import (
    check_options,
    existing_path,
    find_files,
    json_type,
    jsonl_objects,
    require,
    text_id,
)

MODEL_FROM = ("auto", "model", "file")


def _parse(path: Path) -> list[tuple[int, dict]]:
    rows = jsonl_objects(path)
    for n, obj in rows:
        where = f"{path}:{n}"
        if "generations" not in obj:
            raise UserError(
                "no generations: this line has no 'generations' field (a prompt-only file such as "
                "data/curated.jsonl cannot be imported; use the scored files in sample_data/ or evaluation/)",
                where=where,
            )
        gens = require(obj, "generations", where, list)
        for i, g in enumerate(gens):
            if not isinstance(g, str):
                raise UserError(f"generations[{i}] must be a string, got {json_type(g)}", where=where)
        require(obj, "prompt", where)
        require(obj, "model", where)
        if not obj["prompt"].strip():
            raise UserError("'prompt' is empty", where=where)
        if not obj["model"].strip():
            raise UserError("'model' is empty", where=where)
        pid = obj.get("id")
        if pid is not None and (not isinstance(pid, (str, int)) or isinstance(pid, bool)):
            raise UserError(f"'id' must be a string or an integer, got {json_type(pid)}", where=where)
        for field in ("partition", "generation_scores"):
            v = obj.get(field)
            if v is not None and (not isinstance(v, list) or len(v) != len(gens)):
                got = f"{len(v)} entries" if isinstance(v, list) else json_type(v)
                raise UserError(f"'{field}' must be a list with one entry per generation ({len(gens)}), got {got}", where=where)
    if not any(obj["generations"] for _, obj in rows):
        raise UserError("no generations: every line has an empty 'generations' list", where=str(path))
    return rows


def _named_by_stem(f: Path, rows: list[tuple[int, dict]], model_from: str) -> bool:
    """Whether this file's records are named after the file (see the module docstring)."""
    if model_from != "auto":
        return model_from == "file"
    return len({obj["model"] for _, obj in rows}) == 1 and f.stem != "scores"


def read(path: str | Path, *, model_from: str = "auto", **options) -> list[Imported]:
    check_options(options, ("model_from",), "noveltybench")
    if model_from not in MODEL_FROM:
        raise UserError(f"model_from must be one of {', '.join(MODEL_FROM)}, got {model_from!r}")
    files = find_files(existing_path(path), ["*.jsonl"], "NoveltyBench .jsonl files")
    parsed = [(f, _parse(f)) for f in files]

    by_stem = {f: _named_by_stem(f, rows, model_from) for f, rows in parsed}
    stems: dict[str, Path] = {}
    for f, _ in parsed:
        if by_stem[f] and f.stem in stems:
            raise UserError(f"two files are both named {f.stem!r} ({stems[f.stem]} and {f}); import them separately")
        if by_stem[f]:
            stems[f.stem] = f

    records: list[Imported] = []
    for f, rows in parsed:
        for n, obj in rows:
            model = obj["model"]
            name = f.stem if by_stem[f] else model
            pid = obj.get("id")
            pid = text_id("novelty", obj["prompt"]) if pid is None or str(pid).strip() == "" else str(pid)
            partition = obj.get("partition")
            scores = obj.get("generation_scores")
            category = obj.get("category") if isinstance(obj.get("category"), str) else None
            for i, g in enumerate(obj["generations"]):
                meta = {"id": pid, "file": f.name, "model_field": model}
                if partition is not None:
                    meta["partition_label"] = partition[i]
                if scores is not None:
                    meta["generation_score"] = scores[i]
                records.append(
                    Imported(
                        model=name,
                        prompt_id=pid,
                        prompt=obj["prompt"],
                        text=g,
                        sample_index=i,
                        meta=meta,
                        category=category,
                        where=f"{f}:{n}",
                    )
                )
    hint = "the same model answers the same prompt in two files; pass model_from='file'" if model_from == "model" else ""
    ensure_unique(records, hint)
    return records
