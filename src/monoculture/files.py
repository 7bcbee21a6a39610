"""Reading user files: one place that turns an empty file or a bad byte into a UserError that
names the file and line, for study files, suites and imports alike."""

from __future__ import annotations

from pathlib import Path

from monoculture.errors import UserError


def read_utf8(path: Path) -> str:
    """Decode a file as UTF-8 (a leading BOM is dropped); a bad byte or an empty file is a
    UserError naming the line."""
    path = Path(path)
    raw = path.read_bytes()
    if not raw.strip():
        raise UserError("file is empty", where=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise UserError(f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {col}); re-save the file as UTF-8", where=f"{path}:{line}") from None
    return text[1:] if text.startswith("\ufeff") else text
