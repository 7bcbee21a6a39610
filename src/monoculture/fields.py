"""Field checks the study file's sections share (study.py and the loops section's spec.py).

Each is written for pydantic's ``field_validator``: it raises ValueError, which pydantic
reports against the field's place in the file.
"""

from __future__ import annotations

from typing import Any


def no_bool(v: Any) -> Any:
    """YAML reads ``yes``/``true`` as a boolean, which pydantic would take as 1 for a number:
    ``samples: yes`` is a mistake to report, not one sample."""
    if isinstance(v, bool):
        raise ValueError(f"must be a number, not {str(v).lower()}")  # noqa: TRY004 - pydantic reports ValueError only
    return v


def names(v: Any) -> Any:
    """A list of names, written as a YAML list or as one comma-separated string."""
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    return v


def embedder_name(v: str | None) -> str | None:
    """An embedder name as the registry reads it, checked without loading a model (that takes
    minutes, and is for the phase that embeds)."""
    if v is not None:
        from monoculture.embed import check_embedder_name
        from monoculture.errors import UserError

        try:
            check_embedder_name(v)
        except UserError as e:
            raise ValueError(str(e)) from None
    return v
