"""NoveltyBench generations (``novelty-bench/novelty-bench``: ``sample_data/*.jsonl``,
``evaluation/<run>/<set>/scores.jsonl``).

Each line is ``{id, prompt, model, generations: [...], partition?, generation_scores?, ...}``;
``path`` is one such file or a folder of them. Generation *i* is sample *i*; ``partition[i]`` (the
benchmark's equivalence class of that sample) is kept in ``meta`` as ``partition_label`` and
``generation_scores[i]`` as ``generation_score``.

Model names: the sample files of different prompting schemes all say ``gpt-4o-2024-11-20``.
``model_from`` chooses: ``"model"`` uses the ``model`` field; ``"file"`` uses the file's stem;
``"auto"`` (default) uses the ``model`` field unless two files of this import share a model, in
which case those files are named by their stem (``gpt-4o``, ``gpt-4o-paraphrase``, ...). Importing
such files one at a time under ``auto`` would file them under the same name (the later import
replaces the earlier one's rows), so import them together or pass ``model_from="file"``.

Prompt-only files (``data/curated.jsonl``, ``data/wildchat-1k.jsonl``) have no generations and
are refused.
"""

from __future__ import annotations

from pathlib import Path

from monoculture.errors import UserError
from monoculture.importers import Imported
from monoculture.importers.tabular import (
    check_options,
    ensure_unique,
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


def read(path: str | Path, *, model_from: str = "auto", **options) -> list[Imported]:
    check_options(options, ("model_from",), "noveltybench")
    if model_from not in MODEL_FROM:
        raise UserError(f"model_from must be one of {', '.join(MODEL_FROM)}, got {model_from!r}")
    files = find_files(existing_path(path), ["*.jsonl"], "NoveltyBench .jsonl files")
    parsed = [(f, _parse(f)) for f in files]

    stems: dict[str, Path] = {}
    for f, _ in parsed:
        if model_from != "model" and f.stem in stems:
            raise UserError(f"two files are both named {f.stem!r} ({stems[f.stem]} and {f}); import them separately")
        stems[f.stem] = f
    files_of: dict[str, set[Path]] = {}
    for f, rows in parsed:
        for _, obj in rows:
            files_of.setdefault(obj["model"], set()).add(f)
    shared = {m for m, fs in files_of.items() if len(fs) > 1}

    records: list[Imported] = []
    places: list[str] = []
    for f, rows in parsed:
        for n, obj in rows:
            model = obj["model"]
            if model_from == "file" or (model_from == "auto" and model in shared):
                name = f.stem
            else:
                name = model
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
                records.append(Imported(model=name, prompt_id=pid, prompt=obj["prompt"], text=g, sample_index=i, meta=meta, category=category))
                places.append(f"{f}:{n}")
    hint = "the same model answers the same prompt in two files; pass model_from='file'" if model_from == "model" else ""
    ensure_unique(records, places, hint)
    return records
