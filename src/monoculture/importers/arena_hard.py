"""Arena-Hard answers (``lmarena/arena-hard-auto``): ``question.jsonl`` + ``model_answer/*.jsonl``.

``path`` is the benchmark folder (holding both), the ``model_answer`` folder (``question.jsonl``
in its parent), or one answer file (``question.jsonl`` next to its folder or beside it);
``questions=FILE`` names the question file explicitly. Two layouts are read:

* arena-bench-v1: questions ``{question_id, category, turns: [prompt]}``, answers
  ``{question_id, answer_id, model_id, choices: [{index, turns: [answer, ...]}], tstamp}``;
* arena-hard-v0.1: questions ``{question_id, category, cluster, turns: [{content}]}``, answers
  whose turns are ``{content, token_len}``.

The prompt is the question's first turn and each choice's first turn is a sample
(``sample_index`` = the choice's ``index``). The model is named after the answer file's stem (the
Mistral files say ``mistralai/...`` in ``model_id``, the stem does not); ``model_id`` goes in
``meta`` with ``question_id``, ``answer_id`` and ``n_turns`` (answers with ``n_turns`` > 1 were
multi-turn; only their first turn is imported). The category is the question's ``cluster`` when
it has one (v0.1), else its ``category``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monoculture.errors import UserError
from monoculture.importers import MAX_SAMPLE_INDEX, Imported, ensure_unique
from monoculture.importers.tabular import (
    check_options,
    existing_path,
    find_files,
    json_type,
    jsonl_objects,
    require,
)


def _turn_text(turn: Any, what: str, where: str) -> str:
    """A turn is a string (arena-bench-v1) or {"content": str, ...} (v0.1)."""
    if isinstance(turn, str):
        return turn
    if isinstance(turn, dict):
        return require(turn, "content", where, what=f"{what} field")
    raise UserError(f"{what} must be a string or an object with 'content', got {json_type(turn)}", where=where)


def _locate(root: Path, questions: str | Path | None) -> tuple[Path, list[Path]]:
    if root.is_file():
        answers = [root]
        candidates = [root.parent.parent / "question.jsonl", root.parent / "question.jsonl"]
    elif (root / "model_answer").is_dir() or (root / "question.jsonl").is_file():
        if not (root / "model_answer").is_dir():
            raise UserError("no model_answer/ folder next to question.jsonl", where=str(root))
        answers = find_files(root / "model_answer", ["*.jsonl"], "answer files (*.jsonl)")
        candidates = [root / "question.jsonl"]
    else:
        answers = find_files(root, ["*.jsonl"], "answer files (*.jsonl)")
        candidates = [root.parent / "question.jsonl"]
    answers = [a for a in answers if a.name != "question.jsonl"]
    if not answers:
        raise UserError("no answer files found (model_answer/*.jsonl)", where=str(root))
    if questions is not None:
        q = existing_path(questions)
    else:
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise UserError(
                f"question.jsonl not found (looked at {', '.join(map(str, candidates))}); pass questions=FILE", where=str(root)
            )
        q = found
    return q, answers


def _questions(path: Path) -> dict[str, tuple[str, str | None, int]]:
    """question_id -> (first-turn text, category, line)."""
    out: dict[str, tuple[str, str | None, int]] = {}
    for n, q in jsonl_objects(path):
        where = f"{path}:{n}"
        qid = require(q, "question_id", where, (str, int))
        turns = require(q, "turns", where, list)
        if not turns:
            raise UserError("question has no turns", where=where)
        text = _turn_text(turns[0], "question turn", where)
        if not text.strip():
            raise UserError("question's first turn is empty", where=where)
        cat = q.get("cluster") if isinstance(q.get("cluster"), str) else q.get("category")
        key = str(qid)
        if key in out:
            raise UserError(f"question_id {key!r} appears twice (first on line {out[key][2]})", where=where)
        out[key] = (text, cat if isinstance(cat, str) else None, n)
    return out


def read(path: str | Path, *, questions: str | Path | None = None, **options) -> list[Imported]:
    check_options(options, ("questions",), "arena-hard")
    qfile, answer_files = _locate(existing_path(path), questions)
    qs = _questions(qfile)
    records: list[Imported] = []
    for f in answer_files:
        model = f.stem
        for n, a in jsonl_objects(f):
            where = f"{f}:{n}"
            qid = str(require(a, "question_id", where, (str, int)))
            if qid not in qs:
                raise UserError(f"answer to unknown question_id {qid!r} (not in {qfile})", where=where)
            prompt, category, _ = qs[qid]
            choices = require(a, "choices", where, list)
            if not choices:
                raise UserError("answer has no choices", where=where)
            model_id = a.get("model_id")
            for pos, ch in enumerate(choices):
                if not isinstance(ch, dict):
                    raise UserError(f"choice {pos}: expected an object, got {json_type(ch)}", where=where)
                turns = require(ch, "turns", where, list, what=f"choice {pos} field")
                if not turns:
                    raise UserError(f"choice {pos} has no turns", where=where)
                text = _turn_text(turns[0], f"choice {pos} turn", where)
                idx = ch.get("index", pos)
                if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx <= MAX_SAMPLE_INDEX:
                    raise UserError(
                        f"choice {pos}: 'index' must be a whole number from 0 to {MAX_SAMPLE_INDEX}, got {idx!r}", where=where
                    )
                meta = {"question_id": qid, "answer_id": a.get("answer_id"), "model_id": model_id, "n_turns": len(turns)}
                if isinstance(turns[0], dict) and "token_len" in turns[0]:
                    meta["token_len"] = turns[0]["token_len"]
                records.append(
                    Imported(
                        model=model,
                        prompt_id=qid,
                        prompt=prompt,
                        text=text,
                        sample_index=idx,
                        meta=meta,
                        category=category,
                        where=where,
                    )
                )
    ensure_unique(records, "an answer file answers the same question twice")
    return records
