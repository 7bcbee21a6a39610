"""AlpacaEval model outputs (``tatsu-lab/alpaca_eval``: ``results/<model>/model_outputs.json``).

Each file is a JSON array of ``{instruction, output, generator, dataset}``. ``path`` may be the
``results/`` folder, one model's folder, or one ``model_outputs.json``. The model is
``generator`` (else the folder's name); ``dataset`` becomes the prompt's category. AlpacaEval has
no prompt ids: a file whose instructions are all distinct numbers them ``alpaca-<position>``;
otherwise ids come from the text and a repeated instruction counts as a further sample of it.
Prompts are matched across models by their text either way. Empty outputs (text_davinci_003 has
two) are kept as empty strings.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from monoculture.errors import UserError
from monoculture.importers import Imported, ensure_unique
from monoculture.importers.tabular import (
    check_options,
    existing_path,
    find_files,
    json_error,
    json_type,
    read_text,
    require,
    text_id,
)

_WS = re.compile(r"\s*")


def _skip_ws(text: str, i: int) -> int:
    """The first position at or after ``i`` that is not whitespace (``\\s*`` always matches)."""
    m = _WS.match(text, i)
    assert m is not None
    return m.end()


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def json_array(path: Path) -> list[tuple[int, Any]]:
    """(line number, element) for each element of the top-level JSON array in ``path``."""
    text = read_text(path)
    dec = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if text[i] != "[":
        try:
            top = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(json_error(e), where=f"{path}:{e.lineno}") from None
        raise UserError(f"expected a JSON array of outputs, got {json_type(top)}", where=f"{path}:{_line(text, i)}")
    i = _skip_ws(text, i + 1)
    out: list[tuple[int, Any]] = []
    at, line = 0, 1  # lines counted incrementally: counting from 0 each time is quadratic
    if i < len(text) and text[i] == "]":
        i += 1
    else:
        while True:
            try:
                obj, j = dec.raw_decode(text, i)
            except json.JSONDecodeError as e:
                raise UserError(json_error(e), where=f"{path}:{e.lineno}") from None
            line += text.count("\n", at, i)
            at = i
            out.append((line, obj))
            i = _skip_ws(text, j)
            if i < len(text) and text[i] == ",":
                i = _skip_ws(text, i + 1)
                continue
            if i < len(text) and text[i] == "]":
                i += 1
                break
            raise UserError("not valid JSON (expected ',' or ']' after an array element)", where=f"{path}:{_line(text, i)}")
    rest = _skip_ws(text, i)
    if rest != len(text):
        raise UserError("not valid JSON (extra data after the array)", where=f"{path}:{_line(text, rest)}")
    if not out:
        raise UserError("file is empty (the array has no outputs)", where=str(path))
    return out


def _read_file(path: Path) -> list[Imported]:
    items = json_array(path)
    rows = []
    for k, (line, obj) in enumerate(items):
        where = f"{path}:{line}"
        if not isinstance(obj, dict):
            raise UserError(f"output {k}: expected a JSON object, got {json_type(obj)}", where=where)
        instruction = require(obj, "instruction", where)
        output = require(obj, "output", where)
        if not instruction.strip():
            raise UserError(f"output {k}: 'instruction' is empty", where=where)
        generator = obj.get("generator")
        if generator is not None and not isinstance(generator, str):
            raise UserError(f"field 'generator' must be a string, got {json_type(generator)}", where=where)
        dataset = obj.get("dataset")
        rows.append((where, instruction, output, generator or path.parent.name, dataset if isinstance(dataset, str) else None))
    texts = [r[1].strip() for r in rows]
    unique = len(set(texts)) == len(texts)
    seen: dict[str, int] = {}
    records = []
    for k, (where, instruction, output, model, dataset) in enumerate(rows):
        t = texts[k]
        sample = seen.get(t, 0)
        seen[t] = sample + 1
        records.append(
            Imported(
                model=model,
                prompt_id=f"alpaca-{k}" if unique else text_id("alpaca", instruction),
                prompt=instruction,
                text=output,
                sample_index=sample,
                meta={"index": k},
                category=dataset,
                where=where,
            )
        )
    return records


def read(path: str | Path, **options) -> list[Imported]:
    check_options(options, (), "alpaca-eval")
    root = existing_path(path)
    if root.is_dir() and (root / "model_outputs.json").is_file():
        files = [root / "model_outputs.json"]
    else:
        files = find_files(root, ["*/model_outputs.json"], "AlpacaEval model_outputs.json files")
    records: list[Imported] = []
    for f in files:
        records += _read_file(f)
    ensure_unique(records, "two files give the same model (generator)")
    return records
