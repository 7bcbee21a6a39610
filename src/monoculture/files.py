"""Reading and writing user files: one place that turns an empty file, a bad byte, a folder
where a file belongs or a path under a file into a UserError that names the path (and the line),
for study files, suites, imports, registries and exports alike."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from monoculture.errors import UserError


def regular_file(path: str | Path, what: str = "file") -> Path:
    """``path`` if it is a file that can be opened; a missing path or a folder is a UserError
    (``IsADirectoryError`` would otherwise reach the user as a traceback)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"is a directory; expected a {what}", where=str(path))
    if not path.exists():
        raise UserError(f"{what} not found", where=str(path))
    return path


def read_utf8(path: str | Path, what: str = "file") -> str:
    """Decode a file as UTF-8 (a leading BOM is dropped); a bad byte or an empty file is a
    UserError naming the line."""
    path = regular_file(path, what)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read: {e.strerror or e}", where=str(path)) from None
    if not raw.strip():
        raise UserError("file is empty", where=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise UserError(
            f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {col}); re-save the file as UTF-8", where=f"{path}:{line}"
        ) from None
    return text.removeprefix("\ufeff")


def jsonl_objects(text: str, where: str, not_object: str = "a record must be a JSON object") -> Iterator[tuple[str, int, dict]]:
    """The records of JSONL text as (``where:line``, line number, object), blank lines skipped; a
    line that is not JSON, or not an object, is a UserError naming the file and line."""
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        at = f"{where}:{n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"not valid JSON ({e.msg})", where=at) from None
        if not isinstance(rec, dict):
            raise UserError(not_object, where=at)
        yield at, n, rec


def writable_file(target: str | Path) -> Path:
    """Make ``target``'s folder (and its parents) so that the file can be written; a folder at
    ``target`` or a file where a parent folder should be is a UserError naming it."""
    target = Path(target)
    if target.is_dir():
        raise UserError("is a directory; expected a file to write", where=str(target))
    for parent in [target.parent, *target.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"cannot write {target}: {parent} is a file, not a folder", where=str(parent))
            break
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot make the folder: {e.strerror or e}", where=str(target.parent)) from None
    if not os.access(target.parent, os.W_OK):
        raise UserError("cannot write here (permission denied)", where=str(target.parent))
    return target
