"""Model attributes (family, organisation, country, open weights, base model).

Groups and lineage need them; a study file declares them, and this module sets them on models
that came from an import, from a YAML file or by the leading letters of the name."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError

from monoculture.errors import UserError
from monoculture.study import ModelAttributes, _format_validation

_BOOL = {"true": True, "false": False, "yes": True, "no": False}


def family_from_name(name: str) -> str | None:
    """The leading letters of a model name: vicuna-7b-v1.5 -> vicuna, gpt-4o -> gpt."""
    m = re.match(r"[A-Za-z]+", name.split("/")[-1])
    return m.group(0).lower() if m else None


def read_attributes_file(path: Path) -> dict[str, dict]:
    from monoculture.files import regular_file

    regular_file(path, "attributes file")  # missing, or a folder: one clear line
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"not a readable YAML file: {str(e).splitlines()[0]}", where=str(path)) from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UserError("expected a mapping of model name -> {attribute: value}", where=str(path))
    out = {}
    for model, attrs in data.items():
        try:
            out[str(model)] = ModelAttributes(**attrs).model_dump(exclude_none=True)
        except ValidationError as e:
            raise UserError(f"model {model!r}: {_format_validation(e)}", where=str(path)) from None
        except Exception as e:
            raise UserError(f"model {model!r}: {str(e).splitlines()[0]}", where=str(path)) from None
    return out


def apply_attributes(store, *, file: Path | None = None, assignments: Sequence[str] = (), family_from_name: bool = False) -> int:
    """Merge new attributes into the store's models; validates everything before writing."""
    current = store.model_attributes()
    updates: dict[str, dict] = {}
    if file:
        updates = read_attributes_file(file)
    set_models: list[str] = []
    for a in assignments:
        m = re.fullmatch(r"(.+?):([A-Za-z_]+)=(.*)", a)
        if not m:
            raise UserError(f"--set {a!r}: expected MODEL:KEY=VALUE")
        model, key, value = m.groups()
        updates.setdefault(model, {})[key] = _BOOL.get(value.lower(), value)
        set_models.append(model)
    for model in dict.fromkeys(set_models):
        try:  # the same checks as a study file's attributes (released: a date or a month)
            updates[model] = ModelAttributes(**updates[model]).model_dump(exclude_unset=True)
        except ValidationError as e:
            raise UserError(f"--set {model}: {_format_validation(e)}") from None
    unknown = sorted(set(updates) - set(current))
    if unknown:
        raise UserError(f"no model named {', '.join(unknown)} in the store; models: {', '.join(sorted(current))}")
    if family_from_name:
        for model, attrs in current.items():
            if "family" not in attrs and "family" not in updates.get(model, {}):
                fam = globals()["family_from_name"](model)
                if fam:
                    updates.setdefault(model, {})["family"] = fam
    with store.transaction():
        for model, new in updates.items():
            merged = {**current[model], **new}
            store.con.execute(
                "UPDATE models SET attributes = ? WHERE name = ?", [__import__("json").dumps(merged, sort_keys=True), model]
            )
    return len(updates)
